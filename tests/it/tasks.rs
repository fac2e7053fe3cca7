//! Task ids bound to their owner, through the gateway, with a real rmcp upstream that runs
//! `tools/call` as a task (the 2026-07-28 `io.modelcontextprotocol/tasks` extension) and
//! answers in JSON or in an event stream: the client only ever holds a sealed task id, the
//! same one every time the task comes back; it works for the caller and route it was
//! issued to, and any other id — another caller's, another route's, the raw upstream id,
//! a forgery — is answered "Task not found" without reaching the upstream.

use crate::support;

use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CancelTaskParams, CreateTaskResult, DetailedTask,
    GetTaskParams, GetTaskResult, ListToolsResult, PaginatedRequestParams, ServerCapabilities,
    ServerConfig, Task, TaskPayload, TaskStatus, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::{Value, json};
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::within;
use tokio::net::TcpListener;

const ALICE: &str = "pk_alice_0123456789abcdef";
const BOB: &str = "pk_bob_0123456789abcdefgh";
const NOT_FOUND: &str = "Failed to retrieve task: Task not found";

/// What the upstream did: the ids it gave out, and the ids it was asked about.
#[derive(Debug, Default)]
struct Record {
    created: Vec<String>,
    asked: Vec<(&'static str, String)>,
}

/// An upstream whose one tool, `report`, always runs as a task that is done at once.
#[derive(Debug, Clone, Default)]
struct TaskServer {
    record: Arc<Mutex<Record>>,
}

const NOW: &str = "2026-11-24T10:00:00Z";

impl ServerHandler for TaskServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_tasks()
                .build(),
        )
    }

    async fn list_tools(
        &self,
        _: Option<PaginatedRequestParams>,
        _: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let schema = json!({ "type": "object" });
        let Value::Object(schema) = schema else {
            unreachable!()
        };
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "report",
            "Builds a report in the background",
            Arc::new(schema),
        )]))
    }

    async fn call_tool(
        &self,
        _: CallToolRequestParams,
        _: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let mut record = self.record.lock().unwrap();
        let id = format!("upstream-task-{}", record.created.len() + 1);
        record.created.push(id.clone());
        let task = Task::new(id, TaskStatus::Working, NOW, NOW).with_poll_interval_ms(10);
        Ok(CreateTaskResult::new(task).into())
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let mut record = self.record.lock().unwrap();
        record.asked.push(("tasks/get", request.task_id.clone()));
        if !record.created.contains(&request.task_id) {
            return Err(McpError::invalid_params(NOT_FOUND, None));
        }
        let Value::Object(result) = json!({ "content": [{ "type": "text", "text": "done" }] })
        else {
            unreachable!()
        };
        let task = Task::new(request.task_id, TaskStatus::Completed, NOW, NOW);
        Ok(GetTaskResult::new(DetailedTask::new(
            task,
            TaskPayload::Completed { result },
        )))
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        _: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let mut record = self.record.lock().unwrap();
        record.asked.push(("tasks/cancel", request.task_id));
        Ok(())
    }
}

struct Upstream {
    url: String,
    record: Arc<Mutex<Record>>,
    /// Every POST body that reached the upstream, as it arrived.
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn upstream(json_response: bool) -> Upstream {
    let server = TaskServer::default();
    let record = Arc::clone(&server.record);
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(json_response);
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&bodies);
    let app = axum::Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let seen = Arc::clone(&seen);
                async move {
                    let (parts, body) = request.into_parts();
                    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
                    seen.lock().unwrap().push(bytes.to_vec());
                    let request = axum::extract::Request::from_parts(parts, bytes.into());
                    next.run(request).await
                }
            },
        ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Upstream {
        url,
        record,
        bodies,
        task,
    }
}

/// Two API keys (alice, bob) and two routes (`/mcp`, `/other/mcp`) in front of `upstream`;
/// `judged`: the routes allow the `report` tool by a rule (default deny), so every call is
/// parsed and judged; else they allow everything and judge nothing.
async fn gateway(upstream: &Upstream, judged: bool) -> Gateway {
    let auth = api_keys();
    let route = |name: &str, path: &str| {
        let route = Route::new(name, path, &upstream.url).authenticated();
        if judged {
            route.rule("tools = [\"report\"]")
        } else {
            route.setting("default_policy = \"allow\"")
        }
    };
    Gateway::builder()
        .insecure_http()
        .auth(&auth)
        .route(route("tools", "/mcp"))
        .route(route("other", "/other/mcp"))
        .start()
        .await
}

