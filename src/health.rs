//! `/healthz` (the process answers) and `/readyz` (config loaded, every upstream accepts a
//! TCP connection). Answered outside any route, before Host checks, so orchestrators can
//! probe by IP. They reveal route names and reachability, never upstream addresses.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::json;

use crate::gateway::Gateway;

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

pub fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

pub async fn readyz(gateway: &Gateway) -> Response {
    let mut probes = tokio::task::JoinSet::new();
    for (i, route) in gateway.routes.iter().enumerate() {
        let authority = route.upstream.authority().to_owned();
        probes.spawn(async move {
            let ok = matches!(
                tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(authority))
                    .await,
                Ok(Ok(_))
            );
            (i, ok)
        });
    }
    let mut reachable = vec![false; gateway.routes.len()];
    while let Some(done) = probes.join_next().await {
        if let Ok((i, ok)) = done
            && let Some(slot) = reachable.get_mut(i)
        {
            *slot = ok;
        }
    }
    let ready = reachable.iter().all(|ok| *ok);
    let routes: Vec<_> = gateway
        .routes
        .iter()
        .zip(&reachable)
        .map(|(r, ok)| {
            json!({
                "name": r.name,
                "path": r.path,
                "upstream": if *ok { "reachable" } else { "unreachable" },
            })
        })
        .collect();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if ready { "ready" } else { "not_ready" }, "routes": routes });
    (status, Json(body)).into_response()
}
