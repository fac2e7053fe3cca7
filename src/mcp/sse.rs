//! The answer rewrite's Server-Sent Events codec for upstream event streams.
//!
//! Upstream bodies arrive in chunks cut anywhere, even between the CR and the LF of a line
//! ending. [`SseDecoder`] finds the events in them, in order, each as its exact bytes (up to
//! and including the blank line that ends it) plus a parsed view ([`SseEvent`]: type, `data`
//! joined per the WHATWG rules, `id`, `retry`). [`SseRewrite`] is the response body built on
//! it: every event passes through byte for byte unless its closure asks to replace the
//! event's `data`, in which case only the `data:` lines change and every other line (`id:`,
//! `event:`, `retry:`, comments, unknown fields) keeps its bytes and its place. The gateway
//! never adds an event or an `id` of its own.
//!
//! Parsing follows the WHATWG HTML "event stream" rules: lines end with CRLF, LF or CR; a
//! single leading UTF-8 byte order mark is ignored (and kept in the output); `field: value`
//! loses one space after the colon; a line without a colon is a field with an empty value;
//! lines starting with `:` are comments. An event is dispatched to a client only if it has
//! at least one `data` line ([`SseEvent::data`] is `Some`); blocks without one (keep-alive
//! comments, lone `id:` or `retry:` lines, extra blank lines) are still yielded so their
//! bytes flow on at once. An unfinished event at the end of a stream is not an event (a
//! client discards it): [`SseDecoder::finish`] hands its bytes back, and [`SseRewrite`]
//! drops them rather than pass on bytes its closure never saw.
//!
//! Cost: events that lie whole inside one chunk are handed on as slices of that chunk (no
//! copy, no allocation); only an event cut by a chunk boundary is gathered into a buffer,
//! and that buffer is bounded by a maximum event size ([`DEFAULT_MAX_EVENT_SIZE`],
//! settable). A larger event is an [`SseError::EventTooLarge`], which [`SseRewrite`] turns
//! into a body error: hyper then aborts the response (HTTP/1.1 closes the connection without
//! the last chunk, HTTP/2 resets the stream), so the client sees a broken stream rather than
//! a silently altered one.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

/// The largest event [`SseDecoder::new`] accepts: 16 MiB, the same order as the largest
/// JSON-RPC message a route accepts from clients.
pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

/// One JSON-RPC message as a `message` event of the gateway's own: each line of the text
/// its own `data:` field (a line break in JSON is whitespace, and CR, LF and CRLF all end
/// an event-stream line), which a client joins back with `\n`.
pub fn message_event(message: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(message.len() + 24);
    out.extend_from_slice(b"event: message\n");
    let text = message.trim_ascii();
    for line in text
        .split(|&b| b == b'\n' || b == b'\r')
        .filter(|l| !l.is_empty())
    {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
    Bytes::from(out)
}

/// UTF-8 byte order mark; ignored once at the very start of a stream.
const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Why an event stream cannot be carried on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// An event (or the unfinished one being gathered) grew past the configured maximum.
    #[error("event stream event exceeds the {limit}-byte limit")]
    EventTooLarge { limit: usize },
}

/// Where the line scanner stands between two bytes of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineState {
    /// The next byte starts a line.
    at_line_start: bool,
    /// The previous byte was a CR: an LF now completes that line ending.
    after_cr: bool,
    /// Bytes of the leading byte order mark matched so far; `None` once past it.
    bom: Option<u8>,
    /// Where the current line starts, counted from the start of the event.
    line_start: usize,
}

impl LineState {
    const STREAM_START: Self = Self {
        at_line_start: true,
        after_cr: false,
        bom: Some(0),
        line_start: 0,
    };
}

/// Position of the first CR or LF in `hay` (memchr's vector search: a large event's one
/// data line is most of its bytes).
fn find_eol(hay: &[u8]) -> Option<usize> {
    memchr::memchr2(b'\n', b'\r', hay)
}

/// Scans `bytes`, which start `base` bytes into the current event, for the blank line that
/// ends it, carrying `state` from the previous call. Calls `on_line(start, end)` for each
/// non-blank line that ends in `bytes` (positions from the start of the event, terminator
/// excluded). Returns the event's length in `bytes`, blank line included (with the LF of a
/// CRLF when it is there), or `None` when `bytes` ends first.
fn scan(
    bytes: &[u8],
    base: usize,
    state: &mut LineState,
    mut on_line: impl FnMut(usize, usize),
) -> Option<usize> {
    let mut i = 0;
    while let Some(matched) = state.bom {
        let b = *bytes.get(i)?;
        if BOM.get(usize::from(matched)) == Some(&b) {
            i += 1;
            state.line_start = base + i;
            state.bom = (matched < 2).then_some(matched + 1);
        } else {
            state.bom = None;
            if matched > 0 {
                // Not a byte order mark after all: those bytes begin the first line.
                state.at_line_start = false;
                state.line_start = 0;
            }
        }
    }
    loop {
        let b = *bytes.get(i)?;
        match b {
            b'\n' if state.after_cr => {
                state.after_cr = false;
                i += 1;
                state.line_start = base + i;
            }
            b'\n' | b'\r' => {
                let blank = state.at_line_start;
                if !blank {
                    on_line(state.line_start, base + i);
                }
                state.at_line_start = true;
                state.after_cr = b == b'\r';
                i += 1;
                if blank {
                    if state.after_cr && bytes.get(i) == Some(&b'\n') {
                        state.after_cr = false;
                        i += 1;
                    }
                    // The next event starts here.
                    state.line_start = 0;
                    return Some(i);
                }
                state.line_start = base + i;
            }
            _ => {
                state.at_line_start = false;
                state.after_cr = false;
                match bytes.get(i..).and_then(find_eol) {
                    Some(n) => i += n,
                    None => return None,
                }
            }
        }
    }
}

