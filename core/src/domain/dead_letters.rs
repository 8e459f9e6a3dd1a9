//! Records no worker could use, kept with their reason and origin: never dropped silently.

use serde::{Deserialize, Serialize};

/// A record on the dead-letter topic: where the original came from, why it was refused, and
/// the original itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: u32,
    pub offset: u64,
    pub reason: String,
    pub key: Vec<u8>,
    pub value: Vec<u8>,
}

/// Why a dead letter named for replay was not sent back: a code and a message for the admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skip {
    pub code: &'static str,
    pub message: String,
}

/// The letter at `offset` of a topic of `end` records, if it can be replayed: `record` is what
/// the topic holds there (`None` once it is no longer kept).
pub fn replayable(offset: u64, end: u64, record: Option<&[u8]>) -> Result<DeadLetter, Skip> {
    if offset >= end {
        return Err(Skip {
            code: "not_found",
            message: format!("the dead-letter topic has {end} records"),
        });
    }
    let record = record.ok_or_else(|| Skip {
        code: "not_found",
        message: "the record is no longer kept".into(),
    })?;
    crate::codec::decode::<DeadLetter>(record).map_err(|e| Skip {
        code: "undecodable",
        message: format!("not a dead letter: {e}"),
    })
}

/// A letter replayed before (at `at`, RFC 3339, when known), and not asked for again.
pub fn already_replayed(at: Option<String>) -> Skip {
    Skip {
        code: "already_replayed",
        message: format!(
            "replayed {}; add \"again\": true to replay it once more",
            at.map_or_else(|| "before".to_owned(), |at| format!("at {at}"))
        ),
    }
}

/// A letter another request is replaying at this moment (since `since`, RFC 3339).
pub fn replay_in_progress(since: String) -> Skip {
    Skip {
        code: "replay_in_progress",
        message: format!("another request is replaying it since {since}"),
    }
}

crate::first_layout!(DeadLetter);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_kept_decodable_letter_is_replayable() {
        let letter = DeadLetter {
            topic: "ingest".into(),
            partition: 1,
            offset: 7,
            reason: "malformed".into(),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let bytes = crate::codec::encode(&letter);
        assert_eq!(replayable(3, 10, Some(&bytes)), Ok(letter));
        assert_eq!(
            replayable(10, 10, Some(&bytes)).unwrap_err().code,
            "not_found"
        );
        assert_eq!(replayable(3, 10, None).unwrap_err().code, "not_found");
        assert_eq!(
            replayable(3, 10, Some(b"x")).unwrap_err().code,
            "undecodable"
        );
        assert!(already_replayed(None).message.contains("replayed before"));
    }
}
