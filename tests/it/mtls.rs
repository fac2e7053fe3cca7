//! mTLS through the gateway (the listener and authentication): with `server.tls.client_ca` set,
//! rustls verifies a client certificate during the handshake, and a route that lists `mtls` takes
//! its identity (CN or a SAN) as the principal. A client with a certificate from the configured CA
//! gets in; one without gets a 401 challenge (the handshake still succeeds); one with a certificate
//! from another CA fails the handshake and reaches nothing.

use crate::support;

use rcgen::SanType;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::pki::{ClientCa, ClientIdentity};
use support::upstream::{Mode, Upstream};
use support::within;

const SUBJECT_HEADER: &str = "X-Portcullis-Subject";
const ROLES_HEADER: &str = "X-Portcullis-Roles";
const IDENTITY_HEADERS: &str = "identity_headers = { subject = \"X-Portcullis-Subject\", \
                                roles = \"X-Portcullis-Roles\", method = \"X-Portcullis-Method\" }";
const API_KEY: &str = "pk_test_mtls_0123456789abcdef";

struct Setup {
    upstream: Upstream,
    gateway: Gateway,
    /// The CA the gateway trusts for client certificates.
    ca: ClientCa,
}

/// A TLS gateway trusting `ca` for client certificates, with `[auth]` text `auth` and two
/// authenticated routes: `/mcp` (mTLS only) and `/keys/mcp` (API keys only, the same
/// upstream), both sending the caller's subject, roles and method upstream.
async fn setup(auth: &str) -> Setup {
    let ca = ClientCa::generate("Portcullis test client CA");
    let upstream = Upstream::start(Mode::Json).await;
    let auth = format!(
        "{auth}\n[[auth.api_keys]]\nhash = \"{}\"\nsubject = \"key-holder\"\n",
        portcullis::auth::hash_key(API_KEY)
    );
    let gateway = Gateway::builder()
        .tls_setting(&format!(
            "client_ca = {}",
            json!(ca.path.display().to_string())
        ))
        .auth(&auth)
        .route(
            Route::new("certs", "/mcp", &upstream.url())
                .authenticated()
                .setting("auth_methods = [\"mtls\"]")
                .setting(IDENTITY_HEADERS),
        )
        .route(
            Route::new("keys", "/keys/mcp", &upstream.url())
                .authenticated()
                .setting("auth_methods = [\"api_key\"]")
                .setting(IDENTITY_HEADERS),
        )
        .start()
        .await;
    Setup {
        upstream,
        gateway,
        ca,
    }
}

impl Setup {
    fn client(&self, identity: Option<&ClientIdentity>) -> reqwest::Client {
        let ca = self.gateway.ca_pem().unwrap();
        match identity {
            Some(id) => client::http_client_with_identity(ca, &id.pem, Http::Negotiate),
            None => client::http_client(Some(ca), Http::Negotiate),
        }
    }

    /// A 2026-07-28 `tools/call` of `echo` on `path`, with `extra` headers.
    async fn echo(
        &self,
        http: &reqwest::Client,
        path: &str,
        extra: &[(&str, &str)],
    ) -> reqwest::Result<reqwest::Response> {
        let body = client::call_body(7, "echo", &json!({ "text": "through mTLS" }));
        let mut request = client::modern_post(
            http,
            &self.gateway.url(path),
            "tools/call",
            Some("echo"),
            body,
        );
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        within("the echo request", request.send()).await
    }
}

/// Asserts a 401 with challenge `challenge` and the JSON-RPC error body `message`.
async fn assert_unauthorized(response: reqwest::Response, challenge: &str, message: &str) {
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[reqwest::header::WWW_AUTHENTICATE],
        challenge
    );
    assert_eq!(
        response.headers()[reqwest::header::CACHE_CONTROL],
        "no-store"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({ "jsonrpc": "2.0", "id": null, "error": { "code": -32030, "message": message } })
    );
}

