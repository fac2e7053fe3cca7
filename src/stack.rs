//! THE ordered request path: [`app`] builds it as a `tower::ServiceBuilder` stack, and
//! [`route_stack`] each route's layers below the route lookup, one line per layer,
//! outermost first, each saying why it sits where it does (see `docs/architecture.md`
//! §1). Each layer lives in the module that owns its concern, and either passes the
//! request on or answers it with a correct response; a refusal is a response, never an
//! error. What a layer learns goes down in the request's extensions (the client address,
//! the principal, the parsed body) and back up in the response's (the outcome of a
//! refusal, the limits counted, the exchange for the audit record).
//!
//! The limits run after the route lookup (limits are per route's callers; health and
//! metadata are not limited); the caller limits run after the body is read, for costs by
//! JSON-RPC method.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use axum::body::Body;
use bytes::Bytes;
use http::{Request, Response};
use tower::layer::layer_fn;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};
use tracing::Instrument;

use crate::auth::metadata::{WELL_KNOWN_PREFIX, well_known_path};
use crate::error::Rejection;
use crate::gateway::{Gateway, Route};
use crate::mcp::headers::X_REQUEST_ID;
use crate::request::{Answer, ClientIp, Next, Optional, Shared, TraceId, optional, pass};
pub use crate::request::{ClientAddr, HttpRequestId};
use crate::{audit, auth, body, edge, guard, health, policy, proxy, ratelimit, search};

mod legacy;
mod rewrite;

/// The whole application: the request path's layers over the gateway, cheap to clone.
#[derive(Clone)]
pub struct App {
    service: Stack,
}

