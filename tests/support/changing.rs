//! A real rmcp upstream whose tools the test changes while it runs: what it lists is
//! whatever the test last set, and it tells its connected clients when that changes
//! (`notifications/tools/list_changed`). Calls answer with their arguments as text, so a
//! test sees exactly what reached the upstream.

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
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        *self.0.lists.lock().unwrap() += 1;
        Ok(ListToolsResult::with_all_items(
            self.0.tools.lock().unwrap().clone(),
        ))
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
    pub async fn start(tools: Vec<Tool>) -> Self {
        let shared = Arc::new(Shared::default());
        *shared.tools.lock().unwrap() = tools;
        let for_factory = Arc::clone(&shared);
        let service = StreamableHttpService::new(
            move || Ok(ChangingServer(Arc::clone(&for_factory))),
            Arc::new(LocalSessionManager::default()),
            StreamableHttpServerConfig::default().with_legacy_session_mode(true),
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
