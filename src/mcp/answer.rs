//! The answer rewrite: the upstream's answer rewritten message by message for the caller — list
//! results filtered, task ids sealed — whether it is one JSON body or an event stream.
//!
//! The caller gives one closure over the bytes of a JSON-RPC message (or batch): `Ok(None)`
//! keeps them, `Ok(Some)` replaces them, `Err` means the message must not reach the client
//! as it is. An event stream is rewritten event by event as it arrives ([`SseRewrite`]):
//! events the closure keeps pass as they came (events with empty data, such as the
//! priming event of a resumable stream, are not even shown to it), and an event it cannot
//! forward is withheld: a response becomes a JSON-RPC error with its id, so the client
//! learns that the call failed rather than waiting; anything else loses its data (an event
//! with empty data, which clients ignore), so the stream goes on. A JSON body is read whole (up to
//! [`MAX_JSON_ANSWER`]) only when the caller asks for it; otherwise it streams on
//! untouched. Error statuses pass untouched.

use axum::body::Body;
use bytes::Bytes;
use http::Response;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, Limited};

use super::headers::{is_event_stream, is_json};
use super::jsonrpc::{code, error_body as jsonrpc_error_body};
use super::sse::{SseEvent, SseRewrite};
use crate::mcp::jsonrpc;

/// Largest JSON answer the gateway reads to rewrite; a larger one is refused (502) rather
/// than passed on unchanged.
pub const MAX_JSON_ANSWER: usize = 32 * 1024 * 1024;

/// A message that cannot be forwarded as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("the answer could not be read (too large or broken off)")]
    Unreadable,
    #[error("the answer is not JSON-RPC")]
    NotJsonRpc,
    #[error("an upstream id in the answer could not be sealed")]
    Unsealable,
    #[error("the answer is in an encoding the gateway did not ask for")]
    Encoded,
}

/// Rewrites the successful answer in `response` with `rewrite`, reading a JSON body whole
/// when `read_json` says so. `Err` means the answer must not be forwarded (answer 502).
pub async fn rewrite<F>(
    response: Response<Body>,
    read_json: bool,
    mut rewrite: F,
) -> Result<Response<Body>, AnswerError>
where
    F: FnMut(&Bytes) -> Result<Option<Bytes>, AnswerError> + Send + 'static,
{
    if !response.status().is_success() {
        return Ok(response);
    }
    let (mut parts, body) = response.into_parts();
    let event_stream = is_event_stream(parts.headers.get(CONTENT_TYPE));
    if (event_stream || read_json) && encoded(&parts.headers) {
        // The gateway asks for the identity encoding: bytes it would read but cannot are
        // not passed on unread.
        return Err(AnswerError::Encoded);
    }
    if event_stream {
        parts.headers.remove(CONTENT_LENGTH);
        let event = move |event: &SseEvent| {
            let data = event.data_shared()?;
            if data.iter().all(u8::is_ascii_whitespace) {
                return None;
            }
            match rewrite(&data) {
                Ok(new) => new,
                Err(e) => {
                    tracing::warn!(error = %e, "An event of the upstream's stream could not be forwarded; replaced by an error");
                    Some(Bytes::from(unforwardable(&data)))
                }
            }
        };
        return Ok(Response::from_parts(
            parts,
            Body::new(SseRewrite::new(body, event)),
        ));
    }
    if !read_json {
        return Ok(Response::from_parts(parts, body));
    }
    let bytes = Limited::new(body, MAX_JSON_ANSWER)
        .collect()
        .await
        .map_err(|_| AnswerError::Unreadable)?
        .to_bytes();
    if !is_json(parts.headers.get(CONTENT_TYPE)) {
        // Nothing to rewrite in an empty answer (202 to notifications); anything else in a
        // type the gateway does not read might be read by the client as JSON all the same.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Response::from_parts(parts, Body::from(bytes)));
        }
        return Err(AnswerError::NotJsonRpc);
    }
    let body = match rewrite(&bytes)? {
        Some(new) => {
            parts.headers.remove(CONTENT_LENGTH);
            Body::from(new)
        }
        None => Body::from(bytes),
    };
    Ok(Response::from_parts(parts, body))
}

