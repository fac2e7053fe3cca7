//! RFC 9728 OAuth 2.0 protected-resource metadata: the document an MCP client fetches,
//! after a 401 from authentication, to learn which authorization servers issue tokens for a
//! route and which scopes to ask for.
//!
//! Each route's canonical URL (its *resource*, and the audience its tokens must carry) is
//! the gateway's public URL plus the route path; its metadata is served at
//! `/.well-known/oauth-protected-resource` followed by that path (RFC 9728 §3.1), and the
//! absolute URL of that document is the `resource_metadata` of the route's challenges
//! (see [`super::challenge`]). Served before authentication, to anyone, answering GET with
//! `application/json` to any origin: the document is public, and browser-based clients
//! fetch it cross-origin.

use axum::body::Body;
use http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS, ALLOW, CACHE_CONTROL, CONTENT_TYPE,
};
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use serde::{Deserialize, Serialize};

/// The well-known path prefix of RFC 9728 §3.
pub const WELL_KNOWN_PREFIX: &str = "/.well-known/oauth-protected-resource";

/// The metadata document (RFC 9728 §2), as the MCP authorization spec asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtectedResourceMetadata {
    /// The route's canonical URL; must be identical to the URL the client used and to
    /// the audience its tokens are checked against.
    pub resource: String,
    /// Issuer identifiers, exactly as configured: an issuer is compared as a string, so
    /// these are not normalized through a URL parser (which would add a trailing `/`).
    pub authorization_servers: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes_supported: Vec<String>,
    /// Always `["header"]`: tokens in a query string or form body are never accepted.
    pub bearer_methods_supported: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

impl ProtectedResourceMetadata {
    /// Metadata for `resource` (from [`resource_url`]), with bearer tokens in the
    /// `Authorization` header only.
    pub fn new(
        resource: &url::Url,
        authorization_servers: Vec<String>,
        scopes_supported: Vec<String>,
        resource_name: Option<String>,
    ) -> Self {
        Self {
            resource: resource.as_str().to_owned(),
            authorization_servers,
            scopes_supported,
            bearer_methods_supported: vec!["header".to_owned()],
            resource_name,
        }
    }
}

/// Why a resource URL could not be formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("route path `{0}` must start with `/` and carry no query or fragment")]
    RoutePath(String),
    #[error("public URL `{0}` has no host to build a resource URL on")]
    PublicUrl(String),
}

/// The well-known path of the metadata for a route: `/tools/mcp` →
/// `/.well-known/oauth-protected-resource/tools/mcp`; the root route `/` maps to the bare
/// prefix (RFC 9728 §3.1: a resource without a path has no suffix).
pub fn well_known_path(route_path: &str) -> String {
    let suffix = if route_path == "/" { "" } else { route_path };
    format!("{WELL_KNOWN_PREFIX}{suffix}")
}

