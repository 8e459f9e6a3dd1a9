//! Actions taken once: a provider event queued for the payments worker, a dead letter sent back
//! to its topic. Reading "done?" and then acting lets two concurrent requests both act, so the
//! action is claimed first by a conditional write of a [`Mark`], and only the request whose
//! claim was written acts; it marks the action done afterwards. A claim whose holder died
//! before finishing (the process killed between claim and action) goes stale and may be taken
//! over, so a failure after the claim never blocks the action for good.
//!
//! This module decides; `repo::once` does the store's part around it.

use serde::{Deserialize, Serialize};

/// What a once-only action's row says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mark {
    /// A request is taking the action since `at_ms`.
    Claimed { at_ms: u64 },
    /// The action was taken at `at_ms` (unknown for rows older than marks).
    Done { at_ms: Option<u64> },
}

/// What a request whose claim was refused (a row stood in the way) should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Taken already; act only if asked to do it again, by taking the row over.
    Done { at_ms: Option<u64> },
    /// Another request claimed it and may still be acting.
    InProgress { since_ms: u64 },
    /// The claim went stale (its holder died): take the row over, then act.
    TakeOver,
}

/// The tag that starts an encoded [`Mark`], telling it from the rows written before marks:
/// empty (a received webhook) or a bare timestamp (a replayed dead letter).
const TAG: &[u8] = b"once1:";

pub fn encode_mark(mark: &Mark) -> Vec<u8> {
    let mut out = TAG.to_vec();
    out.extend(crate::codec::encode(mark));
    out
}

/// Reads a row's mark. Any row that is not a claim means the action was taken: an unreadable
/// row must never make an action happen twice.
pub fn decode_mark(bytes: &[u8]) -> Mark {
    if let Some(rest) = bytes.strip_prefix(TAG) {
        if let Ok(mark) = crate::codec::decode::<Mark>(rest) {
            return mark;
        }
    }
    Mark::Done {
        at_ms: crate::codec::decode::<u64>(bytes).ok(),
    }
}

/// The decision for a request whose conditional claim was not written because `existing` was
/// there. (A request whose claim was written acts.)
pub fn decide(existing: Mark, now_ms: u64, stale_after_ms: u64) -> Decision {
    match existing {
        Mark::Done { at_ms } => Decision::Done { at_ms },
        Mark::Claimed { at_ms } if now_ms.saturating_sub(at_ms) >= stale_after_ms => {
            Decision::TakeOver
        }
        Mark::Claimed { at_ms } => Decision::InProgress { since_ms: at_ms },
    }
}

crate::first_layout!(Mark);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_round_trip_and_older_rows_read_as_done() {
        for mark in [Mark::Claimed { at_ms: 5 }, Mark::Done { at_ms: Some(9) }] {
            assert_eq!(decode_mark(&encode_mark(&mark)), mark);
        }
        // A received webhook's row before marks: empty.
        assert_eq!(decode_mark(&[]), Mark::Done { at_ms: None });
        // A replayed dead letter's row before marks: the time, as the codec writes a u64.
        let at = 1_796_000_000_000u64;
        assert_eq!(
            decode_mark(&crate::codec::encode(&at)),
            Mark::Done { at_ms: Some(at) }
        );
        // Anything else present is done, never "act".
        assert!(matches!(decode_mark(b"once1:\xff\xff"), Mark::Done { .. }));
    }

    #[test]
    fn a_fresh_claim_waits_a_stale_one_is_taken_over_a_done_one_is_done() {
        assert_eq!(
            decide(Mark::Claimed { at_ms: 90 }, 100, 30),
            Decision::InProgress { since_ms: 90 }
        );
        assert_eq!(
            decide(Mark::Claimed { at_ms: 70 }, 100, 30),
            Decision::TakeOver
        );
        assert_eq!(
            decide(Mark::Done { at_ms: Some(1) }, 100, 30),
            Decision::Done { at_ms: Some(1) }
        );
        // A clock that went back does not make a claim stale.
        assert_eq!(
            decide(Mark::Claimed { at_ms: 200 }, 100, 30),
            Decision::InProgress { since_ms: 200 }
        );
    }
}