/// The layers [`app`] stacks, outermost first.
type Stack = Context<
    audit::layer::Record<
        edge::gate::BlockCheck<
            edge::gate::RepeatedHeaders<
                health::Probes<
                    edge::gate::HeadSize<
                        edge::gate::HostCheck<crate::auth::metadata::Documents<Routes>>,
                    >,
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
        // Addresses an operator blocked, before anything else is looked at.
        .layer(layer_fn(|next| edge::gate::BlockCheck {
            next,
            blocks: Arc::clone(&gateway.blocks),
            timeout,
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
        self.clone().serve(req).await
    }

    /// [`App::handle`] on a clone the caller already holds.
    pub async fn serve(mut self, req: Request<Body>) -> Response<Body> {
        match self.service.call(req).await {
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

/// The route lookup (exact path; 404 for none), then the route's own layers
/// ([`route_stack`]). Every answer from a route names it for the audit record.
#[derive(Clone)]
struct Routes {
    routes: Arc<HashMap<String, (audit::layer::Routed, RouteStack)>>,
    timeout: std::time::Duration,
}

impl Routes {
    fn new(gateway: &Arc<Gateway>) -> Self {
        let routes = gateway
            .routes
            .iter()
            .flat_map(|route| {
                let routed = audit::layer::Routed {
                    name: Arc::clone(&route.name),
                    tool_labels: route.audit.tool_labels,
                    arguments: route.audit.arguments,
                    sensitive: Arc::clone(&route.audit.sensitive),
                };
                let stack = route_stack(gateway, route);
                // A legacy client's stream and messages are the route's too.
                let legacy = route.legacy_paths.clone().map(|(stream, messages)| {
                    [
                        (stream, (routed.clone(), stack.clone())),
                        (messages, (routed.clone(), stack.clone())),
                    ]
                });
                std::iter::once((route.path.clone(), (routed, stack)))
                    .chain(legacy.into_iter().flatten())
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
        let Some((routed, stack)) = self.routes.get(req.uri().path()) else {
            let timeout = self.timeout;
            return Box::pin(async move {
                Ok(crate::error::refuse(req, Rejection::NoRoute, timeout).await)
            });
        };
        let routed = routed.clone();
        let answered = stack.clone().oneshot(req);
        Box::pin(async move {
            let mut response = answered.await?;
            response.extensions_mut().insert(routed);
            Ok(response)
        })
    }
}

/// One route's layers, outermost first.
type RouteStack = edge::gate::OriginCheck<RouteChecks>;

/// The layers [`route_stack`] puts below the Origin check and CORS.
type RouteChecks = Optional<Shared<ratelimit::layer::ClientLimits<Authenticated>>, Authenticated>;

type Authenticated =
    Shared<auth::layer::Authenticate<Optional<Shared<legacy::Legacy<Bound>>, Bound>>>;

type Bound = Shared<auth::session::Bind<Parsed>>;

type Parsed = Shared<body::Parse<Optional<Shared<ratelimit::layer::CallerLimits<Valid>>, Valid>>>;

type Valid = Shared<body::Validate<Searched>>;

type Searched = Optional<Shared<search::Search<Authorized>>, Authorized>;

type Authorized = Shared<policy::layer::Authorize<Allowed>>;

type Allowed = Optional<Shared<ratelimit::layer::ToolLimits<Guarded>>, Guarded>;

type Guarded = Optional<Shared<guard::layer::Guard<Rewritten>>, Rewritten>;

type Rewritten = Shared<rewrite::Rewrite<proxy::Forward>>;

/// Builds one route's layers, in the order a request meets them (see
/// `docs/architecture.md` §1).
fn route_stack(gateway: &Arc<Gateway>, route: &Arc<Route>) -> RouteStack {
    let name = &route.name;
    let reading = body::Reading {
        max: route.max_body,
        timeout: route.body_read_timeout,
        parse: route.guard.parse,
    };
    let on_ban: ratelimit::layer::OnBan = {
        let audit = Arc::clone(&gateway.audit);
        Arc::new(move |ip, duration| audit.banned(ip, duration, "authentication_failures"))
    };
    // A layer with nothing to do on this route is left out.
    let limits = &gateway.limits;
    let caller_limited = limits.limits_users() || route.limits.has_route_limit();
    let tool_limited = route.limits.has_tool_limits();
    let limited = limits.limits_clients() || caller_limited || tool_limited;
    let guarded = route.guard.checks_calls();
    let checks = ServiceBuilder::new()
        // Bans and the client address's limit, before any credential is looked at: a
        // flood costs no signature check. Outermost of the limits: it writes them all.
        .layer(layer_fn(|next| {
            optional(limited, next, |next| {
                Shared::new(ratelimit::layer::ClientLimits {
                    next,
                    limits: Arc::clone(limits),
                    route: Arc::clone(name),
                    reading,
                    on_ban: Arc::clone(&on_ban),
                })
            })
        }))
        // Who is calling, before anything that depends on it.
        .layer(layer_fn(|next| {
            Shared::new(auth::layer::Authenticate {
                next,
                auth: Arc::clone(&gateway.auth),
                route_auth: Arc::clone(&route.auth),
                route: Arc::clone(name),
                timeout: route.body_read_timeout,
            })
        }))
        // Legacy HTTP+SSE clients, once known: their messages go down as Streamable
        // HTTP POSTs through everything below.
        .layer(layer_fn(|next| {
            optional(route.legacy_paths.is_some(), next, |next| {
                Shared::new(legacy::Legacy::new(
                    next,
                    &route.path,
                    route.legacy_paths.clone().unwrap_or_default(),
                    route.max_body,
                    route.body_read_timeout,
                ))
            })
        }))
        // The session id is the caller's, before the body is read: a foreign one costs
        // nothing.
        .layer(layer_fn(|next| {
            Shared::new(auth::session::Bind {
                next,
                keys: Arc::clone(&gateway.sessions.keys),
                route: Arc::clone(name),
                max_age: gateway.sessions.max_age,
            })
        }))
        // The body read and parsed once, for every layer below and the record.
        .layer(layer_fn(|next| Shared::new(body::Parse { next, reading })))
        // The caller's and the route's limits, at what the message costs; a body refused
        // below still counts, since refusing it is work too.
        .layer(layer_fn(|next| {
            optional(caller_limited, next, |next| {
                Shared::new(ratelimit::layer::CallerLimits {
                    next,
                    limits: Arc::clone(limits),
                    route: Arc::clone(name),
                    route_limits: Arc::clone(&route.limits),
                })
            })
        }))
        // Not an acceptable MCP message: refused before any rule reads it.
        .layer(layer_fn(|next| Shared::new(body::Validate { next })))
        // Tool search: the catalogue listed as a search tool and a call tool; a call of
        // the call tool goes down as the call it names, for every layer below to judge.
        .layer(layer_fn(|next| match route.tool_search.clone() {
            Some(settings) => Optional::On(Shared::new(search::Search { next, settings })),
            None => Optional::Off(next),
        }))
        // Every call judged by the route's policy, and by what an operator turned off.
        .layer(layer_fn(|next| {
            Shared::new(policy::layer::Authorize {
                next,
                roles: Arc::clone(&gateway.roles),
                policy: Arc::clone(&route.policy),
                switches: Arc::clone(&gateway.switches),
                route: Arc::clone(name),
            })
        }))
        // Per principal and tool, for the calls authorization let through.
        .layer(layer_fn(|next| {
            optional(tool_limited, next, |next| {
                Shared::new(ratelimit::layer::ToolLimits {
                    next,
                    limits: Arc::clone(limits),
                    route: Arc::clone(name),
                    route_limits: Arc::clone(&route.limits),
                })
            })
        }))
        // The tool as approved, its arguments as its schema says.
        .layer(layer_fn(|next| {
            optional(guarded, next, |next| {
                Shared::new(guard::layer::Guard {
                    next,
                    guard: Arc::clone(&route.guard),
                    upstream: Arc::clone(&route.upstream),
                    alerts: Arc::clone(&gateway.audit) as Arc<dyn guard::Alerts>,
                    route: Arc::clone(name),
                })
            })
        }))
        // The last word on what goes up and what comes back: task ids opened and sealed,
        // lists filtered, secrets masked.
        .layer(layer_fn(|next| {
            Shared::new(rewrite::Rewrite {
                next,
                route: Arc::clone(route),
                gateway: Arc::clone(gateway),
            })
        }))
        // The upstream.
        .service(proxy::Forward {
            upstream: Arc::clone(&route.upstream),
            max_body: route.max_body,
            body_timeout: route.body_read_timeout,
        });
    edge::gate::OriginCheck {
        cors: Arc::new(route.cors.layer(checks.clone())),
        next: checks,
        origins: Arc::clone(&route.origins),
        timeout: route.body_read_timeout,
    }
}
