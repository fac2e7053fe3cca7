//! `portcullis check`, second part: when a route's upstream is reachable, ask it for its
//! tools (an MCP handshake and `tools/list`, every page) and warn about tool names in the
//! route's rules that it does not list — a typo there silently denies (or fails to deny)
//! what the operator meant. A stdio server is started for it as the gateway would start
//! it (same launcher, environment and isolation) and stopped after.

use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Request, Response};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::config::{RouteConfig, Site, Transport};
use crate::glob::Glob;
use crate::mcp::answer::reply;
use crate::mcp::headers::{MCP_PROTOCOL_VERSION, MCP_SESSION_ID};
use crate::proxy::UpstreamClient;
use crate::relay::RelayUpstream;
use crate::upstream::Upstream as _;

const PROTOCOL_VERSION: &str = "2025-11-25";
const MAX_PAGES: usize = 50;
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// The whole conversation with one upstream.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// How `check` reaches a route's upstream.
enum Via {
    /// A Streamable HTTP upstream, through the gateway's client (its errors say why).
    Http(UpstreamClient),
    /// Any other (stdio, legacy SSE), as the gateway serves it.
    Relay(RelayUpstream),
}

impl Via {
    fn of(site: &Site<'_>) -> Result<Self, String> {
        let up = site.upstream;
        match &up.url {
            Some(url) if up.transport == Transport::StreamableHttp => Ok(Self::Http(
                UpstreamClient::new(site, url, 1).map_err(|e| e.to_string())?,
            )),
            Some(url) => Ok(Self::Relay(
                RelayUpstream::sse(site, url).map_err(|e| e.to_string())?,
            )),
            None => {
                let launcher = std::env::current_exe()
                    .map_err(|e| format!("cannot find this program to launch the server: {e}"))?;
                Ok(Self::Relay(RelayUpstream::stdio(site, launcher)))
            }
        }
    }

    /// How long the whole conversation may take: a stdio server may take its
    /// `start_timeout` to start.
    fn deadline(&self, site: &Site<'_>) -> Duration {
        match self {
            Self::Http(_) => DEADLINE,
            Self::Relay(_) => DEADLINE + site.upstream.start_timeout.get(),
        }
    }

    async fn send(
        &self,
        method: Method,
        headers: HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, String> {
        match self {
            Self::Http(client) => {
                let mut headers = headers;
                client.inject(&mut headers);
                let mut req = Request::new(Full::new(body));
                *req.method_mut() = method;
                *req.uri_mut() = client.uri().clone();
                *req.headers_mut() = headers;
                let response = client.send(req).await.map_err(|e| e.to_string())?;
                Ok(response.map(Body::new))
            }
            Self::Relay(relay) => {
                let mut req = Request::new(());
                *req.method_mut() = method;
                *req.headers_mut() = headers;
                let (parts, ()) = req.into_parts();
                Ok(relay.send(parts, body).await)
            }
        }
    }
}

/// The tool names the route's upstream lists (each upstream's under its prefix, on a route
/// with several), or why they could not be had.
pub async fn listed_tools(route: &RouteConfig) -> Result<Vec<String>, String> {
    let mut names = Vec::new();
    for (site, member) in route.sites().iter().zip(
        route
            .upstreams
            .iter()
            .map(Some)
            .chain(std::iter::repeat(None)),
    ) {
        let listed = site_tools(site).await;
        match member {
            None => names.extend(listed?),
            Some(member) => {
                let listed = listed.map_err(|e| format!("upstream `{}`: {e}", member.name))?;
                let prefix = format!("{}{}", member.prefix(), route.prefix_separator);
                names.extend(listed.into_iter().map(|name| format!("{prefix}{name}")));
            }
        }
    }
    Ok(names)
}

/// The tool names one upstream lists.
async fn site_tools(site: &Site<'_>) -> Result<Vec<String>, String> {
    let client = Via::of(site)?;
    let deadline = client.deadline(site);
    let conversation = async {
        let (init, session) =
            exchange(&client, None, &request(1, "initialize", init_params())).await?;
        if init.get("result").is_none() {
            return Err("the upstream refused `initialize`".to_owned());
        }
        let notification = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let _ = exchange(&client, session.as_ref(), &notification).await;
        let mut names = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 0..MAX_PAGES {
            let params = cursor
                .as_ref()
                .map_or(json!({}), |c| json!({ "cursor": c }));
            let id = u64::try_from(page).unwrap_or(u64::MAX).saturating_add(2);
            let (answer, _) = exchange(
                &client,
                session.as_ref(),
                &json!({ "jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params }),
            )
            .await?;
            let result = answer
                .get("result")
                .ok_or_else(|| "the upstream refused `tools/list`".to_owned())?;
            for tool in result
                .get("tools")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = tool.get("name").and_then(Value::as_str) {
                    names.push(name.to_owned());
                }
            }
            cursor = result
                .get("nextCursor")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if cursor.is_none() {
                break;
            }
        }
        // Ends the session (a stdio server's, its process).
        if let Some(session) = &session {
            let mut headers = HeaderMap::new();
            headers.insert(MCP_SESSION_ID, session.clone());
            headers.insert(
                MCP_PROTOCOL_VERSION,
                HeaderValue::from_static(PROTOCOL_VERSION),
            );
            let _ = client.send(Method::DELETE, headers, Bytes::new()).await;
        }
        Ok(names)
    };
    tokio::time::timeout(deadline, conversation)
        .await
        .map_err(|_| format!("no complete answer within {deadline:?}"))?
}

/// Warnings for `route`'s rules against the tools its upstream lists.
pub fn unlisted(at: &str, route: &RouteConfig, listed: &[String]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, rule) in route.policy.iter().enumerate() {
        for pattern in rule.tools.iter().flatten() {
            let glob = Glob::new(pattern);
            if glob.is_literal() {
                if !listed.iter().any(|t| t == pattern) {
                    warnings.push(format!(
                        "{at}.policy[{i}].tools: the upstream does not list a tool `{pattern}`"
                    ));
                }
            } else if !listed.iter().any(|t| glob.matches(t)) {
                warnings.push(format!(
                    "{at}.policy[{i}].tools: `{pattern}` matches none of the upstream's tools"
                ));
            }
        }
    }
    warnings
}

fn init_params() -> Value {
    json!({
        "protocolVersion": PROTOCOL_VERSION,
        // As the gateway lists them itself: tools some upstreams list only to clients
        // with roots, sampling or elicitation are not missing.
        "capabilities": crate::guard::fetch::every_client_capability(),
        "clientInfo": { "name": "portcullis-check", "version": env!("CARGO_PKG_VERSION") }
    })
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params })
}

/// POSTs `message` and reads the JSON-RPC answer to it (JSON or the first response in an
/// event stream), with the session id the upstream gave, if any.
async fn exchange(
    client: &Via,
    session: Option<&HeaderValue>,
    message: &Value,
) -> Result<(Value, Option<HeaderValue>), String> {
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers.insert(
        MCP_PROTOCOL_VERSION,
        HeaderValue::from_static(PROTOCOL_VERSION),
    );
    if let Some(session) = session {
        headers.insert(MCP_SESSION_ID, session.clone());
    }
    let response = client
        .send(Method::POST, headers, Bytes::from(message.to_string()))
        .await?;
    let new_session = response.headers().get(MCP_SESSION_ID).cloned();
    if message.get("id").is_none() {
        return Ok((Value::Null, new_session.or(session.cloned())));
    }
    let answer = reply(response, MAX_ANSWER)
        .await
        .map_err(|why| format!("the upstream {why}"))?;
    Ok((answer, new_session.or(session.cloned())))
}
