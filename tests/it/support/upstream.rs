//! Real upstream MCP servers (the official Rust SDK, `rmcp`) served in-process on
//! `127.0.0.1:0`, in each Streamable HTTP mode, behind an axum middleware that records
//! every request the upstream receives and notices when a response stream is dropped.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use http_body::Frame;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ProgressNotificationParam, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::{
    EventStore, EventStoreError, EventStream, ServerSseMessage,
};
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

/// How the upstream speaks Streamable HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Stateless, answers a plain request with `application/json`
    /// (`with_json_response(true)`, `with_legacy_session_mode(false)`).
    Json,
    /// Stateless, answers every request with an event stream; dropping the stream cancels
    /// the request.
    Sse,
    /// Handshake era with sessions (`LocalSessionManager`, legacy session mode): `initialize`
    /// returns an `Mcp-Session-Id`, GET streams and DELETE work.
    Stateful,
}

/// What one request looked like when it reached the upstream, and what it was answered.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub version: http::Version,
    pub headers: HeaderMap,
    /// The request body exactly as it arrived.
    pub body: Bytes,
    /// Status and headers of the upstream's answer, once it started.
    pub response: Option<(StatusCode, HeaderMap)>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn response_header(&self, name: &str) -> Option<&str> {
        self.response.as_ref()?.1.get(name)?.to_str().ok()
    }

    pub fn status(&self) -> Option<StatusCode> {
        self.response.as_ref().map(|(status, _)| *status)
    }

    /// The JSON-RPC message in the body, if it holds one.
    pub fn message(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The JSON-RPC method of the body, if it holds a request or notification.
    pub fn rpc_method(&self) -> Option<String> {
        Some(self.message()?.get("method")?.as_str()?.to_owned())
    }
}

/// Shared between the upstream and the test: what happened on the upstream side.
#[derive(Debug)]
pub struct Probe {
    seen: Mutex<Vec<Seen>>,
    seen_count: watch::Sender<usize>,
    calls: Mutex<HashMap<String, usize>>,
    /// Number of `stall` calls that started.
    stall_started: watch::Sender<usize>,
    /// Number of `stall` calls whose request cancellation token fired.
    stall_cancelled: watch::Sender<usize>,
    /// Number of response bodies dropped before they ended (the reader went away).
    bodies_dropped: watch::Sender<usize>,
    /// Releases one waiting `gated` call.
    gate: Notify,
    /// Bodies of the requests the gateway sent on its own account.
    gateway_own: Mutex<Vec<Bytes>>,
}

impl Probe {
    fn new() -> Self {
        Self {
            seen: Mutex::new(Vec::new()),
            seen_count: watch::Sender::new(0),
            calls: Mutex::new(HashMap::new()),
            stall_started: watch::Sender::new(0),
            stall_cancelled: watch::Sender::new(0),
            bodies_dropped: watch::Sender::new(0),
            gate: Notify::new(),
            gateway_own: Mutex::new(Vec::new()),
        }
    }

    /// The bodies of the requests the gateway made on its own (not a client's): its own
    /// session's `initialize`, `notifications/initialized`, `tools/list` pages and
    /// `DELETE`.
    pub fn gateway_requests(&self) -> Vec<Bytes> {
        self.gateway_own.lock().unwrap().clone()
    }