/// The `[auth]` of alice's and bob's API keys.
fn api_keys() -> String {
    format!(
        "[[auth.api_keys]]\nhash = \"{}\"\nsubject = \"alice\"\n\n\
         [[auth.api_keys]]\nhash = \"{}\"\nsubject = \"bob\"\n",
        portcullis::auth::hash_key(ALICE),
        portcullis::auth::hash_key(BOB),
    )
}

/// A 2026-07-28 request as `key` that declares the tasks extension: the answer's message.
async fn call(url: &str, key: &str, method: &str, name: Option<&str>, params: Value) -> Value {
    let mut body = json!({ "jsonrpc": "2.0", "id": 7, "method": method, "params": params });
    body["params"]["_meta"] = json!({
        "io.modelcontextprotocol/clientCapabilities": {
            "extensions": { "io.modelcontextprotocol/tasks": {} }
        }
    });
    let http = client::http_client(None, Http::H1);
    let response = within(
        method,
        client::modern_post(&http, url, method, name, body)
            .header("x-api-key", key)
            .send(),
    )
    .await
    .unwrap();
    let status = response.status();
    if status != StatusCode::OK {
        panic!("{method}: {status} {}", response.text().await.unwrap());
    }
    client::response_message(response).await
}

/// `tools/call` of `report` as `key`: the answer carrying the task handle.
async fn start_report(url: &str, key: &str) -> Value {
    let params = json!({ "name": "report", "arguments": {} });
    call(url, key, "tools/call", Some("report"), params).await
}

fn asked(upstream: &Upstream) -> Vec<(&'static str, String)> {
    upstream.record.lock().unwrap().asked.clone()
}

#[tokio::test]
async fn a_task_id_is_sealed_stable_and_works_only_for_its_owner() {
    for (json_response, judged) in [(true, false), (false, false), (true, true), (false, true)] {
        let mode = format!(
            "{} answers, {}",
            if json_response { "JSON" } else { "SSE" },
            if judged { "judged" } else { "open policy" }
        );
        let upstream = upstream(json_response).await;
        let gw = gateway(&upstream, judged).await;
        let url = gw.url("/mcp");

        // The task handle reaches the client sealed.
        let created = start_report(&url, ALICE).await;
        assert_eq!(created["result"]["resultType"], "task", "{mode}: {created}");
        let sealed = created["result"]["taskId"].as_str().unwrap().to_owned();
        let raw = upstream.record.lock().unwrap().created[0].clone();
        assert_ne!(sealed, raw, "{mode}");
        assert!(!created.to_string().contains(&raw), "{mode}: {created}");

        // The owner polls and cancels with it; the upstream sees its own id, and the task
        // comes back under the same sealed id.
        let polled = call(
            &url,
            ALICE,
            "tasks/get",
            Some(&sealed),
            json!({ "taskId": sealed }),
        )
        .await;
        assert_eq!(
            polled["result"]["taskId"],
            json!(sealed),
            "{mode}: {polled}"
        );
        assert_eq!(polled["result"]["status"], "completed", "{mode}: {polled}");
        assert_eq!(polled["result"]["result"]["content"][0]["text"], "done");
        let cancelled = call(
            &url,
            ALICE,
            "tasks/cancel",
            Some(&sealed),
            json!({ "taskId": sealed }),
        )
        .await;
        assert!(cancelled.get("result").is_some(), "{mode}: {cancelled}");
        assert_eq!(
            asked(&upstream),
            [("tasks/get", raw.clone()), ("tasks/cancel", raw.clone())],
            "{mode}"
        );

        // Anyone else, anywhere else, with anything else: "Task not found", and the
        // upstream is not asked.
        let mut forged = sealed.clone();
        let at = forged.len() / 2;
        let swap = if &forged[at..=at] == "A" { "B" } else { "A" };
        forged.replace_range(at..=at, swap);
        let other_route = gw.url("/other/mcp");
        for (who, url, key, id) in [
            ("bob with alice's id", &url, BOB, sealed.as_str()),
            (
                "alice on another route",
                &other_route,
                ALICE,
                sealed.as_str(),
            ),
            ("the raw upstream id", &url, ALICE, raw.as_str()),
            ("a forged id", &url, ALICE, forged.as_str()),
        ] {
            for method in ["tasks/get", "tasks/cancel"] {
                let refused = call(url, key, method, Some(id), json!({ "taskId": id })).await;
                assert_eq!(refused["id"], 7, "{mode}, {who}: {refused}");
                assert_eq!(refused["error"]["code"], -32602, "{mode}, {who}: {refused}");
                assert_eq!(refused["error"]["message"], NOT_FOUND, "{mode}, {who}");
            }
        }
        assert_eq!(
            asked(&upstream).len(),
            2,
            "{mode}: nothing more reached the upstream"
        );

        // Bob's own task is his, under an id of his own.
        let bobs = start_report(&url, BOB).await;
        let bobs = bobs["result"]["taskId"].as_str().unwrap().to_owned();
        assert_ne!(bobs, sealed, "{mode}");
        let polled = call(
            &url,
            BOB,
            "tasks/get",
            Some(&bobs),
            json!({ "taskId": bobs }),
        )
        .await;
        assert_eq!(polled["result"]["taskId"], json!(bobs), "{mode}: {polled}");
        assert_eq!(
            asked(&upstream).last(),
            Some(&("tasks/get", "upstream-task-2".to_owned())),
            "{mode}"
        );

        // Listing tasks falls to the route's default: the upstream might list every
        // caller's tasks, and each would be sealed for whoever asked.
        if judged {
            let listed = call(&url, ALICE, "tasks/list", None, json!({})).await;
            assert_eq!(listed["error"]["code"], -32040, "{mode}: {listed}");
        }
    }
}

