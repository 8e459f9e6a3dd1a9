//! Goods end to end: carts, checkouts racing for the last units, reservations that lapse,
//! orders split across warehouses, shipping, cancellation, returns and refunds.

use std::time::Duration;

use futures::future::join_all;
use mercato::platform::PlatformConfig;
use mercato_core::codec::decode;
use mercato_core::domain::commands::WarehouseMessage;
use mercato_core::domain::payments::{sign, SIGNATURE_HEADER};
use mercato_e2e::harness::{self, Running};
use mercato_e2e::{goods_manifests, Api};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SUCCEEDS: &str = "4242 4242 4242 4242";
/// Succeeds, but only after 3 seconds.
const SLOW: &str = "4000 0000 0000 3220";

async fn start(checkout_ttl: Duration) -> Running {
    harness::start_with(PlatformConfig {
        checkout_ttl: Some(checkout_ttl),
        search_cache: 0,
        ..harness::config(None, None)
    })
    .await
    .unwrap()
}

fn warehouse_units(product: &Value, warehouse: &str) -> (u64, u64) {
    product["warehouses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["warehouse"] == warehouse)
        .map(|w| {
            (
                w["physical"].as_u64().unwrap(),
                w["available"].as_u64().unwrap(),
            )
        })
        .unwrap_or((0, 0))
}

async fn buy(api: &Api, sku_qty: &[(&str, u64)], card: &str, near: (f64, f64)) -> String {
    for (sku, q) in sku_qty {
        let a = api
            .put(
                &format!("/api/v1/cart/items/{sku}"),
                &json!({"quantity": q}),
            )
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let checkout = api.post("/api/v1/checkouts", &json!({})).await.unwrap();
    assert_eq!(checkout.status, StatusCode::CREATED, "{}", checkout.body);
    let order = api
        .post(
            "/api/v1/orders",
            &json!({
                "checkout_id": checkout.body["id"],
                "payment": {"card_number": card},
                "shipping_address": {"name": "Ada", "city": "Somewhere", "lat": near.0, "lon": near.1},
            }),
        )
        .await
        .unwrap();
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    order.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_shoppers_race_for_the_last_twenty_units() {
    let run = start(Duration::from_secs(3)).await;
    run.apply(&goods_manifests(
        "race",
        "race-seller",
        &[("LAST-1", "Last of its kind", 1000)],
        &[("depot", 40.0, -74.0, &[("LAST-1", 20)])],
    ))
    .await
    .unwrap();
    run.api.product_with_available("LAST-1", 20).await.unwrap();

    let shoppers: Vec<Api> = join_all((0..200).map(|i| {
        let api = run.api.separate();
        async move { api.shopper(&format!("racer{i}@example.com")).await.unwrap() }
    }))
    .await;
    for s in &shoppers {
        let a = s
            .put("/api/v1/cart/items/LAST-1", &json!({"quantity": 1}))
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let answers = join_all(
        shoppers
            .iter()
            .map(|s| async move { s.post("/api/v1/checkouts", &json!({})).await.unwrap() }),
    )
    .await;
    let won: Vec<(&Api, String)> = shoppers
        .iter()
        .zip(&answers)
        .filter(|(_, a)| a.status == StatusCode::CREATED)
        .map(|(s, a)| (s, a.body["id"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(won.len(), 20, "exactly the last 20 units are reserved");
    for a in answers.iter().filter(|a| a.status != StatusCode::CREATED) {
        assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
        assert_eq!(a.code(), "insufficient_stock");
        assert_eq!(a.body["error"]["details"]["short"][0]["sku"], "LAST-1");
        assert_eq!(a.body["error"]["details"]["short"][0]["available"], 0);
    }
    run.api.product_with_available("LAST-1", 0).await.unwrap();
    // Stock fell through the inventory's threshold (3) once: one alert for the seller.
    let alerts = run
        .admin
        .get("/api/v1/sellers/race-seller/alerts")
        .await
        .unwrap();
    assert_eq!(alerts.status, StatusCode::OK, "{}", alerts.body);
    let list = alerts.body["alerts"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", alerts.body);
    assert_eq!(list[0]["sku"], "LAST-1");
    assert_eq!(list[0]["available"], 3);
    assert_eq!(list[0]["threshold"], 3);
    let shopper_view = shoppers[0]
        .get("/api/v1/sellers/race-seller/alerts")
        .await
        .unwrap();
    assert_eq!(shopper_view.status, StatusCode::FORBIDDEN);
    // A shopper who lost cannot squeeze in through the cart either.
    let late = shoppers[0]
        .put("/api/v1/cart/items/LAST-1", &json!({"quantity": 2}))
        .await
        .unwrap();
    assert_eq!(late.status, StatusCode::CONFLICT);
    assert_eq!(late.body["error"]["details"]["available"], 0);

    // 10 pay, 5 give up, 5 let their reservation lapse.
    let mut orders = Vec::new();
    for (s, checkout) in &won[..10] {
        let o = s
            .post(
                "/api/v1/orders",
                &json!({"checkout_id": checkout, "payment": {"card_number": SUCCEEDS}}),
            )
            .await
            .unwrap();
        assert_eq!(o.status, StatusCode::ACCEPTED, "{}", o.body);
        orders.push((*s, o.body["id"].as_str().unwrap().to_owned()));
    }
    for (s, checkout) in &won[10..15] {
        let d = s
            .delete(&format!("/api/v1/checkouts/{checkout}"))
            .await
            .unwrap();
        assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.body);
    }
    run.api.product_with_available("LAST-1", 5).await.unwrap();
    for (s, id) in &orders {
        s.order_with_status(id, "allocated", Duration::from_secs(10))
            .await
            .unwrap();
    }
    // After the lapse, what is left is exactly what the 10 sales leave, counted once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let product = run.api.product_with_available("LAST-1", 10).await.unwrap();
    assert_eq!(warehouse_units(&product, "depot"), (20, 10));
    let (s, lapsed) = &won[15];
    let c = s.get(&format!("/api/v1/checkouts/{lapsed}")).await.unwrap();
    assert_eq!(c.body["status"], "expired");
    let o = s
        .post(
            "/api/v1/orders",
            &json!({"checkout_id": lapsed, "payment": {"card_number": SUCCEEDS}}),
        )
        .await
        .unwrap();
    assert_eq!(o.status, StatusCode::GONE, "{}", o.body);
    assert_eq!(o.code(), "checkout_expired");
    run.platform.stop().await;
}

/// The sub-orders a warehouse's topic received.
async fn sub_orders(run: &Running, warehouse: &str) -> Vec<WarehouseMessage> {
    let topic = mercato_core::domain::commerce::warehouse_topic(warehouse);
    let records = run
        .platform
        .ports
        .bus
        .fetch(&topic, 0, 0, 100, Duration::from_millis(100))
        .await
        .unwrap();
    records
        .iter()
        .map(|r| decode::<WarehouseMessage>(&r.value).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_split_ship_cancel_and_return_with_stock_back_where_it_came_from() {
    let run = start(Duration::from_secs(2)).await;
    run.apply(&goods_manifests(
        "split",
        "split-seller",
        &[("SPLIT-A", "Anvil", 2000), ("SPLIT-B", "Bellows", 500)],
        &[
            ("east", 40.7, -74.0, &[("SPLIT-A", 5)]),
            ("west", 39.5, -119.8, &[("SPLIT-B", 5)]),
            ("far", -33.9, 151.2, &[("SPLIT-A", 1), ("SPLIT-B", 1)]),
        ],
    ))
    .await
    .unwrap();
    run.api.product_with_available("SPLIT-A", 6).await.unwrap();
    run.api.product_with_available("SPLIT-B", 6).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();

    // Two of each: east has only A, west only B, "far" one of each: two shipments, from the
    // warehouses that hold the goods.
    let id = buy(
        &ada,
        &[("SPLIT-A", 2), ("SPLIT-B", 2)],
        SUCCEEDS,
        (40.0, -75.0),
    )
    .await;
    let order = ada
        .order_with_status(&id, "allocated", Duration::from_secs(10))
        .await
        .unwrap();
    let shipments = order["shipments"].as_array().unwrap();
    assert_eq!(shipments.len(), 2, "{order}");
    let by_warehouse = |w: &str| {
        shipments
            .iter()
            .find(|s| s["warehouse"] == w)
            .unwrap_or_else(|| panic!("no shipment from {w}: {order}"))
            .clone()
    };
    let east = by_warehouse("east");
    let west = by_warehouse("west");
    assert_eq!(east["items"], json!([{"sku": "SPLIT-A", "quantity": 2}]));
    assert_eq!(west["items"], json!([{"sku": "SPLIT-B", "quantity": 2}]));
    let a = run.api.product_with_available("SPLIT-A", 4).await.unwrap();
    assert_eq!(warehouse_units(&a, "east"), (5, 3));
    let cart = ada.get("/api/v1/cart").await.unwrap();
    assert_eq!(cart.body["items"], json!([]), "bought goods leave the cart");
    // Each warehouse received its own sub-order.
    let east_msgs = sub_orders(&run, "east").await;
    assert!(matches!(&east_msgs[..], [WarehouseMessage::Ship { order_id, .. }] if *order_id == id));
    assert_eq!(sub_orders(&run, "west").await.len(), 1);
    assert!(sub_orders(&run, "far").await.is_empty());

    // Ship and deliver both; a shopper may not.
    let ship = |w: &str, s: &Value| {
        format!(
            "/api/v1/warehouses/{w}/shipments/{}/ship",
            s["id"].as_str().unwrap()
        )
    };
    let deliver = |w: &str, s: &Value| {
        format!(
            "/api/v1/warehouses/{w}/shipments/{}/deliver",
            s["id"].as_str().unwrap()
        )
    };
    let denied = ada
        .post(&ship("east", &east), &json!({"tracking_number": "X"}))
        .await
        .unwrap();
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    let early = run
        .admin
        .post(&deliver("east", &east), &json!({}))
        .await
        .unwrap();
    assert_eq!(early.code(), "not_shipped");
    for (w, s) in [("east", &east), ("west", &west)] {
        let a = run
            .admin
            .post(&ship(w, s), &json!({"tracking_number": format!("TRK-{w}")}))
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    let shipped = ada
        .order_with_status(&id, "shipped", Duration::from_secs(2))
        .await
        .unwrap();
    for s in shipped["shipments"].as_array().unwrap() {
        let w = s["warehouse"].as_str().unwrap();
        assert_eq!(s["tracking_number"], format!("TRK-{w}"), "{s}");
        assert_eq!(s["status"], "shipped");
    }
    let too_late = ada
        .post(&format!("/api/v1/orders/{id}/cancel"), &json!({}))
        .await
        .unwrap();
    assert_eq!(too_late.status, StatusCode::CONFLICT, "{}", too_late.body);
    assert_eq!(too_late.code(), "already_shipped");
    let a = run.api.product_with_available("SPLIT-A", 4).await.unwrap();
    assert_eq!(
        warehouse_units(&a, "east"),
        (3, 3),
        "shipped units left the shelves"
    );
    for (w, s) in [("east", &east), ("west", &west)] {
        let a = run.admin.post(&deliver(w, s), &json!({})).await.unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    ada.order_with_status(&id, "delivered", Duration::from_secs(2))
        .await
        .unwrap();

    // Return one anvil: it goes back to east, and 20.00 is refunded once.
    let too_many = ada
        .post(
            &format!("/api/v1/orders/{id}/returns"),
            &json!({"items": [{"sku": "SPLIT-A", "quantity": 3}], "reason": "x"}),
        )
        .await
        .unwrap();
    assert_eq!(too_many.code(), "invalid_return", "{}", too_many.body);
    let ret = ada
        .post_keyed(
            &format!("/api/v1/orders/{id}/returns"),
            &json!({"items": [{"sku": "SPLIT-A", "quantity": 1}], "reason": "dented"}),
            "return-1",
        )
        .await
        .unwrap();
    assert_eq!(ret.status, StatusCode::CREATED, "{}", ret.body);
    assert_eq!(
        ret.body["return"]["items"],
        json!([{"sku": "SPLIT-A", "quantity": 1, "warehouse": "east"}])
    );
    let a = run.api.product_with_available("SPLIT-A", 5).await.unwrap();
    assert_eq!(warehouse_units(&a, "east"), (4, 4));
    let refund_id = ret.body["return"]["refund_id"].as_str().unwrap().to_owned();
    let refunded = ada
        .order_until(&id, Duration::from_secs(10), |o| {
            o["refunds"]
                .as_array()
                .is_some_and(|r| r.len() == 1 && r[0]["status"] == "refunded")
        })
        .await
        .unwrap();
    assert_eq!(
        refunded["refunds"][0]["amount"],
        json!({"amount": 2000, "currency": "USD"})
    );

    // The provider delivers the refund's webhook again: still recorded once.
    let secret = run.platform.webhook_secret.clone();
    let body = serde_json::to_vec(&json!({
        "id": format!("evt_{refund_id}_refund"), "type": "refund.succeeded", "order_id": id,
        "payment_id": refunded["payment_id"], "amount": {"amount": 2000, "currency": "USD"},
        "refund_id": refund_id,
    }))
    .unwrap();
    for _ in 0..2 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let resp = reqwest::Client::new()
            .post(format!("{}/api/v1/payments/webhook", run.api.base))
            .header(SIGNATURE_HEADER, sign(&secret, now, &body))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{}", resp.status());
        // The sandbox delivered this event id already: the gateway does not queue it again.
        let answer: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(answer, json!({"received": true, "duplicate": true}));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let again = ada.get(&format!("/api/v1/orders/{id}")).await.unwrap();
    assert_eq!(again.body["refunds"], refunded["refunds"], "recorded once");
    assert_eq!(again.body["status"], "delivered");
    let replay = ada
        .post_keyed(
            &format!("/api/v1/orders/{id}/returns"),
            &json!({"items": [{"sku": "SPLIT-A", "quantity": 1}], "reason": "dented"}),
            "return-1",
        )
        .await
        .unwrap();
    assert_eq!(replay.body["return"]["id"], ret.body["return"]["id"]);
    run.api.product_with_available("SPLIT-A", 5).await.unwrap();

    // Cancel an allocated order: stock goes back to the warehouse, the payment is refunded.
    let second = buy(&ada, &[("SPLIT-A", 1)], SUCCEEDS, (40.0, -75.0)).await;
    ada.order_with_status(&second, "allocated", Duration::from_secs(10))
        .await
        .unwrap();
    let a = run.api.product_with_available("SPLIT-A", 4).await.unwrap();
    assert_eq!(warehouse_units(&a, "east"), (4, 3));
    let cancelled = ada
        .post(&format!("/api/v1/orders/{second}/cancel"), &json!({}))
        .await
        .unwrap();
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["shipments"][0]["status"], "cancelled");
    let a = run.api.product_with_available("SPLIT-A", 5).await.unwrap();
    assert_eq!(warehouse_units(&a, "east"), (4, 4));
    ada.order_with_status(&second, "refunded", Duration::from_secs(10))
        .await
        .unwrap();
    let again = ada
        .post(&format!("/api/v1/orders/{second}/cancel"), &json!({}))
        .await
        .unwrap();
    assert_eq!(again.status, StatusCode::OK, "cancelling twice is harmless");
    run.api.product_with_available("SPLIT-A", 5).await.unwrap();
    assert!(sub_orders(&run, "east")
        .await
        .iter()
        .any(|m| matches!(m, WarehouseMessage::Cancel { order_id, .. } if *order_id == second)));

    // A payment that completes after the checkout lapsed: expired, refunded, stock back.
    let late = buy(&ada, &[("SPLIT-B", 2)], SLOW, (40.0, -75.0)).await;
    run.api.product_with_available("SPLIT-B", 2).await.unwrap();
    let expired = ada
        .order_with_status(&late, "expired", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(expired["shipments"], json!([]));
    run.api.product_with_available("SPLIT-B", 4).await.unwrap();
    ada.order_until(&late, Duration::from_secs(10), |o| {
        o["refunds"][0]["status"] == "refunded"
    })
    .await
    .unwrap();
    run.platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_no_warehouse_can_supply_is_flagged_then_allocated_when_stock_arrives() {
    let run = start(Duration::from_secs(60)).await;
    let declare = |units: u64| {
        goods_manifests(
            "short",
            "short-seller",
            &[("SHORT-1", "Scarce", 300)],
            &[("short-wh", 10.0, 10.0, &[("SHORT-1", units)])],
        )
    };
    run.apply(&declare(3)).await.unwrap();
    run.api.product_with_available("SHORT-1", 3).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();
    let put = ada
        .put("/api/v1/cart/items/SHORT-1", &json!({"quantity": 2}))
        .await
        .unwrap();
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let checkout = ada.post("/api/v1/checkouts", &json!({})).await.unwrap();
    assert_eq!(checkout.status, StatusCode::CREATED, "{}", checkout.body);
    // A stock take finds none left before the shopper pays: the paid order cannot be supplied.
    run.apply(&declare(0)).await.unwrap();
    let order = ada
        .post(
            "/api/v1/orders",
            &json!({"checkout_id": checkout.body["id"], "payment": {"card_number": SUCCEEDS}}),
        )
        .await
        .unwrap();
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    let id = order.body["id"].as_str().unwrap().to_owned();
    let flagged = ada
        .order_until(&id, Duration::from_secs(10), |o| {
            o["shortfall"].as_array().is_some_and(|s| !s.is_empty())
        })
        .await
        .unwrap();
    assert_eq!(flagged["status"], "paid");
    assert_eq!(
        flagged["shortfall"],
        json!([{"sku": "SHORT-1", "missing": 2}])
    );
    let list = run.admin.get("/api/v1/admin/flagged-orders").await.unwrap();
    assert_eq!(list.body["orders"][0]["id"], id.as_str(), "{}", list.body);
    // Stock arrives; an admin retries the allocation.
    run.apply(&declare(5)).await.unwrap();
    let retry = run
        .admin
        .post(&format!("/api/v1/admin/orders/{id}/allocate"), &json!({}))
        .await
        .unwrap();
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.body);
    let allocated = ada
        .order_with_status(&id, "allocated", Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(allocated["shortfall"], json!([]));
    assert_eq!(
        allocated["shipments"][0]["items"],
        json!([{"sku": "SHORT-1", "quantity": 2}])
    );
    let list = run.admin.get("/api/v1/admin/flagged-orders").await.unwrap();
    assert_eq!(list.body["orders"], json!([]), "no longer flagged");
    run.api.product_with_available("SHORT-1", 3).await.unwrap();
    run.platform.stop().await;
}

/// A shopper holds back stock with at most MAX_LIVE_CHECKOUTS checkouts at once; cancelling
/// one, or letting one lapse, makes room for the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shopper_has_at_most_five_live_checkouts() {
    let run = start(Duration::from_secs(3)).await;
    run.apply(&goods_manifests(
        "capped",
        "capped-seller",
        &[("CAP-1", "Plenty", 500)],
        &[("depot", 40.0, -74.0, &[("CAP-1", 100)])],
    ))
    .await
    .unwrap();
    run.api.product_with_available("CAP-1", 100).await.unwrap();
    let ada = run.api.shopper("hoarder@example.com").await.unwrap();
    let a = ada
        .put("/api/v1/cart/items/CAP-1", &json!({"quantity": 1}))
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let mut live = Vec::new();
    for _ in 0..5 {
        let c = ada.post("/api/v1/checkouts", &json!({})).await.unwrap();
        assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
        live.push(c.body["id"].as_str().unwrap().to_owned());
    }
    let refused = ada.post("/api/v1/checkouts", &json!({})).await.unwrap();
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert_eq!(refused.code(), "checkout_cap_reached");
    assert_eq!(refused.body["error"]["details"]["max_live_checkouts"], 5);
    run.api.product_with_available("CAP-1", 95).await.unwrap();

    // Someone else is not touched by Ada's checkouts.
    let bo = run.api.shopper("bo@example.com").await.unwrap();
    bo.put("/api/v1/cart/items/CAP-1", &json!({"quantity": 1}))
        .await
        .unwrap();
    let theirs = bo.post("/api/v1/checkouts", &json!({})).await.unwrap();
    assert_eq!(theirs.status, StatusCode::CREATED, "{}", theirs.body);

    // Cancelling one makes room at once; lapsing (3 s checkouts) makes room for all.
    let cancelled = ada
        .delete(&format!("/api/v1/checkouts/{}", live[0]))
        .await
        .unwrap();
    assert!(cancelled.status.is_success(), "{}", cancelled.body);
    let again = ada.post("/api/v1/checkouts", &json!({})).await.unwrap();
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    for _ in 0..5 {
        let c = ada.post("/api/v1/checkouts", &json!({})).await.unwrap();
        assert_eq!(c.status, StatusCode::CREATED, "{}", c.body);
    }
    run.platform.stop().await;
}
