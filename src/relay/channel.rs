//! One running stdio server: its launcher and pipes, the requests waiting for an answer,
//! and where each message it writes goes.
//!
//! A line the server writes is one JSON-RPC message. A response goes to the POST whose
//! request it answers (by id). A progress notification goes to the POST whose request
//! carried its `progressToken`. Anything else the server says on its own — a request
//! (sampling, elicitation, roots), a log message — goes to a POST still waiting for its
//! answer, as the Streamable HTTP transport lets a server do, else to the session's GET
//! stream, else it waits (a bounded number of messages) for the next GET stream.

use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustix::process::{Pid, Signal};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Notify, mpsc};

use super::Launch;

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

/// A message for a client stream; `last` when it answers the last request its POST sent.
#[derive(Debug)]
pub struct Delivery {
    pub message: Bytes,
    pub last: bool,
    /// The gateway's own error: the server exited before it answered.
    pub failed: bool,
}

/// A request sent and not answered yet.
struct Pending {
    reply: mpsc::Sender<Delivery>,
    /// The id as the client wrote it, for an error when the server exits first.
    id: Box<RawValue>,
    /// The `progressToken` the request carried, as canonical JSON.
    progress: Option<String>,
    /// The requests of its POST still waiting (shared by them).
    outstanding: Arc<AtomicUsize>,
}

#[derive(Default)]
struct State {
    /// By canonical id (`serde_json` text of the id's value).
    pending: HashMap<String, Pending>,
    stream: Option<mpsc::Sender<Delivery>>,
    backlog: VecDeque<Bytes>,
    last_active: Option<Instant>,
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

/// A session's server: a stdio process, or a connection to a legacy HTTP+SSE server.
pub struct Process {
    /// The session id it serves (before sealing).
    pub session: String,
    route: Arc<str>,
    ends: Ends,
    stdin: Mutex<Option<mpsc::Sender<Bytes>>>,
    state: Mutex<State>,
    exited: AtomicBool,
    exit: Notify,
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("route", &self.route)
            .field("ends", &self.ends)
            .finish_non_exhaustive()
    }
}

impl Process {
    /// A session's server whose outgoing messages arrive, one per item, on the returned
    /// receiver (it closes when the server is to stop).
    pub fn new(route: Arc<str>, session: String, ends: Ends) -> (Arc<Self>, mpsc::Receiver<Bytes>) {
        let (to_server, outgoing) = mpsc::channel::<Bytes>(STREAM_DEPTH);
        let process = Arc::new(Self {
            session,
            route,
            ends,
            stdin: Mutex::new(Some(to_server)),
            state: Mutex::new(State {
                last_active: Some(Instant::now()),
                ..State::default()
            }),
            exited: AtomicBool::new(false),
            exit: Notify::new(),
        });
        (process, outgoing)
    }

    /// The server is gone: every waiting request gets its error, then `on_exit` runs.
    pub fn ended(&self, on_exit: impl FnOnce(&Process)) {
        self.exited.store(true, Ordering::Release);
        self.fail_pending();
        self.exit.notify_waiters();
        on_exit(self);
    }

    pub fn route(&self) -> &Arc<str> {
        &self.route
    }

    /// Starts the launcher with the server of `launch`, for session `session`; `on_exit`
    /// runs once when it has exited (and every waiting request got its error).
    pub fn start(
        launch: &Launch,
        session: String,
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
        let (process, mut lines) =
            Self::new(Arc::clone(&launch.route), session, Ends::Group(group));
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
        let streaming = state.stream.as_ref().is_some_and(|s| !s.is_closed());
        if !state.pending.is_empty() || streaming {
            return Some(idle);
        }
        let since = state.last_active.map_or(idle, |t| t.elapsed());
        idle.checked_sub(since).filter(|left| !left.is_zero())
    }

