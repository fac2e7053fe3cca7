//! One running server (a stdio process, or a connection to a legacy HTTP+SSE server): the
//! requests waiting for an answer, and where each message it writes goes.
//!
//! A line the server writes is one JSON-RPC message. A response goes to the POST whose
//! request it answers (by id). A progress notification goes to the POST whose request
//! carried its `progressToken`. A list change goes to every session. Anything else the
//! server says on its own — a request (sampling, elicitation, roots), a log message — goes
//! to a POST of its session still waiting for its answer, as the Streamable HTTP
//! transport lets a server do, else to the session's GET stream, else it waits (a bounded
//! number of messages) for the next GET stream.
//!
//! A server shared by the sessions of a route (`share = true`) is sent the gateway's own
//! request ids and progress tokens ([`remap`]), which are put back into its answers, so
//! that no client sees another's. Its own requests go to the one session with a request
//! waiting; when several are, no one of them can be told to own it: the gateway answers
//! it with an error (or `ping` itself), and never sends it to a client it may not be for.
//! Its answers are taken only from the session it asked.

use std::collections::{HashMap, HashSet, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::process::{Pid, Signal};
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

use super::{Launch, remap};

/// The longest line a server may write (one message); a longer one ends the process.
const MAX_LINE: u64 = 64 * 1024 * 1024;
/// Messages held for a GET stream that is not open; the oldest are dropped beyond.
const BACKLOG: usize = 256;
/// Messages in flight to one client stream before the server is made to wait.
const STREAM_DEPTH: usize = 64;
/// The longest stderr line logged (longer ones are cut).
const MAX_LOG_LINE: usize = 2048;
/// stderr lines logged per second per process; more are counted and dropped.
const LOG_LINES_PER_SECOND: u32 = 50;
/// How long a stopped server has to exit after its input closed, before it is killed.
const GRACE: Duration = Duration::from_secs(2);
/// A comment on a quiet client stream this often: a client that went away is noticed
/// only when its stream is written to (and a GET stream left open by a gone client would
/// keep its server from ever being idle); intermediaries keep the stream open too.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// A shared server's requests waiting for one session's answers; more are refused.
const MAX_ASKED: usize = 256;
/// The session of the gateway's own requests to a shared server (its `initialize`).
pub const GATEWAY: &str = "";

/// A message for a client stream; `last` when it answers the last request its POST sent.
#[derive(Debug)]
pub struct Delivery {
    pub message: Bytes,
    pub last: bool,
    /// The gateway's own error: the server exited before it answered.
    pub failed: bool,
}

impl Delivery {
    /// The one answer of a POST.
    pub fn answer(message: Bytes) -> Self {
        Self {
            message,
            last: true,
            failed: false,
        }
    }

    fn of(message: Bytes) -> Self {
        Self {
            message,
            last: false,
            failed: false,
        }
    }
}

/// A request sent and not answered yet.
struct Pending {
    reply: mpsc::Sender<Delivery>,
    /// The session whose request it is.
    session: Arc<str>,
    /// The id as the client wrote it: for an error when the server exits first, and put
    /// back into the answer when the server was sent another.
    id: Box<RawValue>,
    /// The `progressToken` the server was sent, as canonical JSON.
    progress: Option<String>,
    /// The token as the client wrote it, when the server was sent another.
    client_progress: Option<Box<RawValue>>,
    /// The server was sent the gateway's id, not the client's.
    remapped: bool,
    /// The requests of its POST still waiting (shared by them).
    outstanding: Arc<AtomicUsize>,
}

/// One request of a POST, as [`Process::post`] is told of it.
#[derive(Debug)]
pub struct Request {
    /// The id as the client wrote it.
    pub id: Box<RawValue>,
    /// The `progressToken` it carries, as canonical JSON.
    pub progress: Option<String>,
}

/// What the server may say to one session on its own.
#[derive(Default)]
struct Outlet {
    /// The session's GET stream.
    stream: Option<mpsc::Sender<Delivery>>,
    /// What waits for a GET stream.
    backlog: VecDeque<Bytes>,
    /// A shared server: its requests sent to this session and not answered yet
    /// (canonical ids); the session may answer these and no others.
    asked: HashSet<String>,
    /// A shared server: the resource URIs the session subscribed to.
    subscribed: HashSet<String>,
}

#[derive(Default)]
struct State {
    /// By canonical id as the server was sent it.
    pending: HashMap<String, Pending>,
    /// By session.
    outlets: HashMap<Arc<str>, Outlet>,
    last_active: Option<Instant>,
}

/// Where the messages a server said on its own go.
#[derive(Default)]
struct Routed {
    sends: Vec<(To, Bytes)>,
    /// The gateway's answer to the server.
    to_server: Option<Bytes>,
}

/// Where one message of the server goes.
enum To {
    /// A POST's answer stream (or JSON answer).
    Reply(mpsc::Sender<Delivery>),
    /// Nowhere a client listens now: into a session's backlog.
    Backlog(Arc<str>),
}

impl State {
    /// Where a message the server says to `session` on its own goes: a POST of the
    /// session still waiting for its answer, as the Streamable HTTP transport lets a
    /// server do, else the session's GET stream, else its backlog.
    fn route_to(&mut self, session: &Arc<str>) -> To {
        let waiting = self
            .pending
            .values()
            .find(|p| p.session == *session && !p.reply.is_closed())
            .map(|p| p.reply.clone());
        if let Some(reply) = waiting {
            return To::Reply(reply);
        }
        let outlet = self.outlets.entry(Arc::clone(session)).or_default();
        match outlet.stream.clone().filter(|s| !s.is_closed()) {
            Some(stream) => To::Reply(stream),
            None => To::Backlog(Arc::clone(session)),
        }
    }

    /// The one session a message the server says on its own can be for: the session of
    /// a server of one session; of a shared one, the only session with a request waiting.
    /// `None` when that cannot be told (several clients busy, or none).
    fn attributable(&self, shared: bool) -> Option<Arc<str>> {
        if !shared {
            return self.outlets.keys().next().cloned();
        }
        let mut sessions = self.pending.values().map(|p| &p.session);
        let first = sessions.next()?;
        let one = sessions.all(|s| s == first) && &**first != GATEWAY;
        one.then(|| Arc::clone(first))
    }
}

/// How a session's server is ended at once.
pub enum Ends {
    /// A stdio server: its launcher, which ends the server's process group on SIGTERM.
    Group(Option<Pid>),
    /// A connection: the task that holds it stops when told.
    Connection(Arc<Notify>),
}

impl std::fmt::Debug for Ends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Group(group) => f.debug_tuple("Group").field(group).finish(),
            Self::Connection(_) => f.write_str("Connection"),
        }
    }
}