/// A line's field name and the range of its value (one leading space removed), relative
/// to the line; `None` for a comment.
fn split_field(line: &[u8]) -> Option<(&[u8], Range<usize>)> {
    match line.iter().position(|&b| b == b':') {
        Some(0) => None,
        Some(colon) => {
            let start = if line.get(colon + 1) == Some(&b' ') {
                colon + 2
            } else {
                colon + 1
            };
            Some((line.get(..colon).unwrap_or_default(), start..line.len()))
        }
        None => Some((line, line.len()..line.len())),
    }
}

/// `true` for a `data` line (`data`, `data:…`), the lines a rewrite replaces.
fn is_data_line(line: &[u8]) -> bool {
    line.strip_prefix(b"data")
        .is_some_and(|rest| rest.is_empty() || rest.first() == Some(&b':'))
}

/// The fields of one event, as ranges into its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Fields {
    event: Option<Range<usize>>,
    id: Option<Range<usize>>,
    retry: Option<u64>,
    /// The value of the first `data` line; the others are found again when needed.
    data: Option<Range<usize>>,
    /// The whole first `data` line, terminator excluded.
    data_line: Option<Range<usize>>,
    data_lines: usize,
}

impl Fields {
    /// Takes in the line `block[start..end]`.
    fn line(&mut self, block: &[u8], start: usize, end: usize) {
        let Some((name, value)) = block.get(start..end).and_then(split_field) else {
            return;
        };
        let range = start + value.start..start + value.end;
        match name {
            b"data" => {
                if self.data.is_none() {
                    self.data = Some(range);
                    self.data_line = Some(start..end);
                }
                self.data_lines += 1;
            }
            b"event" => self.event = Some(range),
            // An id containing NUL is ignored.
            b"id" if !block.get(range.clone()).unwrap_or_default().contains(&0) => {
                self.id = Some(range);
            }
            b"retry" => {
                let digits = block.get(range).unwrap_or_default();
                if !digits.is_empty() && digits.iter().all(u8::is_ascii_digit) {
                    // Too many digits to be a delay: ignored like any other bad value.
                    if let Some(ms) = std::str::from_utf8(digits)
                        .ok()
                        .and_then(|d| d.parse().ok())
                    {
                        self.retry = Some(ms);
                    }
                }
            }
            _ => {}
        }
    }
}

/// One event of an event stream: its exact bytes and what a client reads in them.
///
/// "Event" here is any block of lines ended by a blank line, including blocks a client
/// would not dispatch (comments only, no `data`); [`SseEvent::data`] tells them apart.
#[derive(Clone, PartialEq, Eq)]
pub struct SseEvent {
    raw: Bytes,
    /// The scanner state before the first byte of `raw` (stream start, half a CRLF).
    start: LineState,
    fields: Fields,
    /// `raw`'s place in the decoder's current chunk when it was not copied.
    in_chunk: Option<Range<usize>>,
}

impl fmt::Debug for SseEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseEvent")
            .field("len", &self.raw.len())
            .field("event", &self.event_type())
            .field("id", &self.id())
            .field("data_lines", &self.fields.data_lines)
            .finish_non_exhaustive()
    }
}

impl SseEvent {
    /// The event's bytes exactly as the upstream sent them, blank line included (and a
    /// leading byte order mark, or the LF that completes the previous event's CRLF, if the
    /// stream put them there).
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    pub fn into_raw(self) -> Bytes {
        self.raw
    }

