//! What can go wrong in a store, typed so callers can decide without reading messages: retry
//! later (`Unavailable`, `Io`), or never, because retrying fails the same way (`Invalid`,
//! `Corrupt`). The engine's own error is kept as the source, not flattened into the message.

use std::error::Error;
use std::sync::Arc;

/// An engine's own error, shared so that a `StoreError` stays `Clone` (one failed write is
/// answered to every caller waiting on it).
pub type Cause = Arc<dyn Error + Send + Sync + 'static>;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The engine cannot be reached or is not serving; the same request may succeed later.
    #[error("{engine} is unavailable: {context}")]
    Unavailable {
        engine: &'static str,
        context: String,
        #[source]
        cause: Option<Cause>,
    },
    /// The engine was reached but the operation failed (a write error, a full disk, an answer
    /// of the wrong shape); nothing is known to have been written.
    #[error("{engine} failed while {context}")]
    Io {
        engine: &'static str,
        context: String,
        #[source]
        cause: Option<Cause>,
    },
    /// A stored value the engine cannot read back: every retry reads it the same way.
    #[error("{engine} holds an unreadable value: {context}")]
    Corrupt {
        engine: &'static str,
        context: String,
    },
    /// The request itself is wrong (a batch naming one row twice, a key too long, a bad URL).
    #[error("invalid request to the store: {reason}")]
    Invalid { reason: String },
}

impl StoreError {
    pub fn unavailable(
        engine: &'static str,
        context: impl Into<String>,
        cause: impl Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Unavailable {
            engine,
            context: context.into(),
            cause: Some(Arc::new(cause)),
        }
    }

    /// Unavailable for a reason of our own (a stopped writer), with no engine error behind it.
    pub fn unavailable_because(engine: &'static str, context: impl Into<String>) -> Self {
        StoreError::Unavailable {
            engine,
            context: context.into(),
            cause: None,
        }
    }

    pub fn io(
        engine: &'static str,
        context: impl Into<String>,
        cause: impl Error + Send + Sync + 'static,
    ) -> Self {
        StoreError::Io {
            engine,
            context: context.into(),
            cause: Some(Arc::new(cause)),
        }
    }

    /// An I/O failure found by us (an answer missing a column), with no engine error behind it.
    pub fn io_because(engine: &'static str, context: impl Into<String>) -> Self {
        StoreError::Io {
            engine,
            context: context.into(),
            cause: None,
        }
    }

    pub fn corrupt(engine: &'static str, context: impl Into<String>) -> Self {
        StoreError::Corrupt {
            engine,
            context: context.into(),
        }
    }

    pub fn invalid(reason: impl Into<String>) -> Self {
        StoreError::Invalid {
            reason: reason.into(),
        }
    }

    /// A label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            StoreError::Unavailable { .. } => "unavailable",
            StoreError::Io { .. } => "io",
            StoreError::Corrupt { .. } => "corrupt",
            StoreError::Invalid { .. } => "invalid",
        }
    }

    /// True when the same request can only fail the same way: a record whose handling ends in
    /// such an error is poison, not a victim of an outage.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. } | StoreError::Invalid { .. }
        )
    }
}

/// The error and every cause under it, `: `-separated, for logs and dead letters (a `Display`
/// shows one level, as the `Error` convention asks).
pub fn report(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        next = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_error_is_the_source_and_the_report_shows_it() {
        let disk = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left on device");
        let e = StoreError::io("embedded store", "writing the journal", disk);
        assert_eq!(
            e.to_string(),
            "embedded store failed while writing the journal"
        );
        let source = e.source().map(|s| s.to_string());
        assert_eq!(source.as_deref(), Some("no space left on device"));
        assert_eq!(
            report(&e),
            "embedded store failed while writing the journal: no space left on device"
        );
        assert!(!e.is_permanent());
        assert!(StoreError::invalid("a batch writes row \"a\" twice").is_permanent());
    }
}
