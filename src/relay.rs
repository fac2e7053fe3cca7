//! stdio upstreams: MCP servers the gateway runs itself (`upstream = { command = … }`) and
//! speaks to in newline-delimited JSON-RPC on their standard input and output. Towards
//! the client the route is a Streamable HTTP endpoint like any other — the same layers
//! above, the same answers — so this module is one more [`Upstream`]: it answers the HTTP
//! requests that reach the bottom of the path the way a Streamable HTTP server would.
//!
//! - One process per session: `initialize` without a session starts one (at most
//!   `max_processes` live on the route: 503 past it), whose session id the session binding
//!   above seals for the caller, so no other caller can reach it. DELETE stops it; so does
//!   `idle_timeout` without a request or an open stream, and the gateway's end.
//! - A POST with requests is answered with the response itself (`application/json`) when
//!   that is the first thing the server says about it, or else with an event stream of
//!   everything that belongs to it (see [`process`]); a POST of notifications and
//!   responses only gets 202. GET opens the session's stream.
//! - Every server starts through the launcher (`portcullis stdio-exec`, [`exec`]) with only
//!   the environment the route declares (plus `PATH`, `HOME`, `LANG`): never the gateway's
//!   own, which holds its secrets. The launcher ends the server's whole process group when
//!   the server exits, when it is stopped and when the gateway dies, even by SIGKILL.

pub mod channel;
pub mod exec;
mod remap;
mod shared;
pub mod sse;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::value::RawValue;

use crate::body::Received;
use crate::config::{ConfigError, Site};
use crate::error::Rejection;
use crate::mcp::headers::{MCP_SESSION_ID, is_stateless};
use crate::mcp::message::McpRequest;
use crate::upstream::{Answered, Upstream};
use channel::{Delivery, Events, Process, Request, StopOnDrop};
use tokio::sync::mpsc;

/// How long a POST's answer waits for the server's first word before it becomes an event
/// stream (a slow tool's answer, then, arrives on it).
const EARLY_STREAM: Duration = Duration::from_secs(1);

/// The environment a server gets besides what its route declares, and the values used
/// when the gateway has none.
const BASE_ENV: &[(&str, &str)] = &[
    ("PATH", "/usr/local/bin:/usr/bin:/bin"),
    ("HOME", "/"),
    ("LANG", "C.UTF-8"),
];

/// How one route's servers are started.
pub struct Launch {
    pub route: Arc<str>,
    /// The gateway's own program, run as `stdio-exec`.
    launcher: PathBuf,
    /// The launcher's options (isolation), then `--`, the command and its arguments.
    arguments: Vec<String>,
    /// The whole environment of the server.
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

impl std::fmt::Debug for Launch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The environment holds secrets: names only.
        let names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Launch")
            .field("route", &self.route)
            .field("arguments", &self.arguments)
            .field("env", &names)
            .field("cwd", &self.cwd)
            .finish()
    }
}

impl Launch {
    /// The start of `site`'s servers, through the launcher at `launcher`.
    pub fn new(site: &Site<'_>, launcher: PathBuf) -> Self {
        let up = site.upstream;
        let mut arguments = vec![
            "stdio-exec".to_owned(),
            "--parent".to_owned(),
            std::process::id().to_string(),
        ];
        if up.no_new_privs {
            arguments.push("--no-new-privs".to_owned());
        }
        let limits = &up.limits;
        let options = [
            ("--user", up.user.map(u64::from)),
            ("--group", up.group.map(u64::from)),
            ("--address-space", limits.address_space.map(|b| b.0)),
            (
                "--cpu-time",
                limits.cpu_time.map(|d| d.get().as_secs().max(1)),
            ),
            ("--open-files", limits.open_files),
            ("--processes", limits.processes),
        ];
        for (flag, value) in options {
            if let Some(value) = value {
                arguments.push(flag.to_owned());
                arguments.push(value.to_string());
            }
        }
        arguments.push("--".to_owned());
        arguments.push(up.command.clone().unwrap_or_default());
        arguments.extend(up.args.iter().cloned());
        Self {
            route: Arc::from(&*site.name),
            launcher,
            arguments,
            env: environment(up, |name| std::env::var(name).ok()),
            cwd: up.cwd.clone(),
        }
    }

