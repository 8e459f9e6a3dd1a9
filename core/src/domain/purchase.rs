//! An order taking what it pays for: a hold's seats or a checkout's goods. Both are taken the
//! same way, one order at a time: the order marks the hold or checkout as being purchased by
//! it (compare-and-set), pays, and then marks it purchased, or open again after a declined
//! card. Pure: the workers load the row, ask here, and write what they are told.

use super::refusal::Refusal;

/// Where a hold or checkout stands in its purchase, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage<'a> {
    /// Nobody is paying for it.
    Open,
    /// Released or cancelled by its shopper.
    Withdrawn,
    /// This order is paying for it.
    Paying(&'a str),
    /// This order bought it.
    Bought(&'a str),
}

/// Why an order may not take it, in the words of the thing taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    NotFound,
    Expired,
    Withdrawn,
    Purchased,
    BeingPurchased,
}

/// A hold or a checkout: something a shopper keeps for a while and an order pays for.
pub trait Purchasable: Clone {
    fn owner(&self) -> &str;
    fn expires_at_ms(&self) -> u64;
    fn stage(&self) -> Stage<'_>;
    fn set_stage(&mut self, stage: Stage<'_>);
    /// The refusal a shopper gets when an order cannot take it.
    fn refusal(blocked: Blocked) -> Refusal;
}

/// Implements [`Purchasable`] for a row with `user_id`, `expires_at_ms` and a `state` whose
/// four variants are the four stages under the row's own names, refused in its own words.
macro_rules! purchasable {
    ($row:ty, $state:ident { $open:ident, $withdrawn:ident }, refusals: [
        $not_found:ident, $expired:ident, $gone:ident, $purchased:ident, $being:ident
    ]) => {
        impl $crate::domain::purchase::Purchasable for $row {
            fn owner(&self) -> &str {
                &self.user_id
            }
            fn expires_at_ms(&self) -> u64 {
                self.expires_at_ms
            }
            fn stage(&self) -> $crate::domain::purchase::Stage<'_> {
                use $crate::domain::purchase::Stage;
                match &self.state {
                    $state::$open => Stage::Open,
                    $state::$withdrawn => Stage::Withdrawn,
                    $state::Purchasing { order_id } => Stage::Paying(order_id),
                    $state::Purchased { order_id } => Stage::Bought(order_id),
                }
            }
            fn set_stage(&mut self, stage: $crate::domain::purchase::Stage<'_>) {
                use $crate::domain::purchase::Stage;
                self.state = match stage {
                    Stage::Open => $state::$open,
                    Stage::Withdrawn => $state::$withdrawn,
                    Stage::Paying(o) => $state::Purchasing { order_id: o.into() },
                    Stage::Bought(o) => $state::Purchased { order_id: o.into() },
                };
            }
            fn refusal(
                blocked: $crate::domain::purchase::Blocked,
            ) -> $crate::domain::refusal::Refusal {
                use $crate::domain::purchase::Blocked;
                use $crate::domain::refusal::Refusal;
                match blocked {
                    Blocked::NotFound => Refusal::$not_found,
                    Blocked::Expired => Refusal::$expired,
                    Blocked::Withdrawn => Refusal::$gone,
                    Blocked::Purchased => Refusal::$purchased,
                    Blocked::BeingPurchased => Refusal::$being,
                }
            }
        }
    };
}
pub(crate) use purchasable;

/// What an order placing itself does with the hold or checkout it pays for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start<T> {
    /// This order is already paying for it (a replay): carry on with it as it is.
    Resume(T),
    /// Write this (the current row, marked as paid for by this order) by compare-and-set
    /// against the version read, then carry on; if the row changed meanwhile, ask again.
    Claim(T),
    Refuse(Refusal),
}

/// Decides whether order `order_id` of `user_id` may pay for `current` at `now_ms`.
pub fn start<T: Purchasable>(
    current: Option<&T>,
    user_id: &str,
    order_id: &str,
    now_ms: u64,
) -> Start<T> {
    let refuse = |b| Start::Refuse(T::refusal(b));
    let Some(current) = current.filter(|c| c.owner() == user_id) else {
        // Someone else's is as good as missing: its id tells nothing.
        return refuse(Blocked::NotFound);
    };
    match current.stage() {
        Stage::Paying(o) if o == order_id => Start::Resume(current.clone()),
        Stage::Withdrawn => refuse(Blocked::Withdrawn),
        Stage::Bought(_) => refuse(Blocked::Purchased),
        _ if now_ms >= current.expires_at_ms() => refuse(Blocked::Expired),
        Stage::Paying(_) => refuse(Blocked::BeingPurchased),
        Stage::Open => {
            let mut next = current.clone();
            next.set_stage(Stage::Paying(order_id));
            Start::Claim(next)
        }
    }
}

/// How an order's payment ended, for what it paid for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The charge went through and what was bought is sold.
    Bought,
    /// The card was declined: the shopper may try another while it lasts.
    Declined,
    /// The order was cancelled: it goes back to nobody.
    Cancelled,
}

/// What `current` becomes when order `order_id`'s payment ends as `finish`: `None` when it
/// does not change (another order's, already moved, or a replay).
pub fn finish<T: Purchasable>(current: &T, order_id: &str, finish: Finish) -> Option<T> {
    let to = match (current.stage(), finish) {
        (Stage::Paying(o), Finish::Bought) if o == order_id => Stage::Bought(order_id),
        (Stage::Paying(o), Finish::Declined) if o == order_id => Stage::Open,
        (Stage::Paying(o) | Stage::Bought(o), Finish::Cancelled) if o == order_id => {
            Stage::Withdrawn
        }
        _ => return None,
    };
    let mut next = current.clone();
    next.set_stage(to);
    Some(next)
}

/// What a shopper giving up a hold or checkout does with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Withdraw<T> {
    Refuse(Refusal),
    /// Withdrawn before: answer as if now, and redo what follows (giving back seats or stock
    /// finds nothing left to give on a replay).
    Already,
    /// Write this by compare-and-set against the version read, then give back what it kept.
    Write(T),
}

/// Decides whether `user_id` may give up `current`. Expiry does not matter: an expired one is
/// withdrawn all the same, so whatever it kept is given back now rather than waited for.
pub fn withdraw<T: Purchasable>(current: Option<&T>, user_id: &str) -> Withdraw<T> {
    let Some(current) = current.filter(|c| c.owner() == user_id) else {
        return Withdraw::Refuse(T::refusal(Blocked::NotFound));
    };
    match current.stage() {
        Stage::Withdrawn => Withdraw::Already,
        Stage::Bought(_) => Withdraw::Refuse(T::refusal(Blocked::Purchased)),
        Stage::Paying(_) => Withdraw::Refuse(T::refusal(Blocked::BeingPurchased)),
        Stage::Open => {
            let mut next = current.clone();
            next.set_stage(Stage::Withdrawn);
            Withdraw::Write(next)
        }
    }
}

#[cfg(test)]
mod tests;
