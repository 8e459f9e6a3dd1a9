//! The rows counting a shopper's seats in live holds at an event, in `hold_quotas`: the only
//! place that knows their keys. Written by the holds worker alone, by compare-and-set.

use std::time::Duration;

use crate::codec::encode;
use crate::domain::holds::quota::SeatQuota;
use crate::names::tables;
use crate::store::Store;

use super::{get, RepoResult, Versioned};

/// A row outlives every hold it can count (an hour at most) and goes by itself after.
const ROW_TTL: Duration = Duration::from_secs(2 * 3600);

fn partition(event_id: &str, user_id: &str) -> String {
    format!("{event_id}/{user_id}")
}

/// The shopper's count at the event, with the version to change it against.
pub async fn load(
    store: &dyn Store,
    event_id: &str,
    user_id: &str,
) -> RepoResult<Option<Versioned<SeatQuota>>> {
    get(
        store,
        tables::HOLD_QUOTAS,
        &partition(event_id, user_id),
        "",
    )
    .await
}

/// Writes `quota` in place of the row at `expected` (`None`: no row); false when the row
/// changed meanwhile, and nothing was written.
pub async fn replace(
    store: &dyn Store,
    event_id: &str,
    user_id: &str,
    quota: &SeatQuota,
    expected: Option<u64>,
) -> RepoResult<bool> {
    let partition = partition(event_id, user_id);
    let value = encode(quota);
    let applied = match expected {
        Some(version) => {
            store
                .compare_and_set(
                    tables::HOLD_QUOTAS,
                    &partition,
                    "",
                    version,
                    value,
                    Some(ROW_TTL),
                )
                .await?
        }
        None => {
            store
                .insert_if_absent(tables::HOLD_QUOTAS, &partition, "", value, Some(ROW_TTL))
                .await?
        }
    };
    Ok(applied.applied)
}
