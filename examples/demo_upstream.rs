//! A small MCP server (official Rust SDK, Streamable HTTP) to put behind Portcullis in the
//! quick start: `cargo run --example demo_upstream -- 127.0.0.1:3001`.
//!
//! Tools: `echo` (returns its text), `add` (sums two numbers), `countdown` (streams a
//! progress notification per step, then answers).

use std::time::Duration;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ProgressNotificationParam, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct EchoArgs {
    /// Text to send back.
    text: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct AddArgs {
    a: f64,
    b: f64,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
struct CountdownArgs {
    /// Number of steps (one progress notification every 200 ms).
    steps: u32,
}

#[derive(Debug, Clone)]
struct Demo;

#[tool_router]
impl Demo {
    #[tool(description = "Return the given text unchanged")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(description = "Add two numbers")]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Count down, reporting progress at each step")]
    async fn countdown(
        &self,
        Parameters(CountdownArgs { steps }): Parameters<CountdownArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> String {
        let steps = steps.min(50);
        for done in 1..=steps {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(token) = ctx.meta.get_progress_token() {
                let _ = ctx
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token, f64::from(done))
                            .with_total(f64::from(steps)),
                    )
                    .await;
            }
        }
        format!("liftoff after {steps} steps")
    }
}

#[tool_handler]
impl ServerHandler for Demo {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_instructions("Demo upstream for the Portcullis quick start")
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3001".to_owned());
    let service = StreamableHttpService::new(
        || Ok(Demo),
        LocalSessionManager::default().into(),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    eprintln!("demo MCP server on http://{}/mcp", listener.local_addr()?);
    axum::serve(listener, app).await
}