    fn text(&self, range: &Option<Range<usize>>) -> Option<Cow<'_, str>> {
        let bytes = self.raw.get(range.clone()?)?;
        Some(String::from_utf8_lossy(bytes))
    }

    /// The last `event:` field, if any (a client dispatches an event without one as
    /// `message`).
    pub fn event_type(&self) -> Option<Cow<'_, str>> {
        self.text(&self.fields.event)
    }

    /// The last valid `id:` field of this event, if any (`Some("")` resets a client's last
    /// event id).
    pub fn id(&self) -> Option<Cow<'_, str>> {
        self.text(&self.fields.id)
    }

    /// The last valid `retry:` field, in milliseconds.
    pub fn retry(&self) -> Option<u64> {
        self.fields.retry
    }

    /// `true` if a client would dispatch this event: it has at least one `data` line.
    pub fn has_data(&self) -> bool {
        self.fields.data_lines > 0
    }

    /// The event's data as a client sees it: the `data` lines' values joined with `\n`, as
    /// UTF-8 (invalid sequences replaced). `None` when there is no `data` line. Borrowed
    /// unless the data spans several lines or is not valid UTF-8.
    pub fn data(&self) -> Option<Cow<'_, str>> {
        match self.data_bytes()? {
            Cow::Borrowed(bytes) => Some(String::from_utf8_lossy(bytes)),
            Cow::Owned(bytes) => Some(Cow::Owned(match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
            })),
        }
    }

    /// [`SseEvent::data`] as bytes, without the UTF-8 check (for a JSON parser that makes
    /// its own).
    pub fn data_bytes(&self) -> Option<Cow<'_, [u8]>> {
        let first = self.raw.get(self.fields.data.clone()?)?;
        if self.fields.data_lines == 1 {
            return Some(Cow::Borrowed(first));
        }
        let raw = &self.raw[..];
        let mut joined = Vec::with_capacity(raw.len());
        let mut state = self.start;
        scan(raw, 0, &mut state, |start, end| {
            let line = raw.get(start..end).unwrap_or_default();
            if let Some((b"data", value)) = split_field(line) {
                joined.extend_from_slice(line.get(value).unwrap_or_default());
                joined.push(b'\n');
            }
        });
        joined.pop();
        Some(Cow::Owned(joined))
    }

    /// [`SseEvent::data_bytes`], shared with the event's bytes when the data is one line
    /// (a reading of it may then be kept without a copy).
    pub fn data_shared(&self) -> Option<Bytes> {
        if self.fields.data_lines == 1 {
            let range = self.fields.data.clone()?;
            return (range.end <= self.raw.len()).then(|| self.raw.slice(range));
        }
        self.data_bytes().map(|data| Bytes::from(data.into_owned()))
    }

    /// This event with its `data` replaced by `data`: one `data: ` line per line of `data`
    /// (split at CRLF, LF or CR, as a client will split it) in place of the first `data`
    /// line, the other `data` lines dropped, every other byte kept. The new lines end like
    /// the `data` line they replace. An event without `data` gets the new lines just before
    /// its blank line.
    pub fn with_data(&self, data: &[u8]) -> Bytes {
        let raw = &self.raw[..];
        let mut out = BytesMut::with_capacity(raw.len() + data.len() + 16);
        if let (1, Some(line)) = (self.fields.data_lines, &self.fields.data_line) {
            // One data line, already found: no need to look for others.
            let eol_end = line.end + eol_len(raw, line.end);
            out.extend_from_slice(raw.get(..line.start).unwrap_or_default());
            write_data_lines(&mut out, data, raw.get(line.end..eol_end).unwrap_or(b"\n"));
            out.extend_from_slice(raw.get(eol_end..).unwrap_or_default());
            return out.freeze();
        }
        let mut copied = 0;
        let mut written = false;
        let mut state = self.start;
        scan(raw, 0, &mut state, |start, end| {
            if !is_data_line(raw.get(start..end).unwrap_or_default()) {
                return;
            }
            let eol_end = end + eol_len(raw, end);
            out.extend_from_slice(raw.get(copied..start).unwrap_or_default());
            if !written {
                write_data_lines(&mut out, data, raw.get(end..eol_end).unwrap_or(b"\n"));
                written = true;
            }
            copied = eol_end;
        });
        if !written {
            // No data line: the new ones go in front of the blank line.
            let blank = if raw.ends_with(b"\r\n") { 2 } else { 1 };
            let at = raw.len().saturating_sub(blank).max(copied);
            out.extend_from_slice(raw.get(copied..at).unwrap_or_default());
            write_data_lines(&mut out, data, raw.get(at..).unwrap_or(b"\n"));
            copied = at;
        }
        out.extend_from_slice(raw.get(copied..).unwrap_or_default());
        out.freeze()
    }
}

/// Length of the line ending at `raw[at..]`: 2 for CRLF, else 1.
fn eol_len(raw: &[u8], at: usize) -> usize {
    if raw.get(at..at + 2) == Some(b"\r\n") {
        2
    } else {
        1
    }
}

/// Writes `data` as `data: ` lines, each ended by `eol`.
fn write_data_lines(out: &mut BytesMut, data: &[u8], eol: &[u8]) {
    let mut rest = data;
    loop {
        let end = find_eol(rest);
        let line = end.map_or(rest, |end| rest.get(..end).unwrap_or_default());
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(eol);
        let Some(end) = end else { break };
        rest = rest.get(end + eol_len(rest, end)..).unwrap_or_default();
    }
}

/// Incremental event stream parser: push chunks, take events.
///
/// ```
/// # use portcullis::mcp::sse::SseDecoder;
/// let mut decoder = SseDecoder::new();
/// decoder.push(bytes::Bytes::from_static(b"event: message\ndata: {\"id\":1}\n\nda"));
/// let event = decoder.next_event().unwrap().unwrap();
/// assert_eq!(event.data().as_deref(), Some("{\"id\":1}"));
/// assert!(decoder.next_event().unwrap().is_none());
/// assert_eq!(decoder.finish().as_deref(), Some(&b"da"[..])); // the unfinished tail
/// ```
#[derive(Debug)]
pub struct SseDecoder {
    /// The chunk being read; `chunk[pos..]` is not scanned yet.
    chunk: Bytes,
    pos: usize,
    /// The scanned start of an event that the previous chunks did not finish.
    carry: BytesMut,
    /// Scanner state after `carry` (or at `pos` when `carry` is empty).
    state: LineState,
    /// Scanner state before the first byte of `carry`.
    carry_start: LineState,
    /// The fields of the lines complete in `carry`.
    carry_fields: Fields,
    max_event_size: usize,
    failed: Option<SseError>,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder for a new stream, accepting events up to [`DEFAULT_MAX_EVENT_SIZE`].
    pub fn new() -> Self {
        Self::with_max_event_size(DEFAULT_MAX_EVENT_SIZE)
    }

    /// A decoder for a new stream, accepting events up to `max_event_size` bytes.
    pub fn with_max_event_size(max_event_size: usize) -> Self {
        Self {
            chunk: Bytes::new(),
            pos: 0,
            carry: BytesMut::new(),
            state: LineState::STREAM_START,
            carry_start: LineState::STREAM_START,
            carry_fields: Fields::default(),
            max_event_size,
            failed: None,
        }
    }

    pub fn max_event_size(&self) -> usize {
        self.max_event_size
    }