/// A server: a stdio process or a connection to a legacy HTTP+SSE server, of one
/// session, or shared by every session of its route.
pub struct Process {
    /// The session id it serves (before sealing); a shared server's is its own.
    pub session: String,
    route: Arc<str>,
    ends: Ends,
    /// Shared by several sessions: their ids and progress tokens are replaced by the
    /// gateway's own.
    shared: bool,
    next_id: AtomicU64,
    stdin: Mutex<Option<mpsc::Sender<Bytes>>>,
    state: Mutex<State>,
    started: Instant,
    exited: AtomicBool,
    /// Stopped by the gateway (not crashed).
    stopping: AtomicBool,
    exit: Notify,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("route", &self.route)
            .field("ends", &self.ends)
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Process {
    /// A server whose outgoing messages arrive, one per item, on the returned receiver
    /// (it closes when the server is to stop). Of the one session `session`, or `shared`.
    pub fn new(
        route: Arc<str>,
        session: String,
        shared: bool,
        ends: Ends,
    ) -> (Arc<Self>, mpsc::Receiver<Bytes>) {
        let (to_server, outgoing) = mpsc::channel::<Bytes>(STREAM_DEPTH);
        let mut state = State {
            last_active: Some(Instant::now()),
            ..State::default()
        };
        if !shared {
            state
                .outlets
                .insert(Arc::from(session.as_str()), Outlet::default());
        }
        let process = Arc::new(Self {
            session,
            route,
            ends,
            shared,
            next_id: AtomicU64::new(1),
            stdin: Mutex::new(Some(to_server)),
            state: Mutex::new(state),
            started: Instant::now(),
            exited: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            exit: Notify::new(),
        });
        (process, outgoing)
    }

    /// The server is gone: `on_exit` runs (the route forgets it), then every waiting
    /// request gets its error.
    pub fn ended(&self, on_exit: impl FnOnce(&Process)) {
        self.exited.store(true, Ordering::Release);
        on_exit(self);
        self.fail_pending();
        self.exit.notify_waiters();
    }

    pub fn route(&self) -> &Arc<str> {
        &self.route
    }

    /// How long it has run.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the gateway stopped it (rather than it exiting on its own).
    pub fn was_stopped(&self) -> bool {
        self.stopping.load(Ordering::Acquire)
    }

    /// Starts the launcher with the server of `launch`, for session `session` (or
    /// `shared`); `on_exit` runs once when it has exited (and every waiting request got
    /// its error).
    pub fn start(
        launch: &Launch,
        session: String,
        shared: bool,
        on_exit: impl FnOnce(&Process) + Send + 'static,
    ) -> std::io::Result<Arc<Self>> {
        let mut child = launch.command().spawn()?;
        let group = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .and_then(Pid::from_raw);
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(std::io::Error::other("the server's pipes were not set up"));
        };
        let (process, mut lines) = Self::new(
            Arc::clone(&launch.route),
            session,
            shared,
            Ends::Group(group),
        );
        // Writes each message as one line; the input closes when the sender goes.
        tokio::spawn(async move {
            let mut stdin = stdin;
            while let Some(line) = lines.recv().await {
                if stdin.write_all(&line).await.is_err() || stdin.write_all(b"\n").await.is_err() {
                    break;
                }
            }
        });
        tokio::spawn(log_stderr(Arc::clone(&launch.route), stderr));
        let reader = Arc::clone(&process);
        let read = tokio::spawn(async move { reader.read(stdout).await });
        let waiter = Arc::clone(&process);
        tokio::spawn(async move {
            let status = child.wait().await;
            // What it wrote before it went is still delivered.
            let _ = read.await;
            tracing::info!(route = %waiter.route, status = ?status.ok(), "A stdio server exited");
            waiter.ended(on_exit);
        });
        Ok(process)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn has_exited(&self) -> bool {
        self.exited.load(Ordering::Acquire)
    }

    /// Notes activity now (the idle timeout counts from the last).
    pub fn touch(&self) {
        self.state().last_active = Some(Instant::now());
    }

    /// Whether nothing waits on the server and nothing happened for `idle`.
    pub fn idle_for(&self, idle: Duration) -> Option<Duration> {
        let state = self.state();
        let streaming = state
            .outlets
            .values()
            .any(|o| o.stream.as_ref().is_some_and(|s| !s.is_closed()));
        if !state.pending.is_empty() || streaming {
            return Some(idle);
        }
        let since = state.last_active.map_or(idle, |t| t.elapsed());
        idle.checked_sub(since).filter(|left| !left.is_zero())
    }

    /// Whether `session` has a request waiting or its GET stream open.
    pub fn busy(&self, session: &str) -> bool {
        let state = self.state();
        let streaming = state
            .outlets
            .get(session)
            .and_then(|o| o.stream.as_ref())
            .is_some_and(|s| !s.is_closed());
        streaming || state.pending.values().any(|p| &*p.session == session)
    }

    /// Forgets `session` (a shared server's client ended it): its stream closes.
    pub fn leave(&self, session: &str) {
        self.state().outlets.remove(session);
    }

    /// Sends the messages of one POST of `session` (each as the client wrote it, one per
    /// line); its `requests` are answered on the returned receiver. `None` if the
    /// server is gone.
    pub async fn post(
        &self,
        session: &str,
        messages: Vec<Bytes>,
        requests: Vec<Request>,
    ) -> Option<mpsc::Receiver<Delivery>> {
        let (reply, answers) = mpsc::channel(STREAM_DEPTH);
        let session: Arc<str> = Arc::from(session);
        let (messages, local) = {
            let mut state = self.state();
            if self.shared && &*session != GATEWAY {
                state.outlets.entry(Arc::clone(&session)).or_default();
            }
            let (messages, waits, local) = if self.shared {
                self.remap(&mut state, &session, messages)
            } else {
                let waits = requests
                    .into_iter()
                    .map(|r| Wait {
                        key: canonical(&r.id),
                        id: r.id,
                        progress: r.progress,
                        client_progress: None,
                        remapped: false,
                    })
                    .collect();
                (messages, waits, Vec::new())
            };
            let outstanding = Arc::new(AtomicUsize::new(waits.len() + local.len()));
            for wait in waits {
                state.pending.insert(
                    wait.key,
                    Pending {
                        reply: reply.clone(),
                        session: Arc::clone(&session),
                        id: wait.id,
                        progress: wait.progress,
                        client_progress: wait.client_progress,
                        remapped: wait.remapped,
                        outstanding: Arc::clone(&outstanding),
                    },
                );
            }
            let local: Vec<Delivery> = local
                .into_iter()
                .map(|message| Delivery {
                    message,
                    last: outstanding.fetch_sub(1, Ordering::AcqRel) == 1,
                    failed: false,
                })
                .collect();
            state.last_active = Some(Instant::now());
            (messages, local)
        };
        for delivery in local {
            let _ = reply.try_send(delivery);
        }
        drop(reply);
        let stdin = self
            .stdin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()?;
        for message in messages {
            if stdin.send(message).await.is_err() {
                return None;
            }
        }
        Some(answers)
    }

    /// A shared server: the messages of `session` as the server is to get them — request
    /// ids and progress tokens replaced by the gateway's, a cancellation pointed at the
    /// gateway's id, answers only to the server's requests sent to this session — with
    /// the requests to wait for, and answers the gateway gives itself.
    fn remap(
        &self,
        state: &mut State,
        session: &Arc<str>,
        messages: Vec<Bytes>,
    ) -> (Vec<Bytes>, Vec<Wait>, Vec<Bytes>) {
        let (mut out, mut waits, mut local) = (Vec::new(), Vec::new(), Vec::new());
        for message in messages {
            let Some(parts) = remap::read(&message) else {
                continue;
            };
            match (parts.method.as_deref(), parts.id) {
                (Some(method), Some(id)) => {
                    if method == "resources/unsubscribe" {
                        // Others may still listen: the server's subscription stays, and
                        // this session hears no more of it.
                        if let (Some(uri), Some(outlet)) =
                            (&parts.uri, state.outlets.get_mut(session))
                        {
                            outlet.subscribed.remove(uri.as_str());
                        }
                        local.push(Bytes::from(format!(
                            r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#,
                            id.get()
                        )));
                        continue;
                    }
                    if method == "resources/subscribe"
                        && let Some(uri) = &parts.uri
                    {
                        state
                            .outlets
                            .entry(Arc::clone(session))
                            .or_default()
                            .subscribed
                            .insert(uri.clone());
                    }
                    let n = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let new_id = n.to_string();
                    let new_token = format!("\"portcullis-{n}\"");
                    let mut replacements = vec![(id, new_id.as_bytes())];
                    if let Some(token) = parts.progress {
                        replacements.push((token, new_token.as_bytes()));
                    }
                    let Some(line) = remap::splice(&message, &replacements) else {
                        continue;
                    };
                    waits.push(Wait {
                        key: new_id,
                        id: id.to_owned(),
                        progress: parts.progress.map(|_| new_token.clone()),
                        client_progress: parts.progress.map(RawValue::to_owned),
                        remapped: true,
                    });
                    out.push(line);
                }
                // The gateway said it when it started the server.
                (Some("notifications/initialized"), None) => {}
                (Some("notifications/cancelled"), None) => {
                    let Some(request_id) = parts.request_id else {
                        continue;
                    };
                    let cancelled = canonical(request_id);
                    let ours = state
                        .pending
                        .iter()
                        .find(|(_, p)| p.session == *session && canonical(&p.id) == cancelled);
                    let Some((key, _)) = ours else { continue };
                    let key = key.clone();
                    if let Some(line) = remap::splice(&message, &[(request_id, key.as_bytes())]) {
                        out.push(line);
                    }
                }
                (Some(_), None) => out.push(message.clone()),
                // An answer to the server's request: only to one this session was asked.
                (None, Some(id)) => {
                    let asked = state
                        .outlets
                        .get_mut(session)
                        .is_some_and(|o| o.asked.remove(&canonical(id)));
                    if asked {
                        out.push(message.clone());
                    } else {
                        tracing::warn!(route = %self.route, "A client answered a request the shared server did not send it; dropped");
                    }
                }
                (None, None) => {}
            }
        }
        (out, waits, local)
    }

    /// Opens the GET stream of `session` (a new one replaces the old), with what waited.
    pub fn open_stream(&self, session: &str) -> mpsc::Receiver<Delivery> {
        let (sender, receiver) = mpsc::channel(STREAM_DEPTH + BACKLOG);
        let mut state = self.state();
        let outlet = state.outlets.entry(Arc::from(session)).or_default();
        for message in outlet.backlog.drain(..) {
            let _ = sender.try_send(Delivery::of(message));
        }
        outlet.stream = Some(sender);
        state.last_active = Some(Instant::now());
        receiver
    }

    /// Writes one message of the gateway's own to the server.
    pub async fn write(&self, line: Bytes) -> bool {
        let stdin = self
            .stdin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match stdin {
            Some(stdin) => stdin.send(line).await.is_ok(),
            None => false,
        }
    }

    /// Stops the server: its input closes; if it has not exited within a grace period,
    /// the launcher's group is killed.
    pub async fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
        drop(
            self.stdin
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        // A legacy SSE session ends when its stream is closed.
        if self.has_exited() || matches!(self.ends, Ends::Connection(_)) {
            self.kill();
            return;
        }
        let exited = self.exit.notified();
        if !self.has_exited() {
            let _ = tokio::time::timeout(GRACE, exited).await;
        }
        self.kill();
    }

    /// Ends the server at once: its launcher is told to kill the server's process group
    /// (the server and whatever it started) and reap it; a connection is dropped.
    pub fn kill(&self) {
        if self.has_exited() {
            return;
        }
        match &self.ends {
            // The launcher ends the server's group and reaps it.
            Ends::Group(Some(launcher)) => {
                let _ = rustix::process::kill_process(*launcher, Signal::TERM);
            }
            Ends::Group(None) => {}
            Ends::Connection(stop) => stop.notify_one(),
        }
    }

    /// Reads the server's messages until its output ends.
    async fn read(&self, stdout: tokio::process::ChildStdout) {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = (&mut reader)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await;
            match read {
                Ok(0) => return,
                Ok(_) if line.last() != Some(&b'\n') && line.len() as u64 >= MAX_LINE => {
                    tracing::warn!(route = %self.route, "A stdio server wrote a message longer than 64 MiB; stopping it");
                    self.kill();
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(route = %self.route, error = %e, "Reading a stdio server's output failed");
                    return;
                }
            }
            let text = line.trim_ascii();
            if text.is_empty() {
                continue;
            }
            self.deliver(Bytes::copy_from_slice(text)).await;
        }
    }

