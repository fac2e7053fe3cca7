//! Upstreams of the legacy HTTP+SSE transport (2024-11-05, `transport = "sse"`): for each
//! session the gateway opens the server's event stream (`GET url`), waits for its
//! `endpoint` event, and POSTs the client's messages there; the server's messages arrive
//! as `message` events. The endpoint must be on the upstream's own origin: a server cannot
//! send the gateway's requests (and the route's upstream headers) anywhere else.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Request};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::sync::{Notify, mpsc, oneshot};

use super::channel::{Ends, Process};
use crate::config::Site;
use crate::mcp::sse::SseDecoder;

/// Where and how a route's legacy server is reached.
pub struct SseTarget {
    route: Arc<str>,
    url: url::Url,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    /// The route's `upstream_headers` (secrets), on every request.
    headers: Vec<(HeaderName, HeaderValue)>,
    response_timeout: Duration,
}

impl std::fmt::Debug for SseTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseTarget")
            .field("route", &self.route)
            .field("url", &self.url.as_str())
            .finish_non_exhaustive()
    }
}

impl SseTarget {
    pub fn new(site: &Site<'_>, url: &url::Url) -> Result<Self, crate::tls::TlsError> {
        let up = site.upstream;
        let connector = crate::tls::https_connector(
            up.ca.as_deref(),
            up.connect_timeout.get(),
            url.scheme() == "http",
        )?;
        let client = Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_idle_timeout(up.pool_idle_timeout.get())
            .pool_max_idle_per_host(up.pool_max_idle)
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .build(connector);
        let headers = site.header_values();
        Ok(Self {
            route: Arc::from(&*site.name),
            url: url.clone(),
            client,
            headers,
            response_timeout: up.response_timeout.get(),
        })
    }

    /// Opens a session on the server (for one session of the route's, or `shared` by
    /// them); `on_exit` runs once the connection is gone.
    pub fn connect(
        self: &Arc<Self>,
        session: String,
        shared: bool,
        on_exit: impl FnOnce(&Process) + Send + 'static,
    ) -> Arc<Process> {
        let stop = Arc::new(Notify::new());
        let (process, outgoing) = Process::new(
            Arc::clone(&self.route),
            session,
            shared,
            Ends::Connection(Arc::clone(&stop)),
        );
        let (target, connection) = (Arc::clone(self), Arc::clone(&process));
        tokio::spawn(async move {
            tokio::select! {
                () = target.run(&connection, outgoing) => {}
                () = stop.notified() => {}
            }
            tracing::info!(route = %target.route, "A legacy SSE upstream session ended");
            connection.ended(on_exit);
        });
        process
    }

    fn request(
        &self,
        builder: http::request::Builder,
        body: Bytes,
    ) -> Option<Request<Full<Bytes>>> {
        let mut request = builder.body(Full::new(body)).ok()?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        Some(request)
    }

    /// The connection: the event stream read until it ends, the client's messages POSTed
    /// to the endpoint it names.
    async fn run(&self, process: &Arc<Process>, outgoing: mpsc::Receiver<Bytes>) {
        let route = &self.route;
        let Some(open) = self.request(
            Request::get(self.url.as_str()).header(ACCEPT, "text/event-stream"),
            Bytes::new(),
        ) else {
            return;
        };
        let response = match tokio::time::timeout(self.response_timeout, self.client.request(open))
            .await
        {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                tracing::warn!(route = %route, error = %e, "The legacy SSE upstream could not be reached");
                return;
            }
            Err(_) => {
                tracing::warn!(route = %route, "The legacy SSE upstream did not open its stream in time");
                return;
            }
        };
        let streams = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !response.status().is_success() || !streams {
            tracing::warn!(route = %route, status = %response.status(), "The legacy SSE upstream did not open an event stream");
            return;
        }
        let (endpoint_found, endpoint) = oneshot::channel::<url::Url>();
        let mut endpoint_found = Some(endpoint_found);
        let writer = tokio::spawn(post_all(
            Arc::clone(&self.route),
            self.client.clone(),
            self.headers.clone(),
            endpoint,
            outgoing,
        ));
        let mut body = response.into_body();
        let mut decoder = SseDecoder::new();
        'read: while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { break };
            let Ok(chunk) = frame.into_data() else {
                continue;
            };
            decoder.push(chunk);
            loop {
                let event = match decoder.next_event() {
                    Ok(Some(event)) => event,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!(route = %route, error = %e, "The legacy SSE upstream's stream is broken");
                        break 'read;
                    }
                };
                let Some(data) = event.data() else { continue };
                match event.event_type().as_deref() {
                    Some("endpoint") => {
                        let Some(found) = endpoint_found.take() else {
                            continue;
                        };
                        match self.endpoint(&data) {
                            Some(url) => {
                                let _ = found.send(url);
                            }
                            None => {
                                tracing::warn!(route = %route, "The legacy SSE upstream named an endpoint off its own origin; the session is closed");
                                break 'read;
                            }
                        }
                    }
                    None | Some("message") => {
                        process.deliver(Bytes::from(data.into_owned())).await;
                    }
                    Some(_) => {}
                }
            }
        }
        writer.abort();
    }

    /// The endpoint an `endpoint` event names, if it is on the upstream's own origin.
    fn endpoint(&self, data: &str) -> Option<url::Url> {
        let url = self.url.join(data.trim()).ok()?;
        (url.origin() == self.url.origin()).then_some(url)
    }
}

/// POSTs each message to the endpoint once it is known.
async fn post_all(
    route: Arc<str>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    headers: Vec<(HeaderName, HeaderValue)>,
    endpoint: oneshot::Receiver<url::Url>,
    mut outgoing: mpsc::Receiver<Bytes>,
) {
    let Ok(endpoint) = endpoint.await else { return };
    while let Some(message) = outgoing.recv().await {
        let Ok(mut request) = Request::post(endpoint.as_str())
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(message))
        else {
            continue;
        };
        for (name, value) in &headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        match client.request(request).await {
            Ok(response) if response.status().is_success() => {
                let _ = response.into_body().collect().await;
            }
            Ok(response) => {
                tracing::warn!(route = %route, status = %response.status(), "The legacy SSE upstream refused a message");
            }
            Err(e) => {
                tracing::warn!(route = %route, error = %e, "A message could not be sent to the legacy SSE upstream");
            }
        }
    }
}