    /// The launcher's command: a group of its own, nothing of the gateway's environment.
    fn command(&self) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(&self.launcher);
        command
            .args(&self.arguments)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            // Apart from the gateway's: a Ctrl-C at a terminal reaches the gateway, which
            // stops its servers itself.
            .process_group(0);
        if let Some(cwd) = &self.cwd {
            command.current_dir(cwd);
        }
        command
    }
}

/// A server's whole environment: [`BASE_ENV`] (the gateway's value when it has one) and
/// what the route declares, which wins.
fn environment(
    up: &crate::config::UpstreamConfig,
    gateway: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = BASE_ENV
        .iter()
        .filter(|(name, _)| !up.env.contains_key(*name))
        .map(|(name, default)| {
            let value = gateway(name).unwrap_or_else(|| (*default).to_owned());
            ((*name).to_owned(), value)
        })
        .collect();
    env.extend(
        up.env
            .iter()
            .map(|(name, value)| (name.clone(), value.expose().to_owned())),
    );
    env
}

/// `portcullis check` of a stdio route: its command can be run (found on the server's
/// `PATH` when it is a bare name; a file that may be executed), its `cwd` is a directory.
pub fn check(config: &crate::config::Config, read: &crate::config::Read<'_>) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    for (position, route) in config.routes.iter().enumerate() {
        for site in route.sites() {
            problems.extend(check_site(site.upstream, &site.at(&read.route(position))));
        }
    }
    problems
}

fn check_site(up: &crate::config::UpstreamConfig, at: &str) -> Vec<ConfigError> {
    let mut problems = Vec::new();
    let Some(command) = &up.command else {
        return problems;
    };
    if let Some(cwd) = &up.cwd
        && !cwd.is_dir()
    {
        problems.push(ConfigError::new(
            format!("{at}.upstream.cwd"),
            format!("`{}` is not a directory", cwd.display()),
        ));
    }
    let env = environment(up, |name| std::env::var(name).ok());
    let path = env
        .iter()
        .find(|(name, _)| name == "PATH")
        .map_or("", |(_, value)| value.as_str());
    if let Err(problem) = find_program(command, path, up.cwd.as_deref()) {
        problems.push(ConfigError::new(format!("{at}.upstream.command"), problem));
    }
    problems
}

/// Where `command` is: a path (relative to `cwd`) or a name looked up in `path`.
fn find_program(command: &str, path: &str, cwd: Option<&Path>) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |file: &Path| {
        std::fs::metadata(file).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if command.contains('/') {
        let file = match cwd {
            Some(cwd) => cwd.join(command),
            None => PathBuf::from(command),
        };
        return if executable(&file) {
            Ok(file)
        } else if file.exists() {
            Err(format!("`{command}` is not an executable file"))
        } else {
            Err(format!("`{command}` does not exist"))
        };
    }
    std::env::split_paths(path)
        .map(|dir| dir.join(command))
        .find(|file| executable(file))
        .ok_or_else(|| {
            format!("`{command}` is not found on the server's PATH ({path}); give its full path, or set upstream.env.PATH")
        })
}

/// How a session's server is had.
#[derive(Debug)]
enum Opener {
    /// A child process.
    Stdio(Launch),
    /// A connection to a legacy HTTP+SSE server.
    Sse(Arc<sse::SseTarget>),
}

/// The upstream of a route whose server is not a Streamable HTTP endpoint — a stdio
/// server, or one of the legacy HTTP+SSE transport: the gateway keeps one server (process
/// or connection) per session and answers the client as a Streamable HTTP server would.
pub struct RelayUpstream {
    route: Arc<str>,
    opener: Opener,
    sessions: Arc<Mutex<HashMap<String, Arc<Process>>>>,
    /// Live processes, those starting included.
    live: Arc<AtomicUsize>,
    max_processes: usize,
    start_timeout: Duration,
    response_timeout: Duration,
    idle_timeout: Duration,
    /// One server for every session of the route (`share = true`).
    shared: Option<Arc<shared::Shared>>,
}

