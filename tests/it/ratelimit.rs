//! Rate limits through the gateway, in memory, with a real rmcp upstream: per client IP
//! (before authentication), per principal, per principal and tool; `X-Forwarded-For`
//! believed only from trusted proxies; 429 with `Retry-After`, the `RateLimit` headers and
//! a JSON-RPC error carrying the request id; bans after repeated authentication failures.

use crate::support;

use std::time::Duration;

use governor::clock::FakeRelativeClock;
use portcullis::ratelimit::LimitClock;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::upstream::{Mode, Upstream};

const ALICE: &str = "pk_alice_0123456789abcdef";
const BOB: &str = "pk_bob_0123456789abcdefgh";

fn keys() -> String {
    format!(
        "[[auth.api_keys]]\nhash = \"{}\"\nsubject = \"alice\"\n\n\
         [[auth.api_keys]]\nhash = \"{}\"\nsubject = \"bob\"\n",
        portcullis::auth::hash_key(ALICE),
        portcullis::auth::hash_key(BOB),
    )
}

/// A gateway with `[rate_limits]` from `limits` and the API keys, one route in front of
/// `upstream` (authenticated when `authenticated`), with `route_settings`.
async fn gateway(
    upstream: &Upstream,
    limits: &str,
    authenticated: bool,
    route_settings: &[&str],
) -> Gateway {
    let mut route = Route::new("tools", "/mcp", &upstream.url());
    if authenticated {
        route = route.authenticated();
    }
    for line in route_settings {
        route = route.setting(line);
    }
    Gateway::builder()
        .insecure_http()
        .auth(&format!("[rate_limits]\n{limits}\n\n{}", keys()))
        .route(route)
        .start()
        .await
}

struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no {name} header: {:?}", self.headers))
    }
}

/// A `tools/call` of `tool` with request id `id`, as `key` (if any), with `headers`.
async fn call(
    url: &str,
    id: u64,
    tool: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let http = client::http_client(None, Http::H1);
    let arguments = if tool == "echo" {
        json!({ "text": "hi" })
    } else {
        json!({ "bytes": 3 })
    };
    let mut request = client::post(&http, url, &client::call_body(id, tool, &arguments))
        .header("mcp-protocol-version", "2025-06-18");
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = if status == StatusCode::OK {
        client::response_message(response).await
    } else {
        response.json().await.unwrap_or(Value::Null)
    };
    Answer {
        status,
        headers,
        body,
    }
}

fn assert_limited(answer: &Answer, id: u64, limit: &str, retry_after: u64) {
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        answer.body
    );
    assert_eq!(answer.header("retry-after"), retry_after.to_string());
    assert_eq!(answer.body["id"], id, "{}", answer.body);
    assert_eq!(answer.body["error"]["code"], -32050);
    assert_eq!(
        answer.body["error"]["data"]["retryAfterSeconds"],
        retry_after
    );
    assert_eq!(answer.body["error"]["data"]["limit"], limit);
    assert!(
        answer
            .header("ratelimit")
            .contains(&format!("\"{limit}\";r=0;t={retry_after}")),
        "{}",
        answer.header("ratelimit")
    );
}

#[tokio::test]
async fn the_ip_limit_trips_at_its_count_answers_429_and_does_not_count_streams() {
    let upstream = Upstream::start(Mode::Json).await;
    let gw = gateway(&upstream, "per_ip = \"3/1h\"", false, &[]).await;
    let url = gw.url("/mcp");
    for (id, left) in [(1, 2), (2, 1)] {
        let ok = call(&url, id, "echo", None, &[]).await;
        assert_eq!(ok.status, StatusCode::OK);
        assert_eq!(ok.header("ratelimit-policy"), "\"ip\";q=3;w=3600");
        assert_eq!(
            ok.header("ratelimit"),
            format!("\"ip\";r={left};t={}", 1200 * (3 - left))
        );
    }
    // A GET (an event stream, or its resumption) costs nothing.
    let get = client::http_client(None, Http::H1)
        .get(&url)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_ne!(get.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        call(&url, 3, "echo", None, &[]).await.status,
        StatusCode::OK
    );
    let before = upstream.probe.calls("echo");
    let refused = call(&url, 4, "echo", None, &[]).await;
    assert_limited(&refused, 4, "ip", 1200);
    assert_eq!(
        upstream.probe.calls("echo"),
        before,
        "nothing reached the upstream"
    );
}

