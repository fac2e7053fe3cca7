//! The MCP parse under libFuzzer: the JSON-RPC envelope parse (`McpRequest::parse_with`) of a
//! POST body, with its shape limits and every accessor a later stage calls. Run by
//! `scripts/fuzz`.
//!
//! The first byte of an input picks the route options (bits 0-1: one of four sets of
//! limits; bit 2: strict); the rest is the body. Beyond "no panic", cheap invariants:
//! - a body the parser accepts is JSON to serde_json's own tree, and says the same there:
//!   an object (or, for a batch, an array of them) with `"jsonrpc": "2.0"`, the same
//!   method and the same `params` per message (a gateway that reads a body one way while
//!   the upstream reads it another can be made to judge a call other than the one that
//!   runs);
//! - that tree is within the limits: depth, string length (keys too) and elements.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::mcp::limits::InputLimits;
use portcullis::mcp::message::{McpRequest, ParseOptions};
use serde_json::Value;

/// Limits a route may be configured with. Depth stays below 128, serde_json's own
/// recursion limit, so that a body within the limits is one serde_json can read.
const LIMITS: [InputLimits; 4] = [
    InputLimits {
        max_depth: 64,
        max_string: 1024 * 1024,
        max_elements: 10_000,
    },
    InputLimits {
        max_depth: 4,
        max_string: 16,
        max_elements: 4,
    },
    InputLimits {
        max_depth: 16,
        max_string: 256,
        max_elements: 64,
    },
    InputLimits {
        max_depth: 127,
        max_string: usize::MAX,
        max_elements: usize::MAX,
    },
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let options = ParseOptions {
        limits: LIMITS[usize::from(selector & 0b11)],
        strict: selector & 0b100 != 0,
    };
    let Ok(request) = McpRequest::parse_with(body, &options) else {
        return;
    };

    let _ = request.reply_id();
    let _ = request.calls().count();
    let tree: Value = match serde_json::from_slice(body) {
        Ok(tree) => tree,
        Err(e) => panic!("accepted, but serde_json reads no JSON: {e}"),
    };
    let trees: Vec<&Value> = if request.batch {
        match tree.as_array() {
            Some(items) => items.iter().collect(),
            None => panic!("a batch that is no array"),
        }
    } else {
        vec![&tree]
    };
    assert!(!trees.is_empty());
    within(&tree, 1, &options.limits);
    assert_eq!(trees.len(), request.messages.len());
    for (tree, message) in trees.into_iter().zip(&request.messages) {
        assert_eq!(tree.get("jsonrpc").and_then(Value::as_str), Some("2.0"));
        assert_eq!(
            tree.get("method").and_then(Value::as_str),
            message.method.as_deref()
        );
        assert_eq!(tree.get("params"), message.params(), "params read otherwise");
        let _ = message.name();
    }
});

/// Panics unless `value` (at `depth`) is within `limits`.
fn within(value: &Value, depth: usize, limits: &InputLimits) {
    match value {
        Value::String(s) => assert!(s.len() <= limits.max_string, "a string too long"),
        Value::Array(items) => {
            assert!(depth <= limits.max_depth, "too deep");
            assert!(items.len() <= limits.max_elements, "too many elements");
            for item in items {
                within(item, depth + 1, limits);
            }
        }
        Value::Object(members) => {
            assert!(depth <= limits.max_depth, "too deep");
            assert!(members.len() <= limits.max_elements, "too many members");
            for (key, member) in members {
                assert!(key.len() <= limits.max_string, "a member name too long");
                within(member, depth + 1, limits);
            }
        }
        _ => {}
    }
}
