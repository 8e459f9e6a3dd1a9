//! The rows of holds and seat claims, in `seat_claims`: the only place that knows their keys.
//!
//! A section's seats are one partition, `<event>/<section>`, one row per claimed seat (keyed by
//! the seat id). A hold's own row sits in the partition of its first seat's section, keyed
//! `~hold.<hold id>` (sorting after every seat id), so that the hold and those claims are
//! written by one conditional batch; the hold id says where (see `domain::holds::new_id`).
//!
//! Who writes: the holds worker places and releases holds and their claims; the payments
//! worker turns a hold's claims into sales and moves the hold through purchase. Nothing else
//! writes these rows.

use std::time::Duration;

use crate::codec::encode;
use crate::domain::holds::{self, ClaimedSeat, Hold, SeatHolder, SectionClaimed};
use crate::domain::seats::{Claim, SeatStatus};
use crate::names::tables;
use crate::store::{Store, Write};

use super::{decode_row, get, RepoResult, Versioned};

/// Hold rows outlive their seats' claims so a shopper can still see an expired hold.
pub const ROW_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// Clustering keys of hold rows start with this; it sorts after every seat id, so a scan of a
/// section's seats can stop at the first hold row.
pub const ROW_PREFIX: &str = "~hold.";

/// The partition of `seat_claims` holding a section's seats.
pub fn section_partition(event_id: &str, section: &str) -> String {
    format!("{event_id}/{section}")
}

/// Where a hold's row is: (partition, clustering key) of `seat_claims`; `None` for an id not
/// in the shape `domain::holds::new_id` makes.
pub fn hold_key(hold_id: &str) -> Option<(String, String)> {
    let (event, section) = holds::parse_id(hold_id)?;
    Some((
        section_partition(event, section),
        format!("{ROW_PREFIX}{hold_id}"),
    ))
}

/// A hold, by id.
pub async fn load(store: &dyn Store, hold_id: &str) -> RepoResult<Option<Versioned<Hold>>> {
    match hold_key(hold_id) {
        Some((partition, clustering)) => {
            get(store, tables::SEAT_CLAIMS, &partition, &clustering).await
        }
        None => Ok(None),
    }
}

/// Compare-and-set of a hold's row; `Ok(None)` when it changed meanwhile.
pub async fn cas(store: &dyn Store, hold: &Hold, expected: u64) -> RepoResult<Option<u64>> {
    let Some((partition, clustering)) = hold_key(&hold.id) else {
        return Ok(None);
    };
    let r = store
        .compare_and_set(
            tables::SEAT_CLAIMS,
            &partition,
            &clustering,
            expected,
            encode(hold),
            Some(ROW_TTL),
        )
        .await?;
    Ok(if r.applied {
        r.current.map(|c| c.version)
    } else {
        None
    })
}

/// Claims `seats` of one section for `hold_id` in one conditional batch, each with `ttl`,
/// writing `hold` itself too when given (the hold's first section): all or nothing. When the
/// batch does not apply, says who holds each seat that was claimed, and the hold if it exists.
pub async fn claim_section(
    store: &dyn Store,
    event_id: &str,
    section: &str,
    hold_id: &str,
    seats: &[String],
    ttl: Duration,
    hold: Option<&Hold>,
) -> RepoResult<SectionClaimed> {
    let partition = section_partition(event_id, section);
    let claim = encode(&Claim::Held {
        hold_id: hold_id.to_owned(),
    });
    let mut writes = Vec::with_capacity(seats.len() + 1);
    if let Some(hold) = hold {
        let Some((_, key)) = hold_key(&hold.id) else {
            return Ok(SectionClaimed::Refused {
                hold: None,
                holders: Vec::new(),
            });
        };
        writes.push(Write::InsertIfAbsent {
            clustering: key,
            value: encode(hold),
            ttl: Some(ROW_TTL),
        });
    }
    writes.extend(seats.iter().map(|s| Write::InsertIfAbsent {
        clustering: s.clone(),
        value: claim.clone(),
        ttl: Some(ttl),
    }));
    let outcome = store.batch(tables::SEAT_CLAIMS, &partition, writes).await?;
    let mut rows = outcome.rows.into_iter();
    let existing_hold = match hold {
        Some(_) => rows.next().flatten(),
        None => None,
    };
    if outcome.applied {
        return Ok(SectionClaimed::Applied(
            rows.flatten()
                .map(|r| ClaimedSeat {
                    seat: r.clustering,
                    version: r.version,
                })
                .collect(),
        ));
    }
    let hold = match existing_hold {
        Some(row) => Some(decode_row::<Hold>(tables::SEAT_CLAIMS, row)?.value),
        None => None,
    };
    let mut holders = Vec::new();
    for row in rows.flatten() {
        let seat = row.clustering.clone();
        let claim = decode_row::<Claim>(tables::SEAT_CLAIMS, row)?;
        holders.push(SeatHolder {
            seat: ClaimedSeat {
                seat,
                version: claim.version,
            },
            claim: claim.value,
        });
    }
    Ok(SectionClaimed::Refused { hold, holders })
}

