//! The `sandbox` payment provider: decides by card number, answers asynchronously, and calls
//! back through an HMAC-signed webhook, like a real provider in test mode.
//!
//! Charges and refunds are idempotent per key and recorded in the store; every callback waits in
//! an outbox until the webhook endpoint acknowledges it, and is retried with backoff until then,
//! across restarts. So a crash of the process never loses a payment's outcome: at worst the
//! webhook arrives twice, which the payments worker treats as once.
//!
//! Test cards: 4242 4242 4242 4242 succeeds; 4000 0000 0000 0002 is declined;
//! 4000 0000 0000 9995 fails for insufficient funds; 4000 0000 0000 3220 succeeds after a
//! 3-second authentication delay (to let a hold lapse in tests); any other valid number succeeds.
//!
//! This module is the only reader and writer of the `sandbox_outbox` and `sandbox_charges`
//! tables.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use mercato_core::clock::now_ms;
use mercato_core::codec::encode;
use mercato_core::domain::payments::{
    sign, PaymentError, PaymentMethod, PaymentProvider, ProviderEvent, ProviderEventKind,
    SandboxCard, SIGNATURE_HEADER,
};
use mercato_core::domain::Money;
use mercato_core::names::tables;
use mercato_core::repo;
use mercato_core::store::Store;
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Notify};

const OUTBOX: &str = "pending";
const SLOW_CARD: &str = "4000000000003220";
const SLOW_DELAY: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChargeRecord {
    payment_id: String,
    order_id: String,
    amount: Money,
    outcome: String,
    /// When the callback is due; kept so a replayed request enqueues the very same entry.
    due_ms: u64,
}

mercato_core::first_layout!(ChargeRecord);

pub struct SandboxProvider {
    store: Arc<dyn Store>,
    secret: Vec<u8>,
    webhook_url: OnceLock<String>,
    wake: Notify,
    http: reqwest::Client,
}

/// The webhook poster's client: `base` (which says whom to trust) with the sandbox's timeouts.
fn webhook_client(base: reqwest::ClientBuilder) -> reqwest::Client {
    base.timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_default()
}

impl SandboxProvider {
    pub fn new(store: Arc<dyn Store>, secret: Vec<u8>) -> Self {
        Self {
            store,
            secret,
            webhook_url: OnceLock::new(),
            wake: Notify::new(),
            http: webhook_client(reqwest::Client::builder()),
        }
    }

    /// Posts webhooks with a client built from `base`, which says whom an `https://`
    /// endpoint's certificate is verified against (a gateway serving a private CA's
    /// certificate).
    pub fn with_client(mut self, base: reqwest::ClientBuilder) -> Self {
        self.http = webhook_client(base);
        self
    }

    /// Where callbacks go: the gateway's `/api/v1/payments/webhook`. Set once, when the gateway
    /// has bound its address.
    pub fn set_webhook_url(&self, url: String) {
        let _ = self.webhook_url.set(url);
        self.wake.notify_one();
    }

    async fn enqueue(&self, event: &ProviderEvent, due_ms: u64) -> Result<(), PaymentError> {
        // The key is derived from the event id, so enqueueing the same event twice (a replay
        // after a crash) leaves one entry.
        let key = format!("{:020}/{}", due_ms, event.id);
        repo::put(
            &*self.store,
            tables::SANDBOX_OUTBOX,
            OUTBOX,
            &key,
            event,
            None,
        )
        .await
        .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
        self.wake.notify_one();
        Ok(())
    }

    /// Delivers due callbacks until `shutdown`; undelivered ones stay in the outbox.
    pub async fn run_delivery(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut backoff = Duration::from_millis(100);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let next_due = match self.deliver_due().await {
                Ok(next) => {
                    backoff = Duration::from_millis(100);
                    next
                }
                Err(e) => {
                    tracing::warn!(error = %e, "webhook delivery round failed");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    Some(backoff)
                }
            };
            let wait = next_due.unwrap_or(Duration::from_secs(1));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One round: post every due event; returns how long until the next one is due.
    async fn deliver_due(&self) -> Result<Option<Duration>, String> {
        let Some(url) = self.webhook_url.get() else {
            return Ok(None);
        };
        let page = self
            .store
            .scan(tables::SANDBOX_OUTBOX, OUTBOX, None, 256)
            .await
            .map_err(|e| e.to_string())?;
        let now = now_ms();
        let mut due = Vec::new();
        let mut next_due = None;
        for row in page.rows {
            let due_ms: u64 = row
                .clustering
                .split('/')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            if due_ms > now {
                next_due = Some(Duration::from_millis(due_ms - now));
                break;
            }
            due.push(row);
        }
        let posts = due.iter().map(|row| async move {
            let body = match mercato_core::codec::decode::<ProviderEvent>(&row.value) {
                Ok(event) => serde_json::to_vec(&event).map_err(|e| e.to_string())?,
                Err(e) => {
                    tracing::error!(error = %e, key = row.clustering, "dropping an undecodable outbox entry");
                    return self.ack(row).await;
                }
            };
            let signature = sign(&self.secret, (now_ms() / 1000) as i64, &body);
            let sent = self
                .http
                .post(url)
                .header(SIGNATURE_HEADER, signature)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                Ok(resp) if resp.status().is_success() => self.ack(row).await,
                Ok(resp) => Err(format!("webhook answered {}", resp.status())),
                Err(e) => Err(format!("webhook unreachable: {e}")),
            }
        });
        let results = join_all(posts).await;
        let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
        if let Some(first) = failures.first() {
            return Err(format!(
                "{} deliveries failed, first: {first}",
                failures.len()
            ));
        }
        Ok(next_due.or(if due.is_empty() {
            None
        } else {
            Some(Duration::ZERO)
        }))
    }

