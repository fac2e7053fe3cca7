//! Test certificates: a throw-away CA and a leaf for `127.0.0.1` / `localhost`, generated
//! with rcgen and written to a temporary directory the gateway's config points at.

use std::path::PathBuf;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};

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

impl TestPki {
    pub fn generate() -> Self {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Portcullis test CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

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
            ca_pem: ca_cert.pem(),
            cert_path,
            key_path,
        }
    }
}