    /// Sends one message of the server where it belongs.
    pub async fn deliver(&self, message: Bytes) {
        let Some(parts) = remap::read(&message) else {
            tracing::warn!(route = %self.route, "A stdio server wrote a line that is not a JSON-RPC message; dropped");
            return;
        };
        let (routed, last) = {
            let mut state = self.state();
            state.last_active = Some(Instant::now());
            match (parts.method.as_deref(), parts.id) {
                // A response: to the request it answers.
                (None, Some(id)) => {
                    let Some(pending) = state.pending.remove(&canonical(id)) else {
                        tracing::debug!(route = %self.route, "A stdio server answered a request nobody waits for; dropped");
                        return;
                    };
                    let last = pending.outstanding.fetch_sub(1, Ordering::AcqRel) == 1;
                    let message = if pending.remapped {
                        remap::splice(&message, &[(id, pending.id.get().as_bytes())])
                    } else {
                        Some(message.clone())
                    };
                    let sends = message
                        .map(|m| vec![(To::Reply(pending.reply), m)])
                        .unwrap_or_default();
                    (
                        Routed {
                            sends,
                            to_server: None,
                        },
                        last,
                    )
                }
                (Some(method), id) => (
                    self.route_unsolicited(&mut state, method, id, &parts, &message),
                    false,
                ),
                (None, None) => {
                    tracing::warn!(route = %self.route, "A stdio server wrote a message with neither method nor id; dropped");
                    return;
                }
            }
        };
        if let Some(answer) = routed.to_server {
            self.write(answer).await;
        }
        for (to, message) in routed.sends {
            match to {
                // The client may have gone: then the message has nowhere to go.
                To::Reply(reply) => {
                    let _ = reply
                        .send(Delivery {
                            message,
                            last,
                            failed: false,
                        })
                        .await;
                }
                To::Backlog(session) => self.hold(&session, message),
            }
        }
    }

