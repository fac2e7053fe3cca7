//! `/healthz` (the process answers) and `/readyz` (config loaded, every upstream accepts a
//! TCP connection, every JWKS fetched at least once; each route's `auth` mode shown). Answered outside any route, before Host checks, so orchestrators can
//! probe by IP. They reveal route names and reachability, never upstream addresses.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::config::AuthMode;
use crate::gateway::Gateway;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn readyz(gateway: &Gateway) -> Response {
    let mut probes = tokio::task::JoinSet::new();
    for (i, route) in gateway.routes.iter().enumerate() {
        let upstream = std::sync::Arc::clone(&route.upstream);
        probes.spawn(async move { (i, upstream.ready(PROBE_TIMEOUT).await) });
    }
    let mut reachable = vec![false; gateway.routes.len()];
    while let Some(done) = probes.join_next().await {
        if let Ok((i, ok)) = done
            && let Some(slot) = reachable.get_mut(i)
        {
            *slot = ok;
        }
    }
    let issuers: Vec<_> = gateway
        .auth
        .jwks_status()
        .into_iter()
        .map(|(issuer, loaded)| {
            json!({ "issuer": issuer, "keys": if loaded { "loaded" } else { "not_loaded" } })
        })
        .collect();
    let keys_ready = gateway.auth.jwks_status().iter().all(|(_, loaded)| *loaded);
    let ready = reachable.iter().all(|ok| *ok) && keys_ready;
    let routes: Vec<_> = gateway
        .routes
        .iter()
        .zip(&reachable)
        .map(|(r, ok)| {
            json!({
                "name": &*r.name,
                "path": r.path,
                "upstream": if *ok { "reachable" } else { "unreachable" },
                // `none` is shown so that an unauthenticated route never goes unnoticed.
                "auth": match r.auth.mode {
                    AuthMode::Required => "required",
                    AuthMode::None => "none",
                },
            })
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "status": if ready { "ready" } else { "not_ready" }, "routes": routes });
    if !issuers.is_empty() {
        body["issuers"] = serde_json::Value::Array(issuers);
    }
    (status, Json(body)).into_response()
}

/// `portcullis health`: asks the local gateway's `/healthz` and reports whether it answered
/// 200. Made for container health checks (the image has no shell or curl). Over TLS the
/// gateway's own certificate, read from the config, is the only one accepted (pinned): the
/// probe needs no CA and trusts nothing else.
pub async fn probe(config: &crate::Config) -> Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let request = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let mut reply = Vec::new();
        match &config.server.tls {
            Some(tls) if !config.server.insecure_http => {
                let connector = pinned::connector(&tls.cert).map_err(|e| e.to_string())?;
                let name = rustls::pki_types::ServerName::try_from("localhost")
                    .map_err(|e| e.to_string())?;
                let mut stream = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with {addr} failed: {e}"))?;
                stream.write_all(request).await.map_err(|e| e.to_string())?;
                // A peer that closes without close_notify still gave us its answer.
                let _ = stream.read_to_end(&mut reply).await;
            }
            _ => {
                let mut stream = tcp;
                stream.write_all(request).await.map_err(|e| e.to_string())?;
                let _ = stream.read_to_end(&mut reply).await;
            }
        }
        Ok::<_, String>(reply)
    };
    let reply = tokio::time::timeout(PROBE_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no answer from {addr} within {PROBE_TIMEOUT:?}"))??;
    let status_line = reply.split(|b| *b == b'\n').next().unwrap_or_default();
    if status_line.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(format!(
            "{addr}/healthz answered `{}`",
            String::from_utf8_lossy(status_line).trim_end()
        ))
    }
}

/// A TLS client that accepts exactly one certificate: the gateway's own.
mod pinned {
    use std::path::Path;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    use crate::tls::{self, TlsError};

    #[derive(Debug)]
    struct Pinned {
        cert: CertificateDer<'static>,
        provider: Arc<CryptoProvider>,
    }

    impl ServerCertVerifier for Pinned {
        fn verify_server_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            if end_entity.as_ref() == self.cert.as_ref() {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(rustls::Error::General(
                    "not the configured certificate".into(),
                ))
            }
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    }

    pub(super) fn connector(cert_path: &Path) -> Result<tokio_rustls::TlsConnector, TlsError> {
        let leaf = tls::load_cert_chain(cert_path)?
            .into_iter()
            .next()
            .ok_or_else(|| TlsError::NoCertificate {
                path: cert_path.display().to_string(),
            })?;
        let provider = tls::provider();
        let verifier = Arc::new(Pinned {
            cert: leaf,
            provider: Arc::clone(&provider),
        });
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError::Roots(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

/// The probes' layer of the request path: `GET /healthz`, `/readyz`, and `/metrics` for
/// the networks allowed to read it, answered before the Host check (orchestrators probe by
/// IP) and recorded nowhere.
#[derive(Debug, Clone)]
pub struct Probes<S> {
    pub next: S,
    pub gateway: std::sync::Arc<Gateway>,
}

impl<S: crate::request::Next> tower::Service<http::Request<axum::body::Body>> for Probes<S> {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = crate::request::Answer;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<axum::body::Body>) -> Self::Future {
        use crate::request::{Unrecorded, pass};
        if req.method() != http::Method::GET {
            return pass(&mut self.next, req);
        }
        let gateway = std::sync::Arc::clone(&self.gateway);
        let answer = match req.uri().path() {
            "/healthz" => healthz(),
            "/readyz" => {
                return Box::pin(async move {
                    let mut response = readyz(&gateway).await;
                    response.extensions_mut().insert(Unrecorded);
                    Ok(response)
                });
            }
            "/metrics" if metrics_allowed(&gateway, &req) => {
                crate::audit::metrics::metrics_response(&gateway.audit.metrics)
            }
            _ => return pass(&mut self.next, req),
        };
        let mut response = answer;
        response.extensions_mut().insert(Unrecorded);
        crate::request::answer(response)
    }
}

/// `/metrics` on the main listener: only without an `[admin]` listener, and only to the
/// networks `[metrics] allow_from` names (judged by the connection's peer address).
fn metrics_allowed(gateway: &Gateway, req: &http::Request<axum::body::Body>) -> bool {
    let Some(peer) = req.extensions().get::<crate::request::ClientAddr>() else {
        return false;
    };
    gateway
        .metrics_from
        .iter()
        .any(|net| net.contains(&peer.0.ip()))
}
