//! The upstream connection pool: keep-alive connections are reused, bounded and closed when
//! idle too long; a connection the upstream closed is never a reason for a failed request
//! unless the request may already have been delivered and cannot safely be repeated.

use crate::support;

use std::time::Instant;

use http::StatusCode;
use serde_json::json;
use support::client::{self, Http};
use support::gateway::{Gateway, Route};
use support::upstream::{RawBehaviour, RawServer, reached};
use support::within;

/// A plain-HTTP gateway with one worker thread (one pool shard, so that counts of
/// connections do not depend on how the kernel spreads client connections over workers)
/// and one route, `/mcp`, to `upstream` with the extra `[routes.upstream]` settings.
async fn gateway_to(upstream: &RawServer, settings: &[&str]) -> Gateway {
    // The raw server answers HTTP, not MCP: it lists no tools, so the gateway's argument
    // checks and tool pins (and its own tools/list, which would open connections of its
    // own) are off.
    let mut route = Route::new("pool", "/mcp", &upstream.url())
        .setting("guard = { arguments = \"off\", pinning = \"off\" }");
    for line in settings {
        route = route.upstream_setting(line);
    }
    Gateway::builder()
        .insecure_http()
        .server_setting("worker_threads = 1")
        .route(route)
        .start()
        .await
}

async fn call(gateway: &Gateway, id: u64) -> (StatusCode, serde_json::Value) {
    let http = client::http_client(None, Http::H1);
    let body = client::call_body(id, "echo", &json!({ "text": "x" }));
    let response = within(
        "the gateway's answer",
        client::post(&http, &gateway.url("/mcp"), &body).send(),
    )
    .await
    .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn get(gateway: &Gateway) -> StatusCode {
    let http = client::http_client(None, Http::H1);
    let request = http
        .get(gateway.url("/mcp"))
        .header(http::header::ACCEPT, "text/event-stream");
    within("the gateway's answer", request.send())
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let upstream = RawServer::start(RawBehaviour::KeepAlive).await;
    let gateway = gateway_to(&upstream, &[]).await;
    for id in 1..=5 {
        let (status, body) = call(&gateway, id).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["id"], id);
    }
    assert_eq!(
        *upstream.accepted.borrow(),
        1,
        "the connection was not reused"
    );
    gateway.shutdown().await;
}

#[tokio::test]
async fn a_connection_the_upstream_closed_is_not_used_again() {
    let upstream = RawServer::start(RawBehaviour::CloseAfterAnswer).await;
    let gateway = gateway_to(&upstream, &[]).await;
    let (status, _) = call(&gateway, 1).await;
    assert_eq!(status, StatusCode::OK);
    within(
        "the upstream to close its connection",
        reached(&upstream.closed_by_server, 1),
    )
    .await;
    // The pooled connection is dead: the next request must not fail because of it.
    let (status, body) = call(&gateway, 2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id"], 2);
    assert_eq!(*upstream.accepted.borrow(), 2);
    assert_eq!(*upstream.requests.borrow(), 2, "a request was sent twice");
    gateway.shutdown().await;
}

/// The upstream drops a request it received on a kept-alive connection. A GET may be sent
/// again, on a new connection; a POST (`tools/call` is not idempotent) may not: it may have
/// been acted on, so the client gets a 502.
#[tokio::test]
async fn a_request_lost_on_a_reused_connection_is_retried_only_if_idempotent() {
    let upstream = RawServer::start(RawBehaviour::HangUpOnSecond).await;
    let gateway = gateway_to(&upstream, &[]).await;

    assert_eq!(get(&gateway).await, StatusCode::OK);
    assert_eq!(
        get(&gateway).await,
        StatusCode::OK,
        "the GET was not retried"
    );
    // First GET, the lost second one, and its retry on a new connection.
    assert_eq!(*upstream.requests.borrow(), 3);
    assert_eq!(*upstream.accepted.borrow(), 2);

    // The retry's connection is pooled; a POST on it is its second request, and is lost.
    let (status, body) = call(&gateway, 7).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["id"], 7);
    assert_eq!(body["error"]["code"], -32010);
    assert_eq!(*upstream.requests.borrow(), 4, "the POST was repeated");
    assert_eq!(*upstream.accepted.borrow(), 2);

    // A fresh connection afterwards works.
    let (status, _) = call(&gateway, 8).await;
    assert_eq!(status, StatusCode::OK);
    gateway.shutdown().await;
}

#[tokio::test]
async fn idle_connections_beyond_the_bound_are_closed() {
    let upstream = RawServer::start(RawBehaviour::AnswerWhen(5)).await;
    let gateway = gateway_to(&upstream, &["pool_max_idle = 2"]).await;
    // Five requests at once need five upstream connections (the upstream answers none
    // before all five arrived); only two are kept afterwards.
    let calls: Vec<_> = (1..=5).map(|id| call(&gateway, id)).collect();
    for (status, _) in futures::future::join_all(calls).await {
        assert_eq!(status, StatusCode::OK);
    }
    assert_eq!(*upstream.accepted.borrow(), 5);
    within(
        "the gateway to close the connections beyond the bound",
        reached(&upstream.closed_by_peer, 3),
    )
    .await;
    // The two kept connections serve the next requests.
    let (first, second) = tokio::join!(call(&gateway, 6), call(&gateway, 7));
    assert_eq!((first.0, second.0), (StatusCode::OK, StatusCode::OK));
    assert_eq!(
        *upstream.accepted.borrow(),
        5,
        "a kept connection was not reused"
    );
    assert_eq!(*upstream.closed_by_peer.borrow(), 3);
    gateway.shutdown().await;
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_pool_idle_timeout() {
    let upstream = RawServer::start(RawBehaviour::KeepAlive).await;
    let gateway = gateway_to(&upstream, &["pool_idle_timeout = \"300ms\""]).await;
    let (status, _) = call(&gateway, 1).await;
    assert_eq!(status, StatusCode::OK);
    let idle_since = Instant::now();
    within(
        "the gateway to close the idle connection",
        reached(&upstream.closed_by_peer, 1),
    )
    .await;
    assert!(
        idle_since.elapsed().as_millis() >= 250,
        "closed before the idle timeout"
    );
    // The next request opens a new connection.
    let (status, _) = call(&gateway, 2).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(*upstream.accepted.borrow(), 2);
    gateway.shutdown().await;
}