impl std::fmt::Debug for RelayUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayUpstream")
            .field("opener", &self.opener)
            .field("live", &self.live.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl RelayUpstream {
    /// The upstream of a stdio `site`, starting servers through `launcher`.
    pub fn stdio(site: &Site<'_>, launcher: PathBuf) -> Self {
        Self::with(site, Opener::Stdio(Launch::new(site, launcher)))
    }

    /// The upstream of a `route` whose server at `url` speaks the legacy HTTP+SSE
    /// transport.
    pub fn sse(site: &Site<'_>, url: &url::Url) -> Result<Self, crate::tls::TlsError> {
        let target = sse::SseTarget::new(site, url)?;
        Ok(Self::with(site, Opener::Sse(Arc::new(target))))
    }

    fn with(site: &Site<'_>, opener: Opener) -> Self {
        let up = site.upstream;
        Self {
            route: Arc::from(&*site.name),
            opener,
            sessions: Arc::default(),
            live: Arc::default(),
            max_processes: up.max_processes,
            start_timeout: up.start_timeout.get(),
            response_timeout: up.response_timeout.get(),
            idle_timeout: up.idle_timeout.get(),
            shared: up.share.then(Arc::default),
        }
    }

    /// The number of live servers.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    fn session(&self, id: &str) -> Option<Arc<Process>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .filter(|p| !p.has_exited())
            .cloned()
    }

    async fn answer(&self, parts: http::request::Parts, body: Bytes) -> Response<Body> {
        let session = parts
            .headers
            .get(MCP_SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if let Some(shared) = &self.shared
            && parts.method != Method::POST
        {
            return shared.answer(self, &parts.method, session).await;
        }
        match (&parts.method, session) {
            (&Method::POST, session) => self.post(&parts, body, session).await,
            (&Method::GET, Some(session)) => match self.session(&session) {
                Some(process) => event_stream(
                    Events::new(None, process.open_stream(&process.session)),
                    None,
                ),
                None => crate::error::session_not_found(),
            },
            (&Method::DELETE, Some(session)) => {
                let process = self
                    .sessions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&session);
                match process {
                    Some(process) => {
                        process.stop().await;
                        Response::new(Body::empty())
                    }
                    None => crate::error::session_not_found(),
                }
            }
            // A stream or an end needs a session.
            (&Method::GET | &Method::DELETE, None) => {
                Rejection::InvalidMessage("a session id (Mcp-Session-Id) is needed".into())
                    .into_response(None)
            }
            _ => Rejection::MethodNotAllowed.into_response(None),
        }
    }

    async fn post(
        &self,
        parts: &http::request::Parts,
        body: Bytes,
        session: Option<String>,
    ) -> Response<Body> {
        // The route's parse, or for the gateway's own requests (the guard listing tools),
        // which do not come down the route, one here.
        let parsed_here;
        let parsed = match parts
            .extensions
            .get::<Arc<Received>>()
            .and_then(|r| r.message())
        {
            Some(parsed) => parsed,
            None => match McpRequest::parse(&body) {
                Ok(parsed) => {
                    parsed_here = parsed;
                    &parsed_here
                }
                Err(_) => return Rejection::Parse.into_response(None),
            },
        };
        if let Some(shared) = &self.shared {
            return shared
                .post(self, &parts.headers, &body, parsed, session)
                .await;
        }
        let reply_id = parsed.reply_id().cloned();
        let (process, started) = match session {
            Some(session) => match self.session(&session) {
                Some(process) => (process, false),
                None => return crate::error::session_not_found(),
            },
            None => {
                if !is_initialize(parsed) && is_stateless(&parts.headers) {
                    return self.once(&body, parsed).await;
                }
                if !is_initialize(parsed) {
                    return Rejection::InvalidMessage(
                        "no session: start one with `initialize` (without Mcp-Session-Id)".into(),
                    )
                    .into_response(reply_id.as_ref());
                }
                match self.start() {
                    Ok(process) => (process, true),
                    Err(rejection) => return rejection.into_response(reply_id.as_ref()),
                }
            }
        };
        process.touch();
        let wait = if started {
            self.start_timeout
        } else {
            self.response_timeout
        };
        let said = match self
            .exchange(&process, &process.session, &body, parsed, wait, !started)
            .await
        {
            Ok(Some(said)) => said,
            Ok(None) => return accepted(),
            Err(rejection) => {
                if started && rejection == Rejection::UpstreamTimeout {
                    self.forget(&process);
                    process.kill();
                }
                return rejection.into_response(reply_id.as_ref());
            }
        };
        match said {
            // `initialize` answered with an error: no session was made.
            Said::First(first, _) if started && is_error(&first.message) => {
                self.forget(&process);
                process.stop().await;
                json_answer(first, None)
            }
            said => {
                let session = started.then(|| process.session.clone());
                respond(said, parsed, session)
            }
        }
    }

    /// A request of a revision without sessions (2026-07-28): a server of its own, sent
    /// the request as it came — a server of that revision serves it without a handshake —
    /// and stopped once the answer (or the stream of it) is over. Callers never share a
    /// server, as they never share a session's.
    async fn once(&self, body: &Bytes, parsed: &McpRequest) -> Response<Body> {
        let reply_id = parsed.reply_id().cloned();
        let session = uuid::Uuid::new_v4().simple().to_string();
        let process = match self.launch(session.clone(), false, |_: &Process| {}) {
            Ok(process) => process,
            Err(rejection) => return rejection.into_response(reply_id.as_ref()),
        };
        let stop = StopOnDrop(Arc::clone(&process));
        match self
            .exchange(&process, &session, body, parsed, self.start_timeout, true)
            .await
        {
            Ok(Some(said)) => respond_holding(said, parsed, None, Some(stop)),
            Ok(None) => accepted(),
            Err(rejection) => rejection.into_response(reply_id.as_ref()),
        }
    }

    /// Sends the messages of one POST of `session` to `process`; the first thing the
    /// server says about them, and the receiver of the rest, within `wait`. `None` when
    /// they hold no request (nothing will be said). `early`: when the server has said
    /// nothing after [`EARLY_STREAM`], the answer becomes a stream at once (see [`Said`]).
    async fn exchange(
        &self,
        process: &Process,
        session: &str,
        body: &Bytes,
        parsed: &McpRequest,
        wait: Duration,
        early: bool,
    ) -> Result<Option<Said>, Rejection> {
        let lines = one_per_line(body, parsed);
        let requests: Vec<Request> = parsed
            .messages
            .iter()
            .filter(|m| m.method.is_some())
            .filter_map(|m| {
                let id = m.id.as_ref()?.as_raw().to_owned();
                let progress = m
                    .params()
                    .and_then(|p| p.get("_meta"))
                    .and_then(|meta| meta.get("progressToken"))
                    .map(serde_json::Value::to_string);
                Some(Request { id, progress })
            })
            .collect();
        let expects_answer = !requests.is_empty();
        let deadline = tokio::time::Instant::now() + wait;
        // A server that does not read its input holds the message back: within the same
        // deadline as its answer.
        let posted =
            tokio::time::timeout_at(deadline, process.post(session, lines, requests)).await;
        let mut answers = match posted {
            Ok(Some(answers)) => answers,
            Ok(None) => return Err(Rejection::UpstreamUnavailable),
            Err(_) => {
                tracing::warn!(route = %self.route, ?wait, "A stdio server did not take a message in time");
                return Err(Rejection::UpstreamTimeout);
            }
        };
        if !expects_answer {
            return Ok(None);
        }
        let head_by = if early {
            deadline.min(tokio::time::Instant::now() + EARLY_STREAM)
        } else {
            deadline
        };
        let first = match tokio::time::timeout_at(head_by, answers.recv()).await {
            Ok(Some(first)) => first,
            Ok(None) => return Err(Rejection::UpstreamUnavailable),
            Err(_) if head_by < deadline => return Ok(Some(Said::Later(answers, deadline))),
            Err(_) => {
                tracing::warn!(route = %self.route, ?wait, "A stdio server did not answer in time");
                return Err(Rejection::UpstreamTimeout);
            }
        };
        // The server exited before it said anything about this POST.
        if first.failed && first.last {
            tracing::warn!(route = %self.route, "A stdio server exited before it answered (its stderr is in the log)");
            return Err(Rejection::UpstreamUnavailable);
        }
        Ok(Some(Said::First(first, answers)))
    }

    /// Starts a server for a new session, if the route may run one more.
    fn start(&self) -> Result<Arc<Process>, Rejection> {
        let session = uuid::Uuid::new_v4().simple().to_string();
        let sessions: Weak<Mutex<HashMap<String, Arc<Process>>>> = Arc::downgrade(&self.sessions);
        let on_exit = move |process: &Process| {
            if let Some(sessions) = sessions.upgrade() {
                sessions
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .remove(&process.session);
            }
        };
        let process = self.launch(session.clone(), false, on_exit)?;
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(session, Arc::clone(&process));
        tokio::spawn(reap_when_idle(Arc::downgrade(&process), self.idle_timeout));
        tracing::info!(route = %self.route, live = self.live(), "Started a server for a new session");
        Ok(process)
    }

    /// Starts a server (for `session`, or `shared`), if the route may run one more;
    /// `on_exit` runs when it has exited.
    fn launch(
        &self,
        session: String,
        shared: bool,
        on_exit: impl FnOnce(&Process) + Send + 'static,
    ) -> Result<Arc<Process>, Rejection> {
        let admitted = self
            .live
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |live| {
                (live < self.max_processes).then_some(live + 1)
            });
        if admitted.is_err() {
            tracing::warn!(route = %self.route, max = self.max_processes, "A new session was refused: the route runs as many stdio servers as it may");
            return Err(Rejection::UpstreamBusy);
        }
        let live = Arc::clone(&self.live);
        let on_exit = move |process: &Process| {
            live.fetch_sub(1, Ordering::AcqRel);
            on_exit(process);
        };
        let started = match &self.opener {
            Opener::Stdio(launch) => Process::start(launch, session, shared, on_exit),
            Opener::Sse(target) => Ok(target.connect(session, shared, on_exit)),
        };
        started.map_err(|e| {
            self.live.fetch_sub(1, Ordering::AcqRel);
            tracing::error!(route = %self.route, error = %e, "A stdio server could not be started");
            Rejection::UpstreamUnavailable
        })
    }

    fn forget(&self, process: &Process) {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&process.session);
    }
}

