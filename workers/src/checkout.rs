//! The checkout worker: reserves a checkout's lines in the SKUs' stock rows, all or nothing,
//! and releases them when the shopper gives the checkout up.
//!
//! A reservation is a compare-and-set on the SKU's stock row, so shoppers racing for the last
//! units can never take more than there is, whichever partition their command lands on. Each
//! reservation carries the checkout's expiry and stops counting when it lapses: stock comes
//! back exactly once, with no sweeper.

use std::sync::Arc;

use async_trait::async_trait;
use mercato_core::bus::{Bus, Record};
use mercato_core::clock::now_ms;
use mercato_core::codec::decode;
use mercato_core::domain::commands::{CheckoutCommand, CommandResult, Outcome};
use mercato_core::domain::commerce::{Checkout, MAX_LIVE_CHECKOUTS};
use mercato_core::domain::purchase::{self, Withdraw};
use mercato_core::domain::refusal::Refusal;
use mercato_core::names::topics;
use mercato_core::repo::checkouts;
use mercato_core::repo::stock::{alert_if_low, change_stock};
use mercato_core::repo::{RepoError, RepoResult};
use mercato_core::store::Store;

use crate::runtime::{BatchHandler, Emit};

pub struct CheckoutWorker {
    store: Arc<dyn Store>,
    bus: Arc<dyn Bus>,
}

impl CheckoutWorker {
    pub fn new(store: Arc<dyn Store>, bus: Arc<dyn Bus>) -> Self {
        Self { store, bus }
    }

    async fn decide(&self, record: &Record) -> RepoResult<Vec<Emit>> {
        let command: CheckoutCommand = match decode(&record.value) {
            Ok(c) => c,
            Err(e) => {
                return Ok(vec![Emit::dead_letter(
                    record,
                    topics::CHECKOUTS,
                    &e.to_string(),
                )])
            }
        };
        let command_id = command.command_id().to_owned();
        let outcome = match command {
            CheckoutCommand::Reserve { checkout, .. } => self.reserve(checkout).await?,
            CheckoutCommand::Release {
                checkout_id,
                user_id,
                ..
            } => self.release(&checkout_id, &user_id).await?,
        };
        let result = CommandResult {
            command_id: command_id.clone(),
            outcome,
        };
        Ok(vec![Emit::new(topics::RESULTS, command_id, &result)])
    }

    async fn reserve(&self, checkout: Checkout) -> RepoResult<Outcome> {
        if let Some(existing) = checkouts::load(&*self.store, &checkout.id).await? {
            return Ok(Outcome::CheckoutPlaced(existing.value)); // a replay
        }
        let live = self.live_checkouts(&checkout.user_id).await?;
        if live >= MAX_LIVE_CHECKOUTS {
            return Ok(Outcome::Refused(Refusal::CheckoutCapReached {
                live,
                cap: MAX_LIVE_CHECKOUTS,
            }));
        }
        let mut short = Vec::new();
        let mut reserved = Vec::new();
        for line in &checkout.lines {
            let change = change_stock(&*self.store, &line.sku, None, |level, now| {
                match level.reserve(&checkout.id, line.quantity, checkout.expires_at_ms, now) {
                    Ok(changed) => (changed, None),
                    Err(available) => (false, Some(available)),
                }
            })
            .await?;
            match change.value {
                None => {
                    reserved.push(line.sku.as_str());
                    alert_if_low(
                        &*self.store,
                        &*self.bus,
                        &line.sku,
                        change.before,
                        change.after,
                    )
                    .await?;
                }
                Some(available) => short.push((line.sku.clone(), available)),
            }
        }
        if !short.is_empty() {
            for sku in reserved {
                change_stock(&*self.store, sku, None, |level, now| {
                    (level.release(&checkout.id, now), ())
                })
                .await?;
            }
            return Ok(Outcome::InsufficientStock { short });
        }
        checkouts::create(&*self.store, &checkout).await?;
        checkouts::index(&*self.store, &checkout, now_ms()).await?;
        Ok(Outcome::CheckoutPlaced(checkout))
    }

    /// How many of `user`'s checkouts still hold stock back. The checkouts topic is keyed by
    /// shopper, so one worker decides a shopper's checkouts, in order: the count cannot race.
    async fn live_checkouts(&self, user: &str) -> RepoResult<u32> {
        let now = now_ms();
        let mut live = 0;
        for id in checkouts::of_user(&*self.store, user).await? {
            if let Some(c) = checkouts::load(&*self.store, &id).await? {
                live += u32::from(c.value.is_live(now));
            }
        }
        Ok(live)
    }

    async fn release(&self, checkout_id: &str, user_id: &str) -> RepoResult<Outcome> {
        loop {
            let current = checkouts::load(&*self.store, checkout_id).await?;
            let c = current.as_ref();
            match purchase::withdraw(c.map(|c| &c.value), user_id) {
                Withdraw::Refuse(refusal) => return Ok(Outcome::Refused(refusal)),
                // Once cancelled, releasing again (a replay) finds nothing to release.
                Withdraw::Already => {}
                Withdraw::Write(next) => {
                    let version = c.map_or(0, |c| c.version);
                    if !checkouts::cas(&*self.store, &next, version).await? {
                        continue;
                    }
                }
            }
            let lines = c.map(|c| c.value.lines.as_slice()).unwrap_or_default();
            for line in lines {
                change_stock(&*self.store, &line.sku, None, |level, now| {
                    (level.release(checkout_id, now), ())
                })
                .await?;
            }
            return Ok(Outcome::CheckoutReleased);
        }
    }
}

#[async_trait]
impl BatchHandler for CheckoutWorker {
    async fn handle(&self, _topic: &str, records: &[Record]) -> RepoResult<Vec<Emit>> {
        // One shopper's commands in order; shoppers concurrently (the stock rows' compare-and-set
        // settles who gets the last units).
        crate::runtime::per_key(records, |r| self.decide(r)).await
    }
    fn poisoned(&self, record: &Record, error: &RepoError) -> Vec<Emit> {
        decode::<CheckoutCommand>(&record.value)
            .ok()
            .map(|c| c.command_id().to_owned())
            .map(|id| crate::runtime::poisoned_result(&id, error))
            .into_iter()
            .collect()
    }
}