    /// Feeds the next chunk of the stream. Take every event out with
    /// [`SseDecoder::next_event`] first; bytes of a chunk left unread are kept (copied) in
    /// front of the new one.
    pub fn push(&mut self, chunk: Bytes) {
        if self.pos < self.chunk.len() {
            let mut joined = BytesMut::with_capacity(self.chunk.len() - self.pos + chunk.len());
            joined.extend_from_slice(self.chunk.get(self.pos..).unwrap_or_default());
            joined.extend_from_slice(&chunk);
            self.chunk = joined.freeze();
        } else {
            self.chunk = chunk;
        }
        self.pos = 0;
    }

    /// The next complete event, or `None` once the pushed bytes hold no more (the start of
    /// an unfinished event is kept for the next chunk). After an error the decoder stays
    /// failed: the stream cannot be carried on.
    pub fn next_event(&mut self) -> Result<Option<SseEvent>, SseError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let rest = self.chunk.get(self.pos..).unwrap_or_default();
        if rest.is_empty() {
            return Ok(None);
        }
        let mut state = self.state;
        if self.carry.is_empty() {
            // The event starts in this chunk: one pass finds its end and its fields.
            let mut fields = Fields::default();
            let end = scan(rest, 0, &mut state, |start, end| {
                fields.line(rest, start, end)
            });
            let taken = end.unwrap_or(rest.len());
            if taken > self.max_event_size {
                return Err(self.fail());
            }
            match end {
                Some(len) => {
                    let range = self.pos..self.pos + len;
                    let event = SseEvent {
                        raw: self.chunk.slice(range.clone()),
                        start: self.state,
                        fields,
                        in_chunk: Some(range),
                    };
                    self.pos += len;
                    self.state = state;
                    Ok(Some(event))
                }
                None => {
                    self.carry.extend_from_slice(rest);
                    self.carry_fields = fields;
                    self.carry_start = self.state;
                    self.pos = self.chunk.len();
                    self.state = state;
                    Ok(None)
                }
            }
        } else {
            // The event started in an earlier chunk: find its end here, then gather it.
            let mut lines = Vec::new();
            let end = scan(rest, self.carry.len(), &mut state, |start, end| {
                lines.push(start..end);
            });
            let taken = end.unwrap_or(rest.len());
            if self.carry.len() + taken > self.max_event_size {
                return Err(self.fail());
            }
            self.carry
                .extend_from_slice(rest.get(..taken).unwrap_or_default());
            for line in lines {
                self.carry_fields.line(&self.carry, line.start, line.end);
            }
            self.pos += taken;
            self.state = state;
            if end.is_none() {
                return Ok(None);
            }
            Ok(Some(SseEvent {
                raw: self.carry.split().freeze(),
                start: self.carry_start,
                fields: std::mem::take(&mut self.carry_fields),
                in_chunk: None,
            }))
        }
    }

    fn fail(&mut self) -> SseError {
        let e = SseError::EventTooLarge {
            limit: self.max_event_size,
        };
        self.failed = Some(e.clone());
        self.carry = BytesMut::new();
        self.carry_fields = Fields::default();
        self.pos = self.chunk.len();
        e
    }

    /// Ends the stream: returns the bytes of an unfinished last event (a client discards
    /// them) and readies the decoder for a new stream.
    /// `None` if there are none, or after an error.
    pub fn finish(&mut self) -> Option<Bytes> {
        let mut tail = std::mem::take(&mut self.carry);
        if let Some(rest) = self.chunk.get(self.pos..) {
            tail.extend_from_slice(rest);
        }
        let failed = self.failed.is_some();
        *self = Self::with_max_event_size(self.max_event_size);
        (!tail.is_empty() && !failed).then(|| tail.freeze())
    }

    /// Decodes `chunk` and appends what goes downstream to `out`: runs of passed-through
    /// events as slices of `chunk` (consecutive ones joined), and rewritten events. `rewrite`
    /// sees only events with data; `Some(new_data)` replaces the event's data (see
    /// [`SseEvent::with_data`]), `None` passes its bytes on. On an error, what came before
    /// the oversized event is still appended.
    pub fn rewrite_chunk<F, O>(
        &mut self,
        chunk: Bytes,
        rewrite: &mut F,
        out: &mut O,
    ) -> Result<(), SseError>
    where
        F: FnMut(&SseEvent) -> Option<Bytes>,
        O: Extend<Bytes>,
    {
        self.push(chunk);
        let mut run: Option<Range<usize>> = None;
        let result = loop {
            let event = match self.next_event() {
                Ok(Some(event)) => event,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            let replacement = if event.has_data() {
                rewrite(&event)
            } else {
                None
            };
            match (replacement, &event.in_chunk) {
                (None, Some(range)) => match &mut run {
                    Some(current) if current.end == range.start => current.end = range.end,
                    _ => {
                        self.flush_run(run.take(), out);
                        run = Some(range.clone());
                    }
                },
                (None, None) => {
                    self.flush_run(run.take(), out);
                    out.extend(Some(event.raw));
                }
                (Some(data), _) => {
                    self.flush_run(run.take(), out);
                    out.extend(Some(event.with_data(&data)));
                }
            }
        };
        self.flush_run(run, out);
        result
    }

    fn flush_run<O: Extend<Bytes>>(&self, run: Option<Range<usize>>, out: &mut O) {
        if let Some(range) = run
            && range.end <= self.chunk.len()
        {
            out.extend(Some(self.chunk.slice(range)));
        }
    }
}

