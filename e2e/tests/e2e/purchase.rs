//! Purchases end to end: payment through the sandbox and its signed webhook, tickets, expiry
//! of holds without any sweeper, refunds of late payments, idempotency.

use std::time::Duration;

use mercato_e2e::{event_manifest, harness};
use reqwest::StatusCode;
use serde_json::json;

const SUCCEEDS: &str = "4242 4242 4242 4242";
const DECLINED: &str = "4000 0000 0000 0002";
/// Succeeds, but only after 3 seconds.
const SLOW: &str = "4000 0000 0000 3220";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purchase_issues_tickets_and_sells_the_seats() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event_manifest("gig", "pit", 20)).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();
    let hold = ada
        .hold("gig", &["pit-1-1".into(), "pit-1-2".into()])
        .await
        .unwrap();
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
    let hold_id = hold.body["id"].as_str().unwrap();

    let order = ada
        .post_keyed(
            "/api/v1/orders",
            &json!({"hold_id": hold_id, "payment": {"card_number": SUCCEEDS}}),
            "order-1",
        )
        .await
        .unwrap();
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    assert_eq!(order.body["status"], "pending_payment");
    assert_eq!(
        order.body["total"],
        json!({"amount": 5000, "currency": "EUR"})
    );
    let id = order.body["id"].as_str().unwrap();
    let settled = ada
        .settled_order(id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(settled["status"], "paid", "{settled}");
    assert_eq!(settled["tickets"].as_array().unwrap().len(), 2);

    let replay = ada
        .post_keyed(
            "/api/v1/orders",
            &json!({"hold_id": hold_id, "payment": {"card_number": SUCCEEDS}}),
            "order-1",
        )
        .await
        .unwrap();
    assert_eq!(replay.status, StatusCode::ACCEPTED);
    assert_eq!(
        replay.body["id"], id,
        "the same key and body replay the first answer"
    );
    let reused = ada
        .post_keyed(
            "/api/v1/orders",
            &json!({"hold_id": hold_id, "payment": {"card_number": DECLINED}}),
            "order-1",
        )
        .await
        .unwrap();
    assert_eq!(
        (reused.status, reused.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );

    let seats = ada.seat_statuses("gig", "pit").await.unwrap();
    assert_eq!(seats.iter().filter(|(_, s)| s == "sold").count(), 2);
    let again = ada
        .post(
            "/api/v1/orders",
            &json!({"hold_id": hold_id, "payment": {"card_number": SUCCEEDS}}),
        )
        .await
        .unwrap();
    assert_eq!(
        (again.status, again.code()),
        (StatusCode::CONFLICT, "hold_purchased")
    );
    let h = ada.get(&format!("/api/v1/holds/{hold_id}")).await.unwrap();
    assert_eq!(h.body["status"], "purchased");
    let release = ada
        .delete(&format!("/api/v1/holds/{hold_id}"))
        .await
        .unwrap();
    assert_eq!(
        (release.status, release.code()),
        (StatusCode::CONFLICT, "hold_purchased")
    );

    let list = ada.get("/api/v1/orders").await.unwrap();
    assert_eq!(list.body["orders"].as_array().unwrap().len(), 1);
    let other = run.api.shopper("bob@example.com").await.unwrap();
    let peek = other.get(&format!("/api/v1/orders/{id}")).await.unwrap();
    assert_eq!(peek.status, StatusCode::NOT_FOUND, "orders are private");
    run.platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_fails_the_order_and_keeps_the_hold() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event_manifest("gig", "pit", 5)).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();
    let hold = ada.hold("gig", &["pit-1-3".into()]).await.unwrap();
    let hold_id = hold.body["id"].as_str().unwrap();
    let order = ada
        .post(
            "/api/v1/orders",
            &json!({"hold_id": hold_id, "payment": {"card_number": DECLINED}}),
        )
        .await
        .unwrap();
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    let settled = ada
        .settled_order(order.body["id"].as_str().unwrap(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(settled["status"], "payment_failed");
    let h = ada.get(&format!("/api/v1/holds/{hold_id}")).await.unwrap();
    assert_eq!(
        h.body["status"], "active",
        "the shopper may try another card"
    );
    let retry = ada
        .post(
            "/api/v1/orders",
            &json!({"hold_id": hold_id, "payment": {"card_number": SUCCEEDS}}),
        )
        .await
        .unwrap();
    let settled = ada
        .settled_order(retry.body["id"].as_str().unwrap(), Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(settled["status"], "paid");
    run.platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_lapse_by_themselves_and_late_payments_are_refunded() {
    let run = harness::start(None, Some(Duration::from_secs(2)))
        .await
        .unwrap();
    run.apply(&event_manifest("gig", "pit", 10)).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();
    let bob = run.api.shopper("bob@example.com").await.unwrap();

    // A hold that simply lapses: its seats come back with no sweeper involved.
    let hold = ada
        .hold("gig", &["pit-1-1".into(), "pit-1-2".into()])
        .await
        .unwrap();
    assert_eq!(hold.status, StatusCode::CREATED);
    let hold_id = hold.body["id"].as_str().unwrap().to_owned();
    let taken = bob.hold("gig", &["pit-1-2".into()]).await.unwrap();
    assert_eq!(taken.status, StatusCode::CONFLICT);
    let held = ada.seat_statuses("gig", "pit").await.unwrap();
    assert_eq!(held.iter().filter(|(_, s)| s == "held").count(), 2);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    let after = ada.seat_statuses("gig", "pit").await.unwrap();
    assert!(after.iter().all(|(_, s)| s == "available"), "{after:?}");
    let h = ada.get(&format!("/api/v1/holds/{hold_id}")).await.unwrap();
    assert_eq!(h.body["status"], "expired");
    let late = ada
        .post(
            "/api/v1/orders",
            &json!({"hold_id": hold_id, "payment": {"card_number": SUCCEEDS}}),
        )
        .await
        .unwrap();
    assert_eq!(
        (late.status, late.code()),
        (StatusCode::GONE, "hold_expired")
    );
    let now_bob = bob.hold("gig", &["pit-1-2".into()]).await.unwrap();
    assert_eq!(
        now_bob.status,
        StatusCode::CREATED,
        "the lapsed seat can be held again"
    );

    // A payment that completes after its hold lapsed: the order expires and is refunded.
    let hold = ada.hold("gig", &["pit-1-5".into()]).await.unwrap();
    let hold_id = hold.body["id"].as_str().unwrap();
    let order = ada
        .post(
            "/api/v1/orders",
            &json!({"hold_id": hold_id, "payment": {"card_number": SLOW}}),
        )
        .await
        .unwrap();
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    let id = order.body["id"].as_str().unwrap();
    let settled = ada
        .settled_order(id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(settled["status"], "expired", "{settled}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let o = ada.get(&format!("/api/v1/orders/{id}")).await.unwrap();
        if o.body["refund"] == "refunded" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the charge is refunded: {}",
            o.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seats = ada.seat_statuses("gig", "pit").await.unwrap();
    assert!(
        seats
            .iter()
            .all(|(id, s)| s != "sold" && (id != "pit-1-5" || s == "available")),
        "{seats:?}"
    );
    run.platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_a_hold_frees_its_seats_at_once() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event_manifest("gig", "pit", 5)).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();
    let bob = run.api.shopper("bob@example.com").await.unwrap();
    let hold = ada.hold("gig", &["pit-1-1".into()]).await.unwrap();
    let hold_id = hold.body["id"].as_str().unwrap();
    let not_yours = bob
        .delete(&format!("/api/v1/holds/{hold_id}"))
        .await
        .unwrap();
    assert_eq!(not_yours.status, StatusCode::NOT_FOUND);
    let released = ada
        .delete(&format!("/api/v1/holds/{hold_id}"))
        .await
        .unwrap();
    assert_eq!(released.status, StatusCode::NO_CONTENT, "{}", released.body);
    let seats = ada.seat_statuses("gig", "pit").await.unwrap();
    assert!(seats.iter().all(|(_, s)| s == "available"));
    let h = ada.get(&format!("/api/v1/holds/{hold_id}")).await.unwrap();
    assert_eq!(h.body["status"], "released");
    assert_eq!(
        bob.hold("gig", &["pit-1-1".into()]).await.unwrap().status,
        StatusCode::CREATED
    );
    run.platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_applied_after_a_404_is_served_at_once() {
    let run = harness::start(None, None).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();
    let before = ada.get("/api/v1/events/late-show").await.unwrap();
    assert_eq!(before.status, StatusCode::NOT_FOUND);
    run.apply(&event_manifest("late-show", "pit", 4))
        .await
        .unwrap();
    let after = ada.get("/api/v1/events/late-show").await.unwrap();
    assert_eq!(after.status, StatusCode::OK, "{}", after.body);
    let hold = ada.hold("late-show", &["pit-1-1".into()]).await.unwrap();
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
    run.platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_hold_under_the_same_key_is_the_same_hold() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event_manifest("gig", "pit", 5)).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();
    let body = json!({"event_id": "gig", "seat_ids": ["pit-1-1", "pit-1-2"]});
    let first = ada
        .post_keyed("/api/v1/holds", &body, "hold-key-1")
        .await
        .unwrap();
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let again = ada
        .post_keyed("/api/v1/holds", &body, "hold-key-1")
        .await
        .unwrap();
    assert_eq!(again.status, StatusCode::CREATED);
    assert_eq!(
        again.body, first.body,
        "the same key and body replay the first answer"
    );
    let other = ada
        .post_keyed(
            "/api/v1/holds",
            &json!({"event_id": "gig", "seat_ids": ["pit-1-3"]}),
            "hold-key-1",
        )
        .await
        .unwrap();
    assert_eq!(
        (other.status, other.code()),
        (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused")
    );
    // A refusal replays too, and holds nothing.
    let bob = run.api.shopper("bob@example.com").await.unwrap();
    let taken = bob
        .post_keyed("/api/v1/holds", &body, "bob-1")
        .await
        .unwrap();
    assert_eq!(taken.code(), "seats_unavailable");
    let replay = bob
        .post_keyed("/api/v1/holds", &body, "bob-1")
        .await
        .unwrap();
    assert_eq!(
        (replay.status, replay.body.clone()),
        (taken.status, taken.body)
    );
    let seats = ada.seat_statuses("gig", "pit").await.unwrap();
    assert_eq!(seats.iter().filter(|(_, s)| s == "held").count(), 2);
    run.platform.stop().await;
}

/// `GET /orders?to=` lists exactly the orders created at or before `to`, newest first, paged
/// by its cursor: the listing starts its scan at `to` rather than skipping newer orders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_up_to_a_time_are_listed_newest_first_and_paged() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event_manifest("gig", "pit", 20)).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();
    let mut placed = Vec::new(); // (created_at, id), oldest first
    for n in 1..=6 {
        let hold = ada.hold("gig", &[format!("pit-1-{n}")]).await.unwrap();
        assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
        let order = ada
            .post(
                "/api/v1/orders",
                &json!({"hold_id": hold.body["id"], "payment": {"card_number": SUCCEEDS}}),
            )
            .await
            .unwrap();
        assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
        placed.push((
            order.body["created_at"].as_str().unwrap().to_owned(),
            order.body["id"].as_str().unwrap().to_owned(),
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Up to the third order: the first three, newest first, two to a page.
    let to = &placed[2].0;
    let mut listed = Vec::new();
    let mut path = format!("/api/v1/orders?to={to}&limit=2");
    loop {
        let page = ada.get(&path).await.unwrap();
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for o in page.body["orders"].as_array().unwrap() {
            listed.push(o["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/orders?to={to}&limit=2&cursor={c}"),
            None => break,
        }
    }
    let expected: Vec<String> = placed[..3].iter().rev().map(|(_, id)| id.clone()).collect();
    assert_eq!(listed, expected);
    run.platform.stop().await;
}
