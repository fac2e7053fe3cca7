//! Authorization per MCP call through the gateway, with real rmcp upstreams and
//! two callers whose API keys carry different roles: who may call which tool, argument
//! conditions, batches refused whole, step-up, and what never reaches the upstream.

use crate::support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::upstream::{Mode, Options, Upstream};
use support::within;

const ALICE: &str = "pk_alice_0123456789abcdef";
const BOB: &str = "pk_bob_0123456789abcdefgh";

struct Setup {
    upstream: Upstream,
    _gateway: Gateway,
    http: reqwest::Client,
    url: String,
}

/// Alice is an analyst, Bob an admin: the roles and API keys of every test here.
fn auth() -> String {
    format!(
        r#"
[roles]
analyst = ["read:*"]
admin = ["*"]

[[auth.api_keys]]
hash = "{alice}"
subject = "alice"
roles = ["analyst"]

[[auth.api_keys]]
hash = "{bob}"
subject = "bob"
roles = ["admin"]
scopes = ["tools:write"]
"#,
        alice = portcullis::auth::hash_key(ALICE),
        bob = portcullis::auth::hash_key(BOB),
    )
}

/// A plain-HTTP gateway with [`auth`] and `route`.
async fn gateway_with(route: Route) -> Gateway {
    Gateway::builder()
        .insecure_http()
        .auth(&auth())
        .route(route.authenticated())
        .start()
        .await
}

/// Alice is an analyst, Bob an admin; `/mcp` has the rules given.
async fn setup(mode: Mode, route_settings: &[&str], rules: &[&str]) -> Setup {
    let upstream = Upstream::start(mode).await;
    let mut route = Route::new("tools", "/mcp", &upstream.url());
    for line in route_settings {
        route = route.setting(line);
    }
    for rule in rules {
        route = route.rule(rule);
    }
    let gateway = gateway_with(route).await;
    let url = gateway.url("/mcp");
    Setup {
        upstream,
        _gateway: gateway,
        http: client::http_client(None, Http::H1),
        url,
    }
}

impl Setup {
    async fn post(&self, key: &str, body: &Value) -> reqwest::Response {
        // Batches exist only in 2025-03-26; everything else speaks 2025-11-25.
        let version = if body.is_array() {
            "2025-03-26"
        } else {
            "2025-11-25"
        };
        within(
            "a POST through the gateway",
            client::post(&self.http, &self.url, body)
                .header("x-api-key", key)
                .header("mcp-protocol-version", version)
                .send(),
        )
        .await
        .unwrap()
    }

    async fn call(&self, key: &str, tool: &str, arguments: Value) -> (StatusCode, Value) {
        let response = self
            .post(key, &client::call_body(5, tool, &arguments))
            .await;
        let status = response.status();
        (status, client::response_message(response).await)
    }
}

fn denied(message: &Value, id: Value, text: &str) {
    assert_eq!(message["jsonrpc"], "2.0");
    assert_eq!(message["id"], id, "{message}");
    assert_eq!(message["error"]["code"], -32040, "{message}");
    assert_eq!(message["error"]["message"], text, "{message}");
    assert!(message.get("result").is_none());
}

const RULES: &[&str] = &[
    "tools = [\"echo\"]\nroles = [\"analyst\", \"admin\"]",
    "tools = [\"large\", \"prog*\"]\nrequire = [\"write:tools\"]",
    "effect = \"deny\"\ntools = [\"echo\"]\nwhen = [{ argument = \"/text\", matches = \"^secret\" }]",
];

