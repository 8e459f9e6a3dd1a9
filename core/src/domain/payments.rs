//! Payments: the provider port, webhook signatures, and the sandbox's card rules.

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::Money;
use crate::codec::{decode_either, CodecError, Record};

/// A tokenized card: the card number itself never travels on the bus or reaches the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub token: String,
    pub last4: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("invalid card: {0}")]
    InvalidCard(String),
    #[error("payment provider unavailable: {0}")]
    Unavailable(String),
}

/// What the provider reports, through its webhook, about a charge or a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEvent {
    /// Unique per event: redeliveries carry the same id.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: ProviderEventKind,
    pub order_id: String,
    pub payment_id: String,
    pub amount: Money,
    #[serde(default)]
    pub reason: Option<String>,
    /// Which refund a `refund.succeeded` is about: an order may be refunded in parts.
    #[serde(default)]
    pub refund_id: Option<String>,
}

impl Record for ProviderEvent {
    /// 2: a refund event names its refund. Layout 1 was written both without `refund_id` and,
    /// before layouts were versioned, with it.
    const VERSION: u8 = 2;

    fn decode_older(version: u8, body: &[u8]) -> Result<Self, CodecError> {
        match version {
            1 => decode_either::<ProviderEvent, ProviderEventV1>(body),
            v => Err(CodecError::UnknownVersion(v)),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ProviderEventV1 {
    id: String,
    kind: ProviderEventKind,
    order_id: String,
    payment_id: String,
    amount: Money,
    reason: Option<String>,
}

impl From<ProviderEventV1> for ProviderEvent {
    fn from(e: ProviderEventV1) -> ProviderEvent {
        ProviderEvent {
            id: e.id,
            kind: e.kind,
            order_id: e.order_id,
            payment_id: e.payment_id,
            amount: e.amount,
            reason: e.reason,
            refund_id: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProviderEventKind {
    #[serde(rename = "charge.succeeded")]
    ChargeSucceeded,
    #[serde(rename = "charge.failed")]
    ChargeFailed,
    #[serde(rename = "refund.succeeded")]
    RefundSucceeded,
}

#[async_trait]
pub trait PaymentProvider: Send + Sync + 'static {
    /// Turns card details into a payment method (synchronous, like a provider's client SDK).
    fn tokenize(&self, card_number: &str) -> Result<PaymentMethod, PaymentError>;
    /// Starts a charge; the outcome arrives later through the webhook. Idempotent per
    /// `idempotency_key`: asking again returns the same payment id and charges once.
    async fn charge(
        &self,
        idempotency_key: &str,
        order_id: &str,
        amount: &Money,
        method: &PaymentMethod,
    ) -> Result<String, PaymentError>;
    /// Refunds `amount` of a payment, once per `refund_id`, however often it is asked.
    async fn refund(
        &self,
        refund_id: &str,
        order_id: &str,
        payment_id: &str,
        amount: &Money,
    ) -> Result<(), PaymentError>;
}

/// The webhook signature header: `t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.body">`.
pub const SIGNATURE_HEADER: &str = "mercato-signature";
/// Signatures older (or newer) than this are refused, so a captured webhook cannot be replayed.
pub const SIGNATURE_TOLERANCE_SECS: i64 = 300;

pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

fn mac(secret: &[u8], timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| {
        // HMAC accepts keys of any length; this branch cannot be taken.
        unreachable!("HMAC key of any length is valid")
    });
    m.update(timestamp.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header is missing or malformed")]
    Malformed,
    #[error("signature timestamp is outside the tolerance")]
    Stale,
    #[error("signature does not verify")]
    Mismatch,
}

pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: i64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut given = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            // Digits only: `+5` or ` 5` would verify a MAC made over another spelling.
            Some(("t", v)) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                timestamp = v.parse::<i64>().ok()
            }
            Some(("v1", v)) => given = hex::decode(v).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(given)) = (timestamp, given) else {
        return Err(SignatureError::Malformed);
    };
    // Any timestamp, however far off, is answered Stale, never an overflow.
    let skew = now_secs.checked_sub(t).and_then(i64::checked_abs);
    if skew.is_none_or(|s| s > SIGNATURE_TOLERANCE_SECS) {
        return Err(SignatureError::Stale);
    }
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.verify_slice(&given).map_err(|_| SignatureError::Mismatch)
}

/// Why a provider event is not about the order it names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventMismatch {
    #[error("the event is about payment {event:?}, the order's payment is {order:?}")]
    Payment {
        event: String,
        order: Option<String>,
    },
    #[error("the event is for {event:?}, the order was charged {order:?}")]
    Amount { event: Money, order: Money },
}

/// Whether a verified provider event may settle the order it names: it is about the payment
/// the order made, a charge for exactly what the order costs, a refund for no more and in the
/// same currency. A signed event that fails this (a provider's bug, or an event for another
/// order's payment) changes nothing.
pub fn check_event(
    event: &ProviderEvent,
    order_payment_id: Option<&str>,
    order_total: &Money,
) -> Result<(), EventMismatch> {
    if order_payment_id != Some(event.payment_id.as_str()) {
        return Err(EventMismatch::Payment {
            event: event.payment_id.clone(),
            order: order_payment_id.map(str::to_owned),
        });
    }
    let amount_ok = match event.kind {
        ProviderEventKind::ChargeSucceeded => event.amount == *order_total,
        ProviderEventKind::ChargeFailed => true,
        ProviderEventKind::RefundSucceeded => {
            event.amount.currency == order_total.currency
                && (0..=order_total.amount).contains(&event.amount.amount)
        }
    };
    if !amount_ok {
        return Err(EventMismatch::Amount {
            event: event.amount.clone(),
            order: order_total.clone(),
        });
    }
    Ok(())
}

/// How the sandbox treats a card, by number, like well-known providers' test cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxCard {
    Succeeds,
    Declined,
    InsufficientFunds,
}

