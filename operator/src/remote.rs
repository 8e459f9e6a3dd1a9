//! Product sources named by URL (`source.url`): `https://` (and `http://`) through reqwest,
//! `s3://BUCKET/KEY` through `object_store` (any S3-compatible storage; credentials, region
//! and endpoint from the standard `AWS_*` variables).
//!
//! A source is streamed to a private temporary file (never held in memory), counted against
//! the size cap as it arrives, and hashed on the way; with `sha256` declared, other bytes are
//! refused. The file is then read exactly like a `source.file`, and removed when the last
//! reader is done. Only URLs under a prefix the process allows are fetched: anyone who may
//! apply a manifest may name a URL, and the operator must not become a way to reach the
//! cluster's internal services.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};

use crate::sources::{Source, SourceError};

/// How long one attempt may take to start answering; the body then streams as long as it must.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Fetches `url` (already allowed by the policy) into a temporary file of at most `max_bytes`.
pub async fn download(
    url: &str,
    expected_sha256: Option<&str>,
    max_bytes: u64,
) -> Result<Source, SourceError> {
    let attempt = || async {
        let (size, body) = open(url).await?;
        if let Some(size) = size.filter(|s| *s > max_bytes) {
            return Err(SourceError::TooLarge {
                path: url.to_owned(),
                size,
                max: max_bytes,
            });
        }
        save(url, body, max_bytes).await
    };
    let (file, sha256) = attempt
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_times(3),
        )
        .when(SourceError::is_transient)
        .notify(|e, after| {
            tracing::warn!(url, error = %e, retry_in = ?after, "a product source download failed");
        })
        .await?;
    if let Some(expected) = expected_sha256 {
        if !expected.eq_ignore_ascii_case(&sha256) {
            return Err(SourceError::Checksum {
                url: url.to_owned(),
                expected: expected.to_ascii_lowercase(),
                actual: sha256,
            });
        }
    }
    Ok(Source::downloaded(url, Arc::new(file), max_bytes))
}

type Body = std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, SourceError>> + Send>>;

/// Starts the download: its announced size, if any, and the body.
async fn open(url: &str) -> Result<(Option<u64>, Body), SourceError> {
    if let Some(rest) = url.strip_prefix("s3://") {
        return open_s3(url, rest).await;
    }
    let unreachable = |e: reqwest::Error| SourceError::Unreachable {
        url: url.to_owned(),
        cause: chain(&e),
        transient: true,
    };
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
        .map_err(unreachable)?;
    let response = client.get(url).send().await.map_err(unreachable)?;
    let status = response.status();
    if !status.is_success() {
        return Err(SourceError::Unreachable {
            url: url.to_owned(),
            cause: format!("the server answered {status}"),
            // A 404 or 403 will not change by asking again; a 503 may.
            transient: status.is_server_error() || status.as_u16() == 429,
        });
    }
    let size = response.content_length();
    let owned = url.to_owned();
    let body = futures::stream::unfold(Some(response), move |response| {
        let url = owned.clone();
        async move {
            let mut response = response?;
            match response.chunk().await {
                Ok(Some(chunk)) => Some((Ok(chunk), Some(response))),
                Ok(None) => None,
                Err(e) => Some((
                    Err(SourceError::Unreachable {
                        url,
                        cause: chain(&e),
                        transient: true,
                    }),
                    None,
                )),
            }
        }
    });
    Ok((size, Box::pin(body)))
}

async fn open_s3(url: &str, rest: &str) -> Result<(Option<u64>, Body), SourceError> {
    use object_store::ObjectStore;
    let (bucket, key) = rest
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
        .ok_or_else(|| SourceError::Invalid(format!("{url}: expected s3://BUCKET/KEY")))?;
    let failed = |e: object_store::Error| SourceError::Unreachable {
        url: url.to_owned(),
        cause: chain(&e),
        transient: !matches!(
            e,
            object_store::Error::NotFound { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ),
    };
    let store = object_store::aws::AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| SourceError::Invalid(format!("{url}: {}", chain(&e))))?;
    let path = object_store::path::Path::from(key);
    let result = store.get(&path).await.map_err(failed)?;
    let size = result.meta.size;
    let owned = url.to_owned();
    let body = result.into_stream().map(move |chunk| {
        chunk.map_err(|e| SourceError::Unreachable {
            url: owned.clone(),
            cause: chain(&e),
            transient: true,
        })
    });
    Ok((Some(size), Box::pin(body)))
}

/// Writes the body to a private temporary file, refusing it once it passes `max_bytes`;
/// returns the file and the SHA-256 of its bytes.
async fn save(
    url: &str,
    mut body: Body,
    max_bytes: u64,
) -> Result<(tempfile::TempPath, String), SourceError> {
    let local = |cause: std::io::Error| SourceError::Io {
        path: format!("a temporary file for {url}"),
        cause,
    };
    // Created 0600; removed when the last holder of the Source drops it.
    let mut file = tempfile::Builder::new()
        .prefix("mercato-source-")
        .tempfile()
        .map_err(local)?;
    let mut hasher = Sha256::new();
    let mut written: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk?;
        written += chunk.len() as u64;
        if written > max_bytes {
            return Err(SourceError::TooLarge {
                path: url.to_owned(),
                size: written,
                max: max_bytes,
            });
        }
        hasher.update(&chunk);
        // Local disk: a short blocking write between network reads.
        file.write_all(&chunk).map_err(local)?;
    }
    file.flush().map_err(local)?;
    tracing::info!(url, bytes = written, "product source downloaded");
    Ok((file.into_temp_path(), hex::encode(hasher.finalize())))
}

/// An error and its causes in one line.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    std::iter::successors(Some(e), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ")
}
