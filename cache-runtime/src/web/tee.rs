//! A response body passed to the client as it arrives and recorded on the
//! way, so a page is stored without delaying its first byte.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::sync::oneshot;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How a recorded body ended.
#[derive(Debug)]
pub(crate) enum Recorded {
    /// The whole body, at most the limit.
    Complete(Bytes),
    /// It outgrew the limit (or had trailers): passed on, not recorded.
    Unstorable,
    /// It failed, or the client went away before its end.
    Broken,
}

/// Passes `inner`'s frames on unchanged and keeps a copy of the data until
/// it exceeds `limit`; at the end of the stream (or when dropped first)
/// it reports through `done`.
pub(crate) struct Tee {
    inner: Body,
    kept: Option<BytesMut>,
    limit: usize,
    done: Option<oneshot::Sender<Recorded>>,
}

impl Tee {
    pub(crate) fn new(inner: Body, limit: usize) -> (Tee, oneshot::Receiver<Recorded>) {
        let (tx, rx) = oneshot::channel();
        let tee = Tee {
            inner,
            kept: Some(BytesMut::new()),
            limit,
            done: Some(tx),
        };
        (tee, rx)
    }

    fn report(&mut self, r: Recorded) {
        if let Some(tx) = self.done.take() {
            // The receiver is gone only when the flight was cancelled.
            let _ = tx.send(r);
        }
    }
}

impl http_body::Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) => {
                    let over = this
                        .kept
                        .as_ref()
                        .is_some_and(|k| k.len() + data.len() > this.limit);
                    if over {
                        this.kept = None;
                        this.report(Recorded::Unstorable);
                    } else if let Some(kept) = &mut this.kept {
                        kept.extend_from_slice(data);
                    }
                }
                None => {
                    this.kept = None;
                    this.report(Recorded::Unstorable);
                }
            },
            Poll::Ready(Some(Err(_))) => {
                this.kept = None;
                this.report(Recorded::Broken);
            }
            Poll::Ready(None) => {
                if let Some(kept) = this.kept.take() {
                    this.report(Recorded::Complete(kept.freeze()));
                }
            }
            Poll::Pending => {}
        }
        polled.map_err(axum::Error::into_inner)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        // An empty body may end without a poll: `is_end_stream` lets hyper skip it.
        if http_body::Body::is_end_stream(&self.inner) {
            if let Some(kept) = self.kept.take() {
                self.report(Recorded::Complete(kept.freeze()));
            }
        }
        self.report(Recorded::Broken);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn a_body_within_the_limit_is_passed_on_and_recorded_whole() {
        let (tee, rx) = Tee::new(Body::from("hello"), 5);
        let got = pollster::block_on(tee.collect()).unwrap().to_bytes();
        assert_eq!(&got[..], b"hello");
        assert!(matches!(pollster::block_on(rx), Ok(Recorded::Complete(b)) if &b[..] == b"hello"));
    }

    #[test]
    fn a_body_over_the_limit_is_passed_on_whole_and_not_recorded() {
        let (tee, rx) = Tee::new(Body::from("hello world"), 5);
        let got = pollster::block_on(tee.collect()).unwrap().to_bytes();
        assert_eq!(&got[..], b"hello world");
        assert!(matches!(pollster::block_on(rx), Ok(Recorded::Unstorable)));
    }

    #[test]
    fn a_body_dropped_before_its_end_is_broken() {
        let stream = futures_util::stream::pending::<Result<Frame<Bytes>, BoxError>>();
        let (tee, rx) = Tee::new(Body::new(http_body_util::StreamBody::new(stream)), 5);
        drop(tee);
        assert!(matches!(pollster::block_on(rx), Ok(Recorded::Broken)));
    }
}
