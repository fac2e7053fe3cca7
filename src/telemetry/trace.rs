//! W3C Trace Context (`traceparent`, `tracestate`): a request's trace id is kept (or a
//! new trace started when the client sent none, or a malformed one), the gateway becomes
//! the parent of the upstream request, and the trace id goes into the audit record.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The trace id of a request whose span is `span`: the OTLP exporter's when it links the
/// span (and writes the upstream's `traceparent` itself), else [`propagate`]'s.
pub fn continued(span: &tracing::Span, headers: &mut HeaderMap) -> [u8; 16] {
    #[cfg(feature = "otlp")]
    if let Some(trace) = super::otlp::link(span, headers) {
        return trace;
    }
    #[cfg(not(feature = "otlp"))]
    let _ = span;
    propagate(headers)
}

/// A parsed `traceparent`: `version-traceid-parentid-flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

impl TraceParent {
    /// Parses a header value (version 00, and later versions' first four fields as the
    /// specification asks). All-zero ids and version `ff` are invalid.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let bytes = value.as_bytes();
        if bytes.len() < 55 {
            return None;
        }
        // The four fields are lower-case hex (upper-case is invalid, not folded).
        if bytes.get(..55)?.iter().any(u8::is_ascii_uppercase) {
            return None;
        }
        let [version] = crate::hex::decode_array(value.get(0..2)?)?;
        let rest_ok = match version {
            0 => bytes.len() == 55,
            0xff => false,
            // A later version may add fields after a dash.
            _ => bytes.len() == 55 || bytes.get(55) == Some(&b'-'),
        };
        if !rest_ok
            || bytes.get(2) != Some(&b'-')
            || bytes.get(35) != Some(&b'-')
            || bytes.get(52) != Some(&b'-')
        {
            return None;
        }
        let trace_id: [u8; 16] = crate::hex::decode_array(value.get(3..35)?)?;
        let parent_id: [u8; 8] = crate::hex::decode_array(value.get(36..52)?)?;
        let [flags] = crate::hex::decode_array(value.get(53..55)?)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// A new trace (not sampled: the gateway records nothing of its own unless exporting).
    pub fn start() -> Self {
        let random = uuid::Uuid::new_v4().into_bytes();
        Self {
            trace_id: random,
            parent_id: new_span_id(),
            flags: 0,
        }
    }

    /// `00-<trace id>-<parent id>-<flags>`, written in place (once per request).
    pub fn header_value(&self) -> HeaderValue {
        let mut text = Vec::with_capacity(55);
        text.extend_from_slice(b"00-");
        crate::hex::encode_into(&self.trace_id, &mut text);
        text.push(b'-');
        crate::hex::encode_into(&self.parent_id, &mut text);
        text.push(b'-');
        crate::hex::encode_into(&[self.flags], &mut text);
        HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
            .unwrap_or_else(|_| HeaderValue::from_static(""))
    }

    pub fn trace_id_hex(&self) -> String {
        crate::hex::encode(&self.trace_id)
    }
}

fn new_span_id() -> [u8; 8] {
    let random = uuid::Uuid::new_v4().into_bytes();
    let mut id = [0; 8];
    id.copy_from_slice(random.get(..8).unwrap_or(&[1; 8]));
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// Lower-case hex into `out`; `None` unless exactly that many lower-case hex digits.
/// The request's trace, continued through the gateway: `traceparent` rewritten with the
/// gateway as the upstream request's parent (same trace id and flags); a missing or
/// malformed one replaced by a new trace (and `tracestate` dropped, as it belongs to the
/// trace it came with). Returns the trace id.
pub fn propagate(headers: &mut HeaderMap) -> [u8; 16] {
    let mut values = headers.get_all(&TRACEPARENT).iter();
    let incoming = match (values.next(), values.next()) {
        (Some(one), None) => one.to_str().ok().and_then(TraceParent::parse),
        _ => None,
    };
    let outgoing = match incoming {
        Some(parent) => TraceParent {
            parent_id: new_span_id(),
            ..parent
        },
        None => {
            headers.remove(&TRACESTATE);
            TraceParent::start()
        }
    };
    headers.insert(TRACEPARENT.clone(), outgoing.header_value());
    outgoing.trace_id
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_the_specifications_example_and_refuses_malformed_ones() {
        let p = TraceParent::parse(VALID).unwrap();
        assert_eq!(p.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(p.flags, 1);
        assert_eq!(p.header_value(), VALID);
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "+0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-+1",
            "0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
        // A later version with more fields: its first four are read.
        assert!(TraceParent::parse(&format!("01{}-more", &VALID[2..])).is_some());
    }

    #[test]
    fn keeps_the_trace_and_becomes_the_parent_or_starts_a_new_trace() {
        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static(VALID));
        headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=1"));
        let trace = propagate(&mut headers);
        assert_eq!(
            crate::hex::encode(&trace),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let sent = headers.get(&TRACEPARENT).unwrap().to_str().unwrap();
        let sent = TraceParent::parse(sent).unwrap();
        assert_eq!((sent.trace_id, sent.flags), (trace, 1));
        assert_ne!(sent.parent_id, TraceParent::parse(VALID).unwrap().parent_id);
        assert!(headers.contains_key(&TRACESTATE));

        let mut headers = HeaderMap::new();
        headers.insert(&TRACEPARENT, HeaderValue::from_static("garbage"));
        headers.insert(&TRACESTATE, HeaderValue::from_static("vendor=1"));
        let trace = propagate(&mut headers);
        let sent = TraceParent::parse(headers.get(&TRACEPARENT).unwrap().to_str().unwrap());
        assert_eq!(sent.unwrap().trace_id, trace);
        assert!(!headers.contains_key(&TRACESTATE));
    }
}
