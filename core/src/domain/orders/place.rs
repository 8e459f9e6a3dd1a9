//! Placing an order: what a ticket order for a hold costs and lists, and what a product order
//! for a checkout carries. The worker charges the order's total and records the payment id.

use mercato_crds::EventSpec;

use super::{Order, OrderItem, OrderStatus};
use crate::domain::commerce::{Address, Checkout, Goods};
use crate::domain::events::seat_price;
use crate::domain::holds::Hold;
use crate::domain::Money;

/// A new order for `hold`'s seats, each at its tier's price, waiting for its payment.
pub fn ticket_order(
    order_id: &str,
    user_id: &str,
    hold: &Hold,
    event: &EventSpec,
    now_ms: u64,
) -> Order {
    let currency = event
        .tiers
        .first()
        .map(|t| t.price.currency.clone())
        .unwrap_or_default();
    let items: Vec<OrderItem> = hold
        .seats()
        .into_iter()
        .map(|seat| OrderItem {
            price: seat_price(event, &seat.section).unwrap_or(Money {
                amount: 0,
                currency: currency.clone(),
            }),
            seat_id: seat.to_string(),
        })
        .collect();
    let total = Money {
        amount: items.iter().map(|i| i.price.amount).sum(),
        currency,
    };
    Order {
        hold_id: hold.id.clone(),
        event_id: hold.event_id.clone(),
        items,
        total,
        ..pending(order_id, user_id, now_ms)
    }
}

/// A new order for `checkout`'s goods at the prices it reserved them at, to be shipped to
/// `shipping`, waiting for its payment.
pub fn goods_order(
    order_id: &str,
    user_id: &str,
    checkout: &Checkout,
    shipping: Option<Address>,
    now_ms: u64,
) -> Order {
    Order {
        total: checkout.total.clone(),
        goods: Some(Box::new(Goods {
            checkout_id: checkout.id.clone(),
            lines: checkout.lines.clone(),
            shipping,
            ..Goods::default()
        })),
        ..pending(order_id, user_id, now_ms)
    }
}

fn pending(order_id: &str, user_id: &str, now_ms: u64) -> Order {
    Order {
        id: order_id.to_owned(),
        user_id: user_id.to_owned(),
        event_id: String::new(),
        hold_id: String::new(),
        items: Vec::new(),
        total: Money {
            amount: 0,
            currency: String::new(),
        },
        status: OrderStatus::PendingPayment,
        payment_id: None,
        failure: None,
        refund: None,
        tickets: Vec::new(),
        created_ms: now_ms,
        updated_ms: now_ms,
        goods: None,
    }
}
