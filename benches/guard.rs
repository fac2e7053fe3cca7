//! The guards of issue [6/11] on the hot path: reading a 1 KiB `tools/call` (shape limits,
//! the JSON-RPC envelope and the params tree, in one pass; goal ≤ 1 µs), then asking for
//! the params, checking its arguments against a typical compiled tool schema (goal
//! ≤ 5 µs), the redaction prefilter on a clean 1 KiB result, and the pin check of an
//! unchanged 500-tool list.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use portcullis::audit::Audit;
use portcullis::audit::metrics::Metrics;
use portcullis::config::guard::{Checking, Enforcement, RouteGuardConfig};
use portcullis::config::{ProcessEnv, load_str};
use portcullis::guard::RouteGuard;
use portcullis::guard::pins::{PinPolicy, PinStore};
use portcullis::guard::redact::{Pattern, Redactor};
use portcullis::guard::schema::{Checked, ToolCatalog, ToolListIds};
use portcullis::mcp::message::{McpRequest, ParseOptions};
use portcullis::policy::lists::{ListRequests, Viewer, filter_message};
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
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    store.observe("r", &tools, policy);
    c.bench_function("guard/pins_unchanged_500_tools", |b| {
        b.iter(|| store.observe("r", black_box(&tools), policy))
    });

    // What the guard spends on a tools/list answer it has not seen byte for byte (the
    // upstream changed one tool): the read into a tree, the schema catalog, the pins.
    let answer = serde_json::to_vec(&json!({
        "jsonrpc": "2.0", "id": 2, "result": { "tools": tools }
    }))
    .unwrap_or_else(|_| unreachable!());
    c.bench_function(
        &format!(
            "guard/read_changed_list_500_tools/{}KiB",
            answer.len() / 1024
        ),
        |b| b.iter(|| serde_json::from_slice::<Value>(black_box(&answer)).ok()),
    );
    let result = json!({ "tools": tools });
    c.bench_function("guard/catalog_learn_500_tools_known", |b| {
        b.iter(|| catalog.learn(black_box(&result)))
    });
    learn_answers(c, &tools);
}

/// An audit trail that records nothing, for the guard's alerts.
fn quiet_audit() -> Audit {
    let text = "[server]\nlisten = \"127.0.0.1:0\"\ninsecure_http = true\n[audit]\nenabled = false\n\
                [[routes]]\nname = \"r\"\npath = \"/mcp\"\nupstream = { url = \"http://127.0.0.1:9/mcp\" }\n\
                auth = \"none\"\n";
    let config = load_str(
        text,
        &ProcessEnv {
            base_dir: std::env::temp_dir(),
        },
    )
    .unwrap_or_else(|e| unreachable!("{e}"));
    let metrics = Arc::new(Metrics::new().unwrap_or_else(|e| unreachable!("{e}")));
    Audit::start(&config, metrics, Box::new(|_, _| {})).unwrap_or_else(|e| unreachable!("{e}"))
}

/// The answer rewrite learning from `tools/list` answers (default guard: schemas and pins) that are
/// not byte for byte the last one: two pages that alternate, and a list in which one
/// tool's title (which no pin covers) changes every time.
fn learn_answers(c: &mut Criterion, tools: &[Value]) {
    let audit = quiet_audit();
    let request = McpRequest::parse(br#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#)
        .unwrap_or_else(|_| unreachable!());
    let ids = ToolListIds::of(&request).unwrap_or_else(|| unreachable!());
    let answer = |tools: &[Value]| {
        bytes::Bytes::from(
            serde_json::to_vec(&json!({ "jsonrpc": "2.0", "id": 2, "result": { "tools": tools } }))
                .unwrap_or_else(|_| unreachable!()),
        )
    };
    let guard_for = || {
        let store = Arc::new(PinStore::in_memory());
        RouteGuard::new("r", &RouteGuardConfig::default(), &store)
    };

    let pages = [answer(&tools[..250]), answer(&tools[250..])];
    let guard = guard_for();
    for page in pages.iter().chain(&pages) {
        ids.learn_from(page, &guard, &audit);
    }
    let mut n = 0_usize;
    c.bench_function(
        "guard/learn_answer/two_pages_of_250_tools_alternating",
        |b| {
            b.iter(|| {
                n += 1;
                ids.learn_from(black_box(&pages[n % 2]), &guard, &audit);
            })
        },
    );

    let retitled: Vec<bytes::Bytes> = (0..2)
        .map(|version| {
            let mut tools = tools.to_vec();
            tools[17]["title"] = json!(format!("Version {version}"));
            answer(&tools)
        })
        .collect();
    let guard = guard_for();
    for list in retitled.iter().chain(&retitled) {
        ids.learn_from(list, &guard, &audit);
    }
    c.bench_function("guard/learn_answer/500_tools_one_retitled", |b| {
        b.iter(|| {
            n += 1;
            ids.learn_from(black_box(&retitled[n % 2]), &guard, &audit);
        })
    });

    // The whole answer rewrite on a list never seen before (one tool retitled anew each
    // time): the guard learns it, then the list is filtered for a caller.
    let requests = ListRequests::of(&request, &HeaderMap::new()).unwrap_or_else(|| unreachable!());
    let viewer = Viewer {
        policy: Arc::new(|_, name: &str| name.ends_with(['0', '2', '4', '6', '8'])),
    };
    let mut fresh_list = || {
        n += 1;
        let mut tools = tools.to_vec();
        tools[17]["title"] = json!(format!("Version {n}"));
        answer(&tools)
    };
    c.bench_function("guard/learn_then_filter/500_tools_new", |b| {
        b.iter_batched(
            &mut fresh_list,
            |body| {
                ids.learn_from(&body, &guard, &audit);
                // Sent, then let go (as the gateway does), inside the timing.
                filter_message(&body, &requests, &viewer)
                    .ok()
                    .flatten()
                    .map(|out| out.len())
            },
            BatchSize::PerIteration,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
