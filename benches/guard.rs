//! The guards of issue [6/11] on the hot path: reading a 1 KiB `tools/call` (shape limits,
//! the JSON-RPC envelope and the params tree, in one pass; goal ≤ 1 µs), then asking for
//! the params, checking its arguments against a typical compiled tool schema (goal
//! ≤ 5 µs), the redaction prefilter on a clean 1 KiB result, and the pin check of an
//! unchanged 500-tool list.

use std::collections::BTreeMap;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use portcullis::config::guard::{Checking, Enforcement};
use portcullis::guard::pins::{PinPolicy, PinStore};
use portcullis::guard::redact::{Pattern, Redactor};
use portcullis::guard::schema::{Checked, ToolCatalog};
use portcullis::mcp::message::{McpRequest, ParseOptions};
use serde_json::{Value, json};

/// A `tools/call` of about 1 KiB: a path, a mode, a few flags and a text body.
fn call_body() -> Vec<u8> {
    let text = "The quick brown fox jumps over the lazy dog. ".repeat(19);
    let body = json!({
        "jsonrpc": "2.0",
        "id": 4711,
        "method": "tools/call",
        "params": {
            "name": "write_file",
            "arguments": {
                "path": "/srv/data/reports/2026/11/summary.md",
                "mode": "overwrite",
                "create_dirs": true,
                "encoding": "utf-8",
                "content": text,
            },
            "_meta": { "progressToken": "p-17" }
        }
    });
    serde_json::to_vec(&body).unwrap_or_else(|_| unreachable!())
}

/// The allocator the `portcullis` binary ships with (`src/main.rs`): the parse allocates
/// the params tree, so the figure is the product's only with it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "path": { "type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^/" },
            "mode": { "enum": ["append", "overwrite"] },
            "create_dirs": { "type": "boolean" },
            "encoding": { "type": "string", "enum": ["utf-8", "latin-1"] },
            "content": { "type": "string", "maxLength": 1048576 }
        },
        "required": ["path", "content"],
        "additionalProperties": false
    })
}

fn bench(c: &mut Criterion) {
    let body = call_body();
    assert!((1000..1200).contains(&body.len()), "{}", body.len());
    let options = ParseOptions::default();
    c.bench_function("guard/envelope_parse_1kib", |b| {
        b.iter(|| {
            McpRequest::parse_with(black_box(&body), &options).unwrap_or_else(|_| unreachable!())
        })
    });
    c.bench_function("guard/envelope_and_params_tree_1kib", |b| {
        b.iter(|| {
            let parsed = McpRequest::parse_with(black_box(&body), &options)
                .unwrap_or_else(|_| unreachable!());
            black_box(parsed.messages[0].params().is_some());
            parsed
        })
    });

    let catalog = ToolCatalog::new(&BTreeMap::new());
    catalog.learn(&json!({ "tools": [{ "name": "write_file", "inputSchema": schema() }] }));
    let parsed = McpRequest::parse(&body).unwrap_or_else(|_| unreachable!());
    let arguments = parsed.messages[0]
        .params()
        .unwrap_or_else(|| unreachable!())["arguments"]
        .clone();
    assert_eq!(
        catalog.check("write_file", Some(&arguments)),
        Checked::Valid
    );
    c.bench_function("guard/schema_check_typical_call", |b| {
        b.iter(|| catalog.check(black_box("write_file"), Some(black_box(&arguments))))
    });

    let redactor = Redactor::new(Pattern::ALL, &[]).unwrap_or_else(|_| unreachable!());
    let result = serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": 4711,
        "result": { "content": [{ "type": "text", "text": "The quick brown fox jumps over the lazy dog. ".repeat(22) }] }
    }))
    .unwrap_or_else(|_| unreachable!());
    assert!(!redactor.may_match(&result));
    c.bench_function("guard/redact_prefilter_clean_1kib", |b| {
        b.iter(|| redactor.may_match(black_box(&result)))
    });

    let tools: Vec<Value> = (0..500)
        .map(|i| {
            json!({
                "name": format!("tool_{i:03}"),
                "description": format!("Does thing number {i} to the files of the project"),
                "inputSchema": schema(),
            })
        })
        .collect();
    let store = PinStore::in_memory();
    let policy = PinPolicy {
        pinning: Enforcement::Enforce,
        descriptions: Checking::Warn,
    };
    store.observe("r", &tools, policy, |_| None);
    c.bench_function("guard/pins_unchanged_500_tools", |b| {
        b.iter(|| store.observe("r", black_box(&tools), policy, |_| None))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