/// Once no route uses it (a reload changed the route's upstream, or removed the route)
/// and every request that was using it has ended: its servers are stopped.
impl Drop for RelayUpstream {
    fn drop(&mut self) {
        let sessions = self
            .sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !sessions.is_empty() {
            tracing::info!(route = %self.route, sessions = sessions.len(), "Stopping the servers of an upstream no longer used");
        }
        for process in sessions.values() {
            process.kill();
        }
        if let Some(shared) = &self.shared {
            shared.kill();
        }
    }
}

impl Upstream for RelayUpstream {
    fn send(&self, parts: http::request::Parts, body: Bytes) -> Answered<'_> {
        Box::pin(self.answer(parts, body))
    }

    fn ready(
        &self,
        _timeout: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + '_>> {
        // Servers start on demand; the launcher is the gateway itself.
        Box::pin(std::future::ready(true))
    }

    fn servers(&self) -> Option<usize> {
        Some(self.live())
    }
}

/// Stops `process` once it has been idle for `idle` (no request, no waiting answer, no
/// open stream).
async fn reap_when_idle(process: Weak<Process>, idle: Duration) {
    loop {
        let left = match process.upgrade() {
            Some(p) if !p.has_exited() => p.idle_for(idle),
            _ => return,
        };
        match left {
            Some(left) => tokio::time::sleep(left).await,
            None => {
                if let Some(p) = process.upgrade() {
                    tracing::info!(route = %p.route(), "Stopping an idle server");
                    p.stop().await;
                }
                return;
            }
        }
    }
}