#[tokio::test]
async fn each_caller_can_call_only_their_tools() {
    for mode in [Mode::Json, Mode::Sse] {
        let s = setup(mode, &[], RULES).await;
        let (status, ok) = s.call(ALICE, "echo", json!({ "text": "hi" })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(client::tool_text(&ok), "hi");

        // Analysts hold read:* only: `large` needs write:tools.
        let (status, message) = s.call(ALICE, "large", json!({ "bytes": 10 })).await;
        assert_eq!(status, StatusCode::OK, "a JSON-RPC error, not an HTTP one");
        denied(&message, json!(5), "tool `large` is not allowed");
        // A tool no rule names, even one the upstream does not have: denied alike.
        let (_, message) = s.call(ALICE, "stall", json!({})).await;
        denied(&message, json!(5), "tool `stall` is not allowed");
        let (_, message) = s.call(BOB, "guessed_admin_tool", json!({})).await;
        denied(
            &message,
            json!(5),
            "tool `guessed_admin_tool` is not allowed",
        );

        // Admins hold `*`.
        let (status, ok) = s.call(BOB, "large", json!({ "bytes": 10 })).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(client::tool_text(&ok).len(), 10);

        assert_eq!(s.upstream.probe.calls("echo"), 1);
        assert_eq!(s.upstream.probe.calls("large"), 1);
        assert_eq!(
            s.upstream.probe.calls("stall"),
            0,
            "denied calls never leave"
        );
    }
}

#[tokio::test]
async fn argument_conditions_deny_some_calls() {
    let s = setup(Mode::Json, &[], RULES).await;
    let (_, message) = s.call(BOB, "echo", json!({ "text": "secret plans" })).await;
    denied(&message, json!(5), "tool `echo` is not allowed");
    let (_, ok) = s.call(BOB, "echo", json!({ "text": "public plans" })).await;
    assert_eq!(client::tool_text(&ok), "public plans");
    assert_eq!(s.upstream.probe.calls("echo"), 1);
}

#[tokio::test]
async fn allow_conditions_let_only_matching_arguments_through() {
    let s = setup(
        Mode::Json,
        &[],
        &["tools = [\"large\"]\nwhen = [{ argument = \"/bytes\", max = 100 }]"],
    )
    .await;
    let (_, ok) = s.call(ALICE, "large", json!({ "bytes": 50 })).await;
    assert_eq!(client::tool_text(&ok).len(), 50);
    let (_, message) = s.call(ALICE, "large", json!({ "bytes": 5000 })).await;
    denied(&message, json!(5), "tool `large` is not allowed");
    let (_, message) = s.call(ALICE, "large", json!({})).await;
    denied(&message, json!(5), "tool `large` is not allowed");
    assert_eq!(s.upstream.probe.calls("large"), 1);
}

#[tokio::test]
async fn a_batch_with_one_denied_call_is_refused_whole() {
    let s = setup(Mode::Json, &[], RULES).await;
    let batch = json!([
        client::call_body(1, "echo", &json!({ "text": "fine" })),
        { "jsonrpc": "2.0", "method": "notifications/progress", "params": { "progressToken": "t", "progress": 1 } },
        { "jsonrpc": "2.0", "id": "two", "method": "tools/call", "params": { "name": "large", "arguments": { "bytes": 1 } } },
        { "jsonrpc": "2.0", "id": 3, "method": "ping" },
    ]);
    let response = s.post(ALICE, &batch).await;
    assert_eq!(response.status(), StatusCode::OK);
    let answers: Value = response.json().await.unwrap();
    let answers = answers.as_array().unwrap();
    assert_eq!(
        answers.len(),
        3,
        "one error per request, none for the notification"
    );
    let others = "not sent: another call in this batch is not allowed";
    denied(&answers[0], json!(1), others);
    denied(&answers[1], json!("two"), "tool `large` is not allowed");
    denied(&answers[2], json!(3), others);
    assert!(
        s.upstream.probe.seen().is_empty(),
        "nothing of the batch was sent"
    );
}

#[tokio::test]
async fn the_session_itself_is_never_blocked() {
    // Default deny with no rule at all: the handshake, lists and pings still work.
    let s = setup(Mode::Stateful, &["default_policy = \"deny\""], &[]).await;
    let response = s
        .post(ALICE, &client::initialize_body(1, "2025-11-25"))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let session = response.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let with_session = |body: Value| {
        client::post(&s.http, &s.url, &body)
            .header("x-api-key", ALICE)
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &session)
            .send()
    };
    let initialized = with_session(client::initialized_body()).await.unwrap();
    assert_eq!(initialized.status(), StatusCode::ACCEPTED);
    let ping = with_session(json!({ "jsonrpc": "2.0", "id": 2, "method": "ping" }))
        .await
        .unwrap();
    assert_eq!(client::response_message(ping).await["result"], json!({}));
    let call = with_session(client::call_body(3, "echo", &json!({ "text": "x" })))
        .await
        .unwrap();
    denied(
        &client::response_message(call).await,
        json!(3),
        "tool `echo` is not allowed",
    );
}

