//! An order taking the hold or checkout it pays for, as [`purchase::start`] decides, with the
//! compare-and-set tried again whenever the row changed between reading and writing it.

use std::future::Future;

use mercato_core::clock::now_ms;
use mercato_core::domain::purchase::{self, Purchasable, Start};
use mercato_core::domain::refusal::Refusal;
use mercato_core::repo::{RepoResult, Versioned};

/// Marks the row `load` reads as paid for by `order_id` (written by `cas`, which answers
/// whether the version still matched), or answers why it may not be. A replay finds it marked
/// by this order already and carries on.
pub(crate) async fn take<T, L, LF, C, CF>(
    load: L,
    cas: C,
    user_id: &str,
    order_id: &str,
) -> RepoResult<Result<T, Refusal>>
where
    T: Purchasable,
    L: Fn() -> LF,
    LF: Future<Output = RepoResult<Option<Versioned<T>>>>,
    C: Fn(T, u64) -> CF,
    CF: Future<Output = RepoResult<Option<T>>>,
{
    loop {
        let current = load().await?;
        let row = current.as_ref();
        match purchase::start(row.map(|r| &r.value), user_id, order_id, now_ms()) {
            Start::Resume(taken) => return Ok(Ok(taken)),
            Start::Refuse(refusal) => return Ok(Err(refusal)),
            Start::Claim(next) => {
                let version = row.map_or(0, |r| r.version);
                if let Some(taken) = cas(next, version).await? {
                    return Ok(Ok(taken));
                }
            }
        }
    }
}