/// Each message of the body as one line for the server: a single message as the client
/// wrote it, without its line breaks (whitespace in JSON); a batch's messages one by one.
fn one_per_line(body: &Bytes, parsed: &McpRequest) -> Vec<Bytes> {
    let flatten = |text: &[u8]| -> Bytes {
        if text.contains(&b'\n') || text.contains(&b'\r') {
            Bytes::from(
                text.iter()
                    .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
                    .collect::<Vec<u8>>(),
            )
        } else {
            Bytes::copy_from_slice(text)
        }
    };
    if !parsed.batch {
        return vec![flatten(body.trim_ascii())];
    }
    match serde_json::from_slice::<Vec<&RawValue>>(body) {
        Ok(items) => items.iter().map(|m| flatten(m.get().as_bytes())).collect(),
        Err(_) => Vec::new(),
    }
}

/// Whether a message is a JSON-RPC error response.
fn is_error(message: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    struct Error<'a> {
        #[serde(borrow)]
        error: Option<&'a RawValue>,
    }
    serde_json::from_slice::<Error<'_>>(message).is_ok_and(|m| m.error.is_some())
}

/// Whether the body is a lone `initialize` request (one that starts a session).
fn is_initialize(parsed: &McpRequest) -> bool {
    !parsed.batch
        && parsed
            .messages
            .first()
            .is_some_and(|m| m.method.as_deref() == Some("initialize") && m.id.is_some())
}

