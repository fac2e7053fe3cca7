//! A virtual server: several upstream MCP servers behind one endpoint (a route with
//! `upstreams`). An [`Upstream`] like any other at the bottom of the request path (see
//! `docs/architecture.md`), so every layer above — authentication, policy, limits, guard,
//! audit — sees one server whose tools and prompts carry their upstream's prefix
//! (`github__create_issue`).
//!
//! - `initialize` goes to every upstream at once. The client gets the union of their
//!   capabilities, the gateway's server info, each upstream's instructions under its name,
//!   and one session id that holds each upstream's session id and revision
//!   ([`Composite`]); the session layer above seals it for the caller like any upstream's.
//! - Lists are asked of every upstream at once, each within its `list_timeout`, and
//!   merged; one cursor ([`Cursor`]) carries each upstream's own. An upstream that fails or
//!   is late is left out of that answer, with a log line and a note in its `_meta`.
//! - A call goes to the upstream its name's prefix names (a resource: the upstream that
//!   listed its URI, or whose template it fits), with the prefix removed.
//! - Notifications from the client go to every upstream of the session.
//! - A GET opens every upstream's event stream and merges them into one. A request of an
//!   upstream's (sampling, elicitation, roots), there or in the stream answering a call,
//!   reaches the client with its id made the gateway's (`<upstream>/<id>`), so that the
//!   client's answer goes back to the upstream that asked, with the upstream's own id.
//!
//! The prefixes were checked at load (`config::validate`): none is a prefix of another
//! with the separator, so a name has at most one owner and two upstreams never expose a
//! tool or prompt the same way. A resource URI two upstreams list is left out of the
//! list, with an error logged, rather than given to one of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use base64::Engine;
use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::jsonrpc_result_response;
use crate::mcp::answer::reply;
use crate::mcp::headers::{
    LAST_EVENT_ID, MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, X_ACCEL_BUFFERING, encode_value,
    is_event_stream,
};
use crate::mcp::jsonrpc::{RequestId, code, error_body};
use crate::mcp::sse::{SseEvent, SseRewrite};
use crate::request::Exchange;
use crate::upstream::{Answered, Upstream};

/// The largest answer of one upstream to `initialize` or a list that is read.
const MAX_ANSWER: usize = 16 * 1024 * 1024;
/// How long `initialize` waits for the upstreams.
const INITIALIZE_TIMEOUT: Duration = Duration::from_secs(30);
/// Resource URIs remembered with their upstream; past it the map starts afresh.
const MAX_KNOWN_URIS: usize = 100_000;
/// The `_meta` member naming the upstreams left out of a merged list.
pub const UNAVAILABLE_META: &str = "portcullis/unavailable";

/// Raises an alert: a resource URI (the second argument) that the named upstreams all list,
/// on the route (the first).
pub type CollisionAlert = Arc<dyn Fn(&str, &str, &[&str]) + Send + Sync>;

/// One upstream of a virtual server.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    /// Its tools and prompts are exposed as `<prefix><separator><name>`.
    pub prefix: String,
    pub list_timeout: Duration,
    pub upstream: Arc<dyn Upstream>,
}

/// The upstreams of one route, served as one.
pub struct Aggregate {
    route: Arc<str>,
    separator: String,
    members: Vec<Member>,
    /// Which upstream listed each resource URI, and which URIs more than one listed.
    resources: Mutex<Resources>,
    /// The ids of the gateway's own lists.
    own_ids: std::sync::atomic::AtomicU64,
    collision: Option<CollisionAlert>,
}

impl std::fmt::Debug for Aggregate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aggregate")
            .field("route", &self.route)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default)]
struct Resources {
    owner: HashMap<String, usize>,
    /// `uriTemplate` text up to its first expression, and its upstream.
    templates: Vec<(String, usize)>,
}

/// What the client's session id holds: each upstream's session id and the revision it
/// agreed, by upstream name.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Composite {
    #[serde(rename = "u")]
    upstreams: Vec<(String, Option<String>, String)>,
}

impl Composite {
    fn encode(&self) -> Option<String> {
        let json = serde_json::to_vec(self).ok()?;
        Some(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json))
    }

    fn decode(text: &str) -> Option<Self> {
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        serde_json::from_slice(&json).ok()
    }
}

/// A merged list's cursor: for each upstream with more to list, its own cursor.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Cursor {
    #[serde(rename = "c")]
    next: Vec<(String, Value)>,
}

/// What a request sent down needs of the session: for one upstream, its session id and
/// revision, when the client has a session.
#[derive(Debug, Clone, Copy)]
struct Leg<'a> {
    member: usize,
    session: Option<(&'a Option<String>, &'a str)>,
}

impl Aggregate {
    /// `collision` raises the alert of a resource URI two upstreams list.
    pub fn new(
        route: &str,
        separator: &str,
        members: Vec<Member>,
        collision: Option<CollisionAlert>,
    ) -> Self {
        Self {
            route: Arc::from(route),
            separator: separator.to_owned(),
            members,
            resources: Mutex::default(),
            own_ids: std::sync::atomic::AtomicU64::new(0),
            collision,
        }
    }