    /// Sends the messages of one POST (each as the client wrote it, one per line); the
    /// requests among them (`requests`: id and progress token) are answered on the
    /// returned receiver. `None` if the server is gone.
    pub async fn post(
        &self,
        messages: Vec<Bytes>,
        requests: Vec<(Box<RawValue>, Option<String>)>,
    ) -> Option<mpsc::Receiver<Delivery>> {
        let (reply, answers) = mpsc::channel(STREAM_DEPTH);
        if !requests.is_empty() {
            let outstanding = Arc::new(AtomicUsize::new(requests.len()));
            let mut state = self.state();
            for (id, progress) in requests {
                let key = canonical(&id);
                state.pending.insert(
                    key,
                    Pending {
                        reply: reply.clone(),
                        id,
                        progress,
                        outstanding: Arc::clone(&outstanding),
                    },
                );
            }
            state.last_active = Some(Instant::now());
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

    /// Opens the session's GET stream (a new one replaces the old), with what waited.
    pub fn open_stream(&self) -> mpsc::Receiver<Delivery> {
        let (sender, receiver) = mpsc::channel(STREAM_DEPTH + BACKLOG);
        let mut state = self.state();
        for message in state.backlog.drain(..) {
            let _ = sender.try_send(Delivery {
                message,
                last: false,
                failed: false,
            });
        }
        state.stream = Some(sender);
        state.last_active = Some(Instant::now());
        receiver
    }

    /// Stops the server: its input closes; if it has not exited within a grace period,
    /// the launcher's group is killed.
    pub async fn stop(&self) {
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
        /// What routing needs of a message.
        #[derive(Deserialize)]
        struct Head<'a> {
            #[serde(borrow)]
            id: Option<&'a RawValue>,
            method: Option<std::borrow::Cow<'a, str>>,
            #[serde(borrow)]
            params: Option<&'a RawValue>,
        }
        #[derive(Deserialize)]
        struct Progress<'a> {
            #[serde(borrow, rename = "progressToken")]
            progress_token: Option<&'a RawValue>,
        }
        let Ok(head) = serde_json::from_slice::<Head<'_>>(&message) else {
            tracing::warn!(route = %self.route, "A stdio server wrote a line that is not a JSON-RPC message; dropped");
            return;
        };
        let (to, last) = {
            let mut state = self.state();
            state.last_active = Some(Instant::now());
            match (&head.method, head.id) {
                // A response: to the request it answers.
                (None, Some(id)) => match state.pending.remove(&canonical(id)) {
                    Some(pending) => {
                        let last = pending.outstanding.fetch_sub(1, Ordering::AcqRel) == 1;
                        (Some(pending.reply), last)
                    }
                    None => {
                        tracing::debug!(route = %self.route, "A stdio server answered a request nobody waits for; dropped");
                        return;
                    }
                },
                (Some(method), _) => {
                    let token = (method == "notifications/progress")
                        .then_some(head.params)
                        .flatten()
                        .and_then(|p| serde_json::from_str::<Progress<'_>>(p.get()).ok())
                        .and_then(|p| p.progress_token.map(canonical));
                    let by_token = token.and_then(|token| {
                        state
                            .pending
                            .values()
                            .find(|p| p.progress.as_ref() == Some(&token))
                            .map(|p| p.reply.clone())
                    });
                    let waiting = || {
                        state
                            .pending
                            .values()
                            .find(|p| !p.reply.is_closed())
                            .map(|p| p.reply.clone())
                    };
                    let open_stream = || state.stream.clone().filter(|s| !s.is_closed());
                    match by_token.or_else(waiting).or_else(open_stream) {
                        Some(to) => (Some(to), false),
                        None => {
                            if state.backlog.len() == BACKLOG {
                                state.backlog.pop_front();
                                tracing::warn!(route = %self.route, "A stdio server's message waited too long for a GET stream; the oldest was dropped");
                            }
                            state.backlog.push_back(message);
                            return;
                        }
                    }
                }
                (None, None) => {
                    tracing::warn!(route = %self.route, "A stdio server wrote a message with neither method nor id; dropped");
                    return;
                }
            }
        };
        if let Some(to) = to {
            // The client may have gone: then the message has nowhere to go.
            let _ = to
                .send(Delivery {
                    message,
                    last,
                    failed: false,
                })
                .await;
        }
    }

    /// Answers every waiting request with an error: the server is gone.
    fn fail_pending(&self) {
        let pending: Vec<Pending> = {
            let mut state = self.state();
            state.stream = None;
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

/// A client stream of [`Delivery`]s as Server-Sent Events; it ends after the message
/// marked `last` (a POST's stream) or when the server is gone.
#[derive(Debug)]
pub struct Events {
    receiver: mpsc::Receiver<Delivery>,
    first: Option<Delivery>,
    keep_alive: tokio::time::Interval,
    done: bool,
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
        }
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
                    if self.keep_alive.poll_tick(cx).is_ready() {
                        let comment = Bytes::from_static(b": keep-alive\n\n");
                        return Poll::Ready(Some(Ok(http_body::Frame::data(comment))));
                    }
                    return Poll::Pending;
                }
            },
        };
        self.keep_alive.reset();
        self.done = delivery.last;
        let event = crate::mcp::sse::message_event(&delivery.message);
        Poll::Ready(Some(Ok(http_body::Frame::data(event))))
    }
}
