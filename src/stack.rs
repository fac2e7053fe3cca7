//! THE ordered request path: [`app`] builds it as a `tower::ServiceBuilder` stack, one
//! line per layer, outermost first, each saying why it sits where it does (see
//! `docs/architecture.md` §1). Each layer either passes the request on or answers it with
//! a correct response; a refusal is a response, never an error. The layers up to the
//! route lookup live in the modules that own their concern; below the route lookup,
//! [`route_stages`] still runs the route's checks in order (limits, authentication,
//! session binding, MCP parse, authorization, the guard, the upstream, the answer
//! rewrite) and is being split into layers of its own.
//!
//! Session binding runs before the MCP parse: it needs no body, so a foreign session id
//! costs nothing. The client and caller limits run after the route lookup (limits are
//! per route's callers; health and metadata are not limited); the caller limits run after
//! the body is read, for costs by JSON-RPC method.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response};
use tower::layer::layer_fn;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tracing::Instrument;

use crate::audit::event::{Exchange, Kind, Outcome};
use crate::audit::{self, arguments::ArgumentsMode};
use crate::auth::cache::system_clock;
use crate::auth::metadata::{WELL_KNOWN_PREFIX, well_known_path};
use crate::config::AuthMode;
use crate::config::guard::Enforcement;
use crate::edge;
use crate::error::{Rejection, discard_body};
use crate::gateway::{Gateway, Route};
use crate::guard::schema::{Checked, ToolListIds};
use crate::health;
use crate::mcp;
use crate::mcp::answer::{self, AnswerError};
use crate::mcp::headers::{MCP_NAME, MCP_PROTOCOL_VERSION, MCP_SESSION_ID, X_REQUEST_ID};
use crate::mcp::jsonrpc::{self, RequestId};
use crate::mcp::message::{McpRequest, ParseError};
use crate::mcp::session::{self, IdKind};
use crate::mcp::tasks::{self, TaskBinding};
use crate::policy::lists::{ListRequests, Viewer};
use crate::policy::{self, Call, Decision, Roles};
use crate::proxy;
use crate::ratelimit::{self, Counted, Measured, RateLimits, Refusal};
use crate::request::PeerCertificate;
use crate::request::{Answer, AuthMethod, ClientIp, Next, Principal, TraceId, pass};
pub use crate::request::{ClientAddr, HttpRequestId};

/// The whole application: the request path's layers over the gateway, cheap to clone.
#[derive(Clone)]
pub struct App {
    service: Stack,
}

/// The layers [`app`] stacks, outermost first.
type Stack = Context<
    audit::layer::Record<
        edge::gate::RepeatedHeaders<
            health::Probes<
                edge::gate::HeadSize<
                    edge::gate::HostCheck<crate::auth::metadata::Documents<Routes>>,
                >,
            >,
        >,
    >,
>;

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App").finish_non_exhaustive()
    }
}

/// Builds the request path: the layers in the order a request meets them, outermost
/// first (see `docs/architecture.md`).
pub fn app(gateway: Arc<Gateway>) -> App {
    let timeout = gateway.body_read_timeout;
    let service = ServiceBuilder::new()
        // Request id, trace and client address first: every log line, record and answer
        // of the request carries them.
        .layer(layer_fn(|next| Context {
            next,
            gateway: Arc::clone(&gateway),
        }))
        // The audit record outside every check that may refuse: one per request (probes
        // and metadata excepted).
        .layer(layer_fn(|next| audit::layer::Record {
            next,
            audit: Arc::clone(&gateway.audit),
        }))
        // Headers sent twice, before anything reads one.
        .layer(layer_fn(|next| edge::gate::RepeatedHeaders {
            next,
            api_key: gateway.auth.api_key_header().clone(),
            timeout,
        }))
        // Health probes before the Host check: orchestrators probe by IP.
        .layer(layer_fn(|next| health::Probes {
            next,
            gateway: Arc::clone(&gateway),
        }))
        // A head larger than the server takes.
        .layer(layer_fn(|next| edge::gate::HeadSize {
            next,
            limit: gateway.max_header_size,
            timeout,
        }))
        // Host: names that are not ours (DNS rebinding), before anything is answered.
        .layer(layer_fn(|next| edge::gate::HostCheck {
            next,
            hosts: Arc::clone(&gateway.hosts),
            timeout,
        }))
        // Protected-resource metadata: public, for any origin, outside every route.
        .layer(layer_fn(|next| crate::auth::metadata::Documents {
            next,
            documents: Arc::new(metadata_documents(&gateway)),
        }))
        // The route by exact path, and below it the route's own layers.
        .service(Routes::new(&gateway));
    App { service }
}

