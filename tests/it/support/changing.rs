//! A real rmcp upstream whose tools the test changes while it runs: what it lists is
//! whatever the test last set, and it tells its connected clients when that changes
//! (`notifications/tools/list_changed`). Calls answer with their arguments as text, so a
//! test sees exactly what reached the upstream. It can list its tools in pages, and answer
//! statelessly in JSON or in an event stream.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorData,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{NotificationContext, Peer, RequestContext};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler};
use serde_json::Value;
use tokio::net::TcpListener;

#[derive(Default)]
struct Shared {
    tools: Mutex<Vec<Tool>>,
    peers: Mutex<Vec<Peer<RoleServer>>>,
    /// Every call that reached the upstream: (tool, arguments).
    calls: Mutex<Vec<(String, Value)>>,
    lists: Mutex<usize>,
    /// Tools per page (`None`: all in one).
    page: Option<usize>,
}

/// How a stateless upstream answers a POST.
#[derive(Debug, Clone, Copy)]
pub enum Answers {
    Json,
    Sse,
}

/// The cursor of the page that starts at tool `from`: opaque to the gateway, which must
/// hand it on as it is.
pub fn cursor(from: usize) -> String {
    format!("c:{from}/+=")
}

#[derive(Clone)]
struct ChangingServer(Arc<Shared>);

impl ServerHandler for ChangingServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tool_list_changed()
                .build(),
        )
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.0.peers.lock().unwrap().push(context.peer);
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        *self.0.lists.lock().unwrap() += 1;
        let tools = self.0.tools.lock().unwrap().clone();
        let Some(page) = self.0.page else {
            return Ok(ListToolsResult::with_all_items(tools));
        };
        let from = match request.and_then(|r| r.cursor) {
            None => 0,
            Some(given) => (0..=tools.len())
                .find(|&from| cursor(from) == given)
                .ok_or_else(|| ErrorData::invalid_params("unknown cursor", None))?,
        };
        let to = (from + page).min(tools.len());
        let mut result = ListToolsResult::with_all_items(tools[from..to].to_vec());
        result.next_cursor = (to < tools.len()).then(|| cursor(to));
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let arguments = Value::Object(request.arguments.clone().unwrap_or_default());
        self.0
            .calls
            .lock()
            .unwrap()
            .push((request.name.to_string(), arguments.clone()));
        Ok(CallToolResponse::Complete(CallToolResult::success(vec![
            ContentBlock::text(arguments.to_string()),
        ])))
    }
}

/// A running changing upstream (stateful Streamable HTTP at `/mcp`).
pub struct ChangingUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ChangingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A tool definition from JSON (`name`, `description`, `inputSchema`, …).
pub fn tool(definition: Value) -> Tool {
    serde_json::from_value(definition).unwrap()
}

impl ChangingUpstream {
    /// A stateful upstream listing `tools` in one answer.
    pub async fn start(tools: Vec<Tool>) -> Self {
        Self::serve(
            tools,
            None,
            StreamableHttpServerConfig::default().with_legacy_session_mode(true),
        )
        .await
    }

    /// A stateless upstream listing `tools` in pages of `page`, answering as `answers`
    /// says.
    pub async fn paged(tools: Vec<Tool>, page: usize, answers: Answers) -> Self {
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(matches!(answers, Answers::Json));
        Self::serve(tools, Some(page), config).await
    }

    async fn serve(
        tools: Vec<Tool>,
        page: Option<usize>,
        config: StreamableHttpServerConfig,
    ) -> Self {
        let shared = Arc::new(Shared {
            tools: Mutex::new(tools),
            page,
            ..Shared::default()
        });
        let for_factory = Arc::clone(&shared);
        let service = StreamableHttpService::new(
            move || Ok(ChangingServer(Arc::clone(&for_factory))),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let app = axum::Router::new().route_service("/mcp", service);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, shared, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Lists `tools` from now on, and tells every initialized client so.
    pub async fn set_tools(&self, tools: Vec<Tool>) {
        *self.shared.tools.lock().unwrap() = tools;
        let peers = self.shared.peers.lock().unwrap().clone();
        for peer in peers {
            let _ = peer.notify_tool_list_changed().await;
        }
    }

    /// The calls that reached the upstream, in order.
    pub fn calls(&self) -> Vec<(String, Value)> {
        self.shared.calls.lock().unwrap().clone()
    }

    /// How many `tools/list` requests it answered.
    pub fn lists(&self) -> usize {
        *self.shared.lists.lock().unwrap()
    }
}