#[tokio::test]
async fn each_principal_has_its_own_allowance_and_it_comes_back() {
    let upstream = Upstream::start(Mode::Json).await;
    // The limits read a clock the test moves: the allowance comes back when it says so.
    let clock = FakeRelativeClock::default();
    let gw = Gateway::builder()
        .insecure_http()
        .auth(&format!("[rate_limits]\nper_user = \"2/2s\"\n\n{}", keys()))
        .limit_clock(LimitClock::Manual(clock.clone()))
        .route(Route::new("tools", "/mcp", &upstream.url()).authenticated())
        .start()
        .await;
    let url = gw.url("/mcp");
    for id in 1..=2 {
        assert_eq!(
            call(&url, id, "echo", Some(ALICE), &[]).await.status,
            StatusCode::OK
        );
    }
    let refused = call(&url, 3, "echo", Some(ALICE), &[]).await;
    assert_limited(&refused, 3, "user", 1);
    // Bob, from the same address, is not Alice.
    assert_eq!(
        call(&url, 4, "echo", Some(BOB), &[]).await.status,
        StatusCode::OK
    );
    // Not a moment before one interval has passed, Alice may go again.
    clock.advance(Duration::from_millis(999));
    let refused = call(&url, 5, "echo", Some(ALICE), &[]).await;
    assert_limited(&refused, 5, "user", 1);
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        call(&url, 6, "echo", Some(ALICE), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_tool_limit_counts_only_its_tools_per_principal() {
    let upstream = Upstream::start(Mode::Json).await;
    let gw = gateway(
        &upstream,
        "",
        true,
        &["rate_limits.per_tool = [{ tools = [\"ech*\"], limit = \"1/1h\" }]"],
    )
    .await;
    let url = gw.url("/mcp");
    assert_eq!(
        call(&url, 1, "echo", Some(ALICE), &[]).await.status,
        StatusCode::OK
    );
    let refused = call(&url, 2, "echo", Some(ALICE), &[]).await;
    assert_limited(&refused, 2, "tool", 3600);
    assert_eq!(upstream.probe.calls("echo"), 1);
    // Another tool, another principal: their own.
    assert_eq!(
        call(&url, 3, "large", Some(ALICE), &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call(&url, 4, "echo", Some(BOB), &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let upstream = Upstream::start(Mode::Json).await;
    // The test client (127.0.0.1) is a trusted proxy: each forwarded client is its own.
    let trusted = gateway(
        &upstream,
        "per_ip = \"1/1h\"\ntrusted_proxies = [\"127.0.0.0/8\"]",
        false,
        &[],
    )
    .await;
    let url = trusted.url("/mcp");
    let from = |ip: &'static str| [("x-forwarded-for", ip)];
    assert_eq!(
        call(&url, 1, "echo", None, &from("203.0.113.1"))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        call(&url, 2, "echo", None, &from("203.0.113.2"))
            .await
            .status,
        StatusCode::OK
    );
    let refused = call(&url, 3, "echo", None, &from("198.51.100.9, 203.0.113.1")).await;
    assert_limited(&refused, 3, "ip", 3600);

    // Not trusted: the header is the client's own claim, and ignored.
    let untrusted = gateway(
        &upstream,
        "per_ip = \"1/1h\"\ntrusted_proxies = [\"10.0.0.0/8\"]",
        false,
        &[],
    )
    .await;
    let url = untrusted.url("/mcp");
    assert_eq!(
        call(&url, 1, "echo", None, &from("203.0.113.1"))
            .await
            .status,
        StatusCode::OK
    );
    let spoofed = call(&url, 2, "echo", None, &from("203.0.113.77")).await;
    assert_limited(&spoofed, 2, "ip", 3600);
}

#[tokio::test]
async fn repeated_authentication_failures_ban_the_address() {
    let upstream = Upstream::start(Mode::Json).await;
    let gw = gateway(
        &upstream,
        "ban = { failures = 3, within = \"1h\", for = \"1h\" }",
        true,
        &[],
    )
    .await;
    let url = gw.url("/mcp");
    // Coming without credentials (an OAuth client's first request) is no failure.
    for id in 1..=5 {
        assert_eq!(
            call(&url, id, "echo", None, &[]).await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    // A good request in between resets nothing.
    for id in 6..=7 {
        assert_eq!(
            call(&url, id, "echo", Some("pk_wrong_0123456789abcdef"), &[])
                .await
                .status,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            call(&url, 100 + id, "echo", Some(ALICE), &[]).await.status,
            StatusCode::OK
        );
    }
    // The third bad key bans the address: after three failures the next request, even
    // with a good key, is refused at once (401 401 401 403).
    assert_eq!(
        call(&url, 9, "echo", Some("pk_wrong_0123456789abcdef"), &[])
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let banned = call(&url, 10, "echo", Some(ALICE), &[]).await;
    assert_eq!(banned.status, StatusCode::FORBIDDEN, "{}", banned.body);
    assert_eq!(banned.body["error"]["code"], -32031);
    assert_eq!(upstream.probe.calls("echo"), 2);
}

#[tokio::test]
async fn methods_cost_what_the_config_says() {
    let upstream = Upstream::start(Mode::Json).await;
    let gw = gateway(
        &upstream,
        "per_user = \"4/1h\"\ncosts = { \"tools/call\" = 2, \"tools/list\" = 0 }",
        true,
        &[],
    )
    .await;
    let url = gw.url("/mcp");
    let first = call(&url, 1, "echo", Some(ALICE), &[]).await;
    assert_eq!(first.header("ratelimit"), "\"user\";r=2;t=1800");
    // A free method is not counted at all.
    let http = client::http_client(None, Http::H1);
    let list = client::post(
        &http,
        &url,
        &json!({ "jsonrpc": "2.0", "id": 9, "method": "tools/list" }),
    )
    .header("mcp-protocol-version", "2025-06-18")
    .header("x-api-key", ALICE)
    .send()
    .await
    .unwrap();
    assert_eq!(list.status(), StatusCode::OK);
    assert!(list.headers().get("ratelimit").is_none());
    assert_eq!(
        call(&url, 2, "echo", Some(ALICE), &[]).await.status,
        StatusCode::OK
    );
    assert_limited(
        &call(&url, 3, "echo", Some(ALICE), &[]).await,
        3,
        "user",
        1800,
    );
}

// Shared mode: the limits live in a real redis-server.

use support::redis::Redis;

/// `[cluster]` for `redis` with `policy`, and `[rate_limits]` from `limits`; clients are
/// told apart by `X-Forwarded-For` (the test client is a trusted proxy).
fn shared(redis: &Redis, policy: &str, limits: &str) -> String {
    format!(
        "{limits}\ntrusted_proxies = [\"127.0.0.0/8\"]\n\n\
         [cluster]\nredis_url = \"{}\"\ntimeout = \"500ms\"\nfailure_policy = \"{policy}\"",
        redis.url()
    )
}

fn from(ip: &str) -> [(&'static str, &str); 1] {
    [("x-forwarded-for", ip)]
}

#[tokio::test]
async fn instances_share_one_limit_and_one_ban_list_through_redis() {
    let redis = Redis::start().await;
    let upstream = Upstream::start(Mode::Json).await;
    let config = shared(
        &redis,
        "fail_open",
        "per_ip = \"4/1h\"\nban = { failures = 2, within = \"1h\", for = \"1h\" }",
    );
    let one = gateway(&upstream, &config, true, &[]).await;
    let two = gateway(&upstream, &config, true, &[]).await;
    let (url1, url2) = (one.url("/mcp"), two.url("/mcp"));
    // Four requests spread over both instances use the one allowance of 4.
    for (id, url) in [(1, &url1), (2, &url2), (3, &url1), (4, &url2)] {
        let ok = call(url, id, "echo", Some(ALICE), &from("203.0.113.1")).await;
        assert_eq!(ok.status, StatusCode::OK, "request {id}");
        assert_eq!(
            ok.header("ratelimit"),
            format!("\"ip\";r={};t={}", 4 - id, 900 * id)
        );
    }
    // The fifth is refused on either.
    for (id, url) in [(5, &url1), (6, &url2)] {
        let refused = call(url, id, "echo", Some(ALICE), &from("203.0.113.1")).await;
        assert_limited(&refused, id, "ip", 900);
    }
    // Another client is another key.
    let other = call(&url2, 7, "echo", Some(ALICE), &from("203.0.113.2")).await;
    assert_eq!(other.status, StatusCode::OK);

    // Bad keys on one instance ban the address on both.
    let bad = Some("pk_wrong_0123456789abcdef");
    // Two failures allowed: the second bans.
    for id in 8..=9 {
        let answer = call(&url1, id, "echo", bad, &from("198.51.100.7")).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let banned = call(&url2, 11, "echo", Some(ALICE), &from("198.51.100.7")).await;
    assert_eq!(banned.status, StatusCode::FORBIDDEN, "{}", banned.body);
    assert_eq!(banned.body["id"], 11);
}

#[tokio::test]
async fn redis_down_follows_the_failure_policy_and_coming_back_is_picked_up() {
    let mut redis = Redis::start().await;
    let upstream = Upstream::start(Mode::Json).await;
    let open_config = shared(&redis, "fail_open", "per_ip = \"1/1h\"");
    let closed_config = shared(&redis, "fail_closed", "per_ip = \"1/1h\"");
    let one = gateway(&upstream, &open_config, false, &[]).await;
    let two = gateway(&upstream, &open_config, false, &[]).await;
    let closed = gateway(&upstream, &closed_config, false, &[]).await;
    let (url1, url2) = (one.url("/mcp"), two.url("/mcp"));

    redis.kill();
    // fail_open: each instance falls back to its own limit (1 per client, per instance).
    for url in [&url1, &url2] {
        assert_eq!(
            call(url, 1, "echo", None, &from("192.0.2.9")).await.status,
            StatusCode::OK
        );
        assert_limited(
            &call(url, 2, "echo", None, &from("192.0.2.9")).await,
            2,
            "ip",
            3600,
        );
    }
    // fail_closed: 503 with a JSON-RPC error, nothing reaches the upstream.
    let before = upstream.probe.calls("echo");
    let unavailable = call(&closed.url("/mcp"), 3, "echo", None, &from("192.0.2.9")).await;
    assert_eq!(unavailable.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(unavailable.body["id"], 3);
    assert_eq!(unavailable.body["error"]["code"], -32051);
    assert_eq!(upstream.probe.calls("echo"), before);

    // Redis comes back: the instances share the limit again, without a restart. (The
    // first calls may still fail over while the connection is re-made: try fresh clients
    // until one is counted across both instances.)
    redis.restart().await;
    support::within("the shared limit to resume", async {
        for n in 0u32.. {
            let ip = format!("198.51.100.{}", n % 250);
            let first = call(&url1, 10, "echo", None, &from(&ip)).await;
            let second = call(&url2, 11, "echo", None, &from(&ip)).await;
            if first.status == StatusCode::OK && second.status == StatusCode::TOO_MANY_REQUESTS {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let resumed = call(&closed.url("/mcp"), 12, "echo", None, &from("192.0.2.200")).await;
    assert_eq!(resumed.status, StatusCode::OK);
}