#[tokio::test]
async fn step_up_answers_403_with_the_scopes_to_get() {
    let s = setup(
        Mode::Json,
        &["step_up = true"],
        &[
            "tools = [\"large\"]\nscopes = [\"tools:write\"]",
            "tools = [\"echo\"]",
        ],
    )
    .await;
    let response = s
        .post(
            ALICE,
            &client::call_body(9, "large", &json!({ "bytes": 1 })),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with(r#"Bearer error="insufficient_scope", scope="tools:write""#),
        "{challenge}"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], 9);
    assert_eq!(body["error"]["code"], -32031);
    // Bob's key carries the scope.
    let (_, ok) = s.call(BOB, "large", json!({ "bytes": 3 })).await;
    assert_eq!(client::tool_text(&ok).len(), 3);
}

#[tokio::test]
async fn bodies_that_are_not_json_rpc_get_400_with_the_right_error() {
    let s = setup(Mode::Json, &[], RULES).await;
    for (body, code) in [
        (
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\"",
            -32700,
        ),
        ("[]", -32600),
        ("{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":7}", -32600),
    ] {
        let response = within(
            "a bad body",
            s.http
                .post(&s.url)
                .header("x-api-key", ALICE)
                .header("content-type", "application/json")
                .header("accept", client::ACCEPT_BOTH)
                .body(body)
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{body}");
        let message: Value = response.json().await.unwrap();
        assert_eq!(message["error"]["code"], code, "{body}");
    }
    assert!(s.upstream.probe.seen().is_empty());
}

fn tool_names(message: &Value) -> Vec<String> {
    let mut names: Vec<String> = message["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {message}"))
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn each_caller_sees_only_the_tools_they_may_call() {
    for mode in [Mode::Json, Mode::Sse] {
        let s = setup(mode, &[], RULES).await;
        let list = json!({ "jsonrpc": "2.0", "id": 11, "method": "tools/list" });
        let alice = client::response_message(s.post(ALICE, &list).await).await;
        assert_eq!(alice["id"], 11);
        // `echo` is listed although some of its calls are denied (by argument).
        assert_eq!(tool_names(&alice), ["echo"], "{mode:?}");
        let bob = client::response_message(s.post(BOB, &list).await).await;
        assert_eq!(tool_names(&bob), ["echo", "large", "progress"], "{mode:?}");
        // The upstream itself lists them all.
        let all = s.upstream.probe.seen_rpc("tools/list");
        assert_eq!(all.len(), 2);
    }
}

#[tokio::test]
async fn the_official_client_sees_the_filtered_list_and_denials_as_errors() {
    let s = setup(Mode::Stateful, &[], RULES).await;
    let config =
        rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig::with_uri(
            s.url.clone(),
        )
        .custom_headers(
            [(
                http::HeaderName::from_static("x-api-key"),
                http::HeaderValue::from_static(ALICE),
            )]
            .into_iter()
            .collect(),
        );
    let mcp = within(
        "the MCP handshake",
        client::mcp_client_with(s.http.clone(), config),
    )
    .await;
    let tools = within("tools/list", mcp.list_all_tools()).await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(names, ["echo"]);
    let denied = within(
        "a denied call",
        mcp.call_tool(rmcp::model::CallToolRequestParams::new("large")),
    )
    .await
    .unwrap_err();
    let text = denied.to_string();
    assert!(text.contains("tool `large` is not allowed"), "{text}");
    assert_eq!(s.upstream.probe.calls("large"), 0);
}

#[tokio::test]
async fn modern_filtered_lists_are_marked_private() {
    let s = setup(Mode::Json, &[], RULES).await;
    let response = within(
        "a 2026-07-28 tools/list",
        client::modern_post(
            &s.http,
            &s.url,
            "tools/list",
            None,
            json!({ "jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {} }),
        )
        .header("x-api-key", ALICE)
        .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let message = client::response_message(response).await;
    assert_eq!(tool_names(&message), ["echo"]);
    assert_eq!(message["result"]["cacheScope"], "private", "{message}");
}

#[tokio::test]
async fn modern_headers_that_disagree_with_the_body_get_400() {
    let s = setup(Mode::Json, &[], RULES).await;
    // Headers name an allowed tool; the body calls a denied one.
    let body = client::call_body(6, "large", &json!({ "bytes": 1 }));
    let response = within(
        "mismatched Mcp-Name",
        client::modern_post(&s.http, &s.url, "tools/call", Some("echo"), body)
            .header("x-api-key", ALICE)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let message: Value = response.json().await.unwrap();
    assert_eq!(message["id"], 6);
    assert_eq!(message["error"]["code"], -32020);
    assert_eq!(
        message["error"]["message"],
        "the Mcp-Name header does not match the request body"
    );
    assert!(s.upstream.probe.seen().is_empty());
    // Matching headers: judged on the body as usual.
    let body = client::call_body(7, "echo", &json!({ "text": "modern" }));
    let response = client::modern_post(&s.http, &s.url, "tools/call", Some("echo"), body)
        .header("x-api-key", ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(
        client::tool_text(&client::response_message(response).await),
        "modern"
    );
}

/// A client of `url` whose requests carry the API key `key`.
async fn keyed_client(url: &str, key: &str) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-api-key", key.parse().unwrap());
    client::install_crypto_provider();
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    client::mcp_client(http, url).await
}

/// A list large enough to be read once per route and filtered from that reading for each
/// kind of caller (over 32 KiB): every caller still gets exactly their tools, and a list
/// the upstream changes is read anew.
#[tokio::test]
async fn large_lists_are_filtered_for_each_caller_and_follow_the_upstream() {
    use support::changing::{ChangingUpstream, tool};
    let description = "Reads one record of the inventory and returns it as JSON; ".repeat(4);
    let tools = |skip: &str| -> Vec<rmcp::model::Tool> {
        (0..300)
            .map(|i| {
                let verb = if i % 2 == 0 { "read" } else { "write" };
                format!("{verb}_{i:03}")
            })
            .filter(|name| name != skip)
            .map(|name| {
                tool(json!({
                    "name": name,
                    "description": description,
                    "inputSchema": { "type": "object", "properties": { "id": { "type": "string" } } }
                }))
            })
            .collect()
    };
    let upstream = ChangingUpstream::start(tools("")).await;
    let route = Route::new("tools", "/mcp", &upstream.url())
        .rule("tools = [\"read_*\"]\nroles = [\"analyst\", \"admin\"]")
        .rule("tools = [\"*\"]\nroles = [\"admin\"]");
    let gateway = gateway_with(route).await;
    let url = gateway.url("/mcp");
    let names = |tools: Vec<rmcp::model::Tool>| -> Vec<String> {
        tools.into_iter().map(|t| t.name.to_string()).collect()
    };
    let expected = |skip: &str, admin: bool| -> Vec<String> {
        names(tools(skip))
            .into_iter()
            .filter(|name| admin || name.starts_with("read_"))
            .collect()
    };

    for round in 0..2 {
        // Each in a session of their own, twice: the second answer comes from the caches.
        for (key, admin) in [(ALICE, false), (BOB, true), (ALICE, false), (BOB, true)] {
            let client = keyed_client(&url, key).await;
            let listed = names(client.list_all_tools().await.unwrap());
            assert_eq!(listed, expected("", admin), "round {round}, admin {admin}");
            client.cancel().await.unwrap();
        }
    }
    let listed_by_upstream = upstream.lists();
    assert!(listed_by_upstream >= 8, "every list reached the upstream");

    // The upstream drops a tool each caller could see: both lists follow.
    upstream.set_tools(tools("read_000")).await;
    for (key, admin) in [(BOB, true), (ALICE, false)] {
        let client = keyed_client(&url, key).await;
        let listed = names(client.list_all_tools().await.unwrap());
        assert_eq!(listed, expected("read_000", admin), "admin {admin}");
        assert!(!listed.contains(&"read_000".to_owned()));
        client.cancel().await.unwrap();
    }
}

/// A list the upstream sends in pages, answered in JSON and in event streams: each page is
/// filtered on its own, its `nextCursor` handed on exactly as the upstream wrote it (also
/// on a page left with nothing the caller may see), and following the cursors gives each
/// caller every tool they may see, and nothing else.
#[tokio::test]
async fn paginated_lists_are_filtered_page_by_page_and_keep_their_cursors() {
    use support::changing::{Answers, ChangingUpstream, cursor, tool};
    const PAGE: usize = 10;
    // Five pages; the third (tools 20 to 29) has nothing an analyst may see.
    let names: Vec<String> = (0..45)
        .map(|i| {
            let verb = if (20..30).contains(&i) || i % 3 == 0 {
                "write"
            } else {
                "read"
            };
            format!("{verb}_{i:02}")
        })
        .collect();
    let tools: Vec<rmcp::model::Tool> = names
        .iter()
        .map(|name| tool(json!({ "name": name, "inputSchema": { "type": "object" } })))
        .collect();
    let http = client::http_client(None, Http::H1);
    for answers in [Answers::Json, Answers::Sse] {
        let upstream = ChangingUpstream::paged(tools.clone(), PAGE, answers).await;
        let route = Route::new("tools", "/mcp", &upstream.url())
            .rule("tools = [\"read_*\"]\nroles = [\"analyst\", \"admin\"]")
            .rule("tools = [\"*\"]\nroles = [\"admin\"]");
        let gateway = gateway_with(route).await;
        let url = gateway.url("/mcp");
        for (key, admin) in [(ALICE, false), (BOB, true)] {
            let may_see = |name: &String| admin || name.starts_with("read_");
            let mut sent_cursor: Option<String> = None;
            let mut listed = Vec::new();
            let mut empty_pages = 0;
            for page in 0.. {
                let params = sent_cursor
                    .as_ref()
                    .map_or_else(|| json!({}), |c| json!({ "cursor": c }));
                let body = json!({ "jsonrpc": "2.0", "id": page, "method": "tools/list", "params": params });
                let response = within(
                    "a page of tools/list",
                    client::post(&http, &url, &body)
                        .header("x-api-key", key)
                        .header("mcp-protocol-version", "2025-11-25")
                        .send(),
                )
                .await
                .unwrap();
                assert_eq!(response.status(), StatusCode::OK);
                let content_type = response.headers()[http::header::CONTENT_TYPE].clone();
                let expected_type = match answers {
                    Answers::Json => "application/json",
                    Answers::Sse => "text/event-stream",
                };
                assert!(
                    content_type.to_str().unwrap().starts_with(expected_type),
                    "{content_type:?}"
                );
                let message = client::response_message(response).await;
                assert_eq!(message["id"], page, "{message}");
                let from = page * PAGE;
                let to = (from + PAGE).min(names.len());
                let expected: Vec<String> = names[from..to]
                    .iter()
                    .filter(|n| may_see(n))
                    .cloned()
                    .collect();
                // In the upstream's order.
                let shown: Vec<String> = message["result"]["tools"]
                    .as_array()
                    .unwrap_or_else(|| panic!("no tools in {message}"))
                    .iter()
                    .map(|t| t["name"].as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(shown, expected, "{answers:?}, admin {admin}, page {page}");
                empty_pages += usize::from(shown.is_empty());
                listed.extend(shown);
                let next = message["result"]["nextCursor"].as_str().map(str::to_owned);
                assert_eq!(
                    next,
                    (to < names.len()).then(|| cursor(to)),
                    "{answers:?}, page {page}: {message}"
                );
                match next {
                    Some(next) => sent_cursor = Some(next),
                    None => break,
                }
            }
            let expected: Vec<String> = names.iter().filter(|n| may_see(n)).cloned().collect();
            assert_eq!(listed, expected, "{answers:?}, admin {admin}");
            assert_eq!(
                empty_pages,
                usize::from(!admin),
                "{answers:?}, admin {admin}"
            );
        }
        // Each page went to the upstream once per caller (the gateway's own listing aside).
        assert!(upstream.lists() >= 10, "{}", upstream.lists());
    }
}

/// A stream resumed with GET replays what the upstream sent on a POST stream, the answer
/// to `tools/list` included: it is filtered as the POST's answer was.
#[tokio::test]
async fn a_resumed_stream_replays_only_the_filtered_list() {
    let upstream = Upstream::start_with(Options::new(Mode::Stateful).resumable()).await;
    let mut route = Route::new("tools", "/mcp", &upstream.url());
    for rule in RULES {
        route = route.rule(rule);
    }
    let gateway = gateway_with(route).await;
    let url = gateway.url("/mcp");
    let http = client::http_client(None, Http::H1);
    let session = within(
        "initialize",
        client::open_session_with(
            client::post(&http, &url, &client::initialize_body(1, "2025-11-25"))
                .header("x-api-key", ALICE),
        ),
    )
    .await;
    let send = |body: Value| {
        client::post(&http, &url, &body)
            .header("x-api-key", ALICE)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .send()
    };
    within("initialized", send(client::initialized_body()))
        .await
        .unwrap();
    let list = json!({ "jsonrpc": "2.0", "id": 11, "method": "tools/list" });
    let response = within("tools/list", send(list)).await.unwrap();
    let mut stream = support::sse::SseStream::new(response);
    let mut priming = None;
    let mut posted = None;
    while let Some(event) = within("the list's stream", stream.next_event()).await {
        match event.json() {
            Some(message) => posted = Some(message),
            None => priming = priming.or(event.id.clone()),
        }
    }
    let posted = posted.expect("the list's answer");
    assert_eq!(tool_names(&posted), ["echo"]);
    let priming = priming.expect("a priming event with an id, to resume after");

    let response = within(
        "a resumed stream",
        http.get(&url)
            .header("accept", "text/event-stream")
            .header("x-api-key", ALICE)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .header("last-event-id", &priming)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut stream = support::sse::SseStream::new(response);
    let mut replayed = Vec::new();
    while let Some(event) = within("the replay", stream.next_event()).await {
        replayed.extend(event.json());
    }
    assert_eq!(replayed.len(), 1, "{replayed:?}");
    assert_eq!(replayed[0]["id"], 11);
    assert_eq!(tool_names(&replayed[0]), ["echo"], "{}", replayed[0]);
    // The upstream did replay its whole list.
    let seen = upstream.probe.seen();
    let get = seen.iter().find(|r| r.method == http::Method::GET).unwrap();
    assert_eq!(get.header("last-event-id"), Some(priming.as_str()));
    gateway.shutdown().await;
}

/// A POST of `body` as `key`, raw, with `headers`: the status and the message answered.
async fn post_raw(
    s: &Setup,
    key: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let mut request = s
        .http
        .post(&s.url)
        .header("x-api-key", key)
        .header("content-type", "application/json")
        .header("accept", client::ACCEPT_BOTH);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = within(
        "a POST through the gateway",
        request.body(body.to_owned().into_bytes()).send(),
    )
    .await
    .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn names_that_differ_only_in_letter_case_never_reach_the_upstream() {
    // Alice may call `echo`, not `large`. A Go upstream (encoding/json matches member names
    // regardless of case, keeping the last) would run `large` for the first body; a C#
    // one (System.Text.Json, web defaults) would read `NAME` in the second.
    let s = setup(Mode::Json, &[], RULES).await;
    let calls = [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"large","arguments":{"bytes":1}}}"#,
            "invalid request: the members `name` and `NAME` differ only in letter case",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"large","arguments":{"bytes":1}}}"#,
            "invalid request: the member `Name` must be written `name`",
        ),
        (
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"a\",\"TEXT\":\"secret\"}}}",
            "invalid request: the members `text` and `TEXT` differ only in letter case",
        ),
    ];
    for (body, why) in calls {
        // 2025-11-25, and 2026-07-28 with headers that say what the body says.
        for headers in [
            &[("mcp-protocol-version", "2025-11-25")][..],
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "echo"),
            ],
        ] {
            let (status, message) = post_raw(&s, ALICE, headers, body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {message}");
            assert_eq!(message["id"], 1, "{message}");
            assert_eq!(message["error"]["code"], -32600, "{message}");
            assert_eq!(message["error"]["message"], why, "{message}");
        }
        // In a 2025-03-26 batch, after a call that alone would go.
        let batch = format!(
            r#"[{{"jsonrpc":"2.0","id":0,"method":"tools/call","params":{{"name":"echo","arguments":{{"text":"hi"}}}}}},{body}]"#
        );
        let (status, message) =
            post_raw(&s, ALICE, &[("mcp-protocol-version", "2025-03-26")], &batch).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
        assert_eq!(message["id"], Value::Null, "{message}");
        assert_eq!(message["error"]["code"], -32600, "{message}");
        assert_eq!(message["error"]["message"], why, "{message}");
    }
    assert!(s.upstream.probe.seen().is_empty());
    // The same call written once, in the one spelling, goes.
    let (status, ok) = s.call(ALICE, "echo", json!({ "text": "hi" })).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(client::tool_text(&ok), "hi");
}

/// A method written another way than MCP writes it is refused on every route, and a
/// method the gateway does not know falls to the route's default.
#[tokio::test]
async fn methods_in_another_case_are_refused_and_unknown_ones_follow_the_default() {
    // Alice may call `echo`, not `large`; the route denies what no rule allows.
    let s = setup(Mode::Json, &[], RULES).await;
    let version = [("mcp-protocol-version", "2025-11-25")];
    for method in ["TOOLS/CALL", "Tools/Call", "tools/caII", "t00ls/call"] {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"name":"large","arguments":{{"bytes":1}}}}}}"#
        );
        let (status, message) = post_raw(&s, ALICE, &version, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method}: {message}");
        assert_eq!(message["id"], 1, "{message}");
        assert_eq!(message["error"]["code"], -32600, "{message}");
        assert_eq!(
            message["error"]["message"],
            format!(
                "invalid request: method `{method}` is refused: it differs from the MCP \
                 method `tools/call` only in letter case or lookalike characters"
            ),
        );
    }
    // A vendor method no rule names: denied under `default_policy = "deny"`.
    let vendor = r#"{"jsonrpc":"2.0","id":2,"method":"x-acme/run","params":{"name":"large"}}"#;
    let (status, message) = post_raw(&s, ALICE, &version, vendor).await;
    assert_eq!(status, StatusCode::OK, "{message}");
    denied(&message, json!(2), "method `x-acme/run` is not allowed");
    assert!(
        s.upstream.probe.seen().is_empty(),
        "nothing reached the upstream"
    );

    // A route open by default lets vendor methods through, and still refuses lookalikes.
    let open = setup(Mode::Json, &["default_policy = \"allow\""], &[]).await;
    let (_, message) = post_raw(&open, ALICE, &version, vendor).await;
    assert_ne!(message["error"]["code"], -32040, "{message}");
    assert_eq!(open.upstream.probe.seen_rpc("x-acme/run").len(), 1);
    let lookalike = r#"{"jsonrpc":"2.0","id":3,"method":"TOOLS/CALL","params":{"name":"large","arguments":{"bytes":1}}}"#;
    let (status, message) = post_raw(&open, ALICE, &version, lookalike).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{message}");
    assert_eq!(open.upstream.probe.seen_rpc("TOOLS/CALL").len(), 0);
}

