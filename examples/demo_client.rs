//! Lists and calls tools through Portcullis with the official Rust MCP SDK client:
//! `cargo run --example demo_client -- http://127.0.0.1:8080/demo/mcp [TOOL [ARGUMENTS]]`
//!
//! It lists the tools the caller may see, then calls `echo` (or TOOL with ARGUMENTS, a JSON
//! object) and prints the result, or the error the gateway or the server answered (and
//! exits 1). It authenticates with the quick start's API key (`config/quickstart.toml`),
//! or with the token in `PORTCULLIS_TOKEN` when set (an API key or a JWT).

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // reqwest is built without a default TLS provider; use the same one as the gateway.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8080/demo/mcp".to_owned());
    let tool = args.next().unwrap_or_else(|| "echo".to_owned());
    let arguments: serde_json::Map<String, serde_json::Value> = match args.next() {
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| format!("ARGUMENTS must be a JSON object: {e}"))?,
        None => serde_json::json!({ "text": "hello through Portcullis" })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };

    let token =
        std::env::var("PORTCULLIS_TOKEN").unwrap_or_else(|_| "quickstart-demo-key".to_owned());
    let config = StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(token);
    let client = ().serve(StreamableHttpClientTransport::from_config(config)).await?;
    println!("connected to {url}");

    let tools = client.list_all_tools().await?;
    println!("tools/list → {} tools", tools.len());
    for tool in &tools {
        println!(
            "  - {}: {}",
            tool.name,
            tool.description.as_deref().unwrap_or("")
        );
    }

    let result = client
        .call_tool(CallToolRequestParams::new(tool.clone()).with_arguments(arguments))
        .await;
    client.cancel().await?;
    match result {
        Ok(result) => {
            println!(
                "tools/call {tool} → {}",
                serde_json::to_string(&result.content)?
            );
            Ok(())
        }
        Err(rmcp::ServiceError::McpError(error)) => {
            println!(
                "tools/call {tool} → error {}: {}",
                error.code.0, error.message
            );
            std::process::exit(1)
        }
        Err(e) => Err(e.into()),
    }
}
