//! The operators' side: Prometheus metrics (`audit::metrics`), served at `/metrics` on the
//! `[admin]` listener when one is configured, else on the main listener to the networks
//! `[metrics] allow_from` names (loopback by default).

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

use crate::audit::metrics::{Metrics, metrics_response};

fn plain(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// One request to the admin listener.
fn admin_answer(metrics: &Metrics, req: &Request<hyper::body::Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => metrics_response(metrics),
        (&Method::GET, "/healthz") => plain(StatusCode::OK, "ok\n"),
        (_, "/metrics" | "/healthz") => plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n"),
        _ => plain(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// Serves the admin listener until the task is dropped (plain HTTP/1.1 and h2c).
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "The admin listener could not accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let answer = admin_answer(&metrics, &req);
                async move { Ok::<_, Infallible>(answer) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