    /// Every request the upstream received, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The requests whose body carried JSON-RPC method `method`.
    pub fn seen_rpc(&self, method: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.rpc_method().as_deref() == Some(method))
            .collect()
    }

    /// The most recent request.
    pub fn last_seen(&self) -> Seen {
        self.seen()
            .pop()
            .expect("the upstream has received no request")
    }

    /// How many times tool `name` was called.
    pub fn calls(&self, name: &str) -> usize {
        self.calls.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// Releases one `gated` call (or the next one, if none is waiting yet).
    pub fn release_gate(&self) {
        self.gate.notify_one();
    }

    pub async fn stall_started(&self, at_least: usize) {
        wait_count(&self.stall_started, at_least).await;
    }

    pub async fn stall_cancelled(&self, at_least: usize) {
        wait_count(&self.stall_cancelled, at_least).await;
    }

    pub fn stall_cancelled_count(&self) -> usize {
        *self.stall_cancelled.borrow()
    }

    pub async fn body_dropped(&self, at_least: usize) {
        wait_count(&self.bodies_dropped, at_least).await;
    }

    pub fn bodies_dropped_count(&self) -> usize {
        *self.bodies_dropped.borrow()
    }

    /// Waits until the upstream has received at least `n` requests.
    pub async fn requests(&self, n: usize) {
        wait_count(&self.seen_count, n).await;
    }

    fn count_call(&self, name: &str) {
        *self
            .calls
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default() += 1;
    }

    fn record_request(&self, parts: &http::request::Parts, body: Bytes) -> usize {
        let mut seen = self.seen.lock().unwrap();
        seen.push(Seen {
            method: parts.method.clone(),
            path: parts.uri.path().to_owned(),
            version: parts.version,
            headers: parts.headers.clone(),
            body,
            response: None,
        });
        let n = seen.len();
        drop(seen);
        self.seen_count.send_replace(n);
        n - 1
    }

    fn record_response(&self, index: usize, response: &Response) {
        if let Some(entry) = self.seen.lock().unwrap().get_mut(index) {
            entry.response = Some((response.status(), response.headers().clone()));
        }
    }
}

async fn wait_count(counter: &watch::Sender<usize>, at_least: usize) {
    let mut rx = counter.subscribe();
    // The sender lives in the probe, which outlives every waiter.
    let _ = rx.wait_for(|n| *n >= at_least).await;
}

/// Deterministic text of `len` bytes for the `large` tool, so a test can rebuild it.
pub fn large_text(len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let mut out = String::with_capacity(len);
    let mut state: u32 = 0x9e37_79b9;
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        out.push(char::from(ALPHABET[(state % 64) as usize]));
    }
    out
}

/// The SSE bytes `/fixture/sse` serves, split where they are written: comments, `retry:`,
/// `id:`, `event:`, multi-line `data:`, CRLF line ends, a field without a space, and an
/// event split across writes.
pub const FIXTURE_SSE_CHUNKS: &[&str] = &[
    ": upstream comment\n\n",
    "retry: 2500\n\n",
    "id: 41\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"one\"}}\n\n",
    "id: 42\r\nevent: custom\r\ndata: line one\r\ndata: line two\r\n\r\n",
    "data: split across ",
    "two writes\n\n",
    "id:43\ndata:no-space\n\n",
    ":\n\n",
    "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n",
];

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct EchoArgs {
    pub text: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct ProgressArgs {
    /// Number of progress notifications; the first is sent at once.
    pub steps: u32,
    /// Pause between notifications, in milliseconds.
    pub interval_ms: u64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
pub struct LargeArgs {
    /// Length of the returned text in bytes.
    pub bytes: usize,
}

/// The test server's tools. One instance per session (or per stateless request), all
/// sharing the same [`Probe`].
#[derive(Debug, Clone)]
pub struct TestServer {
    probe: Arc<Probe>,
}

async fn progress(ctx: &RequestContext<RoleServer>, done: u32, total: Option<u32>) -> bool {
    let Some(token) = ctx.meta.get_progress_token() else {
        return true;
    };
    let mut param = ProgressNotificationParam::new(token, f64::from(done));
    if let Some(total) = total {
        param = param.with_total(f64::from(total));
    }
    ctx.peer.notify_progress(param).await.is_ok()
}

#[tool_router]
impl TestServer {
    #[tool(description = "Return the given text unchanged")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        self.probe.count_call("echo");
        text
    }

    #[tool(description = "Send `steps` progress notifications, `interval_ms` apart, then answer")]
    async fn progress(
        &self,
        Parameters(ProgressArgs { steps, interval_ms }): Parameters<ProgressArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> String {
        self.probe.count_call("progress");
        for done in 1..=steps {
            if done > 1 {
                tokio::time::sleep(Duration::from_millis(interval_ms)).await;
            }
            progress(&ctx, done, Some(steps)).await;
        }
        format!("finished {steps} steps")
    }

    #[tool(description = "Return a deterministic text of the given length")]
    fn large(&self, Parameters(LargeArgs { bytes }): Parameters<LargeArgs>) -> String {
        self.probe.count_call("large");
        large_text(bytes)
    }

    #[tool(description = "Send one progress notification, then wait until the test releases it")]
    async fn gated(&self, ctx: RequestContext<RoleServer>) -> String {
        self.probe.count_call("gated");
        progress(&ctx, 1, None).await;
        self.probe.gate.notified().await;
        "released".to_owned()
    }

    #[tool(description = "Send one progress notification, then wait until cancelled")]
    async fn stall(&self, ctx: RequestContext<RoleServer>) -> String {
        self.probe.count_call("stall");
        progress(&ctx, 1, None).await;
        self.probe.stall_started.send_modify(|n| *n += 1);
        tokio::select! {
            () = ctx.ct.cancelled() => {
                self.probe.stall_cancelled.send_modify(|n| *n += 1);
                "cancelled".to_owned()
            }
            () = tokio::time::sleep(Duration::from_secs(600)) => "never cancelled".to_owned(),
        }
    }
}

#[tool_handler]
impl ServerHandler for TestServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Portcullis integration-test upstream")
    }
}