    /// Where a message the server says on its own (a request, a notification) goes:
    /// progress to the request that carried its token, a list change to every session, a
    /// resource update to the sessions subscribed to it, anything else to the one session
    /// it can be for. A shared server's request that no one session can be told to own
    /// is answered by the gateway (`ping`) or refused: never sent to a client it may not
    /// be for.
    fn route_unsolicited(
        &self,
        state: &mut State,
        method: &str,
        id: Option<&RawValue>,
        parts: &remap::Parts<'_>,
        message: &Bytes,
    ) -> Routed {
        let mut routed = Routed::default();
        let (sends, to_server) = (&mut routed.sends, &mut routed.to_server);
        if method == "notifications/progress"
            && let Some(token) = parts.token
        {
            let key = canonical(token);
            if let Some(p) = state
                .pending
                .values()
                .find(|p| p.progress.as_ref() == Some(&key))
            {
                let message = match &p.client_progress {
                    Some(theirs) => remap::splice(message, &[(token, theirs.get().as_bytes())]),
                    None => Some(message.clone()),
                };
                if let Some(message) = message {
                    sends.push((To::Reply(p.reply.clone()), message));
                }
                return routed;
            }
        }
        if method.ends_with("/list_changed") {
            let sessions: Vec<Arc<str>> = state.outlets.keys().cloned().collect();
            for session in sessions {
                sends.push((state.route_to(&session), message.clone()));
            }
            return routed;
        }
        if self.shared && method == "notifications/resources/updated" {
            let sessions: Vec<Arc<str>> = state
                .outlets
                .iter()
                .filter(|(_, o)| {
                    parts
                        .uri
                        .as_deref()
                        .is_some_and(|uri| o.subscribed.contains(uri))
                })
                .map(|(s, _)| Arc::clone(s))
                .collect();
            for session in sessions {
                sends.push((state.route_to(&session), message.clone()));
            }
            return routed;
        }
        if self.shared && method == "notifications/cancelled" {
            // The server withdrew a request of its own: from the session it was sent to.
            let asked = parts.request_id.map(canonical);
            let session = state.outlets.iter_mut().find_map(|(s, o)| {
                let theirs = asked.as_ref().is_some_and(|a| o.asked.remove(a));
                theirs.then(|| Arc::clone(s))
            });
            if let Some(session) = session {
                sends.push((state.route_to(&session), message.clone()));
            }
            return routed;
        }
        match state.attributable(self.shared) {
            Some(session) => {
                if self.shared
                    && let Some(id) = id
                {
                    let outlet = state.outlets.entry(Arc::clone(&session)).or_default();
                    if outlet.asked.len() >= MAX_ASKED {
                        *to_server = Some(refusal(
                            id,
                            "too many requests wait for this client's answer",
                        ));
                        return routed;
                    }
                    outlet.asked.insert(canonical(id));
                }
                sends.push((state.route_to(&session), message.clone()));
            }
            None => match id {
                Some(id) if method == "ping" => {
                    *to_server = Some(Bytes::from(format!(
                        r#"{{"jsonrpc":"2.0","id":{},"result":{{}}}}"#,
                        id.get()
                    )));
                }
                Some(id) => {
                    tracing::warn!(route = %self.route, method, "A shared stdio server asked something no one client can be told to own; refused");
                    *to_server = Some(refusal(
                        id,
                        "the gateway shares this server among several clients and cannot tell which one this request is for",
                    ));
                }
                None => {
                    tracing::debug!(route = %self.route, method, "A shared stdio server's notification belongs to no one client; dropped");
                }
            },
        }
        routed
    }

