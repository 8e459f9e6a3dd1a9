//! Settling an order on its provider's verified events: what each event does to the order,
//! and the order's changes as pure functions of the row. The worker does the selling and the
//! provider calls the plan names, and writes the row by compare-and-set.

use super::{Order, OrderStatus, RefundStatus, Ticket};
use crate::domain::commerce::{Refund, RefundState};
use crate::domain::payments::{ProviderEvent, ProviderEventKind};
use crate::domain::refusal::Refusal;
use crate::domain::Money;

/// What a verified provider event does to the order it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// Nothing: a duplicate, or an event about an order already past it.
    Nothing,
    /// The charge went through: sell what the order bought (a hold's seats, a checkout's
    /// stock), then mark it [`paid`]; if any of it lapsed first, undo the rest, mark it
    /// [`lapsed`] and refund the charge.
    Sell,
    /// The charge went through and the order is paid already (a replay after a crash): redo
    /// what follows the payment, which the crash may have cut short (for a ticket order, the
    /// hold bought and its seats heard as sold).
    AfterPaid,
    /// The charge went through after the order was cancelled: refund it whole.
    RefundCancelled,
    /// The card was declined: mark it [`declined`]; the hold or checkout opens again.
    Decline,
    /// A refund went through: mark it [`refunded`].
    Refunded,
}

pub fn settlement(order: &Order, event: &ProviderEvent) -> Settlement {
    let goods = order.goods.is_some();
    match (event.kind, order.status) {
        (ProviderEventKind::ChargeSucceeded, OrderStatus::PendingPayment) => Settlement::Sell,
        (ProviderEventKind::ChargeSucceeded, OrderStatus::Paid) => Settlement::AfterPaid,
        (ProviderEventKind::ChargeSucceeded, OrderStatus::Cancelled) if goods => {
            Settlement::RefundCancelled
        }
        (ProviderEventKind::ChargeFailed, OrderStatus::PendingPayment) => Settlement::Decline,
        (ProviderEventKind::RefundSucceeded, _)
            if goods || order.refund != Some(RefundStatus::Refunded) =>
        {
            Settlement::Refunded
        }
        _ => Settlement::Nothing,
    }
}

/// The id of the refund a refund event confirms: a whole-order refund is keyed by the payment.
pub fn refund_id(event: &ProviderEvent) -> &str {
    event.refund_id.as_deref().unwrap_or(&event.payment_id)
}

/// A pending order is paid: a ticket order's tickets are issued, one per seat, with codes from
/// `code`. False when the order is not pending.
pub fn paid(order: &mut Order, mut code: impl FnMut() -> String) -> bool {
    if order.status != OrderStatus::PendingPayment {
        return false;
    }
    order.status = OrderStatus::Paid;
    if order.goods.is_none() {
        order.tickets = order
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| Ticket {
                id: format!("{}-{}", order.id, i + 1),
                seat_id: item.seat_id.clone(),
                code: code(),
            })
            .collect();
    }
    true
}

/// What a pending order bought lapsed before its payment completed: it expired, and its
/// charge is to be refunded. False when the order is not pending.
pub fn lapsed(order: &mut Order) -> bool {
    if order.status != OrderStatus::PendingPayment {
        return false;
    }
    order.status = OrderStatus::Expired;
    if order.goods.is_some() {
        order.failure = Some("the checkout lapsed before the payment completed".into());
    } else {
        order.failure = Some("the hold lapsed before the payment completed".into());
        order.refund = Some(RefundStatus::Requested);
    }
    true
}

/// A pending order's card was declined, for `reason` if the provider gave one.
pub fn declined(order: &mut Order, reason: Option<&str>) -> bool {
    if order.status != OrderStatus::PendingPayment {
        return false;
    }
    order.status = OrderStatus::PaymentFailed;
    order.failure = Some(reason.unwrap_or("declined").to_owned());
    true
}