impl App {
    /// Runs one request through every layer.
    pub async fn handle(&self, req: Request<Body>) -> Response<Body> {
        match self.service.clone().call(req).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

impl tower::Service<Request<Body>> for App {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.service.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        self.service.call(req)
    }
}

/// Well-known path → protected-resource metadata document, for each route with one.
fn metadata_documents(gateway: &Gateway) -> HashMap<String, Bytes> {
    let mut documents: HashMap<String, Bytes> = gateway
        .routes
        .iter()
        .filter_map(|r| Some((well_known_path(&r.path), r.auth.metadata.clone()?)))
        .collect();
    // With one route, clients that look at the bare well-known path find it too.
    if let [only] = gateway.routes.as_slice()
        && let Some(doc) = &only.auth.metadata
    {
        documents
            .entry(WELL_KNOWN_PREFIX.to_owned())
            .or_insert_with(|| doc.clone());
    }
    documents
}

/// The outermost layer: the request's id (in every log line of it, and the
/// `X-Request-Id` of its answer), its trace (continued for the upstream) and its client
/// address (the peer, or whom a trusted proxy forwarded for).
#[derive(Clone)]
struct Context<S> {
    next: S,
    gateway: Arc<Gateway>,
}

impl<S: Next> tower::Service<Request<Body>> for Context<S> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        self.next.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Answer {
        let id = HttpRequestId::generate();
        let span = tracing::info_span!("request", request_id = id.as_str());
        let trace = crate::telemetry::trace::continued(&span, req.headers_mut());
        let proxies = &self.gateway.limits.proxies;
        let client = req.extensions().get::<ClientAddr>().map(|peer| {
            let peer = peer.0.ip();
            ClientIp {
                ip: proxies.client(peer, req.headers()),
                forwarded: proxies.reads_forwarding(peer),
            }
        });
        let extensions = req.extensions_mut();
        extensions.insert(TraceId(trace));
        if let Some(client) = client {
            extensions.insert(client);
        }
        extensions.insert(id.clone());
        let answered = pass(&mut self.next, req).instrument(span);
        Box::pin(async move {
            let mut response = answered.await?;
            response
                .headers_mut()
                .insert(X_REQUEST_ID, id.header_value());
            Ok(response)
        })
    }
}

/// The route lookup (exact path; 404 for none), then the route's own layers: its Origin
/// check and CORS, then what [`route_stages`] does. Every answer from a route names it
/// for the audit record.
#[derive(Clone)]
struct Routes {
    routes: Arc<HashMap<String, RouteStack>>,
    timeout: std::time::Duration,
}

/// One route's layers below the route lookup.
#[derive(Clone)]
struct RouteStack {
    routed: audit::layer::Routed,
    service: edge::gate::OriginCheck<RouteService>,
}

impl Routes {
    fn new(gateway: &Arc<Gateway>) -> Self {
        let routes = gateway
            .routes
            .iter()
            .map(|route| {
                let service = RouteService {
                    route: Arc::clone(route),
                    gateway: Arc::clone(gateway),
                };
                let stack = RouteStack {
                    routed: audit::layer::Routed {
                        name: Arc::clone(&route.name),
                        tool_labels: route.audit.tool_labels,
                    },
                    service: edge::gate::OriginCheck {
                        cors: Arc::new(route.cors.layer(service.clone())),
                        next: service,
                        origins: Arc::clone(&route.origins),
                        timeout: route.body_read_timeout,
                    },
                };
                (route.path.clone(), stack)
            })
            .collect();
        Self {
            routes: Arc::new(routes),
            timeout: gateway.body_read_timeout,
        }
    }
}

impl tower::Service<Request<Body>> for Routes {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Answer {
        let Some(stack) = self.routes.get(req.uri().path()) else {
            let timeout = self.timeout;
            return Box::pin(async move {
                Ok(crate::error::refuse(req, Rejection::NoRoute, timeout).await)
            });
        };
        let routed = stack.routed.clone();
        let answered = stack.service.clone().oneshot(req);
        Box::pin(async move {
            let mut response = answered.await?;
            response.extensions_mut().insert(routed);
            Ok(response)
        })
    }
}

/// The stages after CORS: limits, authentication, MCP parse and authorization, then the
/// upstream. Every answer carries the `RateLimit` headers of the limits it was counted
/// against, and the [`Exchange`] for the audit record.
async fn route_stages(
    route: &Arc<Route>,
    gateway: &Arc<Gateway>,
    req: Request<Body>,
) -> Response<Body> {
    let client_ip = req.extensions().get::<ClientIp>().map(|c| c.ip);
    let mut counted = Counted::default();
    let mut exchange = Exchange::default();
    let mut response =
        limited_stages(route, gateway, req, client_ip, &mut counted, &mut exchange).await;
    counted.write(response.headers_mut());
    response.extensions_mut().insert(exchange);
    response
}