    /// Keeps `message` for the next GET stream of `session`.
    fn hold(&self, session: &Arc<str>, message: Bytes) {
        let mut state = self.state();
        let outlet = state.outlets.entry(Arc::clone(session)).or_default();
        if outlet.backlog.len() == BACKLOG {
            outlet.backlog.pop_front();
            tracing::warn!(route = %self.route, "A stdio server's message waited too long for a GET stream; the oldest was dropped");
        }
        outlet.backlog.push_back(message);
    }

    /// Answers every waiting request with an error: the server is gone.
    fn fail_pending(&self) {
        let pending: Vec<Pending> = {
            let mut state = self.state();
            state.outlets.clear();
            state.pending.drain().map(|(_, p)| p).collect()
        };
        for p in pending {
            let id = crate::mcp::jsonrpc::RequestId::from_raw(&p.id);
            let message = crate::error::jsonrpc_error_body(
                Some(&id),
                crate::error::code::UPSTREAM_UNAVAILABLE,
                "the upstream MCP server exited before it answered",
            );
            let last = p.outstanding.fetch_sub(1, Ordering::AcqRel) == 1;
            let _ = p.reply.try_send(Delivery {
                message: Bytes::from(message),
                last,
                failed: true,
            });
        }
    }
}

/// A request as the server is to be sent it, and how its answer is found.
struct Wait {
    key: String,
    id: Box<RawValue>,
    progress: Option<String>,
    client_progress: Option<Box<RawValue>>,
    remapped: bool,
}