/// What an [`SseRewrite`] body fails with.
#[derive(Debug, thiserror::Error)]
pub enum SseBodyError<E> {
    /// The upstream body failed; the stream ends here.
    #[error("upstream event stream failed")]
    Upstream(#[source] E),
    /// The stream broke a codec limit; the response must be aborted.
    #[error(transparent)]
    Event(#[from] SseError),
}

pin_project! {
    /// An upstream event stream, passed on event by event, with the data of chosen events
    /// replaced.
    ///
    /// Each upstream chunk is decoded at once and what it completes goes out at once, so a
    /// keep-alive comment or a response never waits for more bytes; nothing but one
    /// unfinished event is held. `rewrite` is called for every event that carries data:
    /// `None` passes the event's bytes on untouched, `Some(new_data)` replaces its `data`
    /// lines (see [`SseEvent::with_data`]). The unfinished tail of a stream that ends
    /// mid-event is dropped: a client that follows the standard discards it, and one that
    /// does not must not read a message the closure never saw (an unfiltered list, an
    /// unsealed task id). Trailers are passed on.
    ///
    /// The body's length is unknown (a rewrite changes it): remove `Content-Length` from
    /// the response that carries it. An event over the size limit ends the body with
    /// [`SseBodyError::Event`] after the events before it, which aborts the response.
    pub struct SseRewrite<B, F> {
        #[pin]
        inner: B,
        rewrite: F,
        decoder: SseDecoder,
        out: VecDeque<Bytes>,
        trailers: Option<Frame<Bytes>>,
        error: Option<SseError>,
        done: bool,
    }
}

impl<B, F> fmt::Debug for SseRewrite<B, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseRewrite")
            .field("decoder", &self.decoder)
            .field("queued", &self.out.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<B, F> SseRewrite<B, F>
where
    B: Body<Data = Bytes>,
    F: FnMut(&SseEvent) -> Option<Bytes>,
{
    /// Wraps `inner`, with events up to [`DEFAULT_MAX_EVENT_SIZE`].
    pub fn new(inner: B, rewrite: F) -> Self {
        Self::with_max_event_size(inner, rewrite, DEFAULT_MAX_EVENT_SIZE)
    }

    /// Wraps `inner`, with events up to `max_event_size` bytes.
    pub fn with_max_event_size(inner: B, rewrite: F, max_event_size: usize) -> Self {
        Self {
            inner,
            rewrite,
            decoder: SseDecoder::with_max_event_size(max_event_size),
            out: VecDeque::new(),
            trailers: None,
            error: None,
            done: false,
        }
    }
}

impl<B, F> Body for SseRewrite<B, F>
where
    B: Body<Data = Bytes>,
    F: FnMut(&SseEvent) -> Option<Bytes>,
{
    type Data = Bytes;
    type Error = SseBodyError<B::Error>;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let mut this = self.project();
        loop {
            if let Some(data) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if let Some(e) = this.error.take() {
                *this.done = true;
                return Poll::Ready(Some(Err(SseBodyError::Event(e))));
            }
            if let Some(trailers) = this.trailers.take() {
                return Poll::Ready(Some(Ok(trailers)));
            }
            if *this.done {
                return Poll::Ready(None);
            }
            match ready!(this.inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if let Err(e) = this.decoder.rewrite_chunk(data, this.rewrite, this.out) {
                            *this.error = Some(e);
                        }
                    }
                    Err(frame) => {
                        // Trailers end the body; the unfinished tail is dropped.
                        drop(this.decoder.finish());
                        *this.trailers = Some(frame);
                        *this.done = true;
                    }
                },
                Some(Err(e)) => {
                    *this.done = true;
                    return Poll::Ready(Some(Err(SseBodyError::Upstream(e))));
                }
                None => {
                    drop(this.decoder.finish());
                    *this.done = true;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.out.is_empty() && self.error.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn a_message_event_keeps_each_line_of_the_json_in_its_own_data_field() {
        assert_eq!(
            &message_event(b"{\"a\":1}")[..],
            b"event: message\ndata: {\"a\":1}\n\n"
        );
        // LF, CRLF and CR all end an event-stream line: none may reach the client inside one.
        let event = message_event(b"{\n\"a\":1,\r\n\"b\":2\r}\n");
        assert_eq!(
            &event[..],
            b"event: message\ndata: {\ndata: \"a\":1,\ndata: \"b\":2\ndata: }\n\n"
        );
        let mut decoder = SseDecoder::new();
        decoder.push(event);
        let decoded = decoder.next_event().unwrap().unwrap();
        let data = decoded.data().unwrap();
        let value: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(value, serde_json::json!({"a": 1, "b": 2}));
    }

    /// What a client reads in a dispatched event.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct View {
        event: Option<String>,
        id: Option<String>,
        retry: Option<u64>,
        data: String,
    }

    fn view(e: &SseEvent) -> View {
        View {
            event: e.event_type().map(Cow::into_owned),
            id: e.id().map(Cow::into_owned),
            retry: e.retry(),
            data: e.data().map(Cow::into_owned).unwrap_or_default(),
        }
    }

    /// Feeds `chunks` through a decoder, rewriting with `rewrite`; returns the bytes that
    /// go downstream and the views of the events the closure saw.
    fn run(
        chunks: &[&[u8]],
        mut rewrite: impl FnMut(&SseEvent) -> Option<Bytes>,
    ) -> (Vec<u8>, Vec<View>) {
        let mut decoder = SseDecoder::new();
        let mut out: Vec<Bytes> = Vec::new();
        let mut seen = Vec::new();
        for chunk in chunks {
            decoder
                .rewrite_chunk(
                    Bytes::copy_from_slice(chunk),
                    &mut |e: &SseEvent| {
                        seen.push(view(e));
                        rewrite(e)
                    },
                    &mut out,
                )
                .unwrap();
        }
        out.extend(decoder.finish());
        (out.concat(), seen)
    }

    const CORPUS: &[&[u8]] = &[
        b"",
        b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\n\n",
        b"event: message\r\nid: 42\r\ndata: a\r\ndata: b\r\n\r\n",
        b"data: a\rdata:b\r\r: keep-alive\r\r",
        b"id:1\n\r\ndata\r\r\n\n\ndata:  two spaces\n\n",
        b"\xEF\xBB\xBFdata: bom\n\n: comment\n\n",
        b"\xEF\xBB\xBF\n\ndata: after an empty first event\r\n\r\n",
        b"\xEF\xBBdata: not a bom\n\ndata: x\n\n",
        b"\xEF\xBB\xBF\xEF\xBB\xBFdata: two boms\n\ndata: y\n\n",
        b": ping\n\n:\n\n: \r\n\r\n",
        b"data\nevent\nid\nretry\nfoo\nfoo: bar\n\n",
        b"retry: 1500\nretry: x1\nid: a\0b\ndata:x\n\n",
        b"data: a\n\ndata: an unfinished event",
        b"data: a\r\n\r\n\r\n\r\ndata: b\r",
        b"data: a\r\r\ndata: b\r\r\n",
        b"\n\n\r\n\r\r\n\r",
        b"event: endpoint\ndata: /messages?sessionId=0f8e1c2a\n\n",
        b"data: \xff\xfe invalid utf-8\n\n",
        b"data: 0123456789012345678901234567890123456789012345678901234567890123456789\r\nid: \
          long-id-0123456789abcdef\r\n\r\n",
    ];

    #[test]
    fn passes_every_stream_through_byte_for_byte_at_every_split() {
        for input in CORPUS {
            let (whole, expected) = run(&[input], |_| None);
            assert_eq!(whole, *input, "{:?}", String::from_utf8_lossy(input));
            for cut in 0..=input.len() {
                let (a, b) = input.split_at(cut);
                let (out, seen) = run(&[a, b], |_| None);
                assert_eq!(
                    out,
                    *input,
                    "cut at {cut}: {:?}",
                    String::from_utf8_lossy(input)
                );
                assert_eq!(
                    seen,
                    expected,
                    "cut at {cut}: {:?}",
                    String::from_utf8_lossy(input)
                );
                for cut2 in cut..=input.len() {
                    let (b1, b2) = b.split_at(cut2 - cut);
                    let (out, seen) = run(&[a, b1, b2], |_| None);
                    assert_eq!(out, *input);
                    assert_eq!(seen, expected, "cuts at {cut}, {cut2}");
                }
            }
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(run(&bytes, |_| None), (input.to_vec(), expected));
        }
    }

    #[test]
    fn parses_fields_as_a_browser_does() {
        let all = |input: &[u8]| run(&[input], |_| None).1;
        let v = all(b"event: message\r\nid: 42\r\ndata: a\r\ndata: b\r\n\r\n");
        assert_eq!(
            v,
            [View {
                event: Some("message".into()),
                id: Some("42".into()),
                retry: None,
                data: "a\nb".into(),
            }]
        );
        // CR line endings, no space after the colon, `data` with no colon, two spaces.
        let v = all(b"data: a\rdata:b\r\rdata\r\rdata:  x\n\n");
        let data: Vec<_> = v.iter().map(|v| v.data.as_str()).collect();
        assert_eq!(data, ["a\nb", "", " x"]);
        // An id with a NUL and a retry that is not all digits are ignored; the last wins.
        let v = all(b"retry: 1500\nretry: x1\nid: a\nid: a\0b\nevent: x\nevent: y\ndata:\n\n");
        assert_eq!(v[0].retry, Some(1500));
        assert_eq!(v[0].id.as_deref(), Some("a"));
        assert_eq!(v[0].event.as_deref(), Some("y"));
        // Comments and blocks without data are not dispatched, so the closure never sees
        // them.
        assert!(all(b": ping\n\nid: 7\n\nretry: 10\n\n").is_empty());
        // A byte order mark counts once, at the start only.
        assert_eq!(all(b"\xEF\xBB\xBFdata: x\n\n")[0].data, "x");
        assert!(all(b"\xEF\xBB\xBF\xEF\xBB\xBFdata: x\n\n").is_empty());
        assert!(all(b"\xEF\xBBdata: x\n\n").is_empty());
        assert_eq!(all(b"data: \xff\n\n")[0].data, "\u{FFFD}");
    }

    #[test]
    fn yields_events_as_slices_of_the_chunk() {
        let chunk = Bytes::from_static(b": ping\n\ndata: 1\n\ndata: 2\n\ndata: 3");
        let mut decoder = SseDecoder::new();
        decoder.push(chunk.clone());
        let mut events = Vec::new();
        while let Some(event) = decoder.next_event().unwrap() {
            events.push(event);
        }
        assert_eq!(events.len(), 3);
        assert!(!events[0].has_data());
        assert_eq!(events[2].data().as_deref(), Some("2"));
        // No copy: the event's bytes are the chunk's.
        assert_eq!(events[1].raw().as_ptr(), chunk[8..].as_ptr());
        // Consecutive passed-through events go out as one slice.
        let mut decoder = SseDecoder::new();
        let mut out = Vec::new();
        decoder
            .rewrite_chunk(chunk.clone(), &mut |_| None, &mut out)
            .unwrap();
        assert_eq!(out, [chunk.slice(..26)]);
        assert_eq!(decoder.finish().as_deref(), Some(&b"data: 3"[..]));
    }

    #[test]
    fn rewrite_replaces_data_lines_and_keeps_every_other_byte() {
        let input: &[u8] = b"id: 7\r\nevent: message\r\n: note\r\ndata: old\r\nretry: 100\r\ndata: more\r\nx-unknown\r\n\r\n";
        let expected: &[u8] = b"id: 7\r\nevent: message\r\n: note\r\ndata: {\"new\":1}\r\ndata: second\r\nretry: 100\r\nx-unknown\r\n\r\n";
        let rewrite = |_: &SseEvent| Some(Bytes::from_static(b"{\"new\":1}\nsecond"));
        for cut in 0..=input.len() {
            let (a, b) = input.split_at(cut);
            let (out, _) = run(&[a, b], rewrite);
            assert_eq!(
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(expected),
                "cut at {cut}"
            );
        }
        // A client reads back exactly the new text, with the event's other fields.
        let (_, seen) = run(&[expected], |_| None);
        assert_eq!(seen[0].data, "{\"new\":1}\nsecond");
        assert_eq!(seen[0].id.as_deref(), Some("7"));
        assert_eq!(seen[0].retry, Some(100));
    }

    #[test]
    fn rewrite_keeps_line_endings_bom_and_the_other_events() {
        let upper = |e: &SseEvent| e.data().map(|d| Bytes::from(d.to_uppercase()));
        let cases: &[(&[u8], &[u8])] = &[
            (b"\xEF\xBB\xBFdata:a\n\n", b"\xEF\xBB\xBFdata: A\n\n"),
            (b"data: a\rdata: b\r\r", b"data: A\rdata: B\r\r"),
            (
                b": keep\n\ndata: x\n\n: keep\n\n",
                b": keep\n\ndata: X\n\n: keep\n\n",
            ),
            (b"data: a\r\n\r\ndata: b", b"data: A\r\n\r\ndata: b"),
            (b"data\n\n", b"data: \n\n"),
        ];
        for (input, expected) in cases {
            for cut in 0..=input.len() {
                let (a, b) = input.split_at(cut);
                let (out, _) = run(&[a, b], upper);
                assert_eq!(
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(expected),
                    "cut at {cut}"
                );
            }
        }
        // New text with CR, CRLF or a trailing newline: one data line per line a client
        // will see, and no line break left inside a data line.
        let mut decoder = SseDecoder::new();
        decoder.push(Bytes::from_static(b"event: m\ndata: old\n\n"));
        let event = decoder.next_event().unwrap().unwrap();
        let out = event.with_data(b"a\rb\r\nc\n");
        assert_eq!(&out[..], b"event: m\ndata: a\ndata: b\ndata: c\ndata: \n\n");
        let mut again = SseDecoder::new();
        again.push(out);
        let event = again.next_event().unwrap().unwrap();
        assert_eq!(event.data().as_deref(), Some("a\nb\nc\n"));
        // An event without data gets its data in front of its blank line.
        let mut decoder = SseDecoder::new();
        decoder.push(Bytes::from_static(b"id: 1\r\n\r\n"));
        let event = decoder.next_event().unwrap().unwrap();
        assert_eq!(&event.with_data(b"x")[..], b"id: 1\r\ndata: x\r\n\r\n");
    }

    #[test]
    fn crlf_split_between_chunks_is_one_line_ending() {
        let (out, seen) = run(&[b"data: a\r", b"\n\r", b"\ndata: b\r\n\r\n"], |_| None);
        assert_eq!(out, b"data: a\r\n\r\ndata: b\r\n\r\n");
        assert_eq!(seen.len(), 2);
        // The blank line's CR arrives last in a chunk: the event goes out at once, and the LF
        // that follows is not taken for another blank line.
        let mut decoder = SseDecoder::new();
        decoder.push(Bytes::from_static(b"data: a\r\n\r"));
        assert_eq!(
            decoder.next_event().unwrap().unwrap().data().as_deref(),
            Some("a")
        );
        assert!(decoder.next_event().unwrap().is_none());
        decoder.push(Bytes::from_static(b"\ndata: b\r\n\r\n"));
        let event = decoder.next_event().unwrap().unwrap();
        assert_eq!(&event.raw()[..], b"\ndata: b\r\n\r\n");
        assert_eq!(&event.with_data(b"c")[..], b"\ndata: c\r\n\r\n");
        assert!(decoder.next_event().unwrap().is_none());
        assert_eq!(decoder.finish(), None);
    }

    #[test]
    fn an_oversized_event_is_an_error_after_the_events_before_it() {
        let small = b"data: ok\n\n";
        let big = [b"data: ".as_slice(), &[b'x'; 40], b"\n\n"].concat();
        for chunks in [
            vec![[small.as_slice(), &big].concat()],
            vec![small.to_vec(), big[..20].to_vec(), big[20..].to_vec()],
            vec![
                [small.as_slice(), &big[..20]].concat(),
                big[20..40].to_vec(),
            ],
        ] {
            let mut decoder = SseDecoder::with_max_event_size(32);
            let mut out: Vec<Bytes> = Vec::new();
            let mut result = Ok(());
            for chunk in chunks {
                result = decoder.rewrite_chunk(Bytes::from(chunk), &mut |_| None, &mut out);
                if result.is_err() {
                    break;
                }
            }
            assert_eq!(result, Err(SseError::EventTooLarge { limit: 32 }));
            assert_eq!(out.concat(), small);
            assert!(decoder.next_event().is_err());
            assert_eq!(decoder.finish(), None);
        }
        // At the limit exactly is fine.
        let mut decoder = SseDecoder::with_max_event_size(small.len());
        decoder.push(Bytes::from_static(small));
        assert!(decoder.next_event().unwrap().is_some());
    }

    #[test]
    fn an_unfinished_last_event_is_handed_back_by_the_decoder() {
        let input: &[u8] = b"data: a\n\ndata: {\"never\":\"finished\"}\n";
        let (out, seen) = run(&[input], |_| Some("rewritten".into()));
        assert_eq!(out, b"data: rewritten\n\ndata: {\"never\":\"finished\"}\n");
        assert_eq!(seen.len(), 1);
    }

    /// The body never passes on bytes its closure did not see: an event the upstream left
    /// unfinished (which a lenient client might read all the same) is dropped, whether the
    /// stream ends or trailers end it.
    #[tokio::test]
    async fn the_body_drops_an_unfinished_last_event() {
        for trailers in [false, true] {
            let (tx, upstream) = channel_body();
            for chunk in [
                &b"data: a\n\ndata: {\"jsonrpc\":\"2.0\","[..],
                b"\"id\":1}\r\n",
            ] {
                tx.unbounded_send(Ok(Frame::data(Bytes::from_static(chunk))))
                    .unwrap();
            }
            if trailers {
                tx.unbounded_send(Ok(Frame::trailers(http::HeaderMap::new())))
                    .unwrap();
            }
            drop(tx);
            let body = SseRewrite::new(upstream, |_: &SseEvent| Some(Bytes::from_static(b"b")));
            let collected = body.collect().await.unwrap();
            assert_eq!(collected.trailers().is_some(), trailers);
            assert_eq!(
                collected.to_bytes(),
                &b"data: b\n\n"[..],
                "trailers: {trailers}"
            );
        }
    }

    type Upstream = http_body_util::StreamBody<
        futures::channel::mpsc::UnboundedReceiver<Result<Frame<Bytes>, std::io::Error>>,
    >;

    /// A body fed by hand, one frame at a time.
    fn channel_body() -> (
        futures::channel::mpsc::UnboundedSender<Result<Frame<Bytes>, std::io::Error>>,
        Upstream,
    ) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (tx, http_body_util::StreamBody::new(rx))
    }

    #[tokio::test]
    async fn the_body_sends_each_event_as_soon_as_it_is_complete() {
        let (tx, upstream) = channel_body();
        let mut body = SseRewrite::new(upstream, |e: &SseEvent| {
            (e.event_type().as_deref() == Some("endpoint"))
                .then(|| Bytes::from_static(b"/mcp?s=sealed"))
        });
        let send = |bytes: &'static [u8]| {
            tx.unbounded_send(Ok(Frame::data(Bytes::from_static(bytes))))
                .unwrap()
        };
        send(b": keep-alive\n\n");
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), ": keep-alive\n\n");
        send(b"event: endpoint\ndata: /mcp?s=raw\n\nda");
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(
            frame.into_data().unwrap(),
            "event: endpoint\ndata: /mcp?s=sealed\n\n"
        );
        send(b"ta: x\n");
        send(b"\n");
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "data: x\n\n");
        send(b"data: tail");
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-end", http::HeaderValue::from_static("1"));
        tx.unbounded_send(Ok(Frame::trailers(trailers))).unwrap();
        drop(tx);
        // The unfinished tail is dropped; the trailers follow.
        let frame = body.frame().await.unwrap().unwrap();
        assert!(frame.is_trailers());
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }

    #[tokio::test]
    async fn the_body_fails_on_an_oversized_event_and_on_upstream_errors() {
        let (tx, upstream) = channel_body();
        let mut body = SseRewrite::with_max_event_size(upstream, |_: &SseEvent| None, 16);
        tx.unbounded_send(Ok(Frame::data(Bytes::from_static(
            b"data: 1\n\ndata: 0123456789\n\n",
        ))))
        .unwrap();
        let frame = body.frame().await.unwrap().unwrap();
        assert_eq!(frame.into_data().unwrap(), "data: 1\n\n");
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(matches!(
            err,
            SseBodyError::Event(SseError::EventTooLarge { limit: 16 })
        ));
        assert!(body.frame().await.is_none());

        let (tx, upstream) = channel_body();
        let mut body = SseRewrite::new(upstream, |_: &SseEvent| None);
        tx.unbounded_send(Err(std::io::Error::other("reset")))
            .unwrap();
        let err = body.frame().await.unwrap().unwrap_err();
        assert!(matches!(err, SseBodyError::Upstream(_)));
        assert!(body.frame().await.is_none());
    }

    #[test]
    fn find_eol_agrees_with_a_plain_search() {
        let mut hay = vec![b'a'; 40];
        assert_eq!(find_eol(&hay), None);
        for at in 0..hay.len() {
            for eol in [b'\n', b'\r'] {
                hay[at] = eol;
                assert_eq!(find_eol(&hay), Some(at));
                hay[at + 1..].iter_mut().for_each(|b| *b = eol);
                assert_eq!(find_eol(&hay), Some(at));
                hay.iter_mut().for_each(|b| *b = 0x80 | (eol ^ 1));
            }
        }
        let high: Vec<u8> = (0..=255u8).filter(|b| *b != b'\n' && *b != b'\r').collect();
        assert_eq!(find_eol(&high), None);
    }
}