async fn limited_stages(
    route: &Arc<Route>,
    gateway: &Arc<Gateway>,
    mut req: Request<Body>,
    client_ip: Option<std::net::IpAddr>,
    counted: &mut Counted,
    exchange: &mut Exchange,
) -> Response<Body> {
    let (auth, roles, limits) = (&*gateway.auth, &*gateway.roles, &*gateway.limits);
    // Client limits: bans and the client IP's limit, before any token is looked at.
    if let Some(ip) = client_ip {
        let cost = limits.cost(req.method(), None);
        if let Err(refusal) = counted.apply(limits.check_client(ip, cost).await) {
            return refused_unread(route, req, refusal, exchange).await;
        }
    }

    // Authentication: who is calling. Nothing reaches the upstream without it unless
    // the route says `auth = "none"`.
    if route.auth.mode == AuthMode::Required {
        let certificate = req.extensions().get::<PeerCertificate>();
        match auth
            .authenticate(&route.auth, req.headers(), certificate)
            .await
        {
            Ok(principal) => {
                if route.auth.has_identity_headers() {
                    let values = route.auth.identity_headers(&principal);
                    req.extensions_mut().insert(values);
                }
                exchange.principal = Some(Arc::clone(&principal));
                req.extensions_mut().insert(principal);
            }
            Err(refused) => {
                let crate::auth::Refused {
                    failure,
                    mut response,
                    subject,
                } = refused;
                tracing::debug!(route = %route.name, reason = failure.reason(), "Refused a request: {failure}");
                exchange.failed_subject = subject.map(Box::from);
                if failure.counts_towards_ban()
                    && let Some(ip) = client_ip
                    && limits.failed_authentication(ip).await
                {
                    tracing::warn!(route = %route.name, "Banned an address after repeated authentication failures");
                    if let Some(duration) = limits.ban_duration() {
                        gateway
                            .audit
                            .banned(ip, duration, "authentication_failures");
                    }
                }
                Outcome::new(Kind::AuthenticationFailure, failure.reason()).mark(&mut response);
                discard_body(req, route.body_read_timeout, &mut response).await;
                return response;
            }
        }
    }

    // Who is calling, for every stage below: the verified principal, or nobody.
    let principal = req
        .extensions()
        .get::<Arc<Principal>>()
        .cloned()
        .unwrap_or_else(|| Arc::clone(&ANONYMOUS));
    if exchange.principal.is_none() {
        exchange.principal = Some(Arc::clone(&principal));
    }
    // Hashed only for requests and answers that carry a session id.
    let caller = || session::PrincipalHash::from(principal.as_ref());

    // Session binding: the client holds a sealed id; the upstream gets its own back
    // only if the id was issued to this caller on this route and has not expired.
    let had_session = req.headers().contains_key(MCP_SESSION_ID);
    if let Some(sealed) = req.headers().get(MCP_SESSION_ID) {
        let opened = sealed.to_str().map_err(|_| None).and_then(|sealed| {
            gateway
                .sessions
                .keys
                .open(
                    IdKind::Session,
                    sealed,
                    &route.name,
                    &caller(),
                    system_clock(),
                    gateway.sessions.max_age,
                )
                .map_err(Some)
        });
        match opened.map(|id| HeaderValue::from_str(&id)) {
            Ok(Ok(upstream_id)) => {
                req.headers_mut().insert(MCP_SESSION_ID, upstream_id);
            }
            failed => {
                let reason = match failed {
                    Err(Some(e)) => e.as_str(),
                    _ => "malformed",
                };
                tracing::debug!(route = %route.name, reason, "Refused a session id that is not this caller's");
                let mut response = session_not_found();
                Outcome::new(Kind::SessionMismatch, reason).mark(&mut response);
                return response;
            }
        }
    }

    // Task ids, sealed for this caller and route like the session id (session binding, the answer
    // rewrite).
    let tasks = TaskBinding::new(
        Arc::clone(&gateway.sessions.keys),
        Arc::clone(&route.name),
        Arc::clone(&principal),
    );
    // MCP parse and authorization: the body parsed once, and every call in it judged by the
    // route's policy.
    // Proxy: then the upstream; the body is read once.
    let mut lists = None;
    let mut tool_lists: Option<ToolListIds> = None;
    // The id a gateway error after the upstream answered must carry (single requests).
    let mut reply_id = None;
    // A JSON answer is read whole only when something in it may need rewriting.
    let mut read_json = false;
    // When the request left for the upstream.
    let sent;
    let deleting = req.method() == Method::DELETE;
    // Lists are filtered when the route has rules, or tools that may be held for review.
    let judged = !route.policy.is_open() || route.limits.has_tool_limits();
    let pinned = route.guard.pins.is_some();
    let mut response = if req.method() == Method::POST {
        let (mut parts, body) = req.into_parts();
        let read = proxy::read_body(
            &parts.headers,
            body,
            route.max_body,
            route.body_read_timeout,
        );
        let mut bytes = match read.await {
            Ok(bytes) => bytes,
            Err(rejection) => return rejection.into_response(None),
        };
        exchange.bytes_in = bytes.len() as u64;
        // MCP parse: the body checked against the route's limits and parsed once, for every stage
        // below and the record.
        let parsed = McpRequest::parse_with(&bytes, &route.guard.parse);
        if let Ok(parsed) = &parsed {
            exchange.batch = parsed.batch;
            exchange.calls = audit::calls_of(parsed, route.audit.arguments, &route.audit.sensitive);
        }
        // Caller limits: the principal's and the route's, at what this message costs (a body
        // that is refused below still counts: refusing it is work too).
        let method = match exchange.calls.as_slice() {
            [one] if !exchange.batch => Some(&*one.method),
            _ => None,
        };
        let cost = limits.cost(&parts.method, method.filter(|_| limits.prices_methods()));
        if let Err(refusal) = count_caller(route, limits, &principal, cost, counted).await {
            return refused(route, refusal, jsonrpc::request_id(&bytes).as_ref());
        }
        let parsed = match parsed {
            Ok(parsed) => parsed,
            Err(e) => return parse_rejection(&e, &bytes),
        };
        if parsed.batch
            && let Err(why) = mcp::message::batches_allowed(parts.headers.get(MCP_PROTOCOL_VERSION))
        {
            return Rejection::InvalidMessage(why.into()).into_response(None);
        }
        if let Err(header) = parsed.check_headers(&parts.headers) {
            return Rejection::HeaderMismatch(header).into_response(parsed.reply_id());
        }
        if judged {
            if let Some(refusal) = authorize(route, roles, &principal, &parsed) {
                return refusal;
            }
            // Authorization's tool limits: per principal and tool.
            let tool_limited = route.limits.has_tool_limits();
            for (message, method) in parsed.calls().filter(|_| tool_limited) {
                let Some(tool) = (method == "tools/call")
                    .then(|| message.params()?.get("name")?.as_str())
                    .flatten()
                else {
                    continue;
                };
                let outcome = limits
                    .tool(&route.name, &route.limits, &caller(), tool)
                    .await;
                if let Err(refusal) = counted.apply(outcome) {
                    return refused(route, refusal, message.id.as_ref());
                }
            }
        }
        // Authorization of tool pins and arguments: the tool as approved, its arguments as its
        // schema says.
        let guarded = route.guard.arguments != Enforcement::Off || route.guard.pins.is_some();
        if guarded {
            tool_lists = ToolListIds::of(&parsed);
        }
        route.guard.refresh_pins(tool_lists.is_some()).await;
        if guarded
            && let Some(refusal) = check_arguments(route, &gateway.audit, &parts, &parsed).await
        {
            return refusal;
        }
        if !parsed.batch {
            reply_id = parsed.messages.first().and_then(|m| m.id.clone());
        }
        // Answer rewrite (learning): the route's tool schemas and pins, from the answers to
        // tools/list (`tool_lists`, above).
        if judged || pinned {
            lists = ListRequests::of(&parsed, &parts.headers)
                .map(|requests| (requests, list_viewer(gateway, route, &principal, judged)));
        }
        // Session binding (body part): task ids the request names: the upstream's own back, or
        // refused.
        if tasks::may_carry_task_id(&bytes) {
            match open_task_ids(route, &tasks, &bytes) {
                Ok(Some((opened, name))) => {
                    bytes = opened.into();
                    // 2026-07-28: `Mcp-Name` mirrors the task id the body now carries.
                    if let Some(name) = name
                        && parts.headers.contains_key(MCP_NAME)
                    {
                        parts
                            .headers
                            .insert(MCP_NAME, mcp::headers::encode_value(&name));
                    }
                }
                Ok(None) => {}
                Err(refusal) => return *refusal,
            }
        }
        read_json = lists.is_some()
            || tool_lists.is_some()
            || route.guard.redactor.is_some()
            || tasks::may_concern_tasks(&bytes);
        if read_json && reply_id.is_none() {
            reply_id = jsonrpc::request_id(&bytes);
        }
        sent = Instant::now();
        route.upstream.send(parts, bytes).await
    } else {
        let cost = limits.cost(req.method(), None);
        if let Err(refusal) = count_caller(route, limits, &principal, cost, counted).await {
            return refused(route, refusal, None);
        }
        // A stream opened with GET may replay an answer to a list request (resumed with
        // `Last-Event-ID`): its lists are filtered as the answer to the POST was.
        if req.method() == Method::GET && (judged || pinned) {
            let requests = ListRequests::stream(req.headers());
            lists = Some((requests, list_viewer(gateway, route, &principal, judged)));
        }
        sent = Instant::now();
        proxy::forward(
            &*route.upstream,
            route.max_body,
            route.body_read_timeout,
            req,
        )
        .await
    };
    if response.extensions().get::<Outcome>().is_none() {
        exchange.upstream_latency = Some(sent.elapsed());
        if deleting && had_session && response.status().is_success() {
            exchange.session_event = Some("closed");
        }
    }

    // Answer rewrite: lists show only what the caller may use; the upstream's task ids are sealed.
    let guard_route = Arc::clone(route);
    let metrics = Arc::clone(&gateway.audit.metrics);
    let audit_log = Arc::clone(&gateway.audit);
    let rewrite = move |data: &Bytes| {
        // The guard learns first: a tool it now holds is not listed.
        if let Some(ids) = &tool_lists {
            ids.learn_from(data, &guard_route.guard, audit_log.as_ref());
        }
        if LIST_CHANGED.find(data).is_some() {
            guard_route.guard.tools.mark_stale();
        }
        let mut out = match &lists {
            Some((requests, viewer)) => policy::lists::filter_message(data, requests, viewer)?,
            None => None,
        };
        let current = out.as_deref().unwrap_or(data);
        if tasks::may_carry_task_id(current) {
            let mut message: serde_json::Value =
                serde_json::from_slice(current).map_err(|_| AnswerError::NotJsonRpc)?;
            if tasks
                .seal_message(&mut message)
                .map_err(|_| AnswerError::Unsealable)?
            {
                out = Some(Bytes::from(
                    serde_json::to_vec(&message).map_err(|_| AnswerError::NotJsonRpc)?,
                ));
            }
        }
        // Secrets in results masked, last: after everything else that rewrites.
        if let Some(redactor) = &guard_route.guard.redactor {
            let current = out.as_deref().unwrap_or(data);
            if redactor.may_match(current) {
                let mut message: serde_json::Value =
                    serde_json::from_slice(current).map_err(|_| AnswerError::NotJsonRpc)?;
                let masked = redactor.redact_message(&mut message);
                if !masked.is_empty() {
                    for (pattern, count) in &masked {
                        metrics
                            .redactions
                            .with_label_values(&[&*guard_route.name, pattern])
                            .inc_by(*count as u64);
                    }
                    out = Some(Bytes::from(
                        serde_json::to_vec(&message).map_err(|_| AnswerError::NotJsonRpc)?,
                    ));
                }
            }
        }
        Ok(out)
    };
    response = match answer::rewrite(response, read_json, rewrite).await {
        Ok(rewritten) => rewritten,
        Err(e) => {
            tracing::warn!(route = %route.name, error = %e, "The upstream's answer could not be rewritten for the caller; not forwarded");
            let mut response = Rejection::UpstreamUnavailable.into_response(reply_id.as_ref());
            Outcome::new(Kind::Request, "upstream_unforwardable").mark(&mut response);
            return response;
        }
    };

    // Answer rewrite: the upstream's session id, sealed for this caller and route.
    if let Some(upstream_id) = response.headers().get(MCP_SESSION_ID) {
        let sealed = upstream_id.to_str().ok().and_then(|id| {
            let keys = &gateway.sessions.keys;
            keys.seal(IdKind::Session, &route.name, id, &caller(), system_clock())
                .ok()
        });
        match sealed.and_then(|s| HeaderValue::from_str(&s).ok()) {
            Some(value) => {
                response.headers_mut().insert(MCP_SESSION_ID, value);
                if !had_session {
                    exchange.session_event = Some("opened");
                }
            }
            None => {
                tracing::warn!(route = %route.name, "The upstream's session id could not be sealed (too long or not text)");
                let mut response = Rejection::UpstreamUnavailable.into_response(reply_id.as_ref());
                Outcome::new(Kind::Request, "upstream_unforwardable").mark(&mut response);
                return response;
            }
        }
    }
    response
}
/// Who sees the lists of an answer for `principal` on `route`: each item asked about by
/// the decision calls are judged by (when `judged`), less the tools held for review.
fn list_viewer(
    gateway: &Gateway,
    route: &Arc<Route>,
    principal: &Arc<Principal>,
    judged: bool,
) -> Viewer {
    let (route, roles, principal) = (
        Arc::clone(route),
        Arc::clone(&gateway.roles),
        Arc::clone(principal),
    );
    // The tools held for review, taken on the first tool asked about.
    let held = std::sync::OnceLock::new();
    Viewer {
        policy: Arc::new(move |kind, name| {
            let shown = !judged || route.policy.lists(&roles, &principal, kind, name);
            shown
                && !(kind == policy::Kind::Tool
                    && held.get_or_init(|| route.guard.held_tools()).contains(name))
        }),
    }
}