/// Knobs for one upstream.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub mode: Mode,
    /// SSE keep-alive comment interval (rmcp's default is 15 s). hyper notices that a
    /// reader went away only when it next writes, so disconnect tests shorten it.
    pub keep_alive: Option<Duration>,
    /// Where to listen (an upstream that comes back where one was); any free port if not.
    pub at: Option<SocketAddr>,
    /// Sessions keep every event they send ([`MemoryEvents`]): a stream resumed with
    /// `Last-Event-ID` replays what came after it, answers to POSTs included.
    pub resumable: bool,
}

impl Options {
    pub fn new(mode: Mode) -> Self {
        Self {
            mode,
            keep_alive: Some(Duration::from_secs(15)),
            at: None,
            resumable: false,
        }
    }

    pub fn at(mut self, addr: SocketAddr) -> Self {
        self.at = Some(addr);
        self
    }

    pub fn resumable(mut self) -> Self {
        self.resumable = true;
        self
    }
}

/// Every event the upstream's sessions send, by stream, in order: rmcp replays from it
/// the events after a `Last-Event-ID`.
#[derive(Debug, Default)]
pub struct MemoryEvents {
    events: Mutex<Vec<(String, String, ServerSseMessage)>>,
}

#[async_trait::async_trait]
impl EventStore for MemoryEvents {
    async fn store_event(
        &self,
        stream_id: &str,
        event: &ServerSseMessage,
    ) -> Result<String, EventStoreError> {
        let mut events = self.events.lock().unwrap();
        let id = format!("e{}", events.len());
        let mut kept = event.clone();
        kept.event_id = Some(id.clone());
        events.push((stream_id.to_owned(), id.clone(), kept));
        Ok(id)
    }

    async fn replay_events_after(
        &self,
        last_event_id: &str,
    ) -> Result<EventStream, EventStoreError> {
        let events = self.events.lock().unwrap();
        let Some(at) = events.iter().position(|(_, id, _)| id == last_event_id) else {
            return Err(format!("no event {last_event_id}").into());
        };
        let stream = events[at].0.clone();
        let after: Vec<ServerSseMessage> = events[at + 1..]
            .iter()
            .filter(|(of, _, _)| *of == stream)
            .map(|(_, _, event)| event.clone())
            .collect();
        Ok(Box::pin(futures::stream::iter(after)))
    }
}

