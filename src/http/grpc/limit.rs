//! A limit on the size of each gRPC message in a request body, however the stream is framed.

use crate::http::BoxError;

/// A gRPC request body whose every message must be at most `limit` bytes: the stream as a
/// whole may run on (a long-lived bidirectional call), a message larger than the limit ends it
/// with an error before its bytes go further. Messages are read from their 5-byte prefixes
/// (a flag byte, a big-endian length) across frame boundaries; frames pass unchanged and
/// trailers pass too.
pub struct MessageLimit<B> {
    body: B,
    limit: usize,
    /// Bytes of the current prefix read so far, and the prefix itself.
    prefix_len: usize,
    prefix: [u8; 5],
    /// Bytes of the current message's payload still to come.
    payload: usize,
    /// Set when a message went over the limit.
    tripped: Tripped,
}

/// Whether a [`MessageLimit`] refused a message: the request's sender reads it after the send
/// failed (HTTP/2 reports the stream's reset, not the body's error), to answer
/// `RESOURCE_EXHAUSTED` rather than blame the peer.
#[derive(Debug, Clone, Default)]
pub struct Tripped(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Tripped {
    /// Whether the limit was hit.
    pub fn is_set(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A gRPC message larger than the listener allows.
#[derive(Debug, thiserror::Error)]
#[error("gRPC message of {size} bytes is larger than the limit of {limit}")]
pub struct MessageTooLarge {
    /// The declared size.
    pub size: usize,
    /// The limit.
    pub limit: usize,
}

impl<B> MessageLimit<B> {
    /// `body` with messages of at most `limit` bytes.
    pub fn new(body: B, limit: usize) -> Self {
        Self {
            body,
            limit,
            prefix_len: 0,
            prefix: [0; 5],
            payload: 0,
            tripped: Tripped::default(),
        }
    }

    /// The flag this body sets when it refuses a message.
    pub fn tripped(&self) -> Tripped {
        self.tripped.clone()
    }

    /// Walks `data` through the message framing; the first message over the limit is an error.
    fn check(&mut self, mut data: &[u8]) -> Result<(), MessageTooLarge> {
        while !data.is_empty() {
            if self.payload > 0 {
                let n = self.payload.min(data.len());
                self.payload -= n;
                data = &data[n..];
                continue;
            }
            let n = (5 - self.prefix_len).min(data.len());
            self.prefix[self.prefix_len..self.prefix_len + n].copy_from_slice(&data[..n]);
            self.prefix_len += n;
            data = &data[n..];
            if self.prefix_len == 5 {
                self.prefix_len = 0;
                let [_, a, b, c, d] = self.prefix;
                let size = usize::try_from(u32::from_be_bytes([a, b, c, d])).unwrap_or(usize::MAX);
                if size > self.limit {
                    self.tripped
                        .0
                        .store(true, std::sync::atomic::Ordering::Relaxed);
                    return Err(MessageTooLarge {
                        size,
                        limit: self.limit,
                    });
                }
                self.payload = size;
            }
        }
        Ok(())
    }
}

impl<B> http_body::Body for MessageLimit<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = bytes::Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        let this = &mut *self;
        let polled = std::pin::Pin::new(&mut this.body).poll_frame(cx);
        let std::task::Poll::Ready(Some(Ok(frame))) = polled else {
            return polled.map(|f| f.map(|r| r.map_err(Into::into)));
        };
        if let Some(data) = frame.data_ref() {
            this.check(data)?;
        }
        std::task::Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