    /// The upstream whose prefix starts `name`, and the name it knows.
    fn owner_of_name<'n>(&self, name: &'n str) -> Option<(usize, &'n str)> {
        self.members.iter().enumerate().find_map(|(i, m)| {
            if m.prefix.is_empty() {
                // The route's one upstream, exposed as it is.
                return (!name.is_empty()).then_some((i, name));
            }
            let rest = name.strip_prefix(m.prefix.as_str())?;
            let rest = rest.strip_prefix(self.separator.as_str())?;
            (!rest.is_empty()).then_some((i, rest))
        })
    }

    /// The upstream that listed `uri`, or whose template it fits (a route's one upstream:
    /// that one).
    fn owner_of_uri(&self, uri: &str) -> Option<usize> {
        if self.members.len() == 1 {
            return Some(0);
        }
        let resources = self.resources.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&owner) = resources.owner.get(uri) {
            return (owner != usize::MAX).then_some(owner);
        }
        resources
            .templates
            .iter()
            .filter(|(start, _)| uri.starts_with(start.as_str()))
            .max_by_key(|(start, _)| start.len())
            .map(|&(_, owner)| owner)
    }

    fn exposed(&self, member: usize, name: &str) -> String {
        let prefix = &self.members[member].prefix;
        if prefix.is_empty() {
            return name.to_owned();
        }
        format!("{prefix}{}{name}", self.separator)
    }

    async fn serve(&self, parts: http::request::Parts, body: Bytes) -> Response<Body> {
        let composite = parts
            .headers
            .get(MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(Composite::decode);
        let composite = match composite {
            Some(Some(c)) => Some(c),
            // The session layer opened a sealed id this route issued: it is ours.
            Some(None) => return status_error(StatusCode::NOT_FOUND, "Session not found"),
            None => None,
        };
        match parts.method {
            Method::DELETE => self.delete(&parts, composite.as_ref()).await,
            Method::POST => self.post(parts, body, composite.as_ref()).await,
            Method::GET => self.stream(&parts, composite.as_ref()).await,
            _ => status_error(StatusCode::METHOD_NOT_ALLOWED, "use POST, GET or DELETE"),
        }
    }

    /// The session's event stream: every upstream's, merged. Events keep their data (a
    /// request of an upstream's gets the gateway's id); a stream that ends leaves the
    /// others going. Resuming (`Last-Event-ID`) is not offered across upstreams.
    async fn stream(
        &self,
        parts: &http::request::Parts,
        composite: Option<&Composite>,
    ) -> Response<Body> {
        let mut parts = parts.clone();
        parts.headers.remove(LAST_EVENT_ID);
        let legs: Vec<Leg<'_>> = self
            .legs(composite)
            .into_iter()
            .filter(|leg| leg.session.is_some_and(|(s, _)| s.is_some()))
            .collect();
        let parts = &parts;
        let opened = legs
            .iter()
            .map(|&leg| async move { (leg.member, self.send(parts, leg, Bytes::new()).await) });
        let mut streams = Vec::new();
        for (member, response) in futures_util::future::join_all(opened).await {
            if response.status().is_success()
                && is_event_stream(response.headers().get(CONTENT_TYPE))
            {
                streams.push(
                    self.remapped(member, response.into_body())
                        .into_data_stream(),
                );
            }
        }
        if streams.is_empty() {
            return status_error(
                StatusCode::METHOD_NOT_ALLOWED,
                "no upstream of this route offers an event stream",
            );
        }
        let merged = futures_util::stream::select_all(streams);
        let mut response = Response::new(Body::from_stream(merged));
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        headers.insert(
            http::header::CACHE_CONTROL,
            HeaderValue::from_static("no-cache"),
        );
        headers.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
        response
    }

    /// `body`, an event stream of upstream `member`'s, with the id of each request of the
    /// upstream's made the gateway's.
    fn remapped(&self, member: usize, body: Body) -> Body {
        let name = self.members[member].name.clone();
        Body::new(SseRewrite::new(body, move |event: &SseEvent| {
            let data = event.data_bytes()?;
            let mut message: Value = serde_json::from_slice(&data).ok()?;
            let mut changed =
                crate::mcp::tasks::may_carry_task_id(&data) && mark_tasks(&name, &mut message);
            if let Some(object) = message.as_object_mut()
                && object.contains_key("method")
                && let Some(id) = object.get("id")
            {
                let ours = format!("{name}/{id}");
                object.insert("id".to_owned(), Value::String(ours));
                changed = true;
            }
            changed.then(|| encoded(&message))
        }))
    }

    /// An upstream's answer to a call, marked with the upstream's name for the audit
    /// record, its event stream's requests given the gateway's ids.
    fn relayed(&self, member: usize, mut response: Response<Body>) -> Response<Body> {
        Exchange::of(&mut response).upstream = Some(Arc::from(self.members[member].name.as_str()));
        if !is_event_stream(response.headers().get(CONTENT_TYPE)) {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(CONTENT_LENGTH);
        Response::from_parts(parts, self.remapped(member, body))
    }

    /// The client's answer to a request of an upstream's: to that upstream, with its own
    /// id back.
    async fn answer_upstream(
        &self,
        parts: &http::request::Parts,
        composite: Option<&Composite>,
        mut message: Value,
    ) -> Response<Body> {
        let target = message
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| id.split_once('/'))
            .and_then(|(name, id)| {
                let member = self.members.iter().position(|m| m.name == name)?;
                Some((member, serde_json::from_str::<Value>(id).ok()?))
            });
        let Some((member, id)) = target else {
            return json_error(
                StatusCode::BAD_REQUEST,
                None,
                code::INVALID_REQUEST,
                "this answers no request of an upstream of this route",
            );
        };
        let Some(leg) = self.leg(composite, member) else {
            return self.not_in_session(None, member);
        };
        message["id"] = id;
        let mut response = self.send(parts, leg, encoded(&message)).await;
        Exchange::of(&mut response).upstream = Some(Arc::from(self.members[member].name.as_str()));
        response
    }

    /// The legs of a request: every upstream of the session (or, without one, every
    /// upstream).
    fn legs<'c>(&self, composite: Option<&'c Composite>) -> Vec<Leg<'c>> {
        match composite {
            Some(c) => c
                .upstreams
                .iter()
                .filter_map(|(name, session, version)| {
                    let member = self.members.iter().position(|m| &m.name == name)?;
                    Some(Leg {
                        member,
                        session: Some((session, version.as_str())),
                    })
                })
                .collect(),
            None => (0..self.members.len())
                .map(|member| Leg {
                    member,
                    session: None,
                })
                .collect(),
        }
    }

    fn leg<'c>(&self, composite: Option<&'c Composite>, member: usize) -> Option<Leg<'c>> {
        self.legs(composite)
            .into_iter()
            .find(|l| l.member == member)
    }

    /// Sends `body` to one upstream, with its session id and revision in the head.
    async fn send(
        &self,
        parts: &http::request::Parts,
        leg: Leg<'_>,
        body: Bytes,
    ) -> Response<Body> {
        self.send_owned(parts.clone(), leg, body).await
    }

    /// [`Self::send`], with a head of the request's own to change.
    async fn send_owned(
        &self,
        mut parts: http::request::Parts,
        leg: Leg<'_>,
        body: Bytes,
    ) -> Response<Body> {
        // The route's parse is of the client's body; this one may differ (a name without
        // its prefix, a list of the gateway's own), and an upstream must read what it gets.
        parts.extensions.remove::<Arc<crate::body::Received>>();
        parts.headers.remove(MCP_SESSION_ID);
        parts.headers.remove(CONTENT_LENGTH);
        if let Some((session, version)) = leg.session {
            if let Some(id) = session
                .as_deref()
                .and_then(|s| HeaderValue::from_str(s).ok())
            {
                parts.headers.insert(MCP_SESSION_ID, id);
            }
            if let Ok(version) = HeaderValue::from_str(version) {
                parts.headers.insert(MCP_PROTOCOL_VERSION, version);
            }
        }
        let mut response = self.members[leg.member].upstream.send(parts, body).await;
        response.headers_mut().remove(MCP_SESSION_ID);
        response
    }

    async fn delete(
        &self,
        parts: &http::request::Parts,
        composite: Option<&Composite>,
    ) -> Response<Body> {
        let legs = self.legs(composite);
        let ends = legs
            .iter()
            .filter(|leg| leg.session.is_some_and(|(s, _)| s.is_some()))
            .map(|&leg| self.send(parts, leg, Bytes::new()));
        futures_util::future::join_all(ends).await;
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::OK;
        response
    }

    async fn post(
        &self,
        parts: http::request::Parts,
        body: Bytes,
        composite: Option<&Composite>,
    ) -> Response<Body> {
        let Ok(message) = serde_json::from_slice::<Value>(&body) else {
            return json_error(
                StatusCode::BAD_REQUEST,
                None,
                code::PARSE_ERROR,
                "the body is not JSON",
            );
        };
        let Some(object) = message.as_object() else {
            return json_error(
                StatusCode::BAD_REQUEST,
                None,
                code::INVALID_REQUEST,
                "a route with several upstreams takes one JSON-RPC message per request, not a batch",
            );
        };
        let id = object.get("id").and_then(RequestId::from_value);
        let Some(method) = object.get("method").and_then(Value::as_str) else {
            return self.answer_upstream(&parts, composite, message).await;
        };
        if id.is_none() {
            return self.notify(&parts, composite, &body).await;
        }
        let params = object.get("params").and_then(Value::as_object);
        // Whether the answer may carry task ids, to be marked with their upstream.
        let tasks = crate::mcp::tasks::may_concern_tasks(&body);
        match method {
            "initialize" => self.initialize(&parts, id, &body).await,
            "server/discover" => self.discover(&parts, id, &body).await,
            "ping" => jsonrpc_result_response(id.as_ref(), &json!({})),
            "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" => {
                self.list(&parts, composite, id, method, params).await
            }
            "tools/call" | "prompts/get" => {
                let name = params
                    .and_then(|p| p.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_owned);
                self.by_name(parts, composite, id, message, name.as_deref(), tasks)
                    .await
            }
            "tasks/get" | "tasks/result" | "tasks/cancel" | "tasks/update" => {
                self.by_task(parts, composite, id, message).await
            }
            "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
                let uri = params.and_then(|p| p.get("uri")).and_then(Value::as_str);
                self.by_uri(&parts, composite, id, body, uri).await
            }
            "completion/complete" => {
                let reference = params.and_then(|p| p.get("ref"));
                match reference
                    .and_then(|r| r.get("type"))
                    .and_then(Value::as_str)
                {
                    Some("ref/prompt") => {
                        let name = reference
                            .and_then(|r| r.get("name"))
                            .and_then(Value::as_str)
                            .map(str::to_owned);
                        self.by_name(parts, composite, id, message, name.as_deref(), tasks)
                            .await
                    }
                    _ => {
                        let uri = reference.and_then(|r| r.get("uri")).and_then(Value::as_str);
                        self.by_uri(&parts, composite, id, body, uri).await
                    }
                }
            }
            "logging/setLevel" => {
                let legs = self.legs(composite);
                let sent = legs.iter().map(|&leg| self.send(&parts, leg, body.clone()));
                futures_util::future::join_all(sent).await;
                jsonrpc_result_response(id.as_ref(), &json!({}))
            }
            other => json_error(
                StatusCode::OK,
                id.as_ref(),
                code::METHOD_NOT_FOUND,
                &format!("method `{other}` is not available on a route with several upstreams"),
            ),
        }
    }

    /// A notification of the client's, to every upstream of the session.
    async fn notify(
        &self,
        parts: &http::request::Parts,
        composite: Option<&Composite>,
        body: &Bytes,
    ) -> Response<Body> {
        let legs = self.legs(composite);
        let sent = legs.iter().map(|&leg| self.send(parts, leg, body.clone()));
        futures_util::future::join_all(sent).await;
        accepted()
    }

    async fn initialize(
        &self,
        parts: &http::request::Parts,
        id: Option<RequestId>,
        body: &Bytes,
    ) -> Response<Body> {
        let asked = self.legs(None).into_iter().map(|leg| async move {
            let response = tokio::time::timeout(
                INITIALIZE_TIMEOUT,
                self.members[leg.member]
                    .upstream
                    .send(strip_session(parts), body.clone()),
            )
            .await;
            let Ok(response) = response else {
                return (leg.member, Err("no answer in time".to_owned()));
            };
            let session = response
                .headers()
                .get(MCP_SESSION_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            (
                leg.member,
                reply(response, MAX_ANSWER).await.map(|r| (r, session)),
            )
        });
        let answers = futures_util::future::join_all(asked).await;
        let mut composite = Composite::default();
        let mut versions: Vec<String> = Vec::new();
        let mut capabilities = Map::new();
        let mut instructions = Vec::new();
        for (member, answer) in answers {
            let name = &self.members[member].name;
            let (answer, session) = match answer {
                Ok(answered) => answered,
                Err(why) => {
                    tracing::warn!(route = %self.route, upstream = %name, %why, "An upstream could not be initialized; the session goes on without it");
                    continue;
                }
            };
            let Some(result) = answer.get("result") else {
                tracing::warn!(route = %self.route, upstream = %name, "An upstream refused initialize; the session goes on without it");
                continue;
            };
            let version = result
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            if let Some(caps) = result.get("capabilities").and_then(Value::as_object) {
                merge(&mut capabilities, caps);
            }
            if let Some(text) = result.get("instructions").and_then(Value::as_str) {
                instructions.push(format!("[{name}] {text}"));
            }
            versions.push(version.clone());
            composite.upstreams.push((name.clone(), session, version));
        }
        if composite.upstreams.is_empty() {
            return json_error(
                StatusCode::BAD_GATEWAY,
                id.as_ref(),
                code::UPSTREAM_UNAVAILABLE,
                "upstream MCP server unavailable",
            );
        }
        // Each upstream is spoken to in the revision it agreed; the client, in the oldest.
        let version = versions.iter().min().cloned().unwrap_or_default();
        let mut result = json!({
            "protocolVersion": version,
            "capabilities": capabilities,
            "serverInfo": { "name": "portcullis", "version": env!("CARGO_PKG_VERSION") },
        });
        if !instructions.is_empty() {
            result["instructions"] = Value::String(instructions.join("\n\n"));
        }
        let mut response = jsonrpc_result_response(id.as_ref(), &result);
        let any_session = composite.upstreams.iter().any(|(_, s, _)| s.is_some());
        if any_session {
            let encoded = composite
                .encode()
                .filter(|c| c.len() <= crate::mcp::session::MAX_UPSTREAM_ID_LEN);
            match encoded.and_then(|c| HeaderValue::from_str(&c).ok()) {
                Some(value) => {
                    response.headers_mut().insert(MCP_SESSION_ID, value);
                }
                None => {
                    return json_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        id.as_ref(),
                        code::INTERNAL,
                        "the upstreams' session ids are too long to combine into one",
                    );
                }
            }
        }
        response
    }

    /// A 2026-07-28 `server/discover`: every upstream asked at once, and answered with the
    /// revisions all of them support, the union of their capabilities, and each one's
    /// instructions under its name.
    async fn discover(
        &self,
        parts: &http::request::Parts,
        id: Option<RequestId>,
        body: &Bytes,
    ) -> Response<Body> {
        let asked = self.members.iter().map(|member| async move {
            let answer = tokio::time::timeout(member.list_timeout, async {
                reply(
                    member
                        .upstream
                        .send(strip_session(parts), body.clone())
                        .await,
                    MAX_ANSWER,
                )
                .await
            })
            .await;
            (member, answer)
        });
        let mut versions: Option<Vec<Value>> = None;
        let mut capabilities = Map::new();
        let mut instructions = Vec::new();
        let mut answered = 0;
        // The first answer's other members (how the result is read, how long it keeps,
        // whom it may be shared with), each kept at its strictest.
        let mut base: Option<Map<String, Value>> = None;
        for (member, answer) in futures_util::future::join_all(asked).await {
            let result = match answer {
                Ok(Ok(answer)) => answer.get("result").cloned(),
                _ => None,
            };
            let Some(result) = result else {
                tracing::warn!(route = %self.route, upstream = %member.name, "An upstream did not answer server/discover; it is left out");
                continue;
            };
            answered += 1;
            if let Some(object) = result.as_object() {
                match &mut base {
                    None => base = Some(object.clone()),
                    Some(base) => {
                        let shorter = object.get("ttlMs").and_then(Value::as_u64);
                        let mine = base.get("ttlMs").and_then(Value::as_u64);
                        if let (Some(shorter), Some(mine)) = (shorter, mine)
                            && shorter < mine
                        {
                            base.insert("ttlMs".to_owned(), shorter.into());
                        }
                        if object.get("cacheScope").and_then(Value::as_str) == Some("private") {
                            base.insert("cacheScope".to_owned(), "private".into());
                        }
                    }
                }
            }
            let theirs: Vec<Value> = result
                .get("supportedVersions")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            versions = Some(match versions {
                None => theirs,
                Some(mine) => mine.into_iter().filter(|v| theirs.contains(v)).collect(),
            });
            if let Some(caps) = result.get("capabilities").and_then(Value::as_object) {
                merge(&mut capabilities, caps);
            }
            if let Some(text) = result.get("instructions").and_then(Value::as_str) {
                instructions.push(format!("[{}] {text}", member.name));
            }
        }
        if answered == 0 {
            return json_error(
                StatusCode::BAD_GATEWAY,
                id.as_ref(),
                code::UPSTREAM_UNAVAILABLE,
                "upstream MCP server unavailable",
            );
        }
        let mut result = base.unwrap_or_default();
        result.insert(
            "supportedVersions".to_owned(),
            Value::Array(versions.unwrap_or_default()),
        );
        result.insert("capabilities".to_owned(), Value::Object(capabilities));
        result.remove("instructions");
        if !instructions.is_empty() {
            result.insert(
                "instructions".to_owned(),
                Value::String(instructions.join("\n\n")),
            );
        }
        let meta = result
            .entry("_meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert(
                "io.modelcontextprotocol/serverInfo".to_owned(),
                json!({ "name": "portcullis", "version": env!("CARGO_PKG_VERSION") }),
            );
        }
        jsonrpc_result_response(id.as_ref(), &Value::Object(result))
    }

    async fn list(
        &self,
        parts: &http::request::Parts,
        composite: Option<&Composite>,
        id: Option<RequestId>,
        method: &str,
        params: Option<&Map<String, Value>>,
    ) -> Response<Body> {
        let key = match method {
            "tools/list" => "tools",
            "prompts/list" => "prompts",
            "resources/list" => "resources",
            _ => "resourceTemplates",
        };
        // Which upstreams to ask, each with its own cursor.
        let cursor = params.and_then(|p| p.get("cursor"));
        let asked: Vec<(Leg<'_>, Option<Value>)> = match cursor {
            None => self
                .legs(composite)
                .into_iter()
                .map(|l| (l, None))
                .collect(),
            Some(cursor) => {
                let decoded = cursor
                    .as_str()
                    .and_then(|c| {
                        base64::engine::general_purpose::URL_SAFE_NO_PAD
                            .decode(c)
                            .ok()
                    })
                    .and_then(|json| serde_json::from_slice::<Cursor>(&json).ok());
                let Some(decoded) = decoded else {
                    return json_error(
                        StatusCode::OK,
                        id.as_ref(),
                        code::INVALID_PARAMS,
                        "invalid cursor",
                    );
                };
                decoded
                    .next
                    .into_iter()
                    .filter_map(|(name, c)| {
                        let member = self.members.iter().position(|m| m.name == name)?;
                        Some((self.leg(composite, member)?, Some(c)))
                    })
                    .collect()
            }
        };
        let own = self
            .own_ids
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pages = asked.into_iter().map(|(leg, cursor)| {
            // The client's own id (progress and cancellation name it), or for a list of
            // the gateway's own, an id no client sends.
            let request_id: Value = id
                .as_ref()
                .and_then(|id| serde_json::from_str(id.as_raw().get()).ok())
                .unwrap_or_else(|| Value::String(format!("portcullis/{own}")));
            let mut message = json!({ "jsonrpc": "2.0", "id": request_id, "method": method });
            let mut list_params = params.cloned().unwrap_or_default();
            list_params.remove("cursor");
            if let Some(cursor) = cursor {
                list_params.insert("cursor".to_owned(), cursor);
            }
            if !list_params.is_empty() {
                message["params"] = Value::Object(list_params);
            }
            let timeout = self.members[leg.member].list_timeout;
            async move {
                let body = encoded(&message);
                let answered = tokio::time::timeout(timeout, async {
                    reply(self.send(parts, leg, body).await, MAX_ANSWER).await
                })
                .await;
                let page = match answered {
                    Err(_) => Err("no answer within its list_timeout".to_owned()),
                    Ok(Err(why)) => Err(why),
                    Ok(Ok(mut answer)) => answer
                        .get_mut("result")
                        .map(Value::take)
                        .ok_or_else(|| "it answered with an error".to_owned()),
                };
                (leg.member, page)
            }
        });
        let pages = futures_util::future::join_all(pages).await;

        let mut items = Vec::new();
        let mut next = Cursor::default();
        let mut unavailable = Vec::new();
        let mut seen_uris: Vec<(String, usize)> = Vec::new();
        for (member, page) in pages {
            let name = &self.members[member].name;
            let mut page = match page {
                Ok(page) => page,
                Err(why) => {
                    tracing::warn!(route = %self.route, upstream = %name, %method, %why, "An upstream was left out of a merged list");
                    unavailable.push(Value::String(name.clone()));
                    continue;
                }
            };
            if let Some(c) = page.get("nextCursor").filter(|c| !c.is_null()) {
                next.next.push((name.clone(), c.clone()));
            }
            let listed = match page.get_mut(key).map(Value::take) {
                Some(Value::Array(listed)) => listed,
                _ => Vec::new(),
            };
            for item in listed {
                let Value::Object(mut item) = item else {
                    continue;
                };
                match key {
                    "tools" | "prompts" => {
                        let Some(own) = item.get("name").and_then(Value::as_str) else {
                            continue;
                        };
                        let exposed = self.exposed(member, own);
                        if !valid_name(&exposed) {
                            tracing::warn!(route = %self.route, upstream = %name, name = %own, "A tool or prompt was left out: its prefixed name breaks MCP's name rules");
                            continue;
                        }
                        item.insert("name".to_owned(), Value::String(exposed));
                    }
                    "resources" => {
                        let Some(uri) = item.get("uri").and_then(Value::as_str) else {
                            continue;
                        };
                        seen_uris.push((uri.to_owned(), member));
                    }
                    _ => {
                        if let Some(template) = item.get("uriTemplate").and_then(Value::as_str) {
                            let start = template.split('{').next().unwrap_or_default();
                            let mut resources =
                                self.resources.lock().unwrap_or_else(|e| e.into_inner());
                            if !resources
                                .templates
                                .iter()
                                .any(|(s, m)| s == start && *m == member)
                            {
                                resources.templates.push((start.to_owned(), member));
                            }
                        }
                    }
                }
                items.push((member, Value::Object(item)));
            }
        }
        if key == "resources" {
            let collided = self.learn_uris(&seen_uris);
            if !collided.is_empty() {
                items.retain(|(_, item)| {
                    item.get("uri")
                        .and_then(Value::as_str)
                        .is_none_or(|uri| !collided.contains(uri))
                });
            }
        }
        let mut result = Map::new();
        result.insert(
            key.to_owned(),
            Value::Array(items.into_iter().map(|(_, item)| item).collect()),
        );
        if !next.next.is_empty()
            && let Ok(json) = serde_json::to_vec(&next)
        {
            result.insert(
                "nextCursor".to_owned(),
                Value::String(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)),
            );
        }
        let left_out: Vec<Arc<str>> = unavailable
            .iter()
            .filter_map(Value::as_str)
            .map(Arc::from)
            .collect();
        if !unavailable.is_empty() {
            result.insert("_meta".to_owned(), json!({ UNAVAILABLE_META: unavailable }));
        }
        let mut response = jsonrpc_result_response(id.as_ref(), &Value::Object(result));
        Exchange::of(&mut response).unavailable = left_out;
        response
    }

    /// Remembers which upstream listed each URI; returns the URIs another upstream listed
    /// too, which belong to neither (an alert is raised the first time).
    fn learn_uris(&self, seen: &[(String, usize)]) -> std::collections::HashSet<String> {
        let mut collided = std::collections::HashSet::new();
        let mut new_collisions = Vec::new();
        {
            let mut resources = self.resources.lock().unwrap_or_else(|e| e.into_inner());
            if resources.owner.len() + seen.len() > MAX_KNOWN_URIS {
                resources.owner.clear();
            }
            for (uri, member) in seen {
                match resources.owner.get(uri).copied() {
                    Some(usize::MAX) => {
                        collided.insert(uri.clone());
                    }
                    Some(owner) if owner != *member => {
                        resources.owner.insert(uri.clone(), usize::MAX);
                        collided.insert(uri.clone());
                        new_collisions.push((uri.clone(), owner, *member));
                    }
                    _ => {
                        resources.owner.insert(uri.clone(), *member);
                    }
                }
            }
        }
        for (uri, first, second) in new_collisions {
            let (first, second) = (&self.members[first].name, &self.members[second].name);
            tracing::error!(route = %self.route, %uri, %first, %second, "Two upstreams list the same resource URI: it is refused, not given to either");
            if let Some(alert) = &self.collision {
                alert(&self.route, &uri, &[first.as_str(), second.as_str()]);
            }
        }
        collided
    }

    /// A call naming a tool or prompt (or completing a prompt's argument): to the upstream
    /// of its prefix, with the prefix removed.
    async fn by_name(
        &self,
        mut parts: http::request::Parts,
        composite: Option<&Composite>,
        id: Option<RequestId>,
        mut message: Value,
        name: Option<&str>,
        tasks: bool,
    ) -> Response<Body> {
        let Some(name) = name else {
            return json_error(
                StatusCode::OK,
                id.as_ref(),
                code::INVALID_PARAMS,
                "the call names nothing",
            );
        };
        let Some((member, own)) = self.owner_of_name(name) else {
            return json_error(
                StatusCode::OK,
                id.as_ref(),
                code::INVALID_PARAMS,
                &format!("unknown tool or prompt `{name}`"),
            );
        };
        let Some(leg) = self.leg(composite, member) else {
            return self.not_in_session(id.as_ref(), member);
        };
        let params = &mut message["params"];
        if params.get("ref").is_some() {
            params["ref"]["name"] = Value::String(own.to_owned());
        } else {
            params["name"] = Value::String(own.to_owned());
        }
        if parts.headers.contains_key(MCP_NAME) {
            parts.headers.insert(MCP_NAME, encode_value(own));
        }
        let response = self.send_owned(parts, leg, encoded(&message)).await;
        if tasks {
            return self.relayed_with_tasks(member, id.as_ref(), response).await;
        }
        self.relayed(member, response)
    }

    /// A request about a task (`tasks/get`, `tasks/result`, `tasks/cancel`,
    /// `tasks/update`): to the upstream whose name the task id starts with
    /// (`<upstream>/<id>`, as the answer that made it said), with its own id. Any other id
    /// is answered as an upstream answers a task it does not know.
    async fn by_task(
        &self,
        mut parts: http::request::Parts,
        composite: Option<&Composite>,
        id: Option<RequestId>,
        mut message: Value,
    ) -> Response<Body> {
        let task = message["params"]["taskId"].as_str().map(str::to_owned);
        let Some((member, own)) = task.as_deref().and_then(|t| self.owner_of_task(t)) else {
            return json_error(
                StatusCode::OK,
                id.as_ref(),
                code::INVALID_PARAMS,
                crate::mcp::tasks::TASK_NOT_FOUND,
            );
        };
        let Some(leg) = self.leg(composite, member) else {
            return self.not_in_session(id.as_ref(), member);
        };
        message["params"]["taskId"] = Value::String(own.to_owned());
        if parts.headers.contains_key(MCP_NAME) {
            parts.headers.insert(MCP_NAME, encode_value(own));
        }
        let response = self.send_owned(parts, leg, encoded(&message)).await;
        self.relayed_with_tasks(member, id.as_ref(), response).await
    }

    /// The upstream that a task id of the gateway's names, and the upstream's own id.
    fn owner_of_task<'t>(&self, task: &'t str) -> Option<(usize, &'t str)> {
        let (name, own) = task.split_once('/')?;
        let member = self.members.iter().position(|m| m.name == name)?;
        Some((member, own))
    }

    /// [`Self::relayed`], for an answer that may carry task ids: a JSON answer is read
    /// whole and its task ids marked with the upstream (an event stream's are, event by
    /// event, in [`Self::remapped`]).
    async fn relayed_with_tasks(
        &self,
        member: usize,
        id: Option<&RequestId>,
        response: Response<Body>,
    ) -> Response<Body> {
        use http_body_util::BodyExt;
        if !response.status().is_success() || is_event_stream(response.headers().get(CONTENT_TYPE))
        {
            return self.relayed(member, response);
        }
        let (mut parts, body) = response.into_parts();
        let Ok(read) = http_body_util::Limited::new(body, MAX_ANSWER)
            .collect()
            .await
        else {
            return json_error(
                StatusCode::BAD_GATEWAY,
                id,
                code::UPSTREAM_UNAVAILABLE,
                "the upstream's answer could not be read",
            );
        };
        let bytes = read.to_bytes();
        let name = &self.members[member].name;
        let marked = crate::mcp::tasks::may_carry_task_id(&bytes)
            .then(|| serde_json::from_slice::<Value>(&bytes).ok())
            .flatten()
            .and_then(|mut message| mark_tasks(name, &mut message).then(|| encoded(&message)));
        let body = match marked {
            Some(marked) => {
                parts.headers.remove(CONTENT_LENGTH);
                marked
            }
            None => bytes,
        };
        self.relayed(member, Response::from_parts(parts, Body::from(body)))
    }

    /// A call naming a resource URI: to the upstream that listed it or whose template it
    /// fits, as it came.
    async fn by_uri(
        &self,
        parts: &http::request::Parts,
        composite: Option<&Composite>,
        id: Option<RequestId>,
        body: Bytes,
        uri: Option<&str>,
    ) -> Response<Body> {
        let Some(uri) = uri else {
            return json_error(
                StatusCode::OK,
                id.as_ref(),
                code::INVALID_PARAMS,
                "the call names no resource",
            );
        };
        let mut owner = self.owner_of_uri(uri);
        if owner.is_none() {
            // Not seen in a list yet (a client may read a URI it knows): ask the upstreams
            // for their resources and templates, then look again.
            for method in ["resources/list", "resources/templates/list"] {
                let _ = self.list(parts, composite, None, method, None).await;
            }
            owner = self.owner_of_uri(uri);
        }
        let Some(member) = owner else {
            return json_error(
                StatusCode::OK,
                id.as_ref(),
                code::INVALID_PARAMS,
                "no upstream of this route lists this resource",
            );
        };
        let Some(leg) = self.leg(composite, member) else {
            return self.not_in_session(id.as_ref(), member);
        };
        let response = self.send(parts, leg, body).await;
        self.relayed(member, response)
    }

    fn not_in_session(&self, id: Option<&RequestId>, member: usize) -> Response<Body> {
        json_error(
            StatusCode::OK,
            id,
            code::UPSTREAM_UNAVAILABLE,
            &format!(
                "upstream `{}` is not part of this session (it could not be initialized)",
                self.members[member].name
            ),
        )
    }
}

