//! Stage 9 under libFuzzer: the shape-limit scan (`InputLimits::check`) and the JSON-RPC
//! envelope parse (`McpRequest::parse_with`) of a POST body, with every accessor a later
//! stage calls. Run by `scripts/fuzz`.
//!
//! The first byte of an input picks the route options (bits 0-1: one of four sets of
//! limits; bit 2: strict); the rest is the body. Beyond "no panic", cheap invariants:
//! - the parse refuses on a limit exactly when the scan does, with the same limit;
//! - a body the parser accepts is JSON to serde_json's own tree, and says the same there:
//!   an object (or, for a batch, an array of them) with `"jsonrpc": "2.0"` and the same
//!   method per message (a gateway that reads a body one way while the upstream reads it
//!   another can be made to judge a call other than the one that runs);
//! - a message with raw `params` has them as a tree too.

#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis::mcp::limits::InputLimits;
use portcullis::mcp::message::{McpRequest, ParseError, ParseOptions};
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
    let scanned = options.limits.check(body);
    let parsed = McpRequest::parse_with(body, &options);
    match (&scanned, &parsed) {
        (Err(limit), Err(ParseError::Limit(refused))) => assert_eq!(limit, refused),
        (Err(_), _) | (Ok(()), Err(ParseError::Limit(_))) => {
            panic!("the scan said {scanned:?}, the parse {parsed:?}")
        }
        _ => {}
    }
    let Ok(request) = parsed else {
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
    assert_eq!(trees.len(), request.messages.len());
    for (tree, message) in trees.into_iter().zip(&request.messages) {
        assert_eq!(tree.get("jsonrpc").and_then(Value::as_str), Some("2.0"));
        assert_eq!(
            tree.get("method").and_then(Value::as_str),
            message.method.as_deref()
        );
        let _ = message.name();
        let (raw, tree) = (message.raw_params().is_some(), message.params().is_some());
        assert_eq!(raw, tree, "raw params that are no tree");
        let _ = message.name();
    }
});
