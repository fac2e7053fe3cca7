//! What a shared server process needs read and rewritten in one message: several clients
//! speak to one server, so each client's request ids and progress tokens are replaced by
//! the gateway's own on the way in, and put back on the way out. Only the bytes of the
//! replaced values change: everything else of the message stays as it was written.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The members of one message that routing and rewriting read; each raw value borrows
/// from the message, so that it can be replaced where it is.
#[derive(Debug, Default)]
pub struct Parts<'a> {
    pub id: Option<&'a RawValue>,
    pub method: Option<Cow<'a, str>>,
    /// `params._meta.progressToken` (a request).
    pub progress: Option<&'a RawValue>,
    /// `params.progressToken` (a progress notification).
    pub token: Option<&'a RawValue>,
    /// `params.requestId` (`notifications/cancelled`).
    pub request_id: Option<&'a RawValue>,
    /// `params.uri` (resource subscriptions and their updates).
    pub uri: Option<String>,
}

/// Reads the parts of a JSON-RPC message; `None` if it is not one.
pub fn read(message: &[u8]) -> Option<Parts<'_>> {
    #[derive(Deserialize)]
    struct Head<'a> {
        #[serde(borrow)]
        id: Option<&'a RawValue>,
        #[serde(borrow)]
        method: Option<Cow<'a, str>>,
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(borrow, rename = "_meta")]
        meta: Option<&'a RawValue>,
        #[serde(borrow, rename = "requestId")]
        request_id: Option<&'a RawValue>,
        #[serde(borrow, rename = "progressToken")]
        token: Option<&'a RawValue>,
        #[serde(borrow)]
        uri: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(borrow, rename = "progressToken")]
        progress_token: Option<&'a RawValue>,
    }
    let head: Head<'_> = serde_json::from_slice(message).ok()?;
    let params = head
        .params
        .and_then(|p| serde_json::from_str::<Params<'_>>(p.get()).ok());
    let (meta, request_id, token, uri) = match params {
        Some(p) => (p.meta, p.request_id, p.token, p.uri),
        None => (None, None, None, None),
    };
    let progress = meta
        .and_then(|m| serde_json::from_str::<Meta<'_>>(m.get()).ok())
        .and_then(|m| m.progress_token);
    Some(Parts {
        id: head.id,
        method: head.method,
        progress,
        token,
        request_id,
        // A URI that is not a string names nothing.
        uri: uri.and_then(|u| serde_json::from_str::<String>(u.get()).ok()),
    })
}

/// `message` with each raw value of `replacements` (which must borrow from `message`)
/// replaced by its new text. `None` if one does not lie within the message.
pub fn splice(message: &[u8], replacements: &[(&RawValue, &[u8])]) -> Option<Bytes> {
    let start = message.as_ptr() as usize;
    let mut spans: Vec<(usize, usize, &[u8])> = Vec::with_capacity(replacements.len());
    for (raw, with) in replacements {
        let text = raw.get().as_bytes();
        let from = (text.as_ptr() as usize).checked_sub(start)?;
        let to = from.checked_add(text.len())?;
        if to > message.len() {
            return None;
        }
        spans.push((from, to, with));
    }
    spans.sort_unstable_by_key(|&(from, ..)| from);
    let mut out = Vec::with_capacity(message.len() + 16);
    let mut at = 0;
    for (from, to, with) in spans {
        if from < at {
            return None;
        }
        out.extend_from_slice(&message[at..from]);
        out.extend_from_slice(with);
        at = to;
    }
    out.extend_from_slice(&message[at..]);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parts_routing_needs_are_found_where_they_are() {
        let message =
            br#"{"jsonrpc":"2.0","id":"a\u0062","method":"tools/call","params":{"name":"x","_meta":{"progressToken":7}}}"#;
        let parts = read(message).unwrap();
        assert_eq!(parts.id.unwrap().get(), r#""a\u0062""#);
        assert_eq!(parts.method.as_deref(), Some("tools/call"));
        assert_eq!(parts.progress.unwrap().get(), "7");
        assert!(parts.request_id.is_none() && parts.uri.is_none());
        let cancelled =
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#;
        assert_eq!(read(cancelled).unwrap().request_id.unwrap().get(), "3");
        let updated = br#"{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"file:///a"}}"#;
        assert_eq!(read(updated).unwrap().uri.as_deref(), Some("file:///a"));
        assert!(read(b"[1,2]").is_none());
        assert!(read(b"not json").is_none());
    }

    #[test]
    fn only_the_replaced_values_change() {
        let message = br#"{ "id" : "client-1", "method":"tools/call", "params":{"_meta":{"progressToken":"t"},"name":"n\n"} }"#;
        let parts = read(message).unwrap();
        let out = splice(
            message,
            &[
                (parts.progress.unwrap(), b"\"portcullis-9\""),
                (parts.id.unwrap(), b"9"),
            ],
        )
        .unwrap();
        assert_eq!(
            &out[..],
            br#"{ "id" : 9, "method":"tools/call", "params":{"_meta":{"progressToken":"portcullis-9"},"name":"n\n"} }"#
        );
    }

    #[test]
    fn a_value_from_elsewhere_is_not_spliced() {
        let other = serde_json::from_str::<&RawValue>("1").unwrap();
        assert!(splice(br#"{"id":1}"#, &[(other, b"2")]).is_none());
    }
}
