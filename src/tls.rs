//! rustls for the listener (TLS 1.2 and 1.3, ALPN h2 + http/1.1) and for upstream clients
//! (system roots or a configured CA). One crypto provider, aws-lc-rs, everywhere (TLS, JWT
//! signatures, and our own digests, HMACs and sealing).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A certificate or key file that cannot be used. Carries paths, never key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read `{path}`: {reason}")]
    Read { path: String, reason: String },
    #[error("`{path}` holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("`{path}` holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: String },
    #[error("the certificate and key do not form a usable pair: {0}")]
    Pair(String),
    #[error("cannot build the trust store: {0}")]
    Roots(String),
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: path.display().to_string(),
        reason: e.kind().to_string(),
    })
}

/// Reads every certificate of a PEM file, leaf first.
pub fn load_cert_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|_| TlsError::NoKey {
        path: path.display().to_string(),
    })
}

/// The listener's TLS configuration. With `client_ca`, client certificates are asked for
/// and verified against it (mTLS); a client may still connect without one (and
/// authenticate otherwise), but one that presents a certificate the CA did not issue fails
/// the handshake.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, TlsError> {
    let chain = load_cert_chain(cert)?;
    let key = load_private_key(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = Arc::new(trust_anchors(Some(ca))?);
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider())
                    .allow_unauthenticated()
                    .build()
                    .map_err(|e| TlsError::Roots(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Pair(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The connector of every outbound client (upstreams, JWKS): HTTPS through rustls, with
/// `ca` as the only trust anchor when given and the system roots otherwise, or plain HTTP.
/// `plain_http`: the peer is reached over plain HTTP, where a missing system trust store is
/// no reason to fail.
pub fn https_connector(
    ca: Option<&Path>,
    connect_timeout: Duration,
    plain_http: bool,
) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    connector(ca, None, connect_timeout, plain_http)
}

/// [`https_connector`] presenting the client certificate chain and key of `identity`
/// (cert, key: PEM files) when the server asks for one (`portcullis admin` to an admin
/// listener with its own CA).
pub fn https_connector_with_identity(
    ca: Option<&Path>,
    identity: (&Path, &Path),
    connect_timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    connector(ca, Some(identity), connect_timeout, false)
}

fn connector(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    connect_timeout: Duration,
    plain_http: bool,
) -> Result<HttpsConnector<HttpConnector>, TlsError> {
    let roots = match trust_anchors(ca) {
        Ok(roots) => roots,
        Err(_) if plain_http => rustls::RootCertStore::empty(),
        Err(e) => return Err(e),
    };
    // ALPN (h2, http/1.1) is set by the connector builder below.
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Roots(e.to_string()))?
        .with_root_certificates(roots);
    let tls = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_cert_chain(cert)?, load_private_key(key)?)
            .map_err(|e| TlsError::Pair(e.to_string()))?,
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http))
}

/// Only `ca` when given, else the system roots.
fn trust_anchors(ca: Option<&Path>) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in load_cert_chain(path)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Roots(format!("`{}`: {e}", path.display())))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for cert in native.certs {
                // A system store may hold certificates rustls cannot parse; skip those.
                let _ignored = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(TlsError::Roots(
                    "no system root certificates found (install ca-certificates or set upstream.ca)"
                        .into(),
                ));
            }
        }
    }
    Ok(roots)
}
