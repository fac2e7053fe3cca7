//! Client-certificate identity (authentication by mTLS): the names in a certificate that rustls
//! verified against `server.tls.client_ca` during the handshake.
//!
//! The listener reads them once per connection (`server/conn.rs`) and puts them in the
//! extensions of every request on that connection; a route that accepts `mtls` turns the
//! configured one (`auth.certificate_identity`) into the principal's subject. Only a
//! certificate rustls has already verified ever gets here: parsing it is not trusting it.

use std::sync::Arc;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::config::auth::CertificateIdentity;

/// The names of a verified client certificate's leaf.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientCertificate {
    pub common_name: Option<String>,
    pub dns_names: Vec<String>,
    pub uris: Vec<String>,
    pub emails: Vec<String>,
}

/// What the listener puts in a request's extensions when its connection presented a
/// verified client certificate.
#[derive(Debug, Clone)]
pub struct PeerCertificate(pub Arc<ClientCertificate>);

impl ClientCertificate {
    /// Reads the names of a DER certificate; `None` if it does not parse.
    pub fn from_der(der: &[u8]) -> Option<Self> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned);
        let mut names = Self {
            common_name,
            ..Self::default()
        };
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::DNSName(s) => names.dns_names.push((*s).to_owned()),
                    GeneralName::URI(s) => names.uris.push((*s).to_owned()),
                    GeneralName::RFC822Name(s) => names.emails.push((*s).to_owned()),
                    _ => {}
                }
            }
        }
        Some(names)
    }

    /// The identity the config names, if the certificate carries it (and it is not
    /// empty).
    pub fn identity(&self, which: CertificateIdentity) -> Option<&str> {
        let found = match which {
            CertificateIdentity::CommonName => self.common_name.as_deref(),
            CertificateIdentity::SanDns => self.dns_names.first().map(String::as_str),
            CertificateIdentity::SanUri => self.uris.first().map(String::as_str),
            CertificateIdentity::SanEmail => self.emails.first().map(String::as_str),
        };
        found.filter(|s| !s.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_common_name_and_alternative_names() {
        let mut params = rcgen::CertificateParams::new(vec!["agent.internal".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "billing-agent");
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://example.org/agent".try_into().unwrap(),
        ));
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            "ops@example.org".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let names = ClientCertificate::from_der(cert.der()).unwrap();
        assert_eq!(
            names.identity(CertificateIdentity::CommonName),
            Some("billing-agent")
        );
        assert_eq!(
            names.identity(CertificateIdentity::SanDns),
            Some("agent.internal")
        );
        assert_eq!(
            names.identity(CertificateIdentity::SanUri),
            Some("spiffe://example.org/agent")
        );
        assert_eq!(
            names.identity(CertificateIdentity::SanEmail),
            Some("ops@example.org")
        );
        assert!(ClientCertificate::from_der(b"not a certificate").is_none());
    }
}