/// Caller limits: the principal's limit (not for anonymous callers, whom the IP limit covers)
/// and the route's.
async fn count_caller(
    route: &Route,
    limits: &RateLimits,
    principal: &Principal,
    cost: u32,
    counted: &mut Counted,
) -> Result<(), Refusal> {
    if principal.method != AuthMethod::Anonymous {
        counted.apply(limits.user(principal, cost).await)?;
    }
    counted.apply(limits.route(&route.name, &route.limits, cost).await)
}

/// The answer to a request a limit refused.
fn refused(route: &Route, refusal: Refusal, id: Option<&RequestId>) -> Response<Body> {
    match refusal {
        Refusal::Limited(measured) => {
            tracing::debug!(route = %route.name, limit = measured.limit, "Refused a request over its rate limit");
            too_many_answer(id, measured)
        }
        Refusal::Banned => {
            tracing::debug!(route = %route.name, "Refused a request from a banned address");
            Rejection::Banned.into_response(id)
        }
        Refusal::Unavailable => Rejection::LimitsUnavailable.into_response(id),
    }
}

/// [`refused`] for a request whose body is not read yet: read it (within the route's
/// limit) for the id the JSON-RPC error must carry, and the calls for the record.
async fn refused_unread(
    route: &Route,
    req: Request<Body>,
    refusal: Refusal,
    exchange: &mut Exchange,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    let mut id = None;
    let mut unread = false;
    if parts.method == Method::POST {
        let read = proxy::read_body(
            &parts.headers,
            body,
            route.max_body,
            route.body_read_timeout,
        );
        match read.await {
            Ok(bytes) => {
                exchange.bytes_in = bytes.len() as u64;
                // Named in the record as every other request is (no arguments: it went
                // nowhere).
                if let Ok(parsed) = McpRequest::parse_with(&bytes, &route.guard.parse) {
                    exchange.batch = parsed.batch;
                    exchange.calls =
                        audit::calls_of(&parsed, ArgumentsMode::None, &route.audit.sensitive);
                }
                id = jsonrpc::request_id(&bytes);
            }
            Err(_) => unread = true,
        }
    }
    let mut response = refused(route, refusal, id.as_ref());
    // A body left unread (too large, too slow, broken) leaves the connection unusable.
    if unread && parts.version <= http::Version::HTTP_11 {
        response
            .headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Finds the notification that makes a route's tool schemas stale (built once: a searcher
/// per answer cost more than the search).
static LIST_CHANGED: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
    std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"notifications/tools/list_changed"));