/// The gateway's JSON-RPC error answer to a request of the server's (its id as the
/// server wrote it).
fn refusal(id: &RawValue, why: &str) -> Bytes {
    let why = serde_json::Value::from(why);
    Bytes::from(format!(
        r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32603,"message":{why}}}}}"#,
        id.get()
    ))
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// An id as one text whatever its spelling (`1`, `"a"`, `"\u0061"` as `"a"`).
pub fn canonical(id: &RawValue) -> String {
    serde_json::from_str::<serde_json::Value>(id.get())
        .map_or_else(|_| id.get().to_owned(), |value| value.to_string())
}

/// Logs the server's standard error line by line with the route's name: lines cut at
/// [`MAX_LOG_LINE`], at most [`LOG_LINES_PER_SECOND`] a second.
async fn log_stderr(route: Arc<str>, stderr: tokio::process::ChildStderr) {
    let mut reader = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut window = Instant::now();
    let (mut logged, mut dropped) = (0u32, 0u64);
    loop {
        line.clear();
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if window.elapsed() >= Duration::from_secs(1) {
            if dropped > 0 {
                tracing::warn!(route = %route, dropped, "A stdio server wrote more to stderr than is logged; lines dropped");
            }
            window = Instant::now();
            (logged, dropped) = (0, 0);
        }
        if logged >= LOG_LINES_PER_SECOND {
            dropped += 1;
            continue;
        }
        logged += 1;
        let text = String::from_utf8_lossy(line.trim_ascii_end());
        let cut: String = text.chars().take(MAX_LOG_LINE).collect();
        tracing::info!(target: "portcullis::relay::stderr", route = %route, "{cut}");
    }
}

/// Stops its server when dropped (a server of one request, when the answer is over).
#[derive(Debug)]
pub struct StopOnDrop(pub Arc<Process>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let process = Arc::clone(&self.0);
        // Outside a runtime (the gateway's end) the launcher ends with the gateway.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { process.stop().await });
        } else {
            process.kill();
        }
    }
}

/// A client stream of [`Delivery`]s as Server-Sent Events; it ends after the message
/// marked `last` (a POST's stream) or when the server is gone.
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::Receiver<Delivery>,
    first: Option<Delivery>,
    keep_alive: tokio::time::Interval,
    done: bool,
    /// A server of this stream alone, stopped with it.
    _server: Option<StopOnDrop>,
    /// When the server must have said something, and the error sent if it has not.
    failing: Option<(Pin<Box<tokio::time::Sleep>>, Bytes)>,
}

impl Events {
    pub fn new(first: Option<Delivery>, receiver: mpsc::Receiver<Delivery>) -> Self {
        Self {
            receiver,
            first,
            keep_alive: tokio::time::interval_at(
                tokio::time::Instant::now() + KEEP_ALIVE,
                KEEP_ALIVE,
            ),
            done: false,
            _server: None,
            failing: None,
        }
    }

    /// The stream, ended with `error` if nothing arrived by `deadline`.
    pub fn failing_at(mut self, deadline: tokio::time::Instant, error: Bytes) -> Self {
        self.failing = Some((Box::pin(tokio::time::sleep_until(deadline)), error));
        self
    }

    /// The stream, stopping `server` when it is over.
    pub fn holding(mut self, server: StopOnDrop) -> Self {
        self._server = Some(server);
        self
    }
}

impl http_body::Body for Events {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let delivery = match self.first.take() {
            Some(first) => first,
            None => match self.receiver.poll_recv(cx) {
                Poll::Ready(Some(delivery)) => delivery,
                Poll::Ready(None) => {
                    self.done = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    if let Some((deadline, _)) = &mut self.failing
                        && deadline.as_mut().poll(cx).is_ready()
                    {
                        let error = self.failing.take().map(|(_, e)| e).unwrap_or_default();
                        self.done = true;
                        let event = crate::mcp::sse::message_event(&error);
                        return Poll::Ready(Some(Ok(http_body::Frame::data(event))));
                    }
                    if self.keep_alive.poll_tick(cx).is_ready() {
                        let comment = Bytes::from_static(b": keep-alive\n\n");
                        return Poll::Ready(Some(Ok(http_body::Frame::data(comment))));
                    }
                    return Poll::Pending;
                }
            },
        };
        self.keep_alive.reset();
        // The server said something in time.
        self.failing = None;
        self.done = delivery.last;
        let event = crate::mcp::sse::message_event(&delivery.message);
        Poll::Ready(Some(Ok(http_body::Frame::data(event))))
    }
}

