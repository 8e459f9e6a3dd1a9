//! The store's part of a once-only action (`domain::once` decides): claim the row with a
//! conditional write, then act, then mark it done; or give the claim back when the action
//! failed, so that a retry may act. Each table using it keeps its own owner: the claim is
//! written by whoever owns the row.

use std::time::Duration;

use crate::clock::now_ms;
use crate::domain::once::{decide, decode_mark, encode_mark, Decision, Mark};
use crate::store::{Store, Version};

use super::RepoResult;

/// A row a once-only action is recorded in.
#[derive(Debug, Clone, Copy)]
pub struct OnceRow<'a> {
    pub table: &'a str,
    pub partition: &'a str,
    pub clustering: &'a str,
    /// How long the row is kept (a provider stops redelivering after days); `None`: for ever.
    pub ttl: Option<Duration>,
    /// How old a claim must be before another request may take it over: longer than the
    /// action takes.
    pub stale_after: Duration,
}

/// The right to act, held by the one request whose claim was written.
#[derive(Debug)]
#[must_use = "a claim is finished once the action is taken, or given back when it failed"]
pub struct Claim {
    version: Version,
    /// The row it replaced (a done mark taken over by `again`), put back if the action fails.
    replaced: Option<Vec<u8>>,
}

/// What claiming found.
#[derive(Debug)]
pub enum Claimed {
    /// This request acts.
    Act(Claim),
    /// Taken already (at that time, when known).
    Done { at_ms: Option<u64> },
    /// Another request is acting since then.
    InProgress { since_ms: u64 },
}

/// Claims the action; with `again`, an action already done is claimed once more (an admin's
/// explicit "replay it again"), still by one request only.
pub async fn claim(store: &dyn Store, row: OnceRow<'_>, again: bool) -> RepoResult<Claimed> {
    let now = now_ms();
    let mark = encode_mark(&Mark::Claimed { at_ms: now });
    let tried = store
        .insert_if_absent(
            row.table,
            row.partition,
            row.clustering,
            mark.clone(),
            row.ttl,
        )
        .await?;
    let existing = match (tried.applied, tried.current) {
        (true, Some(written)) => {
            return Ok(Claimed::Act(Claim {
                version: written.version,
                replaced: None,
            }))
        }
        (_, Some(current)) => current,
        // Refused, yet nothing there (it expired meanwhile): another request is at it.
        (_, None) => return Ok(Claimed::InProgress { since_ms: now }),
    };
    let decision = decide(
        decode_mark(&existing.value),
        now,
        row.stale_after.as_millis() as u64,
    );
    match decision {
        Decision::TakeOver => take_over(store, row, existing.version, mark, None).await,
        Decision::Done { .. } if again => {
            take_over(store, row, existing.version, mark, Some(existing.value)).await
        }
        Decision::Done { at_ms } => Ok(Claimed::Done { at_ms }),
        Decision::InProgress { since_ms } => Ok(Claimed::InProgress { since_ms }),
    }
}

/// Replaces the row at `expected` with this request's claim; of requests taking over at once,
/// one succeeds and the others hear who holds it.
async fn take_over(
    store: &dyn Store,
    row: OnceRow<'_>,
    expected: Version,
    mark: Vec<u8>,
    replaced: Option<Vec<u8>>,
) -> RepoResult<Claimed> {
    let tried = store
        .compare_and_set(
            row.table,
            row.partition,
            row.clustering,
            expected,
            mark,
            row.ttl,
        )
        .await?;
    match (tried.applied, tried.current) {
        (true, Some(written)) => Ok(Claimed::Act(Claim {
            version: written.version,
            replaced,
        })),
        (_, Some(current)) => Ok(match decode_mark(&current.value) {
            Mark::Claimed { at_ms } => Claimed::InProgress { since_ms: at_ms },
            Mark::Done { at_ms } => Claimed::Done { at_ms },
        }),
        (_, None) => Ok(Claimed::InProgress { since_ms: now_ms() }),
    }
}

/// Records the action as taken.
pub async fn finish(store: &dyn Store, row: OnceRow<'_>, claim: Claim) -> RepoResult<()> {
    let done = encode_mark(&Mark::Done {
        at_ms: Some(now_ms()),
    });
    // Conditional on the claim: a holder so slow that its claim was taken over must not
    // overwrite the new holder's row. Either way the action was taken, and recorded.
    store
        .compare_and_set(
            row.table,
            row.partition,
            row.clustering,
            claim.version,
            done,
            row.ttl,
        )
        .await?;
    Ok(())
}

/// Gives the claim back after the action failed, so that a retry acts (or, for an action
/// claimed again, puts back the record of when it was done before).
pub async fn give_back(store: &dyn Store, row: OnceRow<'_>, claim: Claim) -> RepoResult<()> {
    match claim.replaced {
        Some(previous) => {
            store
                .compare_and_set(
                    row.table,
                    row.partition,
                    row.clustering,
                    claim.version,
                    previous,
                    row.ttl,
                )
                .await?;
        }
        None => {
            store
                .delete_if_version(row.table, row.partition, row.clustering, claim.version)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::EmbeddedStore;

    fn row(stale_after: Duration) -> OnceRow<'static> {
        OnceRow {
            table: "once_test",
            partition: "p",
            clustering: "",
            ttl: None,
            stale_after,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn of_many_concurrent_claims_one_acts() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory().unwrap());
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    matches!(
                        claim(&*store, row(Duration::from_secs(60)), false)
                            .await
                            .unwrap(),
                        Claimed::Act(_)
                    )
                })
            })
            .collect();
        let mut acted = 0;
        for t in tasks {
            acted += usize::from(t.await.unwrap());
        }
        assert_eq!(acted, 1);
    }

    #[tokio::test]
    async fn a_claim_given_back_or_gone_stale_lets_a_retry_act() {
        let store = EmbeddedStore::in_memory().unwrap();
        let fresh = row(Duration::from_secs(60));
        let Claimed::Act(first) = claim(&store, fresh, false).await.unwrap() else {
            panic!("the first claim acts")
        };
        assert!(matches!(
            claim(&store, fresh, false).await.unwrap(),
            Claimed::InProgress { .. }
        ));
        // The action failed: given back, the next request acts.
        give_back(&store, fresh, first).await.unwrap();
        let Claimed::Act(second) = claim(&store, fresh, false).await.unwrap() else {
            panic!("a retry acts after the claim is given back")
        };
        // Its holder died without finishing: once stale, another takes it over, once.
        let _abandoned = second;
        let stale = row(Duration::ZERO);
        let Claimed::Act(third) = claim(&store, stale, false).await.unwrap() else {
            panic!("a stale claim is taken over")
        };
        finish(&store, stale, third).await.unwrap();
        assert!(matches!(
            claim(&store, stale, false).await.unwrap(),
            Claimed::Done { at_ms: Some(_) }
        ));
        // Asked for again: one more claim, and giving it back keeps the record of the first.
        let Claimed::Act(again) = claim(&store, stale, true).await.unwrap() else {
            panic!("again claims a done action")
        };
        give_back(&store, stale, again).await.unwrap();
        assert!(matches!(
            claim(&store, stale, false).await.unwrap(),
            Claimed::Done { at_ms: Some(_) }
        ));
    }
}