/// HTTP 429, `Retry-After`, and a JSON-RPC error with `data.retryAfterSeconds`.
fn too_many_answer(id: Option<&RequestId>, refused: Measured) -> Response<Body> {
    let seconds = ratelimit::seconds_up(refused.retry_after.unwrap_or(refused.reset)).max(1);
    let body = crate::error::jsonrpc_error_body_with_data(
        id,
        crate::error::code::RATE_LIMITED,
        &format!("rate limit exceeded; retry in {seconds} s"),
        &serde_json::json!({ "retryAfterSeconds": seconds, "limit": refused.limit }),
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = http::StatusCode::TOO_MANY_REQUESTS;
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from(seconds));
    Outcome::new(Kind::RateLimited, refused.limit).mark(&mut response);
    response
}

/// Whoever calls a route with `auth = "none"`: one shared value, no allocation per request.
static ANONYMOUS: std::sync::LazyLock<Arc<Principal>> =
    std::sync::LazyLock::new(|| Arc::new(Principal::new("anonymous", AuthMethod::Anonymous)));

/// 404 for a session id that is unknown, expired, forged or someone else's: MCP clients
/// start a new session on it, and nothing tells these cases apart.
fn session_not_found() -> Response<Body> {
    let mut response = Response::new(Body::from(crate::error::jsonrpc_error_body(
        None,
        crate::error::code::SESSION_NOT_FOUND,
        "Session not found",
    )));
    *response.status_mut() = http::StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// 400 with the JSON-RPC error of a body that is not JSON-RPC.
fn parse_rejection(e: &ParseError, body: &[u8]) -> Response<Body> {
    let rejection = match e {
        ParseError::Json => Rejection::Parse,
        ParseError::Invalid(why) => Rejection::InvalidMessage(why.clone()),
        ParseError::Limit(limit) => Rejection::InvalidMessage(limit.to_string().into()),
    };
    rejection.into_response(jsonrpc::request_id(body).as_ref())
}

/// A body whose task ids were opened, and the task id a single `tasks/*` request names.
type OpenedBody = (Vec<u8>, Option<String>);

/// Session binding on the body: the sealed task ids a POST names, opened for this caller
/// (`Ok(Some)` is the body to forward instead, with the task id a single `tasks/*`
/// request names, for its `Mcp-Name`), or the answer refusing it. A body that may
/// name a task but cannot be read as JSON is refused too: what the gateway cannot read it
/// cannot check, and a lenient upstream parser might read it anyway.
fn open_task_ids(
    route: &Route,
    tasks: &TaskBinding,
    body: &[u8],
) -> Result<Option<OpenedBody>, Box<Response<Body>>> {
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| Box::new(parse_rejection(&ParseError::Json, body)))?;
    let batch = value.is_array();
    let messages: Vec<&mut serde_json::Value> = match &mut value {
        serde_json::Value::Array(items) => items.iter_mut().collect(),
        single => vec![single],
    };
    let mut changed = false;
    let mut refused: Vec<(usize, &'static str)> = Vec::new();
    let mut ids = Vec::with_capacity(messages.len());
    for (i, message) in messages.into_iter().enumerate() {
        ids.push(message.get("id").and_then(RequestId::from_value));
        match tasks.open_message(message) {
            Ok(opened) => changed |= opened,
            Err(e) => refused.push((i, e.reason)),
        }
    }
    if let Some((_, reason)) = refused.first() {
        tracing::debug!(route = %route.name, reason, "Refused a task id that is not this caller's");
        let refused: Vec<(usize, String)> = refused
            .into_iter()
            .map(|(i, _)| (i, tasks::TASK_NOT_FOUND.to_owned()))
            .collect();
        let mut response = refusal(
            &ids,
            batch,
            crate::error::code::INVALID_PARAMS,
            &refused,
            "not sent: another message in this batch names a task that was not found",
        );
        Outcome::new(Kind::Denied, "task_not_found").mark(&mut response);
        return Err(Box::new(response));
    }
    if !changed {
        return Ok(None);
    }
    let name = (!batch)
        .then(|| {
            let method = value.get("method")?.as_str()?;
            let key = crate::mcp::message::name_param(method);
            value.get("params")?.get(key)?.as_str().map(str::to_owned)
        })
        .flatten();
    serde_json::to_vec(&value)
        .map(|body| Some((body, name)))
        .map_err(|_| {
            let id = ids.first().and_then(Option::as_ref);
            Box::new(Rejection::Internal.into_response(id))
        })
}

/// Authorization of one parsed body: `None` when every call may go, else the answer. A batch
/// with any denied call is refused whole, with an error for each of its requests. A call
/// naming a resource URI that is not in normal form is refused as invalid params (-32602)
/// before any rule is asked, on routes whose policy judges anything. A `subscriptions/listen`
/// (2026-07-28) is judged as itself and as a `resources/subscribe` of each URI it lists.
fn authorize(
    route: &Route,
    roles: &Roles,
    principal: &Principal,
    parsed: &McpRequest,
) -> Option<Response<Body>> {
    let mut denied: Vec<(usize, String)> = Vec::new();
    let mut invalid: Vec<(usize, String)> = Vec::new();
    if route.policy.is_open() {
        return None;
    }
    for (i, message) in parsed.messages.iter().enumerate() {
        let Some(method) = message.method.as_deref() else {
            continue;
        };
        // The call itself, and for a 2026-07-28 `subscriptions/listen` a
        // `resources/subscribe` of each URI it lists: a denial of any refuses the message.
        let listened = match policy::listened_resources(method, message.params()) {
            Ok(uris) => uris,
            Err(why) => {
                invalid.push((i, why.to_owned()));
                continue;
            }
        };
        let calls = std::iter::once(Call::from_params(method, message.params()))
            .chain(listened.into_iter().map(Call::subscribe));
        let mut short_of_scopes = None;
        for call in calls {
            if let Some(why) = policy::unjudgeable(&call) {
                invalid.push((i, why));
                short_of_scopes = None;
                break;
            }
            match route.policy.decide(roles, principal, &call) {
                Decision::Allow => {}
                Decision::NeedScopes(scopes) => {
                    short_of_scopes.get_or_insert((call, scopes));
                }
                Decision::Deny => {
                    denied.push((i, policy::denial_message(&call)));
                    short_of_scopes = None;
                    break;
                }
            }
        }
        match short_of_scopes {
            Some((_, scopes)) if !parsed.batch => {
                tracing::debug!(route = %route.name, method, "Refused a call that needs more scopes");
                let mut response = route.auth.insufficient_scope(&scopes, message.id.as_ref());
                Outcome::new(Kind::Denied, "insufficient_scope").mark(&mut response);
                return Some(response);
            }
            Some((call, _)) => denied.push((i, policy::denial_message(&call))),
            None => {}
        }
    }
    let ids =
        || -> Vec<Option<RequestId>> { parsed.messages.iter().map(|m| m.id.clone()).collect() };
    if !invalid.is_empty() {
        tracing::debug!(route = %route.name, refused = invalid.len(), "Refused a resource URI that is not in normal form");
        let mut response = refusal(
            &ids(),
            parsed.batch,
            crate::error::code::INVALID_PARAMS,
            &invalid,
            "not sent: another call in this batch names a resource URI that is not in normal form",
        );
        Outcome::new(Kind::Rejected, "resource_uri_not_normal").mark(&mut response);
        return Some(response);
    }
    if denied.is_empty() {
        return None;
    }
    tracing::debug!(route = %route.name, denied = denied.len(), "Refused a call by policy");
    let mut response = refusal(
        &ids(),
        parsed.batch,
        crate::error::code::DENIED,
        &denied,
        "not sent: another call in this batch is not allowed",
    );
    Outcome::new(Kind::Denied, "policy").mark(&mut response);
    Some(response)
}

/// Authorization: the arguments of every `tools/call` in the body checked against the tool's
/// schema as the upstream listed it (and the operator's override). A tool the route's
/// catalog does not know, or a catalog the upstream said is out of date, makes the gateway
/// list the tools itself first. `enforce` refuses the body (a batch whole, with an error
/// per request); `warn` logs and lets it through.
async fn check_arguments(
    route: &Route,
    audit: &audit::Audit,
    parts: &http::request::Parts,
    parsed: &McpRequest,
) -> Option<Response<Body>> {
    let calls: Vec<(usize, &str, Option<&serde_json::Value>)> = parsed
        .messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.method.as_deref() == Some("tools/call"))
        .filter_map(|(i, m)| {
            let params = m.params()?;
            Some((i, params.get("name")?.as_str()?, params.get("arguments")))
        })
        .collect();
    if calls.is_empty() {
        return None;
    }
    let catalog = &route.guard.tools;
    let unknown = calls.iter().any(|(_, name, _)| !catalog.knows(name));
    // Why the tools could not be listed, if the gateway tried (now or a moment ago) and
    // failed.
    let not_listed = match catalog.fetch_turn(unknown).await {
        Err(last) => last,
        Ok(mut turn) => {
            let modern = parts
                .headers
                .get(MCP_PROTOCOL_VERSION)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v >= "2026-07-28");
            let caller = crate::guard::fetch::Caller {
                headers: &parts.headers,
                identity: parts
                    .extensions
                    .get::<crate::request::IdentityHeaderValues>(),
                modern_meta: parsed
                    .messages
                    .first()
                    .filter(|_| modern)
                    .and_then(|m| m.params()?.get("_meta")),
            };
            // Boxed: the gateway's own listing is rare, and its state (4 KiB) inline would
            // make every request's future, copied into its box per request, that much larger.
            let fetch =
                crate::guard::fetch::fetch_tools(&*route.upstream, caller, &route.guard, audit);
            match Box::pin(fetch).await {
                Ok(learned) => {
                    tracing::debug!(route = %route.name, learned, "Listed the upstream's tools to check arguments");
                    None
                }
                Err(e) => {
                    tracing::warn!(route = %route.name, error = %e, "Could not list the upstream's tools to check arguments");
                    let failure = crate::guard::schema::FetchFailure {
                        unreachable: e.unreachable(),
                        reason: e.to_string(),
                    };
                    turn.failed = Some(failure.clone());
                    Some(failure)
                }
            }
        }
    };
    let mut refused: Vec<(usize, String)> = Vec::new();
    let mut first: Option<(i64, &'static str)> = None;
    let check_schemas = route.guard.arguments != Enforcement::Off;
    for (i, name, arguments) in calls {
        let shown = Shown(name);
        if route.guard.held(name) {
            first.get_or_insert((crate::error::code::TOOL_UNAVAILABLE, "tool_held"));
            refused.push((
                i,
                format!(
                    "tool `{shown}` is held for review: its definition changed since it was approved, or failed the description checks; an operator must approve it (portcullis pins approve)"
                ),
            ));
            continue;
        }
        if !check_schemas {
            continue;
        }
        let (code, reason, message) = match catalog.check(name, arguments) {
            Checked::Valid => continue,
            Checked::Invalid(invalid) => (
                crate::error::code::INVALID_PARAMS,
                "invalid_arguments",
                format!("invalid arguments for tool `{shown}`: {invalid}"),
            ),
            // The upstream is down: the call gets the 502/504 a client expects, from the
            // gateway: it cannot be checked, so it is not sent (the upstream may be back by
            // now, and would run it).
            Checked::Unknown
                if let Some(unreachable) =
                    not_listed.as_ref().and_then(|f| f.unreachable.clone()) =>
            {
                return Some(unreachable.into_response(parsed.reply_id()));
            }
            Checked::Unknown => match &not_listed {
                Some(failure) => (
                    crate::error::code::TOOL_UNAVAILABLE,
                    "tools_not_listed",
                    format!(
                        "tool `{shown}` cannot be checked: the gateway could not list the upstream's tools ({})",
                        failure.reason
                    ),
                ),
                None => (
                    crate::error::code::TOOL_UNAVAILABLE,
                    "unknown_tool",
                    format!("unknown tool `{shown}`: the upstream does not list it"),
                ),
            },
            Checked::Unusable(why) => (
                crate::error::code::TOOL_UNAVAILABLE,
                "unusable_schema",
                format!(
                    "tool `{shown}` cannot be called: its input schema cannot be checked ({why})"
                ),
            ),
        };
        if route.guard.arguments == Enforcement::Warn {
            tracing::warn!(route = %route.name, tool = %shown, reason, "Forwarded a tool call that fails its checks (guard.arguments = \"warn\")");
            continue;
        }
        first.get_or_insert((code, reason));
        refused.push((i, message));
    }
    let (code, reason) = first?;
    tracing::debug!(route = %route.name, reason, refused = refused.len(), "Refused a tool call by its arguments");
    let ids: Vec<Option<RequestId>> = parsed.messages.iter().map(|m| m.id.clone()).collect();
    let mut response = refusal(
        &ids,
        parsed.batch,
        code,
        &refused,
        "not sent: another call in this batch was refused",
    );
    Outcome::new(Kind::Rejected, reason).mark(&mut response);
    Some(response)
}