/// Why a refund the provider reports is not one the order is owed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefundMismatch {
    #[error("the order is owed no refund {refund_id:?}")]
    Unknown { refund_id: String },
    #[error("refund {refund_id:?} is for {confirmed:?}, the order is owed {owed:?}")]
    Amount {
        refund_id: String,
        confirmed: Money,
        owed: Money,
    },
}

/// The provider confirmed refund `refund_id` of `amount`. A product order records it on that
/// refund, and once every refund is through, a cancelled or wholly returned order is
/// refunded; a ticket order is only ever refunded whole. Ok(false) when it was recorded
/// before (a redelivered webhook). A refund the order does not owe, or of another amount,
/// changes nothing: the caller logs the mismatch.
pub fn refunded(
    order: &mut Order,
    refund_id: &str,
    amount: &Money,
) -> Result<bool, RefundMismatch> {
    let status = order.status;
    let Some(g) = order.goods.as_deref_mut() else {
        if *amount != order.total {
            return Err(RefundMismatch::Amount {
                refund_id: refund_id.to_owned(),
                confirmed: amount.clone(),
                owed: order.total.clone(),
            });
        }
        if order.refund == Some(RefundStatus::Refunded) {
            return Ok(false);
        }
        order.refund = Some(RefundStatus::Refunded);
        return Ok(true);
    };
    let Some(r) = g.refunds.iter_mut().find(|r| r.id == refund_id) else {
        return Err(RefundMismatch::Unknown {
            refund_id: refund_id.to_owned(),
        });
    };
    if r.amount != *amount {
        return Err(RefundMismatch::Amount {
            refund_id: refund_id.to_owned(),
            confirmed: amount.clone(),
            owed: r.amount.clone(),
        });
    }
    if r.state == RefundState::Refunded {
        return Ok(false);
    }
    r.state = RefundState::Refunded;
    let all_refunded = g.refunds.iter().all(|r| r.state == RefundState::Refunded);
    let whole =
        status == OrderStatus::Cancelled || (status == OrderStatus::Returned && g.all_returned());
    if all_refunded && whole {
        order.status = OrderStatus::Refunded;
    }
    Ok(true)
}

/// What is left of a product order's charge to refund: the total, less every refund owed so
/// far, whatever its state (one asked for and not yet through is spoken for).
pub fn refundable(order: &Order) -> i64 {
    let owed: i64 = order
        .goods
        .as_deref()
        .map_or(0, |g| g.refunds.iter().map(|r| r.amount.amount).sum());
    order.total.amount - owed
}

/// Whether `amount` may be refunded on top of what is owed already: in the charge's currency,
/// and no more than is left of it. The one check that keeps the sum of an order's refunds
/// within what it was charged.
pub fn may_refund(order: &Order, amount: &Money) -> Result<(), Refusal> {
    let refundable = refundable(order);
    if amount.currency != order.total.currency || amount.amount < 0 || amount.amount > refundable {
        return Err(Refusal::RefundExceedsCharge {
            asked: amount.amount,
            refundable,
            currency: order.total.currency.clone(),
        });
    }
    Ok(())
}

/// Records that a product order is owed `amount` back under `id`, once. Ok(false) when a
/// refund with that id is recorded already, or the order is not a product order; refused
/// when it would take the order's refunds past its charge (see [`may_refund`]).
pub fn owe_refund(
    order: &mut Order,
    id: &str,
    amount: &Money,
    reason: &str,
    now_ms: u64,
) -> Result<bool, Refusal> {
    match order.goods.as_deref() {
        None => return Ok(false),
        Some(g) if g.refunds.iter().any(|r| r.id == id) => return Ok(false),
        Some(_) => may_refund(order, amount)?,
    }
    let Some(g) = order.goods.as_deref_mut() else {
        return Ok(false);
    };
    g.refunds.push(Refund {
        id: id.to_owned(),
        amount: amount.clone(),
        reason: reason.to_owned(),
        state: RefundState::Requested,
        created_ms: now_ms,
    });
    Ok(true)
}