/// A running upstream: the rmcp server on `/mcp`, the SSE fixture on `/fixture/sse`.
#[derive(Debug)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub probe: Arc<Probe>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Upstream {
    pub async fn start(mode: Mode) -> Self {
        Self::start_with(Options::new(mode)).await
    }

    pub async fn start_with(options: Options) -> Self {
        let probe = Arc::new(Probe::new());
        let base = StreamableHttpServerConfig::default().with_sse_keep_alive(options.keep_alive);
        let config = match options.mode {
            Mode::Json => base
                .with_legacy_session_mode(false)
                .with_json_response(true),
            Mode::Sse => base
                .with_legacy_session_mode(false)
                .with_json_response(false),
            Mode::Stateful => base.with_legacy_session_mode(true),
        };
        let for_factory = Arc::clone(&probe);
        let service = StreamableHttpService::new(
            move || {
                Ok(TestServer {
                    probe: Arc::clone(&for_factory),
                })
            },
            Arc::new(if options.resumable {
                LocalSessionManager::default().with_event_store(Arc::new(MemoryEvents::default()))
            } else {
                LocalSessionManager::default()
            }),
            config,
        );
        let app = axum::Router::new()
            .route_service("/mcp", service)
            .route("/fixture/sse", axum::routing::any(fixture_sse))
            .layer(middleware::from_fn_with_state(Arc::clone(&probe), record));
        let at = options
            .at
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0)));
        let listener = TcpListener::bind(at).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, probe, task }
    }

    /// The MCP endpoint, as the gateway's route points at it.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    pub fn fixture_url(&self) -> String {
        format!("http://{}/fixture/sse", self.addr)
    }

    /// `host:port`, as the upstream expects it in `Host`.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }
}

async fn fixture_sse() -> Response {
    let chunks = FIXTURE_SSE_CHUNKS
        .iter()
        .map(|c| Ok::<_, std::convert::Infallible>(Bytes::from_static(c.as_bytes())));
    let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    response
}

/// Records the request (head and body), then the response head, and watches the response
/// body.
async fn record(State(probe): State<Arc<Probe>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    // The gateway's own requests (it lists the tools itself to check arguments) are kept
    // apart: tests count what clients caused.
    let own = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|agent| agent.starts_with("portcullis/"));
    if own {
        probe.gateway_own.lock().unwrap().push(body.clone());
        return next.run(Request::from_parts(parts, Body::from(body))).await;
    }
    let index = probe.record_request(&parts, body.clone());
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    probe.record_response(index, &response);
    let (parts, body) = response.into_parts();
    let body = Body::new(WatchedBody {
        inner: body,
        finished: false,
        probe,
    });
    Response::from_parts(parts, body)
}

pin_project_lite::pin_project! {
    /// A response body that counts itself in [`Probe::bodies_dropped`] when it is dropped
    /// before its end: the connection it was being written to went away.
    struct WatchedBody {
        #[pin]
        inner: Body,
        finished: bool,
        probe: Arc<Probe>,
    }

    impl PinnedDrop for WatchedBody {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if !*this.finished {
                this.probe.bodies_dropped.send_modify(|n| *n += 1);
            }
        }
    }
}

impl http_body::Body for WatchedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) {
            *this.finished = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A port nothing listens on (bound, then released): connecting is refused.
pub async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    addr
}

/// A TCP server that accepts connections and never writes a byte; dropped, it closes them.
#[derive(Debug)]
pub struct SilentServer {
    pub addr: SocketAddr,
    /// How many connections it has accepted.
    pub accepted: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl SilentServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, accepted) = watch::channel(0);
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
                tx.send_replace(held.len());
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }
}

/// A TCP server that reads the request head and closes the connection without answering.
#[derive(Debug)]
pub struct HangUpServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for HangUpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl HangUpServer {
    pub async fn start() -> Self {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
                drop(stream);
            }
        });
        Self { addr, task }
    }
}