/// A client-supplied name as error messages and logs show it: at most 64 characters,
/// control characters escaped. Written out only when shown (most calls pass their checks).
struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0
            .chars()
            .take(64)
            .try_for_each(|c| write!(f, "{}", c.escape_default()))
    }
}

/// The answer for a body that is not forwarded because of the messages in `refused`
/// (position, error message), whose messages have the ids `ids`: the JSON-RPC error
/// `code` for a single message, or a batch of errors, one per request, where the requests
/// not at fault get `others`. HTTP 200: the exchange worked, the calls did not. A single
/// message without an id (a notification or a response) gets 400.
fn refusal(
    ids: &[Option<RequestId>],
    batch: bool,
    code: i64,
    refused: &[(usize, String)],
    others: &str,
) -> Response<Body> {
    let error =
        |id: Option<&RequestId>, message: &str| crate::error::jsonrpc_error_body(id, code, message);
    let own = |i: usize| {
        refused
            .iter()
            .find(|(at, _)| *at == i)
            .map(|(_, text)| text.as_str())
    };
    let body = if batch {
        let items: Vec<String> = ids
            .iter()
            .enumerate()
            .filter_map(|(i, id)| Some(error(Some(id.as_ref()?), own(i).unwrap_or(others))))
            .collect();
        format!("[{}]", items.join(","))
    } else {
        let message = refused
            .first()
            .map_or("not allowed", |(_, text)| text.as_str());
        error(ids.first().and_then(Option::as_ref), message)
    };
    let mut response = Response::new(Body::from(body));
    if !batch && ids.first().is_none_or(Option::is_none) {
        *response.status_mut() = http::StatusCode::BAD_REQUEST;
    }
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// The stages after CORS as a tower service, for the CORS layer to wrap.
#[derive(Debug, Clone)]
struct RouteService {
    route: Arc<Route>,
    gateway: Arc<Gateway>,
}

impl tower::Service<Request<Body>> for RouteService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let (route, gateway) = (Arc::clone(&self.route), Arc::clone(&self.gateway));
        Box::pin(async move { Ok(route_stages(&route, &gateway, req).await) })
    }
}

#[cfg(test)]
mod tests {
    use super::Shown;

    #[test]
    fn names_are_shown_escaped_and_cut_at_64_characters() {
        assert_eq!(Shown("echo").to_string(), "echo");
        assert_eq!(
            Shown("rm\n-rf \u{202e}\"x\"").to_string(),
            "rm\\n-rf \\u{202e}\\\"x\\\""
        );
        let long = "é".repeat(70);
        assert_eq!(Shown(&long).to_string(), "\\u{e9}".repeat(64));
    }
}
