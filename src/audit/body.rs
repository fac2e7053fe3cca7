//! A response body that finishes its request's audit record when it ends: after the last
//! byte, or when the client goes away (the record then says `cut_short`). For an event
//! stream that is when the stream ends, so the record has the stream's whole length.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};

use super::Audit;
use super::event::RequestRecord;
use super::metrics::StreamGauge;

/// What finishing needs.
#[derive(Debug)]
pub struct Pending {
    pub audit: Arc<Audit>,
    pub record: RequestRecord,
    pub started: Instant,
    pub tool_labels: bool,
    /// Counts the response as an open event stream until it ends.
    pub stream: Option<StreamGauge>,
}

pin_project_lite::pin_project! {
    /// The response body, counted.
    pub struct Audited {
        #[pin]
        inner: Body,
        bytes: u64,
        pending: Option<Box<Pending>>,
    }

    impl PinnedDrop for Audited {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(pending) = this.pending.take() {
                let complete = http_body::Body::is_end_stream(&*this.inner);
                finish(pending, *this.bytes, !complete);
            }
        }
    }
}

impl std::fmt::Debug for Audited {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audited")
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Audited {
    pub fn new(inner: Body, pending: Pending) -> Self {
        Self {
            inner,
            bytes: 0,
            pending: Some(Box::new(pending)),
        }
    }
}

fn finish(pending: Box<Pending>, bytes: u64, cut_short: bool) {
    let Pending {
        audit,
        mut record,
        started,
        tool_labels,
        stream,
    } = *pending;
    drop(stream);
    record.latency = started.elapsed();
    record.bytes_out = bytes;
    record.cut_short = cut_short;
    audit.finish(record, tool_labels);
}

impl http_body::Body for Audited {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                }
            }
            Poll::Ready(None) => {
                if let Some(pending) = this.pending.take() {
                    finish(pending, *this.bytes, false);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(pending) = this.pending.take() {
                    finish(pending, *this.bytes, true);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