/// A resource URI that an upstream could read as another one is refused before any rule is
/// asked (-32602): matched as written, `file:///public/../secret/k` fits `file:///public/*`.
#[tokio::test]
async fn resource_uris_with_dot_segments_are_refused() {
    let s = setup(
        Mode::Json,
        &[],
        &[
            "resources = [\"file:///public/*\"]",
            "effect = \"deny\"\nresources = [\"file:///secret/*\"]",
        ],
    )
    .await;
    let read = |id: u64, uri: &str| json!({ "jsonrpc": "2.0", "id": id, "method": "resources/read", "params": { "uri": uri } });
    for (id, uri) in [
        (1, "file:///public/../secret/k"),
        (2, "file:///public/%2e%2e/secret/k"),
        (3, "FILE:///secret/k"),
    ] {
        let response = s.post(ALICE, &read(id, uri)).await;
        assert_eq!(response.status(), StatusCode::OK, "{uri}");
        let message = client::response_message(response).await;
        assert_eq!(message["id"], id, "{message}");
        assert_eq!(message["error"]["code"], -32602, "{message}");
        let text = message["error"]["message"].as_str().unwrap();
        assert!(text.starts_with("resource URI `"), "{text}");
        assert!(text.contains("is refused"), "{text}");
    }
    assert!(
        s.upstream.probe.seen_rpc("resources/read").is_empty(),
        "no refused read reached the upstream"
    );
    // The URI in normal form is judged as usual and sent.
    let response = s.post(ALICE, &read(4, "file:///public/a.txt")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(s.upstream.probe.seen_rpc("resources/read").len(), 1);
}

/// 2026-07-28 `subscriptions/listen` replaces `resources/subscribe`: each URI in
/// `notifications.resourceSubscriptions` is judged as a subscription to it, so a route
/// that allows only `file:///public/*` does not let a client watch `file:///secret/k`.
#[tokio::test]
async fn modern_resource_subscriptions_are_judged_per_uri() {
    let s = setup(Mode::Json, &[], &["resources = [\"file:///public/*\"]"]).await;
    let listen = |id: u64, uris: Value| {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "method": "subscriptions/listen",
            "params": { "notifications": { "toolsListChanged": true, "resourceSubscriptions": uris } }
        })
    };
    let send = |body: Value| {
        within(
            "a 2026-07-28 subscriptions/listen",
            client::modern_post(&s.http, &s.url, "subscriptions/listen", None, body)
                .header("x-api-key", ALICE)
                .send(),
        )
    };
    let response = send(listen(1, json!(["file:///public/a", "file:///secret/k"])))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    denied(
        &client::response_message(response).await,
        json!(1),
        "resource `file:///secret/k` is not allowed",
    );
    // A dot segment in a listed URI is refused as in a read.
    let response = send(listen(2, json!(["file:///public/../secret/k"])))
        .await
        .unwrap();
    let message = client::response_message(response).await;
    assert_eq!(message["id"], 2, "{message}");
    assert_eq!(message["error"]["code"], -32602, "{message}");
    // So is a list that is not a list of URIs.
    let response = send(listen(3, json!("file:///secret/k"))).await.unwrap();
    let message = client::response_message(response).await;
    assert_eq!(message["error"]["code"], -32602, "{message}");
    assert!(
        s.upstream.probe.seen_rpc("subscriptions/listen").is_empty(),
        "nothing refused reached the upstream"
    );
    // Only allowed resources: sent on (what the rmcp upstream, which predates the method,
    // answers does not matter here).
    send(listen(4, json!(["file:///public/a"]))).await.unwrap();
    assert_eq!(s.upstream.probe.seen_rpc("subscriptions/listen").len(), 1);
}