    async fn ack(&self, row: &mercato_core::store::Row) -> Result<(), String> {
        self.store
            .delete_if_version(tables::SANDBOX_OUTBOX, OUTBOX, &row.clustering, row.version)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

#[async_trait]
impl PaymentProvider for SandboxProvider {
    fn tokenize(&self, card_number: &str) -> Result<PaymentMethod, PaymentError> {
        let card = SandboxCard::classify(card_number)?;
        let digits: String = card_number.chars().filter(char::is_ascii_digit).collect();
        let slow = if digits == SLOW_CARD { "slow_" } else { "" };
        Ok(PaymentMethod {
            token: format!(
                "pm_sandbox_{slow}{}_{}",
                card.as_str(),
                uuid::Uuid::new_v4().simple()
            ),
            last4: digits[digits.len().saturating_sub(4)..].to_owned(),
        })
    }

    async fn charge(
        &self,
        idempotency_key: &str,
        order_id: &str,
        amount: &Money,
        method: &PaymentMethod,
    ) -> Result<String, PaymentError> {
        let outcome = ["succeeds", "declined", "insufficient_funds"]
            .into_iter()
            .find(|o| method.token.contains(&format!("_{o}_")))
            .ok_or_else(|| PaymentError::InvalidCard("not a sandbox payment method".into()))?;
        // Ordinary charges settle at once; the slow test card after SLOW_DELAY.
        let delay = if method.token.starts_with("pm_sandbox_slow_") {
            SLOW_DELAY
        } else {
            Duration::ZERO
        };
        let record = ChargeRecord {
            payment_id: format!("pay_{}", uuid::Uuid::new_v4().simple()),
            order_id: order_id.to_owned(),
            amount: amount.clone(),
            outcome: outcome.to_owned(),
            due_ms: now_ms() + delay.as_millis() as u64,
        };
        let inserted = self
            .store
            .insert_if_absent(
                tables::SANDBOX_CHARGES,
                idempotency_key,
                "",
                encode(&record),
                None,
            )
            .await
            .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
        let current = match inserted.current {
            Some(row) => {
                repo::decode_row::<ChargeRecord>(tables::SANDBOX_CHARGES, row)
                    .map_err(|e| PaymentError::Unavailable(e.to_string()))?
                    .value
            }
            None => return Err(PaymentError::Unavailable("charge not recorded".into())),
        };
        let (kind, reason) = match current.outcome.as_str() {
            "succeeds" => (ProviderEventKind::ChargeSucceeded, None),
            other => (ProviderEventKind::ChargeFailed, Some(other.to_owned())),
        };
        let event = ProviderEvent {
            id: format!("evt_{}_charge", current.payment_id),
            kind,
            order_id: current.order_id.clone(),
            payment_id: current.payment_id.clone(),
            amount: current.amount.clone(),
            reason,
            refund_id: None,
        };
        self.enqueue(&event, current.due_ms).await?;
        Ok(current.payment_id)
    }

    async fn refund(
        &self,
        refund_id: &str,
        order_id: &str,
        payment_id: &str,
        amount: &Money,
    ) -> Result<(), PaymentError> {
        let key = format!("refund/{refund_id}");
        let first = self
            .store
            .insert_if_absent(
                tables::SANDBOX_CHARGES,
                &key,
                "",
                now_ms().to_be_bytes().to_vec(),
                None,
            )
            .await
            .map_err(|e| PaymentError::Unavailable(e.to_string()))?;
        let due_ms = first
            .current
            .and_then(|row| row.value.try_into().ok())
            .map_or_else(now_ms, u64::from_be_bytes);
        let event = ProviderEvent {
            id: format!("evt_{refund_id}_refund"),
            kind: ProviderEventKind::RefundSucceeded,
            order_id: order_id.to_owned(),
            payment_id: payment_id.to_owned(),
            amount: amount.clone(),
            reason: None,
            refund_id: Some(refund_id.to_owned()),
        };
        self.enqueue(&event, due_ms).await
    }
}
