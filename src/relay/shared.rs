//! One server for every session of a route (`share = true`), for servers that keep no
//! state per client: each client's session is the gateway's, not the server's.
//!
//! - The first `initialize` starts the server: the gateway sends it (with the client's
//!   parameters) under its own id, keeps the result, and says `notifications/initialized`
//!   itself. Every later `initialize` is answered from what it kept, with a new session.
//! - Requests of all sessions go to the one server with the gateway's ids and progress
//!   tokens (see [`super::channel`]), so no client sees another's answers.
//! - A server that exits fails the requests it had; the next request starts a new one,
//!   initialized as the first was, after a back-off that grows while it keeps crashing.
//!   The sessions stay (their GET streams end; clients open them again).
//! - A session ends on DELETE or after `idle_timeout` without a request or an open
//!   stream; the server stops once no session is left and it has been idle as long.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::{Method, Response};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::channel::{GATEWAY, Process};
use super::{RelayUpstream, event_stream, is_error, is_initialize, json_answer, respond};
use crate::error::Rejection;
use crate::mcp::headers::is_stateless;
use crate::mcp::message::McpRequest;

/// A server that ran this long before it exited crashed once, not again and again.
const HEALTHY: Duration = Duration::from_secs(60);
/// The longest wait before a crashed server is started again.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The id of the gateway's own `initialize`.
const INIT_ID: &str = "\"portcullis-init\"";

/// A route's shared server and the sessions on it.
#[derive(Default)]
pub struct Shared {
    /// The running server and its `initialize` result.
    current: Mutex<Option<Instance>>,
    /// Held while a server starts, so that one starts at a time.
    starting: tokio::sync::Mutex<()>,
    /// The sessions, and when each last made a request.
    sessions: Mutex<HashMap<String, Instant>>,
    restart: Mutex<Restart>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("sessions", &lock(&self.sessions).len())
            .finish_non_exhaustive()
    }
}

#[derive(Clone)]
struct Instance {
    process: Arc<Process>,
    /// The `result` of its `initialize`, as the server wrote it.
    result: Arc<RawValue>,
}

#[derive(Default)]
struct Restart {
    /// The `params` of the first `initialize`, which every new server is sent.
    params: Option<Arc<RawValue>>,
    /// Crashes in a row (each within [`HEALTHY`] of its start).
    crashes: u32,
    /// No new server before then.
    not_before: Option<Instant>,
}

/// Why a session cannot be served now.
enum NotReady {
    Refused(Rejection),
    /// The server answered `initialize` with this error (its `error` member).
    Answered(Box<RawValue>),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// Ends the server at once (the gateway's end).
    pub fn kill(&self) {
        if let Some(current) = lock(&self.current).as_ref() {
            current.process.kill();
        }
    }

    fn touch(&self, session: &str) -> bool {
        match lock(&self.sessions).get_mut(session) {
            Some(last) => {
                *last = Instant::now();
                true
            }
            None => false,
        }
    }

    /// A POST: `initialize` without a session makes one; anything else goes to the
    /// server in its session.
    pub async fn post(
        self: &Arc<Self>,
        relay: &RelayUpstream,
        headers: &http::HeaderMap,
        body: &Bytes,
        parsed: &McpRequest,
        session: Option<String>,
    ) -> Response<Body> {
        let reply_id = parsed.reply_id().cloned();
        let Some(session) = session else {
            if !is_initialize(parsed) && is_stateless(headers) {
                return relay.once(body, parsed).await;
            }
            if !is_initialize(parsed) {
                return Rejection::InvalidMessage(
                    "no session: start one with `initialize` (without Mcp-Session-Id)".into(),
                )
                .into_response(reply_id.as_ref());
            }
            return self.initialize(relay, body).await;
        };
        if !self.touch(&session) {
            return crate::error::session_not_found();
        }
        if parsed
            .messages
            .iter()
            .any(|m| m.method.as_deref() == Some("initialize"))
        {
            return Rejection::InvalidMessage("the session is initialized already".into())
                .into_response(reply_id.as_ref());
        }
        let instance = match self.instance(relay, None).await {
            Ok(instance) => instance,
            Err(NotReady::Refused(rejection)) => return rejection.into_response(reply_id.as_ref()),
            Err(NotReady::Answered(_)) => {
                return Rejection::UpstreamUnavailable.into_response(reply_id.as_ref());
            }
        };
        let process = &instance.process;
        match relay
            .exchange(
                process,
                &session,
                body,
                parsed,
                relay.response_timeout,
                true,
            )
            .await
        {
            Ok(Some(said)) => respond(said, parsed, None),
            Ok(None) => super::accepted(),
            Err(rejection) => rejection.into_response(reply_id.as_ref()),
        }
    }

