//! Request bodies read with a limit: refused with 413 past it whether or not the client
//! announced its length (a chunked body is counted as it arrives, never buffered past the
//! limit), and read to the end before a refusal goes out so the client sees it.

use bytes::Bytes;
use warp::http::StatusCode;

use crate::error::ApiError;

/// Why a request body was not taken.
#[derive(Debug, Clone, Copy)]
pub(super) enum BodyRefused {
    TooLarge,
    Unreadable,
}

impl From<BodyRefused> for ApiError {
    fn from(refused: BodyRefused) -> Self {
        match refused {
            BodyRefused::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is too large",
            ),
            BodyRefused::Unreadable => {
                ApiError::bad_request("body_unreadable", "the request body could not be read")
            }
        }
    }
}

/// The request body, at most `limit` bytes.
pub(super) async fn read_limited<S, B>(
    announced: Option<u64>,
    stream: S,
    limit: u64,
) -> Result<Bytes, BodyRefused>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    match announced {
        Some(n) if n > limit => {
            if n <= DRAIN_LIMIT {
                drain(stream).await;
            }
            Err(BodyRefused::TooLarge)
        }
        _ => collect_limited(stream, limit).await,
    }
}

/// A refused body up to this size is read and dropped before the 413 goes out: a reply sent
/// while the client is still writing is often lost to the connection's reset, and the client
/// sees a broken pipe instead of the error. Beyond it, the connection is simply cut.
pub(super) const DRAIN_LIMIT: u64 = 4 * 1024 * 1024;

/// The largest manifest stream `mercato apply` may send.
pub(super) const MANIFESTS_LIMIT: u64 = 16 * 1024 * 1024;

pub(super) async fn drain<S, B>(stream: S)
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures::StreamExt;
    let mut stream = std::pin::pin!(stream);
    let mut read = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        read += chunk.remaining() as u64;
        if read > DRAIN_LIMIT {
            return;
        }
    }
}

async fn collect_limited<S, B>(stream: S, limit: u64) -> Result<Bytes, BodyRefused>
where
    S: futures::Stream<Item = Result<B, warp::Error>>,
    B: bytes::Buf,
{
    use futures::StreamExt;
    let mut stream = std::pin::pin!(stream);
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let mut chunk = chunk.map_err(|_| BodyRefused::Unreadable)?;
        if out.len() as u64 + chunk.remaining() as u64 > limit {
            drain(stream).await;
            return Err(BodyRefused::TooLarge);
        }
        while chunk.has_remaining() {
            let part = chunk.chunk();
            let n = part.len();
            out.extend_from_slice(part);
            chunk.advance(n);
        }
    }
    Ok(out.freeze())
}
