//! Reading an event stream chunk by chunk as it arrives, keeping the raw bytes, so tests
//! can both time events and compare bytes with what the upstream wrote.

use std::time::Instant;

use serde_json::Value;

/// One event (everything up to a blank line), raw and parsed.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    /// The event's bytes exactly as received, blank line included.
    pub raw: String,
    pub id: Option<String>,
    pub event: Option<String>,
    /// `data:` lines joined with `\n`; `None` when the event has no `data:` line.
    pub data: Option<String>,
    pub retry: Option<String>,
    pub comments: Vec<String>,
    /// When the last byte of the event arrived.
    pub at: Option<Instant>,
}

impl SseEvent {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(self.data.as_deref()?).ok()
    }

    /// JSON-RPC method of a notification event.
    pub fn method(&self) -> Option<String> {
        Some(self.json()?.get("method")?.as_str()?.to_owned())
    }

    fn parse(raw: String, at: Instant) -> Self {
        let mut event = Self {
            at: Some(at),
            ..Self::default()
        };
        for line in lines(&raw) {
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix(':') {
                event.comments.push(comment.to_owned());
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "id" => event.id = Some(value),
                "event" => event.event = Some(value),
                "retry" => event.retry = Some(value),
                "data" => match &mut event.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => event.data = Some(value),
                },
                _ => {}
            }
        }
        event.raw = raw;
        event
    }
}

/// Splits on `\r\n`, `\n` or `\r`, as the SSE grammar does.
fn lines(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let (mut start, mut i) = (0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                out.push(&text[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                out.push(&text[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        out.push(&text[start..]);
    }
    out
}

/// Where the first event in `buf` ends (after its blank line), if it is complete.
fn event_end(buf: &[u8]) -> Option<usize> {
    let mut line_start = 0;
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if b == b'\n' || b == b'\r' {
            let mut end = i + 1;
            if b == b'\r' {
                match buf.get(end) {
                    Some(b'\n') => end += 1,
                    Some(_) => {}
                    // A CR at the end of the buffer may be half of a CRLF.
                    None => return None,
                }
            }
            if i == line_start {
                return Some(end);
            }
            line_start = end;
            i = end;
        } else {
            i += 1;
        }
    }
    None
}

/// An event stream being read from a response.
#[derive(Debug)]
pub struct SseStream {
    response: reqwest::Response,
    pending: Vec<u8>,
    /// Every byte received so far, in order.
    pub raw: Vec<u8>,
    /// Number of body chunks received.
    pub chunks: usize,
}

impl SseStream {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            pending: Vec::new(),
            raw: Vec::new(),
            chunks: 0,
        }
    }

    /// The next event, or `None` when the stream ended. Blank lines alone are skipped.
    pub async fn next_event(&mut self) -> Option<SseEvent> {
        loop {
            while let Some(end) = event_end(&self.pending) {
                let raw: Vec<u8> = self.pending.drain(..end).collect();
                if raw.iter().all(|b| *b == b'\n' || *b == b'\r') {
                    continue;
                }
                let raw = String::from_utf8(raw).unwrap();
                return Some(SseEvent::parse(raw, Instant::now()));
            }
            let chunk = self.response.chunk().await.unwrap()?;
            self.chunks += 1;
            self.raw.extend_from_slice(&chunk);
            self.pending.extend_from_slice(&chunk);
        }
    }

    /// The next event that carries a JSON-RPC message (keep-alive comments and priming
    /// events skipped).
    pub async fn next_message(&mut self) -> Option<SseEvent> {
        while let Some(event) = self.next_event().await {
            if event.json().is_some() {
                return Some(event);
            }
        }
        None
    }

    /// Reads to the end and returns every byte of the stream.
    pub async fn read_to_end(mut self) -> Vec<u8> {
        while let Some(chunk) = self.response.chunk().await.unwrap() {
            self.raw.extend_from_slice(&chunk);
        }
        self.raw
    }

    pub fn into_response(self) -> reqwest::Response {
        self.response
    }
}