/// Whether the answer's body is in an encoding other than identity.
fn encoded(headers: &http::HeaderMap) -> bool {
    headers.get_all(CONTENT_ENCODING).iter().any(|v| {
        v.to_str().map_or(true, |v| {
            v.split(',')
                .any(|coding| !coding.trim().eq_ignore_ascii_case("identity"))
        })
    })
}

/// What replaces the data of an event the client must not see as it is: an error for a
/// message with an id, else nothing.
fn unforwardable(data: &[u8]) -> String {
    jsonrpc::request_id(data).map_or_else(String::new, |id| {
        jsonrpc_error_body(
            Some(&id),
            code::UPSTREAM_UNAVAILABLE,
            "upstream MCP server sent a message the gateway cannot forward",
        )
    })
}

/// The JSON-RPC response in an answer to one request: the JSON body, or the first
/// response in its event stream (a request's stream ends with it; notifications and
/// requests of the server's before it are passed over). At most `max` bytes are read.
pub async fn reply(response: Response<Body>, max: usize) -> Result<serde_json::Value, String> {
    let status = response.status();
    let stream = is_event_stream(response.headers().get(CONTENT_TYPE));
    if !status.is_success() {
        let why = Limited::new(response.into_body(), max)
            .collect()
            .await
            .ok()
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(&body.to_bytes()).ok())
            .and_then(|answer| answer["error"]["message"].as_str().map(str::to_owned));
        return Err(match why {
            Some(why) => format!("answered {status}: {why}"),
            None => format!("answered {status}"),
        });
    }
    if !stream {
        let body = Limited::new(response.into_body(), max)
            .collect()
            .await
            .map_err(|_| "the answer could not be read whole".to_owned())?
            .to_bytes();
        return serde_json::from_slice(&body).map_err(|_| "the answer is not JSON".to_owned());
    }
    let mut body = std::pin::pin!(response.into_body());
    let mut decoder = super::sse::SseDecoder::new();
    let mut read = 0_usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err("the answer's stream broke off".to_owned());
        };
        let Ok(chunk) = frame.into_data() else {
            continue;
        };
        read = read.saturating_add(chunk.len());
        if read > max {
            return Err("the answer is too large".to_owned());
        }
        decoder.push(chunk);
        while let Some(event) = decoder
            .next_event()
            .map_err(|_| "the answer's stream is not a valid event stream".to_owned())?
        {
            let message = event
                .data()
                .and_then(|data| serde_json::from_str::<serde_json::Value>(&data).ok());
            if let Some(message) = message
                && message.get("method").is_none()
                && message.get("id").is_some()
            {
                return Ok(message);
            }
        }
    }
    Err("the answer's stream ended without a response".to_owned())
}

#[cfg(test)]
mod tests {
    use http::StatusCode;
    use http::header::HeaderValue;

    use super::*;

    fn answer(content_type: &'static str, body: &'static str) -> Response<Body> {
        let mut response = Response::new(Body::from(body));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        response
            .headers_mut()
            .insert(CONTENT_LENGTH, HeaderValue::from(body.len()));
        response
    }

    async fn text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn upper(data: &Bytes) -> Result<Option<Bytes>, AnswerError> {
        if data.windows(4).any(|w| w == b"fail") {
            return Err(AnswerError::Unsealable);
        }
        Ok(data.windows(3).any(|w| w == b"old").then(|| {
            Bytes::from(
                String::from_utf8_lossy(data)
                    .replace("old", "new")
                    .into_bytes(),
            )
        }))
    }

