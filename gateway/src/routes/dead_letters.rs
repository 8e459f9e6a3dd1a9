//! The dead-letter topic for admins: every record a worker set aside, with why, and a replay
//! that sends chosen ones back to the topic they came from once their cause is fixed.
//!
//! This module is the only writer of the `dead_letter_replays` table, which records each replay
//! so that a repeated request sends nothing twice.

use std::time::Duration;

use mercato_core::bus::Bus;
use mercato_core::clock::{now_ms, to_rfc3339};
use mercato_core::codec::{decode, encode};
use mercato_core::domain::catalog::excerpt;
use mercato_core::domain::dead_letters::DeadLetter;
use mercato_core::names::{tables, topics};
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
            .and_then(|r| decode::<u64>(&r.value).ok())
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
/// unless `again`; each skipped one says why.
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
        let skip = |code: &str, message: String| json!({"offset": offset, "code": code, "message": message});
        if offset >= end {
            skipped.push(skip(
                "not_found",
                format!("the dead-letter topic has {end} records"),
            ));
            continue;
        }
        let found = bus
            .fetch(topics::DEAD_LETTERS, PARTITION, offset, 1, Duration::ZERO)
            .await?;
        let Some(record) = found.into_iter().find(|r| r.offset == offset) else {
            skipped.push(skip("not_found", "the record is no longer kept".into()));
            continue;
        };
        let letter = match decode::<DeadLetter>(&record.value) {
            Ok(l) => l,
            Err(e) => {
                skipped.push(skip("undecodable", format!("not a dead letter: {e}")));
                continue;
            }
        };
        let key = replay_key(offset);
        if !request.again {
            if let Some(row) = store.get(tables::DEAD_LETTER_REPLAYS, "", &key).await? {
                let at = decode::<u64>(&row.value)
                    .map(to_rfc3339)
                    .unwrap_or_default();
                skipped.push(skip(
                    "already_replayed",
                    format!("replayed at {at}; add \"again\": true to replay it once more"),
                ));
                continue;
            }
        }
        let sent = bus
            .send(&letter.topic, &letter.key, letter.value.clone())
            .await;
        let (partition, new_offset) = match sent {
            Ok(at) => at,
            Err(mercato_core::bus::BusError::UnknownTopic(t)) => {
                skipped.push(skip("unknown_topic", format!("topic {t:?} does not exist")));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        // Written after the send: a failure between the two can only replay a letter twice,
        // which its worker answers idempotently, never lose a replay.
        store
            .put(
                tables::DEAD_LETTER_REPLAYS,
                "",
                &key,
                encode(&now_ms()),
                None,
            )
            .await?;
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
