//! Alerts POSTed as JSON to `[audit.monitor.webhook]`: a task of its own with a bounded
//! queue, so a slow or dead receiver never holds up a request. Each delivery has a
//! timeout and is retried with growing pauses; an alert that cannot be delivered stays in
//! the audit trail and is counted (`portcullis_alert_webhooks_total{result="failed"}`).

use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use prometheus::IntCounterVec;
use tokio::sync::mpsc;

use crate::config::audit::WebhookConfig;

/// Alerts waiting for delivery beyond this are not sent (they are in the trail).
const QUEUE: usize = 1024;

/// The pause before the first retry; doubled for each further one.
const FIRST_PAUSE: Duration = Duration::from_millis(250);

/// The handle alerts are sent through.
#[derive(Debug, Clone)]
pub struct Webhook {
    queue: mpsc::Sender<Bytes>,
    counts: IntCounterVec,
}

struct Delivery {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
    retries: u32,
    counts: IntCounterVec,
}

impl Webhook {
    /// Starts the delivery task (needs a tokio runtime).
    pub fn start(config: &WebhookConfig, counts: IntCounterVec) -> Result<Self, String> {
        // The URL may carry a secret: no error or log line shows it.
        let uri: Uri = config
            .url
            .expose()
            .parse()
            .map_err(|_| "audit.monitor.webhook.url is not a valid URI".to_owned())?;
        let connector = crate::tls::https_connector(
            None,
            config.timeout.get(),
            uri.scheme_str() == Some("http"),
        )
        .map_err(|e| e.to_string())?;
        let headers = config
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::from_bytes(name.as_bytes()).ok()?,
                    HeaderValue::from_str(value.expose()).ok()?,
                ))
            })
            .collect();
        let delivery = Delivery {
            client: Client::builder(TokioExecutor::new()).build(connector),
            uri,
            headers,
            timeout: config.timeout.get(),
            retries: config.retries,
            counts: counts.clone(),
        };
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the alert webhook needs a tokio runtime".to_owned())?;
        let (queue, receiver) = mpsc::channel(QUEUE);
        runtime.spawn(delivery.run(receiver));
        Ok(Self { queue, counts })
    }

    /// Queues an alert (its JSON); never waits.
    pub fn send(&self, alert: Bytes) {
        if self.queue.try_send(alert).is_err() {
            self.counts.with_label_values(&["dropped"]).inc();
            tracing::warn!(
                "The alert webhook queue is full; an alert was not sent (it is in the audit trail)"
            );
        }
    }
}

impl Delivery {
    async fn run(self, mut receiver: mpsc::Receiver<Bytes>) {
        while let Some(alert) = receiver.recv().await {
            let result = if self.deliver(alert).await {
                "delivered"
            } else {
                "failed"
            };
            self.counts.with_label_values(&[result]).inc();
        }
    }

    /// One alert, with retries: `true` once the receiver answered 2xx.
    async fn deliver(&self, alert: Bytes) -> bool {
        let mut pause = FIRST_PAUSE;
        for attempt in 0..=self.retries {
            if attempt > 0 {
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            let mut request = Request::new(Full::new(alert.clone()));
            *request.method_mut() = Method::POST;
            *request.uri_mut() = self.uri.clone();
            let headers = request.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(
                USER_AGENT,
                HeaderValue::from_static(concat!("portcullis/", env!("CARGO_PKG_VERSION"))),
            );
            for (name, value) in &self.headers {
                headers.insert(name.clone(), value.clone());
            }
            match tokio::time::timeout(self.timeout, self.client.request(request)).await {
                Ok(Ok(response)) if response.status().is_success() => return true,
                Ok(Ok(response)) => {
                    tracing::warn!(
                        status = response.status().as_u16(),
                        attempt,
                        "The alert webhook refused an alert"
                    );
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, attempt, "The alert webhook could not be reached");
                }
                Err(_) => {
                    tracing::warn!(attempt, "The alert webhook did not answer in time");
                }
            }
        }
        false
    }
}