/// Deletes claims of one section, each only if it is still the version given (a claim that
/// lapsed and was taken by someone else is left alone): one batch, or one by one if some
/// claim changed meanwhile.
pub async fn release_claims(
    store: &dyn Store,
    event_id: &str,
    section: &str,
    claims: &[ClaimedSeat],
) -> RepoResult<()> {
    if claims.is_empty() {
        return Ok(());
    }
    let partition = section_partition(event_id, section);
    let writes = claims
        .iter()
        .map(|c| Write::DeleteIfVersion {
            clustering: c.seat.clone(),
            expected: c.version,
        })
        .collect();
    let outcome = store.batch(tables::SEAT_CLAIMS, &partition, writes).await?;
    if !outcome.applied {
        for c in claims {
            store
                .delete_if_version(tables::SEAT_CLAIMS, &partition, &c.seat, c.version)
                .await?;
        }
    }
    Ok(())
}

/// The claim on each of `seats` of one section, if any.
pub async fn claims_of(
    store: &dyn Store,
    event_id: &str,
    section: &str,
    seats: &[String],
) -> RepoResult<Vec<Option<SeatHolder>>> {
    let partition = section_partition(event_id, section);
    let mut out = Vec::with_capacity(seats.len());
    for seat in seats {
        let claim = get::<Claim>(store, tables::SEAT_CLAIMS, &partition, seat).await?;
        out.push(claim.map(|c| SeatHolder {
            seat: ClaimedSeat {
                seat: seat.clone(),
                version: c.version,
            },
            claim: c.value,
        }));
    }
    Ok(out)
}

/// Replaces claims of one section by compare-and-set, all or none: `(claim, new value)`.
/// Returns the claims as written, or `None` if any had changed.
pub async fn replace_claims(
    store: &dyn Store,
    event_id: &str,
    section: &str,
    changes: &[(ClaimedSeat, Claim)],
) -> RepoResult<Option<Vec<ClaimedSeat>>> {
    if changes.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let partition = section_partition(event_id, section);
    let writes = changes
        .iter()
        .map(|(c, value)| Write::CompareAndSet {
            clustering: c.seat.clone(),
            expected: c.version,
            value: encode(value),
            ttl: None,
        })
        .collect();
    let outcome = store.batch(tables::SEAT_CLAIMS, &partition, writes).await?;
    Ok(outcome.applied.then(|| {
        outcome
            .rows
            .into_iter()
            .flatten()
            .map(|r| ClaimedSeat {
                seat: r.clustering,
                version: r.version,
            })
            .collect()
    }))
}

/// The claimed seats of one section, in seat order, held or sold: what a seat map shows and
/// what the operator counts for an Event's status.
pub async fn section_claims(
    store: &dyn Store,
    event_id: &str,
    section: &str,
) -> RepoResult<Vec<(String, SeatStatus)>> {
    let partition = section_partition(event_id, section);
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan(tables::SEAT_CLAIMS, &partition, after.as_deref(), 1000)
            .await?;
        for row in page.rows {
            if row.clustering.starts_with(ROW_PREFIX) {
                return Ok(out); // hold rows sort after every seat
            }
            // A claim row of a newer release still means the seat is taken.
            let status = match crate::codec::decode::<Claim>(&row.value) {
                Ok(Claim::Sold { .. }) => SeatStatus::Sold,
                _ => SeatStatus::Held,
            };
            out.push((row.clustering, status));
        }
        match page.next {
            Some(n) => after = Some(n),
            None => return Ok(out),
        }
    }
}

/// Whether `hold`'s lapse was announced already.
pub async fn lapse_heard(store: &dyn Store, hold: &Hold) -> RepoResult<bool> {
    let Some((partition, _)) = hold_key(&hold.id) else {
        return Ok(true);
    };
    Ok(store
        .get(tables::HOLD_LAPSES, &partition, &hold.id)
        .await?
        .is_some())
}

/// Records that `hold`'s lapse was announced at `at_ms`, kept as long as the hold's row.
pub async fn mark_lapse_heard(store: &dyn Store, hold: &Hold, at_ms: u64) -> RepoResult<()> {
    if let Some((partition, _)) = hold_key(&hold.id) {
        store
            .insert_if_absent(
                tables::HOLD_LAPSES,
                &partition,
                &hold.id,
                encode(&at_ms),
                Some(ROW_TTL),
            )
            .await?;
    }
    Ok(())
}

/// The hold rows of one section's partition (those whose first seat is there), a page at a
/// time after `cursor` (a hold id); and the next page's cursor.
pub async fn holds_page(
    store: &dyn Store,
    event_id: &str,
    section: &str,
    cursor: Option<&str>,
    limit: usize,
) -> RepoResult<(Vec<Hold>, Option<String>)> {
    let partition = section_partition(event_id, section);
    // Hold rows sort after every seat: start past the seats.
    let after = match cursor {
        Some(hold_id) => format!("{ROW_PREFIX}{hold_id}"),
        None => "~".to_owned(),
    };
    let page = store
        .scan(tables::SEAT_CLAIMS, &partition, Some(&after), limit)
        .await?;
    let mut holds = Vec::new();
    for row in page.rows {
        if row.clustering.starts_with(ROW_PREFIX) {
            holds.push(super::decode_row::<Hold>(tables::SEAT_CLAIMS, row)?.value);
        }
    }
    let next = page.next.and(holds.last().map(|h: &Hold| h.id.clone()));
    Ok((holds, next))
}