impl SandboxCard {
    pub fn classify(card_number: &str) -> Result<SandboxCard, PaymentError> {
        let digits: String = card_number
            .chars()
            .filter(|c| !c.is_whitespace() && *c != '-')
            .collect();
        if digits.len() < 12 || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PaymentError::InvalidCard(
                "a card number has 12 to 19 digits".into(),
            ));
        }
        if !luhn(&digits) {
            return Err(PaymentError::InvalidCard(
                "the card number fails its check digit".into(),
            ));
        }
        Ok(match digits.as_str() {
            "4000000000000002" => SandboxCard::Declined,
            "4000000000009995" => SandboxCard::InsufficientFunds,
            _ => SandboxCard::Succeeds,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SandboxCard::Succeeds => "succeeds",
            SandboxCard::Declined => "declined",
            SandboxCard::InsufficientFunds => "insufficient_funds",
        }
    }
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let dd = d * 2;
                if dd > 9 {
                    dd - 9
                } else {
                    dd
                }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_far_off_is_stale_not_an_overflow() {
        let body = b"{}";
        for t in [i64::MIN, i64::MAX, -1] {
            let header = format!("t={t},v1={}", hex::encode(mac(b"k", t, body)));
            let got = verify(b"k", &header, body, 1_700_000_000);
            assert!(
                matches!(got, Err(SignatureError::Stale | SignatureError::Malformed)),
                "{t}: {got:?}"
            );
        }
        let signed = sign(b"k", 100, body).replace("t=100", "t=+100");
        assert_eq!(
            verify(b"k", &signed, body, 100),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn an_event_settles_only_its_own_payment_for_its_amount() {
        let usd = |amount| Money {
            amount,
            currency: "USD".into(),
        };
        let event = |kind, payment: &str, amount| ProviderEvent {
            id: "evt_1".into(),
            kind,
            order_id: "ord_1".into(),
            payment_id: payment.into(),
            amount,
            reason: None,
            refund_id: None,
        };
        use ProviderEventKind::*;
        let total = usd(9000);
        assert_eq!(
            check_event(
                &event(ChargeSucceeded, "pay_1", usd(9000)),
                Some("pay_1"),
                &total
            ),
            Ok(())
        );
        assert!(matches!(
            check_event(
                &event(ChargeSucceeded, "pay_2", usd(9000)),
                Some("pay_1"),
                &total
            ),
            Err(EventMismatch::Payment { .. })
        ));
        assert!(matches!(
            check_event(
                &event(ChargeSucceeded, "pay_1", usd(1)),
                Some("pay_1"),
                &total
            ),
            Err(EventMismatch::Amount { .. })
        ));
        assert!(check_event(&event(ChargeSucceeded, "pay_1", usd(9000)), None, &total).is_err());
        assert_eq!(
            check_event(
                &event(RefundSucceeded, "pay_1", usd(4500)),
                Some("pay_1"),
                &total
            ),
            Ok(())
        );
        assert!(check_event(
            &event(RefundSucceeded, "pay_1", usd(9001)),
            Some("pay_1"),
            &total
        )
        .is_err());
        let euros = Money {
            amount: 10,
            currency: "EUR".into(),
        };
        assert!(check_event(
            &event(RefundSucceeded, "pay_1", euros),
            Some("pay_1"),
            &total
        )
        .is_err());
    }

    #[test]
    fn signatures_verify_and_refuse_tampering() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(b"secret", 1_000, body);
        assert_eq!(verify(b"secret", &header, body, 1_100), Ok(()));
        assert_eq!(
            verify(b"other", &header, body, 1_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", &header, b"{}", 1_100),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"secret", &header, body, 2_000),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"secret", "v1=zz", body, 1_000),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn sandbox_cards() {
        assert_eq!(
            SandboxCard::classify("4242 4242 4242 4242").unwrap(),
            SandboxCard::Succeeds
        );
        assert_eq!(
            SandboxCard::classify("4000 0000 0000 0002").unwrap(),
            SandboxCard::Declined
        );
        assert!(SandboxCard::classify("4242 4242 4242 4241").is_err());
        assert!(SandboxCard::classify("hello").is_err());
    }
}
