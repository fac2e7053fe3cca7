//! The audit trail's costs: what the request path spends on a record (naming its calls,
//! counting it in the metrics, queueing it), what the writer spends on one (serialising,
//! chaining, writing), and how many records a second the writer sustains to a file
//! (goal: ≥ 100,000). The whole cost per request is the end-to-end bench's
//! (`PORTCULLIS_BENCH_AUDIT=off` against the default, goal ≤ 3 µs of CPU).
//!
//! `cargo bench --bench audit` runs both; `-- --throughput` only the writer's rate.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::Criterion;
use portcullis::audit::chain::{Chain, Hasher};
use portcullis::audit::event::{Body, CallRecord, Exchange, Kind, Record, RequestRecord};
use portcullis::audit::metrics::Metrics;
use portcullis::audit::sink::AuditLog;
use portcullis::auth::{AuthMethod, Principal};
use portcullis::config::audit::AuditConfig;

/// A typical allowed `tools/call` record.
fn record() -> RequestRecord {
    let mut principal = Principal::new("agent-7f3a", AuthMethod::Jwt);
    principal.issuer = Some("https://auth.example.com".into());
    principal.client = Some("claude-desktop".into());
    RequestRecord {
        kind: Kind::Request,
        reason: "forwarded",
        request_id: "5c0496ad91fd4d88ba9c69939cdc4e86".into(),
        trace_id: Some([
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ]),
        route: Some(Arc::from("github")),
        client_ip: Some("198.51.100.7".parse().unwrap_or_else(|_| unreachable!())),
        user_agent: Some("claude-desktop/1.2 (mcp)".into()),
        http_method: http::Method::POST,
        status: 200,
        latency: Duration::from_micros(1234),
        bytes_out: 512,
        cut_short: false,
        exchange: Exchange {
            principal: Some(Arc::new(principal)),
            calls: vec![CallRecord {
                method: "tools/call".into(),
                name: Some("search_issues".into()),
                arguments: None,
            }],
            upstream_status: Some(200),
            upstream_latency: Some(Duration::from_micros(900)),
            bytes_in: 160,
            ..Exchange::default()
        },
    }
}

fn costs(c: &mut Criterion) {
    let mut group = c.benchmark_group("audit");
    let body = br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"search_issues","arguments":{"query":"is:open label:bug","limit":20,"repo":"example/portcullis"}}}"#;
    // What a record's calls cost: the parse (params included) and the names.
    group.bench_function("request_path/parse_and_name", |b| {
        b.iter(|| {
            let parsed = portcullis::mcp::message::McpRequest::parse(black_box(body))
                .unwrap_or_else(|_| unreachable!());
            portcullis::audit::calls_of(
                &parsed,
                portcullis::audit::arguments::ArgumentsMode::None,
                &[],
            )
        });
    });
    let metrics = Metrics::new().unwrap_or_else(|_| unreachable!());
    let sample = record();
    group.bench_function("request_path/metrics", |b| {
        b.iter(|| metrics.request(black_box(&sample), false));
    });
    let mut chain = Chain::new(Hasher::Sha256);
    let mut event = Vec::with_capacity(2048);
    let mut line = Vec::with_capacity(2048);
    let one = Record::now(Body::Request(Box::new(record())));
    group.bench_function("writer/serialise_and_chain", |b| {
        b.iter(|| {
            event.clear();
            line.clear();
            black_box(&one)
                .write_json(&mut event)
                .unwrap_or_else(|_| unreachable!());
            chain.seal_into(&event, &mut line);
            black_box(line.len())
        });
    });
    group.finish();
}

/// Records per second the writer puts in a file, from two producing threads.
fn throughput() {
    let dir = tempfile::tempdir().unwrap_or_else(|_| unreachable!());
    let config = AuditConfig {
        file: Some(dir.path().join("audit.jsonl")),
        ..AuditConfig::default()
    };
    let metrics = Metrics::new().unwrap_or_else(|_| unreachable!());
    let log = Arc::new(
        AuditLog::start(&config, metrics.audit.clone()).unwrap_or_else(|_| unreachable!()),
    );
    let total = 1_000_000_u64;
    let started = Instant::now();
    let producers: Vec<_> = (0..2)
        .map(|_| {
            let log = Arc::clone(&log);
            std::thread::spawn(move || {
                for _ in 0..total / 2 {
                    log.send(Record::now(Body::Request(Box::new(record()))));
                }
            })
        })
        .collect();
    for p in producers {
        let _ = p.join();
    }
    log.close(Record::now(Body::Stopped));
    let elapsed = started.elapsed();
    let size = std::fs::metadata(dir.path().join("audit.jsonl")).map_or(0, |m| m.len());
    #[expect(clippy::cast_precision_loss, reason = "a report")]
    let rate = metrics.audit.records.get() as f64 / elapsed.as_secs_f64();
    println!(
        "writer: {} records ({:.0} MiB) to a file in {:.2} s: {rate:.0} records/s (goal ≥ 100,000)",
        metrics.audit.records.get(),
        size as f64 / (1024.0 * 1024.0),
        elapsed.as_secs_f64(),
    );
}

fn main() {
    let only_throughput = std::env::args().any(|a| a == "--throughput");
    if !only_throughput {
        let mut c = Criterion::default().configure_from_args();
        costs(&mut c);
        c.final_summary();
    }
    throughput();
}