#[tokio::test]
async fn a_batch_naming_a_foreign_task_is_refused_whole() {
    let upstream = upstream(true).await;
    let gw = gateway(&upstream, false).await;
    let url = gw.url("/mcp");
    let created = start_report(&url, ALICE).await;
    let sealed = created["result"]["taskId"].as_str().unwrap().to_owned();
    let batch = json!([
        { "jsonrpc": "2.0", "id": 1, "method": "tools/list" },
        { "jsonrpc": "2.0", "id": 2, "method": "tasks/get", "params": { "taskId": sealed } }
    ]);
    let http = client::http_client(None, Http::H1);
    let response = client::post(&http, &url, &batch)
        .header("x-api-key", BOB)
        .header("mcp-protocol-version", "2025-03-26")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let answers: Value = response.json().await.unwrap();
    assert_eq!(answers[0]["id"], 1);
    assert_eq!(answers[0]["error"]["code"], -32602);
    assert_eq!(answers[1]["id"], 2);
    assert_eq!(answers[1]["error"]["message"], NOT_FOUND);
    assert!(asked(&upstream).is_empty());
}

#[tokio::test]
async fn a_body_that_may_name_a_task_but_is_not_json_is_refused() {
    let upstream = upstream(true).await;
    let gw = gateway(&upstream, false).await;
    let http = client::http_client(None, Http::H1);
    // A lenient upstream parser might read this; the gateway cannot check it.
    let response = http
        .post(gw.url("/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", ALICE)
        .body(r#"{"jsonrpc":"2.0","id":3,"method":"tasks/get","params":{"taskId":"upstream-task-1"},"x":NaN}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], -32700);
    assert!(asked(&upstream).is_empty());
}

/// A POST of `body` as `key` with `headers`: the status and the message answered.
async fn post_raw(
    url: &str,
    key: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (StatusCode, Value) {
    let http = client::http_client(None, Http::H1);
    let mut request = http
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-api-key", key);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = within("a POST", request.body(body.to_owned()).send())
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_task_id_in_another_letter_case_never_reaches_the_upstream() {
    // A C# upstream (System.Text.Json with web defaults) reads `TaskId` as `taskId`, Go's
    // encoding/json `ta\u017fkId` too: a raw upstream id written so would pass the binding
    // unopened if the gateway looked only for `taskId`.
    for judged in [false, true] {
        let upstream = upstream(true).await;
        let gw = gateway(&upstream, judged).await;
        let url = gw.url("/mcp");
        start_report(&url, ALICE).await;
        let raw = upstream.record.lock().unwrap().created[0].clone();
        let before = upstream.bodies.lock().unwrap().len();
        let meta = r#""_meta":{"io.modelcontextprotocol/clientCapabilities":{"extensions":{"io.modelcontextprotocol/tasks":{}}}}"#;
        for (key, why) in [
            ("TaskId", "the member `TaskId` must be written `taskId`"),
            ("TASKID", "the member `TASKID` must be written `taskId`"),
            (
                "ta\\u017fkId",
                "the member `ta\\u{17f}kId` must be written `taskId`",
            ),
        ] {
            let params = format!(r#"{{"{key}":"{raw}",{meta}}}"#);
            let single =
                format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tasks/get","params":{params}}}"#);
            let twice = format!(
                r#"{{"jsonrpc":"2.0","id":7,"method":"tasks/get","params":{{"taskId":"{raw}","{key}":"{raw}",{meta}}}}}"#
            );
            let batch = format!(r#"[{{"jsonrpc":"2.0","id":1,"method":"tools/list"}},{single}]"#);
            let cases = [
                (
                    single.clone(),
                    vec![("mcp-protocol-version", "2025-11-25")],
                    Some(why.to_owned()),
                ),
                // 2026-07-28, its headers naming the task as the body does.
                (
                    single.clone(),
                    vec![
                        ("mcp-protocol-version", "2026-07-28"),
                        ("mcp-method", "tasks/get"),
                        ("mcp-name", raw.as_str()),
                    ],
                    Some(why.to_owned()),
                ),
                (twice, vec![("mcp-protocol-version", "2025-11-25")], None),
                (
                    batch,
                    vec![("mcp-protocol-version", "2025-03-26")],
                    Some(why.to_owned()),
                ),
            ];
            for (body, headers, why) in cases {
                let (status, message) = post_raw(&url, ALICE, &headers, &body).await;
                assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {message}");
                assert_eq!(message["error"]["code"], -32600, "{body}: {message}");
                let text = message["error"]["message"].as_str().unwrap();
                match why {
                    Some(why) => assert_eq!(text, format!("invalid request: {why}"), "{body}"),
                    None => assert!(
                        text.contains("differ only in letter case"),
                        "{body}: {text}"
                    ),
                }
            }
        }
        assert!(asked(&upstream).is_empty());
        assert_eq!(
            upstream.bodies.lock().unwrap().len(),
            before,
            "nothing more reached the upstream"
        );
    }
}

/// A virtual server of two upstreams that number their tasks alike (both make
/// `upstream-task-1`): each task comes back marked with its upstream and sealed, so the
/// two ids differ, and every request about a task reaches the upstream that runs it, with
/// that upstream's own id — in JSON answers and in event streams.
#[tokio::test]
async fn tasks_of_a_virtual_server_go_back_to_the_upstream_that_runs_them() {
    for json_response in [true, false] {
        let mode = if json_response { "JSON" } else { "SSE" };
        let a = upstream(json_response).await;
        let b = upstream(json_response).await;
        let gw = Gateway::builder()
            .insecure_http()
            .auth(&api_keys())
            .route(
                Route::virtual_server("all", "/all/mcp", &[("a", &a.url), ("b", &b.url)])
                    .authenticated()
                    .setting("default_policy = \"allow\""),
            )
            .start()
            .await;
        let url = gw.url("/all/mcp");
        let start = |tool: &'static str| {
            let url = url.clone();
            async move {
                let params = json!({ "name": tool, "arguments": {} });
                call(&url, ALICE, "tools/call", Some(tool), params).await
            }
        };
        let on_a = start("a__report").await;
        let on_b = start("b__report").await;
        let sealed_a = on_a["result"]["taskId"]
            .as_str()
            .unwrap_or_else(|| panic!("{mode}: {on_a}"))
            .to_owned();
        let sealed_b = on_b["result"]["taskId"]
            .as_str()
            .unwrap_or_else(|| panic!("{mode}: {on_b}"))
            .to_owned();
        assert_eq!(
            a.record.lock().unwrap().created,
            ["upstream-task-1"],
            "{mode}"
        );
        assert_eq!(
            b.record.lock().unwrap().created,
            ["upstream-task-1"],
            "{mode}"
        );
        assert_ne!(sealed_a, sealed_b, "{mode}");

        let polled = call(
            &url,
            ALICE,
            "tasks/get",
            Some(&sealed_b),
            json!({ "taskId": sealed_b }),
        )
        .await;
        assert_eq!(
            polled["result"]["taskId"],
            json!(sealed_b),
            "{mode}: {polled}"
        );
        assert_eq!(polled["result"]["status"], "completed", "{mode}: {polled}");
        assert_eq!(
            asked(&b),
            [("tasks/get", "upstream-task-1".to_owned())],
            "{mode}"
        );
        assert!(asked(&a).is_empty(), "{mode}");

        let cancelled = call(
            &url,
            ALICE,
            "tasks/cancel",
            Some(&sealed_a),
            json!({ "taskId": sealed_a }),
        )
        .await;
        assert!(cancelled.get("result").is_some(), "{mode}: {cancelled}");
        assert_eq!(
            asked(&a),
            [("tasks/cancel", "upstream-task-1".to_owned())],
            "{mode}"
        );

        // Bob cannot use alice's; nobody can use an upstream's id, marked or not.
        for (key, id) in [
            (BOB, sealed_a.as_str()),
            (ALICE, "a/upstream-task-1"),
            (ALICE, "upstream-task-1"),
        ] {
            let refused = call(&url, key, "tasks/get", Some(id), json!({ "taskId": id })).await;
            assert_eq!(
                refused["error"]["message"], NOT_FOUND,
                "{mode}, {id}: {refused}"
            );
        }
        assert_eq!(
            asked(&a).len() + asked(&b).len(),
            2,
            "{mode}: nothing more reached them"
        );
    }
}
