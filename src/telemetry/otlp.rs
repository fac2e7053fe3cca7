//! OpenTelemetry export (the `otlp` feature): each request's span, sent over OTLP/HTTP to
//! `[tracing] otlp_endpoint` in batches from the SDK's own thread, linked to the caller's
//! trace (`traceparent`) and made the parent of the upstream request.

use http::HeaderMap;
use http::header::HeaderValue;
use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::prelude::*;

use super::trace::{TRACEPARENT, TRACESTATE, TraceParent};
use super::{SpanFields, Telemetry};
use crate::config::TracingConfig;

/// The tracer provider; dropping it sends the spans still waiting.
#[derive(Debug)]
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("the last spans could not be exported: {e}");
        }
    }
}

/// Installs the subscriber: the log lines as without OTLP (filtered by `filter`), and the
/// gateway's spans (`portcullis` at INFO, whatever the log level) to the exporter. Call
/// outside any tokio runtime (the exporter's HTTP client is a blocking one).
pub fn init(
    endpoint: &url::Url,
    config: &TracingConfig,
    filter: EnvFilter,
    json: bool,
) -> Result<Telemetry, String> {
    let exporter = SpanExporter::builder()
        .with_http()
        .with_endpoint(endpoint.as_str())
        .with_timeout(config.timeout.get())
        .build()
        .map_err(|e| format!("tracing.otlp_endpoint: cannot set up the exporter: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            config.sample_ratio,
        ))))
        .with_resource(
            Resource::builder()
                .with_service_name(config.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("portcullis");
    let logs = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .flatten_event(true)
            .fmt_fields(SpanFields)
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(super::colour())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed()
    };
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(Targets::new().with_target("portcullis", tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init()
        .map_err(|e| e.to_string())?;
    Ok(Telemetry {
        _exporter: Some(Exporter { provider }),
    })
}

/// Links a request's span to the caller's trace (a valid `traceparent`, with its
/// `tracestate`) and makes it the parent of the upstream request: `traceparent` is
/// rewritten with the span's own id. `None` (nothing changed) when spans are not
/// exported.
pub fn link(span: &tracing::Span, headers: &mut HeaderMap) -> Option<[u8; 16]> {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let incoming = match (values.next(), values.next()) {
        (Some(one), None) => one.to_str().ok().and_then(TraceParent::parse),
        _ => None,
    };
    if let Some(parent) = incoming {
        let state = headers
            .get(&TRACESTATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<TraceState>().ok())
            .unwrap_or_default();
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.parent_id),
            TraceFlags::new(parent.flags),
            true,
            state,
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    } else {
        headers.remove(&TRACESTATE);
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    if !own.is_valid() {
        return None;
    }
    let trace_id = own.trace_id().to_bytes();
    let value = format!(
        "00-{}-{}-{}",
        crate::hex::Hex(&trace_id),
        crate::hex::Hex(&own.span_id().to_bytes()),
        crate::hex::Hex(&[own.trace_flags().to_u8()])
    );
    headers.insert(TRACEPARENT.clone(), HeaderValue::from_str(&value).ok()?);
    Some(trace_id)
}
