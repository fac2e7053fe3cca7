//! Criterion micro-benchmarks of the pieces every proxied request runs through today:
//! header hygiene both ways, the JSON-RPC id peek, the `Host` and `Origin` checks.
//!
//! `cargo bench --bench micro` (add `-- <filter>` for one group). The end-to-end figures
//! that the performance goals are stated in come from `benches/e2e.rs`.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use portcullis::edge::host::HostPolicy;
use portcullis::edge::origin::OriginPolicy;
use portcullis::mcp::jsonrpc;
use portcullis::proxy::headers;

/// What a browser-based MCP client sends on a 2026-07-28 `tools/call`.
fn client_request_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("host", "mcp.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
        ),
        ("accept", "application/json, text/event-stream"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("accept-language", "en-GB,en;q=0.9"),
        ("content-type", "application/json"),
        ("content-length", "1024"),
        ("origin", "https://app.example.com"),
        ("referer", "https://app.example.com/chat"),
        (
            "authorization",
            "Bearer eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1MSJ9.c2ln",
        ),
        ("cookie", "session=abc; theme=dark"),
        ("connection", "keep-alive"),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "query_orders"),
        ("mcp-param-region", "eu-west-1"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("x-forwarded-for", "203.0.113.7"),
        ("sec-fetch-mode", "cors"),
        ("sec-fetch-site", "same-site"),
    ] {
        h.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    h
}

/// What an rmcp upstream answers with, plus the hop-by-hop headers a proxy must drop.
fn upstream_response_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in [
        ("content-type", "application/json"),
        ("content-length", "412"),
        ("date", "Tue, 28 Jul 2026 10:00:00 GMT"),
        ("connection", "keep-alive, x-upstream-hop"),
        ("keep-alive", "timeout=60"),
        ("x-upstream-hop", "1"),
        ("cache-control", "no-cache"),
        ("mcp-session-id", "0f8e1c2a-5b7d-4e39-9a61-3c2d7b8e9f10"),
    ] {
        h.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    h
}

/// A `tools/call` of about 1 KiB, the id after the params as some clients write it.
fn request_body_1k() -> Vec<u8> {
    let filler = "lorem ipsum dolor sit amet ".repeat(34);
    format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"query_orders","arguments":{{"region":"eu-west-1","limit":50,"note":"{filler}"}},"_meta":{{"progressToken":"p-17"}}}},"id":"req-000042"}}"#
    )
    .into_bytes()
}

fn header_hygiene(c: &mut Criterion) {
    let mut group = c.benchmark_group("headers");
    let from = client_request_headers();
    let extra = [HeaderName::from_static("x-tenant")];
    group.bench_function("take_request_headers/20", |b| {
        b.iter_batched(
            || from.clone(),
            |from| {
                let mut out = HeaderMap::with_capacity(16);
                headers::take_request_headers(black_box(from), &extra, &mut out);
                out
            },
            BatchSize::SmallInput,
        );
    });
    let response = upstream_response_headers();
    group.bench_function("strip_hop_by_hop/8", |b| {
        b.iter_batched_ref(
            || response.clone(),
            |h| headers::strip_hop_by_hop(black_box(h)),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn jsonrpc_id(c: &mut Criterion) {
    let body = request_body_1k();
    c.bench_function(&format!("jsonrpc/request_id/{}B", body.len()), |b| {
        b.iter(|| jsonrpc::request_id(black_box(&body)));
    });
}

fn edge_checks(c: &mut Criterion) {
    let mut group = c.benchmark_group("edge");
    let public = url::Url::parse("https://mcp.example.com").ok();
    let hosts = HostPolicy::new(&["alt.example.com:8443".to_owned()], public.as_ref(), false);
    group.bench_function("host_allows/public", |b| {
        b.iter(|| hosts.allows(black_box(Some("mcp.example.com"))));
    });
    let loopback = HostPolicy::new(&[], None, true);
    group.bench_function("host_allows/loopback", |b| {
        b.iter(|| loopback.allows(black_box(Some("127.0.0.1:8080"))));
    });

    let origins = OriginPolicy::new(
        &[
            "https://app.example.com".to_owned(),
            "http://localhost:6274".to_owned(),
        ],
        "https",
    );
    let listed = HeaderValue::from_static("https://app.example.com");
    let same = HeaderValue::from_static("https://mcp.example.com");
    group.bench_function("origin_allows/absent", |b| {
        b.iter(|| origins.allows(black_box(None), black_box(Some("mcp.example.com"))));
    });
    group.bench_function("origin_allows/listed", |b| {
        b.iter(|| origins.allows(black_box(Some(&listed)), black_box(Some("mcp.example.com"))));
    });
    group.bench_function("origin_allows/same_origin", |b| {
        b.iter(|| origins.allows(black_box(Some(&same)), black_box(Some("mcp.example.com"))));
    });
    group.finish();
}

criterion_group!(benches, header_hygiene, jsonrpc_id, edge_checks);
criterion_main!(benches);
