//! Kill `mercato up` with SIGKILL in the middle of a checkout and order storm (some orders
//! cancelled, some paid with a card that settles late), start it again on the same data dir,
//! and check that no order was lost and every unit of stock is exactly where the orders say:
//! on a warehouse's shelf, or in an allocated shipment, never both and never neither.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use mercato::platform::PlatformConfig;
use mercato_e2e::child::{self, ChildPlatform};
use mercato_e2e::storm::{Shopper, Storm};
use mercato_e2e::{goods_manifests, Api};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{json, Value};

const CHECKOUT_TTL: Duration = Duration::from_secs(4);
const SHOPPERS: usize = 24;
const SKUS: [&str; 4] = ["CR-1", "CR-2", "CR-3", "CR-4"];
const UNITS: u64 = 40;
const WAREHOUSES: [&str; 2] = ["crash-east", "crash-west"];

#[test]
#[ignore = "run by the commerce crash test as its child process"]
fn commerce_child() {
    child::serve(|dir| PlatformConfig {
        checkout_ttl: Some(CHECKOUT_TTL),
        search_cache: 0,
        ..mercato_e2e::harness::config(Some(dir), None)
    });
}

fn spawn(dir: &std::path::Path) -> ChildPlatform {
    child::spawn("commerce_crash::commerce_child", dir)
}

/// One shopper's loop: put a random product in the cart, check out, pay (every third order
/// with the card that settles after 3 s), and cancel every fourth order at once.
async fn shop(api: Api, _: usize, shopper: Shopper<Vec<String>>) {
    let mut n = 0usize;
    while shopper.running() {
        let (sku, quantity) = {
            let mut rng = rand::thread_rng();
            (SKUS[rng.gen_range(0..SKUS.len())], rng.gen_range(1..=2))
        };
        let Ok(put) = api
            .put(
                &format!("/api/v1/cart/items/{sku}"),
                &json!({"quantity": quantity}),
            )
            .await
        else {
            return;
        };
        if put.status != StatusCode::OK {
            continue;
        }
        let Ok(checkout) = api.post("/api/v1/checkouts", &json!({})).await else {
            return;
        };
        if checkout.status != StatusCode::CREATED {
            // Sold out: empty the cart and try another product.
            let _ = api
                .put(
                    &format!("/api/v1/cart/items/{sku}"),
                    &json!({"quantity": 0}),
                )
                .await;
            continue;
        }
        n += 1;
        let card = if n.is_multiple_of(3) {
            "4000000000003220"
        } else {
            "4242424242424242"
        };
        let body = json!({
            "checkout_id": checkout.body["id"],
            "payment": {"card_number": card},
            "shipping_address": {"lat": 40.0, "lon": -100.0},
        });
        let key = uuid::Uuid::new_v4().to_string();
        let Ok(order) = api.post_keyed("/api/v1/orders", &body, &key).await else {
            return;
        };
        if order.status != StatusCode::ACCEPTED {
            continue;
        }
        let id = order.body["id"].as_str().unwrap_or_default().to_owned();
        shopper.record(|accepted| accepted.push(id.clone()));
        if n.is_multiple_of(4) {
            let Ok(_) = api
                .post(&format!("/api/v1/orders/{id}/cancel"), &json!({}))
                .await
            else {
                return;
            };
        }
    }
}

