//! Test certificates: a throw-away CA and a leaf for `127.0.0.1` / `localhost`, generated
//! with rcgen and written to a temporary directory the gateway's config points at; and
//! client-certificate authorities ([`ClientCa`]) that issue the identities mTLS tests
//! present.

use std::path::PathBuf;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A CA and a server certificate it signed, as PEM files on disk.
#[derive(Debug)]
pub struct TestPki {
    /// Kept alive for as long as the files are needed.
    _dir: tempfile::TempDir,
    /// The CA certificate clients trust.
    pub ca_pem: String,
    /// The leaf certificate (`127.0.0.1`, `localhost`), PEM.
    pub cert_path: PathBuf,
    /// The leaf's private key, PEM (PKCS#8).
    pub key_path: PathBuf,
}

/// A self-signed CA named `name`: its PEM certificate and the issuer that signs with it.
fn new_ca(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, name);
    ca_params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    (ca_cert.pem(), Issuer::new(ca_params, ca_key))
}

impl TestPki {
    pub fn generate() -> Self {
        let (ca_pem, issuer) = new_ca("Portcullis test CA");

        let mut leaf_params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.use_authority_key_identifier_extension = true;
        leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

        let dir = tempfile::tempdir().unwrap();
        let cert_path = dir.path().join("cert.pem");
        let key_path = dir.path().join("key.pem");
        std::fs::write(&cert_path, leaf_cert.pem()).unwrap();
        std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
        Self {
            _dir: dir,
            ca_pem,
            cert_path,
            key_path,
        }
    }
}

/// A CA that issues client certificates, its certificate written to a file a gateway's
/// `server.tls.client_ca` can point at.
#[derive(Debug)]
pub struct ClientCa {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

/// A client certificate and its key, as one PEM text (key first, then the certificate):
/// what `reqwest::Identity::from_pem` reads.
#[derive(Debug, Clone)]
pub struct ClientIdentity {
    pub pem: String,
}

impl ClientCa {
    pub fn generate(name: &str) -> Self {
        let (pem, issuer) = new_ca(name);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client-ca.pem");
        std::fs::write(&path, &pem).unwrap();
        Self {
            _dir: dir,
            path,
            issuer,
        }
    }

    /// A client certificate (extended key usage `clientAuth`) with `common_name` as its
    /// subject CN, when given, and `alt_names` as its subject alternative names.
    pub fn issue(&self, common_name: Option<&str>, alt_names: Vec<SanType>) -> ClientIdentity {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        if let Some(cn) = common_name {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.subject_alt_names = alt_names;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        ClientIdentity {
            pem: format!("{}{}", key.serialize_pem(), cert.pem()),
        }
    }
}