    #[tokio::test]
    async fn a_json_answer_is_rewritten_only_when_asked_to_read_it() {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"v":"old"}}"#;
        let read = rewrite(answer("application/json", body), true, upper)
            .await
            .unwrap();
        assert!(read.headers().get(CONTENT_LENGTH).is_none());
        assert_eq!(
            text(read).await,
            r#"{"jsonrpc":"2.0","id":1,"result":{"v":"new"}}"#
        );
        let streamed = rewrite(answer("application/json", body), false, upper)
            .await
            .unwrap();
        assert_eq!(text(streamed).await, body);
        let failing = r#"{"jsonrpc":"2.0","id":1,"result":{"v":"fail"}}"#;
        assert_eq!(
            rewrite(answer("application/json", failing), true, upper)
                .await
                .err(),
            Some(AnswerError::Unsealable)
        );
        // Error statuses are the upstream's own answer.
        let mut error = answer("application/json", failing);
        *error.status_mut() = StatusCode::NOT_FOUND;
        let passed = rewrite(error, true, upper).await.unwrap();
        assert_eq!(text(passed).await, failing);
    }

    /// A body the gateway reads is read whatever the case of its type; one it would read
    /// but cannot (another type, an encoding it did not ask for) is not passed on unread.
    #[tokio::test]
    async fn an_answer_to_read_is_read_or_refused() {
        let body = r#"{"jsonrpc":"2.0","id":1,"result":{"v":"old"}}"#;
        let read = rewrite(answer("Application/JSON; charset=utf-8", body), true, upper)
            .await
            .unwrap();
        assert_eq!(
            text(read).await,
            r#"{"jsonrpc":"2.0","id":1,"result":{"v":"new"}}"#
        );
        for content_type in ["text/plain", "application/jsonx", "text/html"] {
            assert_eq!(
                rewrite(answer(content_type, body), true, upper).await.err(),
                Some(AnswerError::NotJsonRpc),
                "{content_type}"
            );
            // Not asked to read it: it streams on.
            let streamed = rewrite(answer(content_type, body), false, upper)
                .await
                .unwrap();
            assert_eq!(text(streamed).await, body);
        }
        // Nothing to read (the 202 to a notification).
        let mut empty = answer("text/plain", "");
        *empty.status_mut() = StatusCode::ACCEPTED;
        assert_eq!(text(rewrite(empty, true, upper).await.unwrap()).await, "");
        for (content_type, read_json) in [("application/json", true), ("text/event-stream", false)]
        {
            for coding in ["gzip", "identity, br"] {
                let mut encoded = answer(content_type, body);
                encoded
                    .headers_mut()
                    .insert(CONTENT_ENCODING, HeaderValue::from_static(coding));
                assert_eq!(
                    rewrite(encoded, read_json, upper).await.err(),
                    Some(AnswerError::Encoded),
                    "{content_type} {coding}"
                );
            }
            let mut identity = answer(content_type, body);
            identity
                .headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static("identity"));
            assert!(rewrite(identity, read_json, upper).await.is_ok());
        }
        // A JSON body not read may keep its encoding: the client decodes it.
        let mut passed = answer("application/json", body);
        passed
            .headers_mut()
            .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        assert!(rewrite(passed, false, upper).await.is_ok());
    }

    #[tokio::test]
    async fn an_event_stream_is_rewritten_event_by_event() {
        let stream = concat!(
            ": keep-alive\n\n",
            "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{\"v\":\"old\"}}\n\n",
            "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{}}\n\n",
            "id: 3\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"v\":\"fail\"}}\n\n",
            "id: 4\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{\"v\":\"fail\"}}\n\n",
            "id: 5\ndata: \n\n",
        );
        let out = text(
            rewrite(answer("text/event-stream", stream), false, upper)
                .await
                .unwrap(),
        )
        .await;
        let expected = concat!(
            ": keep-alive\n\n",
            "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{\"v\":\"new\"}}\n\n",
            "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":{}}\n\n",
            "id: 3\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"error\":{\"code\":-32010,\"message\":\"upstream MCP server sent a message the gateway cannot forward\"}}\n\n",
            "id: 4\ndata: \n\n",
            "id: 5\ndata: \n\n",
        );
        assert_eq!(out, expected);
    }
}