/// The canonical URL of a route: the public URL with the route path appended to its own
/// path (so a public URL mounted under a prefix keeps it). Scheme and host come out
/// lower-case and a default port is dropped, as `url::Url` normalizes them; no trailing
/// slash is added, and the query and fragment are always empty.
pub fn resource_url(public_url: &url::Url, route_path: &str) -> Result<url::Url, MetadataError> {
    if !route_path.starts_with('/') || route_path.contains(['?', '#']) {
        return Err(MetadataError::RoutePath(route_path.to_owned()));
    }
    let mut url = public_url.clone();
    if url.cannot_be_a_base() {
        return Err(MetadataError::PublicUrl(public_url.to_string()));
    }
    let base = public_url.path().trim_end_matches('/');
    let path = if route_path == "/" && !base.is_empty() {
        base.to_owned()
    } else {
        format!("{base}{route_path}")
    };
    url.set_path(&path);
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The absolute URL of a resource's metadata (the challenges' `resource_metadata`): the
/// well-known prefix inserted between the host and the resource's path.
pub fn metadata_url(resource: &url::Url) -> url::Url {
    let mut url = resource.clone();
    url.set_path(&well_known_path(resource.path()));
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// The answer to a request for a metadata document `doc`: the document for GET and HEAD,
/// a CORS preflight answer for OPTIONS, 405 otherwise. Every answer allows any origin and
/// carries no credentials.
pub fn respond(method: &Method, headers: &HeaderMap, doc: &bytes::Bytes) -> Response<Body> {
    let mut status = StatusCode::OK;
    let mut body = Body::empty();
    let mut out = HeaderMap::new();
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    match *method {
        Method::GET | Method::HEAD => {
            out.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            out.insert(
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            if *method == Method::GET {
                body = Body::from(doc.clone());
            }
        }
        Method::OPTIONS => {
            status = StatusCode::NO_CONTENT;
            out.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            // The document is public and no credentials are involved, so whatever headers
            // a client sends (MCP clients add `MCP-Protocol-Version`) may come along.
            if let Some(asked) = headers.get(ACCESS_CONTROL_REQUEST_HEADERS) {
                out.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
            }
            out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        }
        _ => {
            status = StatusCode::METHOD_NOT_ALLOWED;
            out.insert(ALLOW, HeaderValue::from_static("GET, HEAD, OPTIONS"));
        }
    }
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = out;
    response
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn well_known_path_appends_the_route_path() {
        assert_eq!(
            well_known_path("/tools/mcp"),
            "/.well-known/oauth-protected-resource/tools/mcp"
        );
        assert_eq!(
            well_known_path("/mcp/"),
            "/.well-known/oauth-protected-resource/mcp/"
        );
        assert_eq!(well_known_path("/"), WELL_KNOWN_PREFIX);
    }

    #[test]
    fn resource_url_is_canonical_without_a_trailing_slash() {
        let public = url("HTTPS://MCP.Example.COM:443");
        assert_eq!(
            resource_url(&public, "/tools/mcp").unwrap().as_str(),
            "https://mcp.example.com/tools/mcp"
        );
        assert_eq!(
            resource_url(&url("https://mcp.example.com/"), "/mcp")
                .unwrap()
                .as_str(),
            "https://mcp.example.com/mcp"
        );
        assert_eq!(
            resource_url(&url("http://127.0.0.1:8080"), "/x/mcp")
                .unwrap()
                .as_str(),
            "http://127.0.0.1:8080/x/mcp"
        );
        // A public URL under a prefix keeps it.
        assert_eq!(
            resource_url(&url("https://gw.example.com/prefix/"), "/mcp")
                .unwrap()
                .as_str(),
            "https://gw.example.com/prefix/mcp"
        );
        assert_eq!(
            resource_url(&url("https://gw.example.com/prefix"), "/")
                .unwrap()
                .as_str(),
            "https://gw.example.com/prefix"
        );
        // The root route of a bare host is the URL's own `/`, not an added slash.
        assert_eq!(
            resource_url(&url("https://gw.example.com"), "/")
                .unwrap()
                .as_str(),
            "https://gw.example.com/"
        );
        for bad in ["mcp", "", "/mcp?x=1", "/mcp#f"] {
            assert_eq!(
                resource_url(&public, bad),
                Err(MetadataError::RoutePath(bad.to_owned()))
            );
        }
        assert!(resource_url(&url("mailto:a@example.com"), "/mcp").is_err());
    }

    #[test]
    fn metadata_url_inserts_the_well_known_prefix() {
        let resource = resource_url(&url("https://mcp.example.com"), "/tools/mcp").unwrap();
        assert_eq!(
            metadata_url(&resource).as_str(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/tools/mcp"
        );
        assert_eq!(
            metadata_url(&url("https://mcp.example.com/")).as_str(),
            "https://mcp.example.com/.well-known/oauth-protected-resource"
        );
    }

    #[test]
    fn serializes_the_rfc_9728_fields() {
        let resource = resource_url(&url("https://mcp.example.com"), "/tools/mcp").unwrap();
        let metadata = ProtectedResourceMetadata::new(
            &resource,
            vec!["https://auth.example.com".into()],
            vec!["read:db".into(), "write:db".into()],
            Some("Tools".into()),
        );
        assert_eq!(
            serde_json::to_value(&metadata).unwrap(),
            json!({
                "resource": "https://mcp.example.com/tools/mcp",
                "authorization_servers": ["https://auth.example.com"],
                "scopes_supported": ["read:db", "write:db"],
                "bearer_methods_supported": ["header"],
                "resource_name": "Tools",
            })
        );
        // Optional fields are left out rather than sent empty; the issuer is not
        // normalized.
        let bare = ProtectedResourceMetadata::new(
            &resource,
            vec!["https://auth.example.com/realms/x".into()],
            vec![],
            None,
        );
        let value = serde_json::to_value(&bare).unwrap();
        assert_eq!(
            value,
            json!({
                "resource": "https://mcp.example.com/tools/mcp",
                "authorization_servers": ["https://auth.example.com/realms/x"],
                "bearer_methods_supported": ["header"],
            })
        );
        let back: ProtectedResourceMetadata = serde_json::from_value(value).unwrap();
        assert_eq!(back, bare);
    }
}

/// The metadata's layer of the request path: the protected-resource metadata documents
/// (RFC 9728), public, for any origin, answered after the Host check and before any
/// route; recorded nowhere. A well-known path with no document gets 404.
#[derive(Debug, Clone)]
pub struct Documents<S> {
    pub next: S,
    /// Well-known path → document.
    pub documents: std::sync::Arc<std::collections::HashMap<String, bytes::Bytes>>,
}

impl<S: crate::request::Next> tower::Service<http::Request<Body>> for Documents<S> {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = crate::request::Answer;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if !req.uri().path().starts_with(WELL_KNOWN_PREFIX) {
            return crate::request::pass(&mut self.next, req);
        }
        let mut response = match self.documents.get(req.uri().path()) {
            Some(doc) => respond(req.method(), req.headers(), doc),
            None => crate::error::Rejection::NoRoute.into_response(None),
        };
        response.extensions_mut().insert(crate::request::Unrecorded);
        crate::request::answer(response)
    }
}