    /// A new session: the server's `initialize` result (the server started first if
    /// none runs), under the client's id.
    async fn initialize(self: &Arc<Self>, relay: &RelayUpstream, body: &Bytes) -> Response<Body> {
        #[derive(Deserialize)]
        struct Initialize<'a> {
            #[serde(borrow)]
            id: &'a RawValue,
            #[serde(borrow)]
            params: Option<&'a RawValue>,
        }
        let Ok(request) = serde_json::from_slice::<Initialize<'_>>(body) else {
            return Rejection::InvalidMessage("`initialize` needs an id".into())
                .into_response(None);
        };
        let id = crate::mcp::jsonrpc::RequestId::from_raw(request.id);
        let params = request
            .params
            .map_or_else(|| RawValue::from_string("{}".into()), |p| Ok(p.to_owned()));
        let Ok(params) = params else {
            return Rejection::Internal.into_response(Some(&id));
        };
        let answer = match self.instance(relay, Some(Arc::from(params))).await {
            Ok(instance) => format!(
                r#"{{"jsonrpc":"2.0","id":{},"result":{}}}"#,
                request.id.get(),
                instance.result.get()
            ),
            Err(NotReady::Refused(rejection)) => return rejection.into_response(Some(&id)),
            Err(NotReady::Answered(error)) => {
                let answer = format!(
                    r#"{{"jsonrpc":"2.0","id":{},"error":{}}}"#,
                    request.id.get(),
                    error.get()
                );
                return json_answer(super::Delivery::answer(Bytes::from(answer)), None);
            }
        };
        let session = uuid::Uuid::new_v4().simple().to_string();
        lock(&self.sessions).insert(session.clone(), Instant::now());
        tracing::info!(route = %relay.route, sessions = lock(&self.sessions).len(), "A new session on the shared server");
        json_answer(super::Delivery::answer(Bytes::from(answer)), Some(session))
    }

    /// GET (the session's stream) and DELETE (its end).
    pub async fn answer(
        self: &Arc<Self>,
        relay: &RelayUpstream,
        method: &Method,
        session: Option<String>,
    ) -> Response<Body> {
        let Some(session) = session else {
            if *method == Method::GET || *method == Method::DELETE {
                return Rejection::InvalidMessage("a session id (Mcp-Session-Id) is needed".into())
                    .into_response(None);
            }
            return Rejection::MethodNotAllowed.into_response(None);
        };
        match *method {
            Method::GET => {
                if !self.touch(&session) {
                    return crate::error::session_not_found();
                }
                match self.instance(relay, None).await {
                    Ok(instance) => event_stream(
                        super::Events::new(None, instance.process.open_stream(&session)),
                        None,
                    ),
                    Err(NotReady::Refused(rejection)) => rejection.into_response(None),
                    Err(NotReady::Answered(_)) => {
                        Rejection::UpstreamUnavailable.into_response(None)
                    }
                }
            }
            Method::DELETE => {
                if lock(&self.sessions).remove(&session).is_none() {
                    return crate::error::session_not_found();
                }
                if let Some(current) = lock(&self.current).as_ref() {
                    current.process.leave(&session);
                }
                Response::new(Body::empty())
            }
            _ => Rejection::MethodNotAllowed.into_response(None),
        }
    }

    /// The running server, started (and initialized) if none runs. `first` is the
    /// `params` of a new session's `initialize`: the server is started with them unless
    /// one was started before (then with that one's).
    async fn instance(
        self: &Arc<Self>,
        relay: &RelayUpstream,
        first: Option<Arc<RawValue>>,
    ) -> Result<Instance, NotReady> {
        if let Some(current) = self.running() {
            return Ok(current);
        }
        let _one_at_a_time = self.starting.lock().await;
        if let Some(current) = self.running() {
            return Ok(current);
        }
        let params = {
            let restart = lock(&self.restart);
            if let Some(left) = restart
                .not_before
                .and_then(|t| t.checked_duration_since(Instant::now()))
                .filter(|left| !left.is_zero())
            {
                return Err(NotReady::Refused(Rejection::UpstreamRestarting {
                    seconds: left.as_secs().max(1),
                }));
            }
            match restart.params.clone().or(first) {
                Some(params) => params,
                None => return Err(NotReady::Refused(Rejection::UpstreamUnavailable)),
            }
        };
        let weak = Arc::downgrade(self);
        let process = relay
            .launch("shared".to_owned(), true, move |process: &Process| {
                if let Some(shared) = weak.upgrade() {
                    shared.exited(process);
                }
            })
            .map_err(NotReady::Refused)?;
        let started = tokio::time::timeout(relay.start_timeout, start(&process, &params)).await;
        let result = match started {
            Ok(Ok(result)) => result,
            Ok(Err(not_ready)) => {
                process.stop().await;
                self.failed(process.uptime(), &relay.route);
                return Err(not_ready);
            }
            Err(_) => {
                tracing::warn!(route = %relay.route, "The shared stdio server did not answer `initialize` in time");
                process.kill();
                self.failed(process.uptime(), &relay.route);
                return Err(NotReady::Refused(Rejection::UpstreamTimeout));
            }
        };
        let instance = Instance {
            process: Arc::clone(&process),
            result: Arc::from(result),
        };
        lock(&self.restart).params = Some(params);
        *lock(&self.current) = Some(instance.clone());
        tokio::spawn(sweep(
            Arc::downgrade(self),
            Arc::downgrade(&process),
            relay.idle_timeout,
        ));
        tracing::info!(route = %relay.route, "Started the route's shared server");
        Ok(instance)
    }

    fn running(&self) -> Option<Instance> {
        lock(&self.current)
            .as_ref()
            .filter(|i| !i.process.has_exited())
            .cloned()
    }

    /// The server exited: it is forgotten, and if it was not stopped, it crashed.
    fn exited(&self, process: &Process) {
        {
            let mut current = lock(&self.current);
            if current
                .as_ref()
                .is_some_and(|i| std::ptr::eq(Arc::as_ptr(&i.process), process))
            {
                *current = None;
            }
        }
        if !process.was_stopped() {
            self.failed(process.uptime(), process.route());
        }
    }

    /// A server crashed or could not start: the next waits a little longer each time it
    /// happens again soon after a start.
    fn failed(&self, uptime: Duration, route: &str) {
        let mut restart = lock(&self.restart);
        if uptime >= HEALTHY {
            restart.crashes = 0;
        }
        let wait = match restart.crashes {
            0 => Duration::ZERO,
            n => Duration::from_secs(1u64 << (n - 1).min(5)).min(MAX_BACKOFF),
        };
        restart.crashes = restart.crashes.saturating_add(1);
        restart.not_before = Some(Instant::now() + wait);
        tracing::warn!(
            route,
            ?wait,
            crashes = restart.crashes,
            "The shared stdio server is gone; the next request starts a new one"
        );
    }
}