#[cfg(test)]
mod tests {
    //! The routing of a shared server's messages, on a [`Process`] without a child: what
    //! the server is sent is read from its input, and what it says is handed to
    //! [`Process::deliver`] as its output reader would.

    use super::*;
    use serde_json::{Value, json};

    fn shared() -> (Arc<Process>, mpsc::Receiver<Bytes>) {
        Process::new(Arc::from("tools"), "shared".into(), true, Ends::Group(None))
    }

    fn line(message: &Value) -> Bytes {
        Bytes::from(message.to_string())
    }

    fn request(id: &Value, progress: Option<&Value>) -> Request {
        Request {
            id: RawValue::from_string(id.to_string()).unwrap(),
            progress: progress.map(Value::to_string),
        }
    }

    fn call(id: &Value, token: &Value) -> Value {
        json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
               "params":{"name":"echo","_meta":{"progressToken":token}}})
    }

    async fn sent(server: &mut mpsc::Receiver<Bytes>) -> Value {
        serde_json::from_slice(&server.recv().await.unwrap()).unwrap()
    }

    async fn next(answers: &mut mpsc::Receiver<Delivery>) -> Value {
        let delivery = tokio::time::timeout(Duration::from_secs(1), answers.recv())
            .await
            .expect("a delivery")
            .expect("the stream is open");
        serde_json::from_slice(&delivery.message).unwrap()
    }

    fn nothing(answers: &mut mpsc::Receiver<Delivery>) -> bool {
        answers.try_recv().is_err()
    }

    /// Two clients using the same id and the same progress token each get their own
    /// answer and progress, under their own id and token.
    #[tokio::test]
    async fn clients_with_the_same_ids_get_their_own_answers_and_progress() {
        let (process, mut server) = shared();
        let (id, token) = (json!(1), json!("t"));
        let mut a = process
            .post(
                "a",
                vec![line(&call(&id, &token))],
                vec![request(&id, Some(&token))],
            )
            .await
            .unwrap();
        let mut b = process
            .post(
                "b",
                vec![line(&call(&id, &token))],
                vec![request(&id, Some(&token))],
            )
            .await
            .unwrap();
        let (to_a, to_b) = (sent(&mut server).await, sent(&mut server).await);
        assert_ne!(to_a["id"], to_b["id"], "the server sees distinct ids");
        let (token_a, token_b) = (
            &to_a["params"]["_meta"]["progressToken"],
            &to_b["params"]["_meta"]["progressToken"],
        );
        assert_ne!(token_a, token_b, "and distinct tokens");
        assert_eq!(to_a["params"]["name"], "echo", "the rest as sent: {to_a}");
        // Progress for b, then b's answer, then a's.
        process
            .deliver(line(
                &json!({"jsonrpc":"2.0","method":"notifications/progress",
                                  "params":{"progressToken":token_b,"progress":1}}),
            ))
            .await;
        process
            .deliver(line(
                &json!({"jsonrpc":"2.0","id":to_b["id"],"result":{"for":"b"}}),
            ))
            .await;
        process
            .deliver(line(
                &json!({"jsonrpc":"2.0","id":to_a["id"],"result":{"for":"a"}}),
            ))
            .await;
        let progress = next(&mut b).await;
        assert_eq!(progress["params"]["progressToken"], "t", "{progress}");
        let answer_b = next(&mut b).await;
        assert_eq!(
            (answer_b["id"].clone(), answer_b["result"]["for"].clone()),
            (json!(1), json!("b"))
        );
        let answer_a = next(&mut a).await;
        assert_eq!(
            (answer_a["id"].clone(), answer_a["result"]["for"].clone()),
            (json!(1), json!("a"))
        );
        assert!(nothing(&mut a), "a never sees b's progress");
    }

    /// A request of the server's while one client waits goes to that client, which alone
    /// may answer it; while two wait, it is refused to the server and reaches neither.
    #[tokio::test]
    async fn a_servers_request_goes_only_to_the_one_client_it_can_be_for() {
        let (process, mut server) = shared();
        let id = json!("x");
        let mut a = process
            .post(
                "a",
                vec![line(&call(&id, &json!(5)))],
                vec![request(&id, None)],
            )
            .await
            .unwrap();
        sent(&mut server).await;
        let ask = json!({"jsonrpc":"2.0","id":100,"method":"sampling/createMessage","params":{}});
        process.deliver(line(&ask)).await;
        assert_eq!(next(&mut a).await["method"], "sampling/createMessage");
        // Another client's answer to it is dropped; a's is passed on.
        let answer = json!({"jsonrpc":"2.0","id":100,"result":{"model":"m"}});
        let _ = process
            .post("b", vec![line(&answer)], Vec::new())
            .await
            .unwrap();
        let _ = process
            .post("a", vec![line(&answer)], Vec::new())
            .await
            .unwrap();
        assert_eq!(sent(&mut server).await, answer);
        assert!(server.try_recv().is_err(), "b's answer was not sent");
        // Now b waits too: the next request is the gateway's to refuse.
        let mut b = process
            .post(
                "b",
                vec![line(&call(&id, &json!(6)))],
                vec![request(&id, None)],
            )
            .await
            .unwrap();
        sent(&mut server).await;
        process
            .deliver(line(
                &json!({"jsonrpc":"2.0","id":101,"method":"roots/list"}),
            ))
            .await;
        let refused = sent(&mut server).await;
        assert_eq!(refused["id"], 101, "{refused}");
        assert_eq!(refused["error"]["code"], -32603, "{refused}");
        // A ping the gateway answers itself.
        process
            .deliver(line(&json!({"jsonrpc":"2.0","id":102,"method":"ping"})))
            .await;
        assert_eq!(
            sent(&mut server).await,
            json!({"jsonrpc":"2.0","id":102,"result":{}})
        );
        assert!(nothing(&mut a) && nothing(&mut b));
    }

    /// A list change reaches every session; a resource update only the sessions that
    /// subscribed to it; an unsubscription leaves the server's subscription to others.
    #[tokio::test]
    async fn list_changes_reach_everyone_and_updates_their_subscribers() {
        let (process, mut server) = shared();
        let mut a = process.open_stream("a");
        let mut b = process.open_stream("b");
        let subscribe = json!({"jsonrpc":"2.0","id":1,"method":"resources/subscribe","params":{"uri":"file:///a"}});
        let mut subscribed = process
            .post("a", vec![line(&subscribe)], vec![request(&json!(1), None)])
            .await
            .unwrap();
        let to_server = sent(&mut server).await;
        process
            .deliver(line(
                &json!({"jsonrpc":"2.0","id":to_server["id"],"result":{}}),
            ))
            .await;
        assert_eq!(next(&mut subscribed).await["id"], 1);
        process
            .deliver(line(
                &json!({"jsonrpc":"2.0","method":"notifications/tools/list_changed"}),
            ))
            .await;
        assert_eq!(
            next(&mut a).await["method"],
            "notifications/tools/list_changed"
        );
        assert_eq!(
            next(&mut b).await["method"],
            "notifications/tools/list_changed"
        );
        let updated = json!({"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///a"}});
        process.deliver(line(&updated)).await;
        assert_eq!(next(&mut a).await, updated);
        assert!(nothing(&mut b), "b did not subscribe");
        let unsubscribe = json!({"jsonrpc":"2.0","id":2,"method":"resources/unsubscribe","params":{"uri":"file:///a"}});
        let mut unsubscribed = process
            .post(
                "a",
                vec![line(&unsubscribe)],
                vec![request(&json!(2), None)],
            )
            .await
            .unwrap();
        assert_eq!(
            next(&mut unsubscribed).await,
            json!({"jsonrpc":"2.0","id":2,"result":{}})
        );
        assert!(server.try_recv().is_err(), "the gateway answered it");
        process.deliver(line(&updated)).await;
        assert!(nothing(&mut a), "a unsubscribed");
    }

    /// A client's cancellation names the server's id of its own request; one of another
    /// client's request, or of no request, is not sent.
    #[tokio::test]
    async fn a_cancellation_points_at_the_clients_own_request_only() {
        let (process, mut server) = shared();
        let id = json!(9);
        let _a = process
            .post(
                "a",
                vec![line(&call(&id, &json!(1)))],
                vec![request(&id, None)],
            )
            .await
            .unwrap();
        let to_server = sent(&mut server).await;
        let cancel =
            json!({"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9}});
        let _ = process
            .post("b", vec![line(&cancel)], Vec::new())
            .await
            .unwrap();
        let _ = process
            .post("a", vec![line(&cancel)], Vec::new())
            .await
            .unwrap();
        let cancelled = sent(&mut server).await;
        assert_eq!(
            cancelled["params"]["requestId"], to_server["id"],
            "{cancelled}"
        );
        assert!(server.try_recv().is_err(), "b's cancellation was not sent");
    }

    /// A server of one session is sent its messages as they came; what it says on its
    /// own goes to its session.
    #[tokio::test]
    async fn a_server_of_one_session_is_sent_what_the_client_wrote() {
        let (process, mut server) =
            Process::new(Arc::from("tools"), "s".into(), false, Ends::Group(None));
        let message = call(&json!(1), &json!("t"));
        let mut answers = process
            .post(
                "s",
                vec![line(&message)],
                vec![request(&json!(1), Some(&json!("t")))],
            )
            .await
            .unwrap();
        assert_eq!(sent(&mut server).await, message);
        let mut stream = process.open_stream("s");
        process
            .deliver(line(
                &json!({"jsonrpc":"2.0","method":"notifications/message","params":{}}),
            ))
            .await;
        assert_eq!(next(&mut answers).await["method"], "notifications/message");
        assert!(nothing(&mut stream), "to the waiting POST first");
    }
}
