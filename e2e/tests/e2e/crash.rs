//! Kill `mercato up` with SIGKILL in the middle of a purchase storm, start it again on the same
//! data dir, and check that nothing was lost or sold twice and no hold outlived its TTL.
//!
//! The platform runs in a child process ([`mercato_e2e::child`]).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use mercato::platform::PlatformConfig;
use mercato_e2e::child::{self, ChildPlatform};
use mercato_e2e::storm::{Shopper, Storm};
use mercato_e2e::{event_manifest, Api};
use rand::seq::SliceRandom;
use reqwest::StatusCode;
use serde_json::{json, Value};

const HOLD_TTL: Duration = Duration::from_secs(4);
const SHOPPERS: usize = 24;
const SEATS: u32 = 300;

#[test]
#[ignore = "run by the crash test as its child process"]
fn platform_child() {
    child::serve(|dir| PlatformConfig {
        search_cache: 0,
        ..mercato_e2e::harness::config(Some(dir), Some(HOLD_TTL))
    });
}

fn spawn_platform(dir: &std::path::Path) -> ChildPlatform {
    child::spawn("crash::platform_child", dir)
}

/// One shopper's loop: hold two random seats, pay for them; record every accepted order.
async fn shop(api: Api, who: usize, shopper: Shopper<Vec<(usize, String)>>) {
    let mut rng_seats: Vec<u32> = (1..=SEATS).collect();
    let mut orders = who;
    while shopper.running() {
        rng_seats.shuffle(&mut rand::thread_rng());
        let seats: Vec<String> = rng_seats[..2]
            .iter()
            .map(|n| format!("hall-1-{n}"))
            .collect();
        let Ok(hold) = api.hold("crash", &seats).await else {
            return;
        };
        if hold.status != StatusCode::CREATED {
            continue;
        }
        let key = uuid::Uuid::new_v4().to_string();
        // Every third order pays with the card that settles after 3 seconds, so payments are
        // still pending in the provider's outbox when the process dies.
        orders += 1;
        let card = if orders.is_multiple_of(3) {
            "4000000000003220"
        } else {
            "4242424242424242"
        };
        let body = json!({"hold_id": hold.body["id"], "payment": {"card_number": card}});
        let Ok(order) = api.post_keyed("/api/v1/orders", &body, &key).await else {
            return;
        };
        if order.status == StatusCode::ACCEPTED {
            let id = order.body["id"].as_str().unwrap().to_owned();
            shopper.record(|accepted| accepted.push((who, id)));
        }
    }
}

async fn all_orders(api: &Api) -> Vec<Value> {
    child::all_orders(api).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_storm_loses_nothing_and_sells_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn_platform(dir.path());
    let a = first
        .admin
        .send(
            reqwest::Method::POST,
            "/api/v1/admin/manifests",
            Some(event_manifest("crash", "hall", SEATS).as_bytes()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let shoppers = first.api.shoppers("storm", SHOPPERS).await.unwrap();

    let storm = Storm::start(&shoppers, shop);
    storm
        .until(|accepted| accepted.len() > 10, Duration::from_secs(20))
        .await;
    drop(first); // SIGKILL, mid-flight
    let accepted = storm.stop().await;
    // The kill left acknowledged writes only in the store's journal (redb holds the last
    // checkpoint), so what follows also proves the journal is applied on restart.
    let journal = child::journal_bytes(dir.path());
    assert!(journal > 0, "the kill left nothing in the store's journal");
    assert!(
        accepted.len() > 10,
        "the storm placed orders before the kill ({})",
        accepted.len()
    );

    let second = spawn_platform(dir.path());
    let shoppers: Vec<Api> = shoppers.iter().map(|s| s.against(&second.api)).collect();

    // Every accepted order survived, and every order settles once the workers resume.
    let mut settled: HashMap<String, Value> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        settled.clear();
        let mut pending = 0;
        for s in &shoppers {
            for o in all_orders(s).await {
                if o["status"] == "pending_payment" {
                    pending += 1;
                }
                settled.insert(o["id"].as_str().unwrap().to_owned(), o);
            }
        }
        if pending == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{pending} orders never settled after the restart"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for (_, id) in &accepted {
        assert!(
            settled.contains_key(id),
            "accepted order {id} was lost in the crash"
        );
    }

    // No seat sold twice, and the seat map agrees with the paid orders exactly.
    let mut sold_by_orders = HashSet::new();
    for o in settled.values() {
        match o["status"].as_str().unwrap() {
            "paid" => {
                for t in o["tickets"].as_array().unwrap() {
                    let seat = t["seat_id"].as_str().unwrap().to_owned();
                    assert!(
                        sold_by_orders.insert(seat.clone()),
                        "seat {seat} sold twice"
                    );
                }
            }
            "expired" => {}
            other => panic!("unexpected order status {other}: {o}"),
        }
    }
    let paid = settled.values().filter(|o| o["status"] == "paid").count();
    let expired = settled
        .values()
        .filter(|o| o["status"] == "expired")
        .count();
    println!(
        "crash test: {} orders accepted before the kill, {} orders after the restart: {paid} paid, {expired} expired",
        accepted.len(),
        settled.len()
    );
    assert!(paid > 0);

    // No hold outlives its TTL: once it has passed, every seat is sold or available.
    tokio::time::sleep(HOLD_TTL + Duration::from_millis(500)).await;
    let seats = second.api.seat_statuses("crash", "hall").await.unwrap();
    let sold_on_map: HashSet<String> = seats
        .iter()
        .filter(|(_, s)| s == "sold")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        sold_on_map, sold_by_orders,
        "sold seats are exactly the paid orders' seats"
    );
    let held: Vec<_> = seats.iter().filter(|(_, s)| s == "held").collect();
    assert!(held.is_empty(), "holds outlived their TTL: {held:?}");

    // Expired orders are refunded; and the restarted platform takes new business.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for o in settled.values().filter(|o| o["status"] == "expired") {
        let id = o["id"].as_str().unwrap();
        loop {
            let mut refunded = false;
            for s in &shoppers {
                let a = s.get(&format!("/api/v1/orders/{id}")).await.unwrap();
                if a.status == StatusCode::OK {
                    refunded = a.body["refund"] == "refunded";
                    break;
                }
            }
            if refunded {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "expired order {id} was never refunded"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let free = seats
        .iter()
        .find(|(_, s)| s == "available")
        .map(|(id, _)| id.clone())
        .unwrap();
    let hold = shoppers[0].hold("crash", &[free]).await.unwrap();
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
}