impl Upstream for Aggregate {
    fn send(&self, parts: http::request::Parts, body: Bytes) -> Answered<'_> {
        Box::pin(self.serve(parts, body))
    }

    fn ready(
        &self,
        timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        Box::pin(async move {
            let asked = self.members.iter().map(|m| m.upstream.ready(timeout));
            futures_util::future::join_all(asked)
                .await
                .into_iter()
                .any(|ready| ready)
        })
    }

    fn servers(&self) -> Option<usize> {
        self.members
            .iter()
            .filter_map(|m| m.upstream.servers())
            .reduce(|a, b| a + b)
    }
}

/// MCP's rule for tool names: 1 to 128 of `A-Z a-z 0-9 _ - .`.
fn valid_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Adds `from`'s capabilities to `into`: an object's members are merged, and `true` wins.
fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (key, value) in from {
        match (into.get_mut(key), value) {
            (Some(Value::Object(mine)), Value::Object(theirs)) => merge(mine, theirs),
            (Some(Value::Bool(mine)), Value::Bool(theirs)) => *mine |= *theirs,
            (Some(_), _) => {}
            (None, _) => {
                into.insert(key.clone(), value.clone());
            }
        }
    }
}

fn strip_session(parts: &http::request::Parts) -> http::request::Parts {
    let mut parts = parts.clone();
    parts.extensions.remove::<Arc<crate::body::Received>>();
    parts.headers.remove(MCP_SESSION_ID);
    parts.headers.remove(CONTENT_LENGTH);
    parts
}