/// Initializes a new server with `params`: its `initialize` result, and
/// `notifications/initialized` said.
async fn start(process: &Process, params: &RawValue) -> Result<Box<RawValue>, NotReady> {
    #[derive(Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        result: Option<&'a RawValue>,
        #[serde(borrow)]
        error: Option<&'a RawValue>,
    }
    let line = format!(
        r#"{{"jsonrpc":"2.0","id":{INIT_ID},"method":"initialize","params":{}}}"#,
        params.get()
    );
    let unavailable = || NotReady::Refused(Rejection::UpstreamUnavailable);
    let mut answers = process
        .post(GATEWAY, vec![Bytes::from(line)], Vec::new())
        .await
        .ok_or_else(unavailable)?;
    // Anything the server says before its answer has no client to go to.
    let answer = loop {
        let delivery = answers.recv().await.ok_or_else(unavailable)?;
        if delivery.last {
            break delivery;
        }
    };
    if answer.failed {
        return Err(unavailable());
    }
    let parsed: Answer<'_> = serde_json::from_slice(&answer.message).map_err(|_| unavailable())?;
    if is_error(&answer.message) {
        let error = parsed.error.ok_or_else(unavailable)?;
        return Err(NotReady::Answered(error.to_owned()));
    }
    let result = parsed.result.ok_or_else(unavailable)?.to_owned();
    let initialized = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#;
    if !process
        .write(Bytes::from_static(initialized.as_bytes()))
        .await
    {
        return Err(unavailable());
    }
    Ok(result)
}

/// Ends the sessions idle for `idle` (no request, nothing waiting, no open stream), and
/// stops the server once none is left and it has been idle as long.
async fn sweep(shared: Weak<Shared>, process: Weak<Process>, idle: Duration) {
    let tick = (idle / 4).clamp(Duration::from_millis(100), Duration::from_secs(15));
    loop {
        tokio::time::sleep(tick).await;
        let (Some(shared), Some(process)) = (shared.upgrade(), process.upgrade()) else {
            return;
        };
        if process.has_exited() {
            return;
        }
        let ended: Vec<String> = {
            let mut sessions = lock(&shared.sessions);
            let ended = sessions
                .iter()
                .filter(|(id, last)| last.elapsed() >= idle && !process.busy(id))
                .map(|(id, _)| id.clone())
                .collect::<Vec<_>>();
            for id in &ended {
                sessions.remove(id);
            }
            ended
        };
        for id in &ended {
            process.leave(id);
        }
        if !ended.is_empty() {
            tracing::info!(route = %process.route(), ended = ended.len(), "Ended idle sessions of the shared server");
        }
        if lock(&shared.sessions).is_empty() && process.idle_for(idle).is_none() {
            tracing::info!(route = %process.route(), "Stopping the idle shared server");
            process.stop().await;
            return;
        }
    }
}