/// Orders still on their way: paid but not yet allocated, waiting for a charge or a refund.
/// Every card here succeeds, so a cancelled order waits for its charge, then its refund.
fn unsettled(o: &Value) -> bool {
    let refund_pending = o["refunds"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["status"] != "refunded"));
    matches!(
        o["status"].as_str(),
        Some("pending_payment" | "paid" | "cancelled")
    ) || refund_pending
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_mid_commerce_storm_loses_no_order_and_no_unit() {
    let dir = tempfile::tempdir().unwrap();
    let first = spawn(dir.path());
    let stock: Vec<(&str, u64)> = SKUS.iter().map(|s| (*s, UNITS)).collect();
    let manifests = goods_manifests(
        "crash-goods",
        "crash-seller",
        &SKUS.map(|s| (s, "Crash test item", 700)),
        &[
            (WAREHOUSES[0], 40.7, -74.0, &stock),
            (WAREHOUSES[1], 39.5, -119.8, &stock),
        ],
    );
    let a = first
        .admin
        .send(
            reqwest::Method::POST,
            "/api/v1/admin/manifests",
            Some(manifests.as_bytes()),
            None,
        )
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    for sku in SKUS {
        first
            .api
            .product_with_available(sku, 2 * UNITS)
            .await
            .unwrap();
    }
    let shoppers = first.api.shoppers("goods", SHOPPERS).await.unwrap();

    let storm = Storm::start(&shoppers, shop);
    storm
        .until(|accepted| accepted.len() > 20, Duration::from_secs(20))
        .await;
    drop(first); // SIGKILL, mid-flight
    let accepted = storm.stop().await;
    // The kill left acknowledged writes only in the store's journal (redb holds the last
    // checkpoint), so what follows also proves the journal is applied on restart.
    let journal = child::journal_bytes(dir.path());
    assert!(journal > 0, "the kill left nothing in the store's journal");
    assert!(
        accepted.len() > 20,
        "the storm placed orders before the kill ({})",
        accepted.len()
    );

    let second = spawn(dir.path());
    let shoppers: Vec<Api> = shoppers.iter().map(|s| s.against(&second.api)).collect();

    // Every accepted order survived, and every one settles once the workers resume.
    let mut orders: HashMap<String, Value> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        orders.clear();
        for s in &shoppers {
            for o in child::all_orders(s).await.unwrap() {
                orders.insert(o["id"].as_str().unwrap().to_owned(), o);
            }
        }
        let waiting: Vec<&Value> = orders.values().filter(|o| unsettled(o)).collect();
        if waiting.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} orders never settled after the restart, e.g. {}",
            waiting.len(),
            waiting[0]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for id in &accepted {
        assert!(
            orders.contains_key(id),
            "accepted order {id} was lost in the crash"
        );
    }

    // Once every reservation has lapsed, each unit is on a shelf or in an allocated shipment.
    tokio::time::sleep(CHECKOUT_TTL + Duration::from_millis(500)).await;
    let mut shipped: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    for o in orders.values() {
        let status = o["status"].as_str().unwrap().to_owned();
        *by_status.entry(status.clone()).or_default() += 1;
        assert!(
            matches!(status.as_str(), "allocated" | "expired" | "refunded"),
            "unexpected final status: {o}"
        );
        let ordered: u64 = o["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["quantity"].as_u64().unwrap())
            .sum();
        let mut allocated = 0;
        for s in o["shipments"].as_array().unwrap() {
            let live = s["status"] == "allocated";
            assert_eq!(
                live,
                status == "allocated",
                "shipment {s} of a {status} order"
            );
            for i in s["items"].as_array().unwrap() {
                if live {
                    let key = (
                        i["sku"].as_str().unwrap().to_owned(),
                        s["warehouse"].as_str().unwrap().to_owned(),
                    );
                    *shipped.entry(key).or_default() += i["quantity"].as_u64().unwrap();
                    allocated += i["quantity"].as_u64().unwrap();
                }
            }
        }
        if status == "allocated" {
            assert_eq!(
                allocated, ordered,
                "an allocated order ships all it ordered: {o}"
            );
        }
    }
    for sku in SKUS {
        let p = second
            .api
            .get(&format!("/api/v1/products/{sku}"))
            .await
            .unwrap()
            .body;
        let mut on_shelves = 0;
        for w in WAREHOUSES {
            let available = p["warehouses"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["warehouse"] == w)
                .map_or(0, |x| x["available"].as_u64().unwrap());
            let took = shipped
                .get(&(sku.to_owned(), w.to_owned()))
                .copied()
                .unwrap_or(0);
            assert_eq!(
                available + took,
                UNITS,
                "{sku} at {w}: {available} on the shelf + {took} allocated != {UNITS} declared"
            );
            on_shelves += available;
        }
        assert_eq!(
            p["available"], on_shelves,
            "no reservation or sale left dangling: {p}"
        );
    }
    println!(
        "commerce crash test: {} orders accepted before the kill; after the restart {by_status:?}; stock accounted for exactly",
        accepted.len()
    );
    assert!(by_status.get("allocated").is_some_and(|n| *n > 0));
}