/// Marks each task id of upstream `name`'s in `message` as `<name>/<id>`, so that the
/// requests naming it find their way back; `true` if there was any.
fn mark_tasks(name: &str, message: &mut Value) -> bool {
    let marked = crate::mcp::tasks::upstream_task_ids(message, &mut |id: &mut String| {
        *id = format!("{name}/{id}");
        Ok::<(), std::convert::Infallible>(())
    });
    match marked {
        Ok(marked) => marked,
        Err(never) => match never {},
    }
}

/// A message as the bytes of its JSON (a `Value` always serialises: its keys are strings).
fn encoded(message: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec(message).unwrap_or_default())
}

fn json_error(
    status: StatusCode,
    id: Option<&RequestId>,
    code: i64,
    message: &str,
) -> Response<Body> {
    json_response(status, error_body(id, code, message))
}

fn status_error(status: StatusCode, message: &str) -> Response<Body> {
    json_error(status, None, code::TRANSPORT_REJECTED, message)
}

fn json_response(status: StatusCode, text: String) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn accepted() -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::ACCEPTED;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capabilities_are_merged_and_a_flag_set_anywhere_is_set() {
        let mut into = json!({ "tools": { "listChanged": false }, "logging": {} })
            .as_object()
            .cloned()
            .unwrap();
        let from = json!({ "tools": { "listChanged": true }, "prompts": {} });
        merge(&mut into, from.as_object().unwrap());
        assert_eq!(
            Value::Object(into),
            json!({ "tools": { "listChanged": true }, "logging": {}, "prompts": {} })
        );
    }

    #[test]
    fn a_composite_session_id_comes_back_as_it_went() {
        let composite = Composite {
            upstreams: vec![
                ("a".into(), Some("s-1".into()), "2025-11-25".into()),
                ("b".into(), None, "2025-06-18".into()),
            ],
        };
        let text = composite.encode().unwrap();
        assert!(HeaderValue::from_str(&text).is_ok());
        let back = Composite::decode(&text).unwrap();
        assert_eq!(back.upstreams, composite.upstreams);
        assert!(Composite::decode("not-base64-json!").is_none());
    }

    #[test]
    fn the_sessions_of_a_score_of_upstreams_fit_in_one_sealed_id() {
        let composite = Composite {
            upstreams: (0..20)
                .map(|i| {
                    (
                        format!("upstream-{i:02}"),
                        Some("0b5c2f0e-4b7f-4a5e-9f7e-1d2c3b4a5e6f".to_owned()),
                        "2025-11-25".to_owned(),
                    )
                })
                .collect(),
        };
        let encoded = composite.encode().unwrap();
        assert!(
            encoded.len() <= crate::mcp::session::MAX_UPSTREAM_ID_LEN,
            "{}",
            encoded.len()
        );
    }

    #[test]
    fn names_go_to_the_upstream_of_their_prefix() {
        #[derive(Debug)]
        struct Nowhere;
        impl Upstream for Nowhere {
            fn send(&self, _: http::request::Parts, _: Bytes) -> Answered<'_> {
                Box::pin(async { Response::new(Body::empty()) })
            }
            fn ready(
                &self,
                _: Duration,
            ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>>
            {
                Box::pin(async { true })
            }
        }
        let member = |name: &str| Member {
            name: name.to_owned(),
            prefix: name.to_owned(),
            list_timeout: Duration::from_secs(1),
            upstream: Arc::new(Nowhere),
        };
        let aggregate = Aggregate::new("r", "__", vec![member("github"), member("files")], None);
        assert_eq!(
            aggregate.owner_of_name("github__create_issue"),
            Some((0, "create_issue"))
        );
        assert_eq!(
            aggregate.owner_of_name("files__read__all"),
            Some((1, "read__all"))
        );
        assert_eq!(aggregate.owner_of_name("files__"), None);
        assert_eq!(aggregate.owner_of_name("gitlab__x"), None);
        assert_eq!(aggregate.owner_of_name("github_x"), None);
    }
}