/// What a [`RawServer`] does with the requests on each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawBehaviour {
    /// Answers every request and keeps the connection open.
    KeepAlive,
    /// Answers each request as if the connection stayed open (no `Connection: close`),
    /// then closes it: what an upstream does when its keep-alive timeout strikes between
    /// two requests.
    CloseAfterAnswer,
    /// Answers the first request of a connection; reads the second one in full, then
    /// closes the connection without a word: the race in which an upstream closes an idle
    /// connection just as a request was sent on it.
    HangUpOnSecond,
    /// Holds every answer until this many requests have arrived in all.
    AnswerWhen(usize),
}

/// A hand-written HTTP/1.1 upstream on raw TCP, for exact control over its connections.
/// Answers `{"jsonrpc":"2.0","id":<request id>,"result":{}}`.
#[derive(Debug)]
pub struct RawServer {
    pub addr: SocketAddr,
    /// Connections accepted.
    pub accepted: watch::Receiver<usize>,
    /// Requests read in full.
    pub requests: watch::Receiver<usize>,
    /// Connections the gateway closed (the server read end-of-file between requests).
    pub closed_by_peer: watch::Receiver<usize>,
    /// Connections the server closed itself.
    pub closed_by_server: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawServer {
    pub async fn start(behaviour: RawBehaviour) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = watch::Sender::new(0usize);
        let requests = Arc::new(watch::Sender::new(0usize));
        let closed_by_peer = Arc::new(watch::Sender::new(0usize));
        let closed_by_server = Arc::new(watch::Sender::new(0usize));
        let (accepted_rx, requests_rx) = (accepted.subscribe(), requests.subscribe());
        let (peer_rx, server_rx) = (closed_by_peer.subscribe(), closed_by_server.subscribe());
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                accepted.send_modify(|n| *n += 1);
                let requests = Arc::clone(&requests);
                let closed_by_peer = Arc::clone(&closed_by_peer);
                let closed_by_server = Arc::clone(&closed_by_server);
                connections.spawn(async move {
                    let peer_closed = raw_connection(stream, behaviour, &requests).await;
                    let counter = if peer_closed {
                        closed_by_peer
                    } else {
                        closed_by_server
                    };
                    counter.send_modify(|n| *n += 1);
                });
            }
        });
        Self {
            addr,
            accepted: accepted_rx,
            requests: requests_rx,
            closed_by_peer: peer_rx,
            closed_by_server: server_rx,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }
}

/// Waits until `counter` reaches `at_least`.
pub async fn reached(counter: &watch::Receiver<usize>, at_least: usize) {
    let mut counter = counter.clone();
    counter.wait_for(|n| *n >= at_least).await.unwrap();
}

/// Serves one connection; `true` if the peer closed it, `false` if the server did.
async fn raw_connection(
    mut stream: tokio::net::TcpStream,
    behaviour: RawBehaviour,
    requests: &watch::Sender<usize>,
) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = Vec::new();
    let mut served = 0;
    loop {
        // One request: the head, then a `Content-Length` body.
        let head_end = loop {
            if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while buffer.len() < head_end + length {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return true,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        }
        let body: Vec<u8> = buffer.drain(..head_end + length).skip(head_end).collect();
        requests.send_modify(|n| *n += 1);
        served += 1;
        if behaviour == RawBehaviour::HangUpOnSecond && served == 2 {
            return false;
        }
        if let RawBehaviour::AnswerWhen(all) = behaviour {
            let mut count = requests.subscribe();
            let _ = count.wait_for(|n| *n >= all).await;
        }
        let id = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("id").cloned())
            .unwrap_or(serde_json::Value::Null);
        let answer = serde_json::json!({"jsonrpc": "2.0", "id": id, "result": {}}).to_string();
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{answer}",
            answer.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() {
            return true;
        }
        if behaviour == RawBehaviour::CloseAfterAnswer {
            return false;
        }
    }
}
