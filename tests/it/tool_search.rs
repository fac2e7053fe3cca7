//! Tool search (`[routes.tool_search]`): the route lists a search tool and a call tool
//! instead of its catalogue; a search runs over the tools the caller may call, across
//! every page of every upstream; the call tool's calls are judged, limited and recorded
//! as the calls they name. Real rmcp upstreams, driven by the rmcp client.

use crate::support;

use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::upstream::{Mode, Upstream};

fn arguments(value: Value) -> serde_json::Map<String, Value> {
    value.as_object().cloned().unwrap_or_default()
}

fn found(result: &rmcp::model::CallToolResult) -> Vec<String> {
    let structured = result.structured_content.clone().unwrap_or_default();
    structured["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("{structured}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    serde_json::to_value(&result.content).unwrap()[0]["text"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn paged_tools(names: &[&str]) -> Vec<rmcp::model::Tool> {
    names
        .iter()
        .map(|name| {
            support::changing::tool(json!({
                "name": name,
                "description": format!("paged tool {name}"),
                "inputSchema": { "type": "object" }
            }))
        })
        .collect()
}

/// A virtual server of an rmcp server and one whose list comes in pages of two, with a
/// policy: the client sees two tools; a search finds exactly the tools its rules allow,
/// across every page; calls through the call tool reach their upstream when allowed and
/// are refused, as the calls they name, when not.
#[tokio::test]
async fn a_search_sees_only_what_the_caller_may_call_and_calls_are_judged_as_themselves() {
    use support::changing::{Answers, ChangingUpstream};
    let a = Upstream::start(Mode::Stateful).await;
    let p = ChangingUpstream::paged(
        paged_tools(&["t0", "t1", "t2", "t3", "t4"]),
        2,
        Answers::Json,
    )
    .await;
    let gateway = Gateway::builder()
        .insecure_http()
        .route(
            Route::virtual_server("all", "/all/mcp", &[("a", &a.url()), ("p", &p.url())])
                .setting("tool_search = { max_results = 20 }")
                .rule("tools = [\"a__echo\", \"a__progress\", \"p__*\"]")
                .rule("effect = \"deny\"\ntools = [\"p__t2\"]"),
        )
        .start()
        .await;
    let http = client::http_client(None, Http::H1);
    let session = client::mcp_client(http.clone(), &gateway.url("/all/mcp")).await;

    let listed = session.list_all_tools().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["search_tools", "call_tool"]);
    assert!(listed[0].output_schema.is_some());

    // Every allowed tool, from both upstreams and every page, and none other.
    let all = session
        .call_tool(
            CallToolRequestParams::new("search_tools")
                .with_arguments(arguments(json!({"query": ""}))),
        )
        .await
        .unwrap();
    let mut every = found(&all);
    every.sort();
    assert_eq!(
        every,
        ["a__echo", "a__progress", "p__t0", "p__t1", "p__t3", "p__t4"]
    );
    assert_eq!(all.structured_content.clone().unwrap()["matched"], 6);
    assert!(p.lists() >= 3, "the search read every page");

    let echo = session
        .call_tool(
            CallToolRequestParams::new("search_tools")
                .with_arguments(arguments(json!({"query": "text unchanged", "limit": 1}))),
        )
        .await
        .unwrap();
    assert_eq!(found(&echo), ["a__echo"]);
    let shown = &echo.structured_content.clone().unwrap()["tools"][0];
    assert!(
        shown["inputSchema"]["properties"]["text"].is_object(),
        "{shown}"
    );
    assert!(text_of(&echo).contains("a__echo"));
    let none = session
        .call_tool(
            CallToolRequestParams::new("search_tools")
                .with_arguments(arguments(json!({"query": "large"}))),
        )
        .await
        .unwrap();
    assert!(
        found(&none).is_empty(),
        "a__large is not the caller's to see"
    );

    // A call through the call tool reaches the upstream as the call it names.
    let answered = session
        .call_tool(
            CallToolRequestParams::new("call_tool").with_arguments(arguments(json!({
                "name": "a__echo", "arguments": {"text": "through the call tool"}
            }))),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&answered), "through the call tool");
    let call = a.probe.seen_rpc("tools/call").pop().unwrap();
    assert_eq!(call.message().unwrap()["params"]["name"], "echo");
    let record = gateway
        .audit_record(|r| r["name"] == "a__echo" && r["decision"] == "allow")
        .await;
    assert_eq!(record["upstream"], "a", "{record}");

    // Refused as the calls they name: a tool the rules deny, one they do not allow.
    for name in ["p__t2", "a__large"] {
        let refused = session
            .call_tool(
                CallToolRequestParams::new("call_tool").with_arguments(arguments(json!({
                    "name": name, "arguments": {"bytes": 3}
                }))),
            )
            .await
            .unwrap_err();
        assert!(
            format!("{refused:?}").contains("-32040"),
            "{name}: {refused:?}"
        );
        gateway
            .audit_record(|r| r["name"] == name && r["decision"] == "deny")
            .await;
    }
    assert_eq!(a.probe.calls("large"), 0);

    // Mistakes are the tool's answers, for the model to correct.
    for (bad, says) in [
        (json!({}), "`name`"),
        (
            json!({"name": "a__echo", "arguments": "text"}),
            "`arguments`",
        ),
        (json!({"name": "search_tools"}), "itself"),
    ] {
        let answer = session
            .call_tool(CallToolRequestParams::new("call_tool").with_arguments(arguments(bad)))
            .await
            .unwrap();
        assert_eq!(answer.is_error, Some(true));
        assert!(text_of(&answer).contains(says), "{}", text_of(&answer));
    }

    // A tool called by its own name is judged as always.
    let direct = session
        .call_tool(
            CallToolRequestParams::new("a__echo")
                .with_arguments(arguments(json!({"text": "direct"}))),
        )
        .await
        .unwrap();
    assert_eq!(text_of(&direct), "direct");
    session.cancel().await.unwrap();

    // By hand: the list has one page, and a batch of list and search is refused.
    let url = gateway.url("/all/mcp");
    let paged: Value = client::post(
        &http,
        &url,
        &json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list", "params": {"cursor": "x"}}),
    )
    .header("mcp-protocol-version", "2025-11-25")
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(paged["error"]["code"], -32602, "{paged}");
    let batch = client::post(
        &http,
        &url,
        &json!([
            {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            {"jsonrpc": "2.0", "id": 2, "method": "ping"}
        ]),
    )
    .header("mcp-protocol-version", "2025-03-26")
    .send()
    .await
    .unwrap();
    assert_eq!(batch.status(), 400);
}

/// A 2026-07-28 client (no session) of a one-upstream route with tool search: the lists a
/// search sends and the call the call tool makes carry the headers of their own messages
/// (`Mcp-Method`, `Mcp-Name`) and the request's `_meta`, so the upstream serves them.
#[tokio::test]
async fn a_stateless_client_searches_and_calls_with_the_headers_of_each_message() {
    let up = Upstream::start(Mode::Json).await;
    let gateway = Gateway::builder()
        .insecure_http()
        .route(
            Route::new("one", "/one/mcp", &up.url())
                .setting("tool_search = { search_tool = \"find\", call_tool = \"run\" }"),
        )
        .start()
        .await;
    let session = client::modern_mcp_client(
        client::http_client(None, Http::H1),
        &gateway.url("/one/mcp"),
    )
    .await;
    let names: Vec<String> = session
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["find", "run"]);

    let search = support::within(
        "the search",
        session.call_tool(
            CallToolRequestParams::new("find").with_arguments(arguments(json!({"query": "echo"}))),
        ),
    )
    .await
    .unwrap();
    assert_eq!(found(&search).first().map(String::as_str), Some("echo"));
    let list = up.probe.seen_rpc("tools/list").pop().unwrap();
    assert_eq!(list.header("mcp-method"), Some("tools/list"));
    assert_eq!(list.header("mcp-name"), None);
    let meta = &list.message().unwrap()["params"]["_meta"];
    assert_eq!(
        meta["io.modelcontextprotocol/protocolVersion"], "2026-07-28",
        "{meta}"
    );

    let answered = support::within(
        "the call",
        session.call_tool(
            CallToolRequestParams::new("run").with_arguments(arguments(json!({
                "name": "echo", "arguments": {"text": "stateless"}
            }))),
        ),
    )
    .await
    .unwrap();
    assert_eq!(text_of(&answered), "stateless");
    let call = up.probe.seen_rpc("tools/call").pop().unwrap();
    assert_eq!(call.header("mcp-method"), Some("tools/call"));
    assert_eq!(call.header("mcp-name"), Some("echo"));
    assert_eq!(call.message().unwrap()["params"]["name"], "echo");
    session.cancel().await.unwrap();
}

/// `check` refuses settings that cannot work, each with its TOML path.
#[test]
fn tool_search_settings_that_cannot_work_are_refused_at_load() {
    let config = r#"
[server]
listen = "127.0.0.1:0"
insecure_http = true
[[routes]]
name = "r"
path = "/mcp"
upstream = { url = "http://127.0.0.1:9/mcp" }
tool_search = { search_tool = "same", call_tool = "same", max_results = 0 }
[[routes]]
name = "s"
path = "/s/mcp"
upstream = { url = "http://127.0.0.1:9/mcp" }
tool_search = { search_tool = "has space" }
"#;
    let errors = portcullis::gateway::load_str(config, &support::gateway::NoSecrets)
        .unwrap_err()
        .0
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    for expected in [
        "routes[0].tool_search.call_tool: must differ",
        "routes[0].tool_search.max_results: must be 1 to 100",
        "routes[1].tool_search.search_tool: must be 1–128",
    ] {
        assert!(errors.contains(expected), "{expected} in\n{errors}");
    }
}
