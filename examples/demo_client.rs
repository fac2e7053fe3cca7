//! Lists and calls tools through Portcullis with the official Rust MCP SDK client:
//! `cargo run --example demo_client -- http://127.0.0.1:8080/demo/mcp`
//!
//! It authenticates with the quick start's API key (`config/quickstart.toml`), or with the
//! token in `PORTCULLIS_TOKEN` when set (an API key or a JWT).

use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // reqwest is built without a default TLS provider; use the same one as the gateway.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "http://127.0.0.1:8080/demo/mcp".to_owned());

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

    let mut args = serde_json::Map::new();
    args.insert("text".into(), "hello through Portcullis".into());
    let result = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args))
        .await?;
    println!(
        "tools/call echo → {}",
        serde_json::to_string(&result.content)?
    );

    client.cancel().await?;
    Ok(())
}
