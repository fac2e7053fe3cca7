//! Client-certificate identity (authentication by mTLS): the names in a certificate that rustls
//! verified against `server.tls.client_ca` during the handshake.
//!
//! The listener reads them once per connection (`server/conn.rs`) and puts them in the
//! extensions of every request on that connection; a route that accepts `mtls` turns the
//! configured one (`auth.certificate_identity`) into the principal's subject. Only a
//! certificate rustls has already verified ever gets here: parsing it is not trusting it.

use crate::config::auth::CertificateIdentity;

pub use crate::request::{ClientCertificate, PeerCertificate};

/// The identity the config names, if the certificate carries it (and it is not empty).
pub fn identity(names: &ClientCertificate, which: CertificateIdentity) -> Option<&str> {
    let found = match which {
        CertificateIdentity::CommonName => names.common_name.as_deref(),
        CertificateIdentity::SanDns => names.dns_names.first().map(String::as_str),
        CertificateIdentity::SanUri => names.uris.first().map(String::as_str),
        CertificateIdentity::SanEmail => names.emails.first().map(String::as_str),
    };
    found.filter(|s| !s.is_empty())
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
            identity(&names, CertificateIdentity::CommonName),
            Some("billing-agent")
        );
        assert_eq!(
            identity(&names, CertificateIdentity::SanDns),
            Some("agent.internal")
        );
        assert_eq!(
            identity(&names, CertificateIdentity::SanUri),
            Some("spiffe://example.org/agent")
        );
        assert_eq!(
            identity(&names, CertificateIdentity::SanEmail),
            Some("ops@example.org")
        );
        assert!(ClientCertificate::from_der(b"not a certificate").is_none());
    }
}
