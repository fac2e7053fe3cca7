//! The names of the verified client certificate of a request's connection: the listener
//! reads them once per connection and puts them in the extensions of every request on it.
//! Only a certificate rustls has already verified ever gets here: parsing it is not
//! trusting it.

use std::sync::Arc;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

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
}