/// What a server said of a POST's requests by the time the answer's head is due.
enum Said {
    /// Its first message, and the receiver of the rest.
    First(Delivery, mpsc::Receiver<Delivery>),
    /// Nothing yet, after [`EARLY_STREAM`]: the answer is an event stream at once (so that
    /// the layers above, a legacy client's 202 among them, need not wait for a slow
    /// tool), which gets the gateway's timeout error if the server still says nothing by
    /// this deadline.
    Later(mpsc::Receiver<Delivery>, tokio::time::Instant),
}

/// 202: the POST held no request.
fn accepted() -> Response<Body> {
    let mut accepted = Response::new(Body::empty());
    *accepted.status_mut() = StatusCode::ACCEPTED;
    accepted
}

/// The answer to a POST with requests: the response itself when it is the first and only
/// thing the server says about a lone request, else an event stream of all it says.
fn respond(said: Said, parsed: &McpRequest, session: Option<String>) -> Response<Body> {
    respond_holding(said, parsed, session, None)
}

/// [`respond`], the stream stopping `server` when it ends (a server of one request).
fn respond_holding(
    said: Said,
    parsed: &McpRequest,
    session: Option<String>,
    server: Option<StopOnDrop>,
) -> Response<Body> {
    let events = match said {
        Said::First(first, _) if first.last && !parsed.batch => {
            return json_answer(first, session);
        }
        Said::First(first, answers) => Events::new(Some(first), answers),
        Said::Later(answers, deadline) => {
            let id = parsed.reply_id();
            let timeout = Rejection::UpstreamTimeout;
            let error = crate::error::jsonrpc_error_body(id, timeout.code(), &timeout.to_string());
            Events::new(None, answers).failing_at(deadline, Bytes::from(error))
        }
    };
    let events = match server {
        Some(server) => events.holding(server),
        None => events,
    };
    event_stream(events, session)
}

fn json_answer(delivery: Delivery, session: Option<String>) -> Response<Body> {
    let mut response = Response::new(Body::from(delivery.message));
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    with_session(response, session)
}

fn event_stream(events: Events, session: Option<String>) -> Response<Body> {
    let mut response = Response::new(Body::new(events));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_session(response, session)
}

fn with_session(mut response: Response<Body>, session: Option<String>) -> Response<Body> {
    if let Some(value) = session.and_then(|s| HeaderValue::from_str(&s).ok()) {
        response.headers_mut().insert(MCP_SESSION_ID, value);
    }
    response
}
