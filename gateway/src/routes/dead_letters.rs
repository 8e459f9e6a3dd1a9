//! The dead-letter topic for admins: every record a worker set aside, with why, and a replay
//! that sends chosen ones back to the topic they came from once their cause is fixed.
//!
//! This module is the only writer of the `dead_letter_replays` table, which records each replay
//! so that a repeated request sends nothing twice.

use std::time::Duration;

use mercato_core::bus::Bus;
use mercato_core::clock::to_rfc3339;
use mercato_core::codec::decode;
use mercato_core::domain::catalog::excerpt;
use mercato_core::domain::dead_letters::{
    already_replayed, replay_in_progress, replayable, DeadLetter, Skip,
};
use mercato_core::domain::once::{decode_mark, Mark};
use mercato_core::names::{tables, topics};
use mercato_core::repo::once::{self, Claimed, OnceRow};
use serde::Deserialize;
use serde_json::{json, Value};

use super::admin::admin;
use super::{limit, Query};
use crate::error::{parse_json, ApiError, ApiReply, ApiResult};
use crate::state::AppState;

/// Dead letters replayed in one request, at most.
pub const MAX_REPLAY: usize = 1000;

/// The dead-letter topic has one partition: one order for operators to read it in.
const PARTITION: u32 = 0;

/// The store row that records a replay: one per dead letter, ordered by offset.
fn replay_key(offset: u64) -> String {
    format!("{offset:020}")
}

pub async fn list(state: &AppState, q: &Query) -> ApiResult {
    let from = match q.get("cursor") {
        Some(c) => c.parse::<u64>().map_err(|_| {
            ApiError::bad_request("invalid_cursor", "the cursor is not one this API issued")
        })?,
        None => 0,
    };
    let limit = limit(q)?;
    let bus: &dyn Bus = &*state.ports.bus;
    let end = bus.end_offset(topics::DEAD_LETTERS, PARTITION).await?;
    let records = if from < end {
        bus.fetch(topics::DEAD_LETTERS, PARTITION, from, limit, Duration::ZERO)
            .await?
    } else {
        Vec::new()
    };
    // Replays of this page: their rows sort by offset, and there is at most one per letter.
    let after = from.checked_sub(1).map(replay_key);
    let replays = state
        .ports
        .store
        .scan(
            tables::DEAD_LETTER_REPLAYS,
            "",
            after.as_deref(),
            records.len().max(1),
        )
        .await?;
    let replayed_at = |offset: u64| {
        let key = replay_key(offset);
        replays
            .rows
            .iter()
            .find(|r| r.clustering == key)
            .and_then(|r| match decode_mark(&r.value) {
                Mark::Done { at_ms } => at_ms,
                Mark::Claimed { .. } => None,
            })
            .map(to_rfc3339)
    };
    let letters: Vec<Value> = records
        .iter()
        .map(|r| match decode::<DeadLetter>(&r.value) {
            Ok(d) => json!({
                "offset": r.offset,
                "topic": d.topic,
                "partition": d.partition,
                "origin_offset": d.offset,
                "reason": d.reason,
                "key": String::from_utf8_lossy(&d.key),
                "record": excerpt(&d.value, 1024),
                "replayed_at": replayed_at(r.offset),
            }),
            Err(e) => {
                json!({"offset": r.offset, "reason": format!("undecodable dead letter: {e}")})
            }
        })
        .collect();
    let next = records.last().map(|r| r.offset + 1).filter(|n| *n < end);
    Ok(ApiReply::ok(json!({
        "dead_letters": letters,
        "total": end,
        "next_cursor": next.map(|n| n.to_string()),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    offsets: Vec<u64>,
    /// Replay letters that were replayed before, too.
    #[serde(default)]
    again: bool,
}

/// Sends each chosen dead letter's original record back to its topic (by its key, so to the
/// partition it came from), and records the replay. A letter replayed before is skipped
/// unless `again`; each skipped one says why. Of concurrent requests naming the same letter,
/// one replays it (`repo::once`): the others hear it is replayed, or being replayed.
pub async fn replay(state: &AppState, auth: Option<&str>, body: &[u8]) -> ApiResult {
    admin(state, auth)?;
    let request: ReplayRequest = parse_json(body)?;
    if request.offsets.is_empty() || request.offsets.len() > MAX_REPLAY {
        return Err(ApiError::bad_request(
            "invalid_offsets",
            format!("name 1 to {MAX_REPLAY} dead-letter offsets"),
        ));
    }
    let mut offsets = request.offsets;
    offsets.sort_unstable();
    offsets.dedup();
    let bus: &dyn Bus = &*state.ports.bus;
    let store = &*state.ports.store;
    let end = bus.end_offset(topics::DEAD_LETTERS, PARTITION).await?;
    let mut replayed = Vec::new();
    let mut skipped = Vec::new();
    for offset in offsets {
        let skip = |s: Skip| json!({"offset": offset, "code": s.code, "message": s.message});
        let record = if offset < end {
            bus.fetch(topics::DEAD_LETTERS, PARTITION, offset, 1, Duration::ZERO)
                .await?
                .into_iter()
                .find(|r| r.offset == offset)
        } else {
            None
        };
        let letter = match replayable(offset, end, record.as_ref().map(|r| r.value.as_slice())) {
            Ok(letter) => letter,
            Err(s) => {
                skipped.push(skip(s));
                continue;
            }
        };
        let key = replay_key(offset);
        let row = replay_row(&key);
        let claim = match once::claim(store, row, request.again).await? {
            Claimed::Act(claim) => claim,
            Claimed::Done { at_ms } => {
                skipped.push(skip(already_replayed(at_ms.map(to_rfc3339))));
                continue;
            }
            Claimed::InProgress { since_ms } => {
                skipped.push(skip(replay_in_progress(to_rfc3339(since_ms))));
                continue;
            }
        };
        let sent = bus
            .send(&letter.topic, &letter.key, letter.value.clone())
            .await;
        let (partition, new_offset) = match sent {
            Ok(at) => at,
            Err(e) => {
                // Not sent: the claim goes back, so a retry replays it.
                once::give_back(store, row, claim).await?;
                if let mercato_core::bus::BusError::UnknownTopic(t) = e {
                    skipped.push(skip(Skip {
                        code: "unknown_topic",
                        message: format!("topic {t:?} does not exist"),
                    }));
                    continue;
                }
                return Err(e.into());
            }
        };
        // A failure here leaves the claim, which goes stale and can be taken over: the
        // letter may then be replayed twice (its worker answers idempotently), never lost.
        once::finish(store, row, claim).await?;
        replayed.push(json!({
            "offset": offset,
            "topic": letter.topic,
            "partition": partition,
            "new_offset": new_offset,
        }));
    }
    Ok(ApiReply::ok(
        json!({"replayed": replayed, "skipped": skipped}),
    ))
}

/// A replay's row; a claim older than a minute belongs to a request that died.
fn replay_row(key: &str) -> OnceRow<'_> {
    OnceRow {
        table: tables::DEAD_LETTER_REPLAYS,
        partition: "",
        clustering: key,
        ttl: None,
        stale_after: Duration::from_secs(60),
    }
}