#[tokio::test]
async fn a_certificate_from_the_client_ca_is_the_principal() {
    let s = setup(
        "[[auth.certificates]]\nsubject = \"billing-agent\"\nroles = [\"billing\", \"reader\"]\n",
    )
    .await;
    let identity = s.ca.issue(
        Some("billing-agent"),
        vec![SanType::URI(
            "spiffe://example.org/billing".try_into().unwrap(),
        )],
    );
    let http = s.client(Some(&identity));
    // A client-sent copy of an identity header is not what reaches the upstream.
    let response = s
        .echo(
            &http,
            "/mcp",
            &[(SUBJECT_HEADER, "admin"), (ROLES_HEADER, "root")],
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let message = client::response_message(response).await;
    assert_eq!(message["id"], 7);
    assert_eq!(client::tool_text(&message), "through mTLS");

    let seen = s.upstream.probe.last_seen();
    let subjects: Vec<_> = seen.headers.get_all(SUBJECT_HEADER).iter().collect();
    assert_eq!(subjects, ["billing-agent"], "the CN is the subject");
    let roles: Vec<_> = seen.headers.get_all(ROLES_HEADER).iter().collect();
    assert_eq!(
        roles,
        ["billing,reader"],
        "roles of the [[auth.certificates]] entry"
    );
    assert_eq!(seen.header("x-portcullis-method"), Some("mtls"));

    // A certificate the CA issued to an identity with no [[auth.certificates]] entry gets
    // in too, with no roles.
    let other = s.ca.issue(Some("report-agent"), Vec::new());
    let response = s.echo(&s.client(Some(&other)), "/mcp", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = s.upstream.probe.last_seen();
    assert_eq!(seen.header(SUBJECT_HEADER), Some("report-agent"));
    assert_eq!(seen.header(ROLES_HEADER), Some(""));
    assert_eq!(s.upstream.probe.calls("echo"), 2);

    // The route takes no header credentials: an Authorization header meant for something
    // else neither shadows the certificate nor travels upstream.
    let response = s
        .echo(
            &http,
            "/mcp",
            &[("authorization", "Bearer meant-for-another-service")],
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = s.upstream.probe.last_seen();
    assert_eq!(seen.header(SUBJECT_HEADER), Some("billing-agent"));
    assert_eq!(seen.header("authorization"), None);
    s.gateway.shutdown().await;
}

#[tokio::test]
async fn certificate_identity_can_be_a_san_uri() {
    let s = setup(
        "[auth]\ncertificate_identity = \"san_uri\"\n\n\
         [[auth.certificates]]\nsubject = \"spiffe://example.org/ns/prod/sa/billing\"\n\
         roles = [\"billing\"]\n",
    )
    .await;
    let identity = s.ca.issue(
        Some("billing-agent"),
        vec![
            SanType::DnsName("billing.internal".try_into().unwrap()),
            SanType::URI(
                "spiffe://example.org/ns/prod/sa/billing"
                    .try_into()
                    .unwrap(),
            ),
        ],
    );
    let response = s
        .echo(&s.client(Some(&identity)), "/mcp", &[])
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = s.upstream.probe.last_seen();
    assert_eq!(
        seen.header(SUBJECT_HEADER),
        Some("spiffe://example.org/ns/prod/sa/billing")
    );
    assert_eq!(seen.header(ROLES_HEADER), Some("billing"));

    // A verified certificate without the configured identity proves no one.
    let no_uri = s.ca.issue(Some("billing-agent"), Vec::new());
    let response = s.echo(&s.client(Some(&no_uri)), "/mcp", &[]).await.unwrap();
    assert_unauthorized(
        response,
        r#"Bearer error="invalid_token", error_description="client certificate not accepted""#,
        "invalid token",
    )
    .await;
    assert_eq!(s.upstream.probe.calls("echo"), 1);
    s.gateway.shutdown().await;
}

#[tokio::test]
async fn no_certificate_on_an_mtls_route_is_challenged_after_a_good_handshake() {
    let s = setup("").await;
    let http = s.client(None);
    // The handshake succeeds without a certificate: the listener answers.
    let health = within("/healthz", http.get(s.gateway.url("/healthz")).send())
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let response = s.echo(&http, "/mcp", &[]).await.unwrap();
    assert_unauthorized(response, "Bearer", "authentication required").await;
    // Nor does a header that claims an identity stand in for a certificate.
    let response = s
        .echo(&http, "/mcp", &[(SUBJECT_HEADER, "billing-agent")])
        .await
        .unwrap();
    assert_unauthorized(response, "Bearer", "authentication required").await;
    assert!(s.upstream.probe.seen().is_empty());
    s.gateway.shutdown().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let s = setup("").await;
    let foreign = ClientCa::generate("Some other CA");
    // Same names, even the same CA name: only the signature chain counts.
    let impostor = ClientCa::generate("Portcullis test client CA");
    for ca in [&foreign, &impostor] {
        let identity = ca.issue(Some("billing-agent"), Vec::new());
        let http = s.client(Some(&identity));
        let error = s
            .echo(&http, "/mcp", &[])
            .await
            .expect_err("a certificate from another CA must not get an HTTP answer");
        // rustls on the gateway refuses the chain with an alert (`UnknownCA`, or
        // `DecryptError` for the impostor whose signature does not check out). In TLS 1.3
        // the client may already be writing its request when the alert comes, so it sees
        // either the alert or the connection breaking or closing; each is a
        // refused handshake, and neither is an HTTP answer.
        // So: a transport failure with no HTTP status, whichever of them it was.
        assert!(error.status().is_none(), "{error:?}");
        assert!(error.is_request() || error.is_connect(), "{error:?}");
        assert!(
            within("/healthz", http.get(s.gateway.url("/healthz")).send())
                .await
                .is_err(),
            "not even /healthz answers a failed handshake"
        );
    }
    // The gateway's own client CA still works: the refusals were about the certificates.
    let good = s.ca.issue(Some("billing-agent"), Vec::new());
    let response = s.echo(&s.client(Some(&good)), "/mcp", &[]).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        s.upstream.probe.seen().len(),
        1,
        "only the good request arrived"
    );
    s.gateway.shutdown().await;
}

#[tokio::test]
async fn a_route_without_mtls_ignores_a_valid_certificate() {
    let s =
        setup("[[auth.certificates]]\nsubject = \"billing-agent\"\nroles = [\"billing\"]\n").await;
    let identity = s.ca.issue(Some("billing-agent"), Vec::new());
    let http = s.client(Some(&identity));
    let response = s.echo(&http, "/keys/mcp", &[]).await.unwrap();
    assert_unauthorized(response, "Bearer", "authentication required").await;
    assert!(s.upstream.probe.seen().is_empty());

    // The same connection setup with the route's own way in passes, as the key's holder.
    let response = s
        .echo(&http, "/keys/mcp", &[("x-api-key", API_KEY)])
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let seen = s.upstream.probe.last_seen();
    assert_eq!(seen.header(SUBJECT_HEADER), Some("key-holder"));
    assert_eq!(seen.header("x-portcullis-method"), Some("api_key"));
    s.gateway.shutdown().await;
}
