//! Seat maps that scale: the compact map agrees seat for seat with the full listing while
//! seats are held and sold, answers 304 to a client that has it already, and a venue too large
//! to list seat by seat is refused the full listing but not the compact map.

use std::time::Duration;

use mercato_e2e::{event_manifest, harness};
use reqwest::StatusCode;
use serde_json::json;

const SUCCEEDS: &str = "4242 4242 4242 4242";

/// Two sections of 6,000 seats: 12,000, past the full listing's limit.
const ARENA: &str = r#"apiVersion: mercato.dev/v1alpha1
kind: Event
metadata:
  name: arena
spec:
  title: Arena
  venue: { name: Arena, city: Testville, lat: 10.0, lon: 20.0 }
  startsAt: 2099-01-01T20:00:00Z
  onSaleAt: 2020-01-01T10:00:00Z
  tiers:
    - { id: std, name: Standard, price: { amount: 2500, currency: EUR } }
  sections:
    - { id: north, tier: std, rows: 60, seatsPerRow: 100 }
    - { id: south, tier: std, rows: 60, seatsPerRow: 100 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compact_map_agrees_with_the_listing_and_revalidates() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event_manifest("map", "floor", 30))
        .await
        .unwrap();
    run.apply(ARENA).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();

    // Held: floor-1-3..5; sold: floor-1-10, floor-1-11.
    let held = ada
        .hold(
            "map",
            &["floor-1-3".into(), "floor-1-4".into(), "floor-1-5".into()],
        )
        .await
        .unwrap();
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let bought = ada
        .hold("map", &["floor-1-10".into(), "floor-1-11".into()])
        .await
        .unwrap();
    let order = ada
        .post(
            "/api/v1/orders",
            &json!({"hold_id": bought.body["id"], "payment": {"card_number": SUCCEEDS}}),
        )
        .await
        .unwrap();
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    let id = order.body["id"].as_str().unwrap();
    let settled = ada
        .settled_order(id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(settled["status"], "paid", "{settled}");

    let listed = ada.seat_statuses("map", "floor").await.unwrap();
    let compact = ada.seat_map_statuses("map", "floor").await.unwrap();
    assert_eq!(
        compact, listed,
        "the compact map says what the listing says"
    );
    let map = ada.get("/api/v1/events/map/seatmap").await.unwrap();
    assert_eq!(map.status, StatusCode::OK);
    let floor = &map.body["sections"][0];
    assert_eq!(floor["status"], "2a3h4a2s19a");
    assert_eq!(
        floor["counts"],
        json!({"available": 25, "held": 3, "sold": 2})
    );

    // A client that has the map gets 304 and no body until it changes.
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/events/map/seatmap", run.api.base());
    let first = http.get(&url).send().await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(first.headers()["cache-control"], "no-cache");
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    let again = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());
    let more = ada.hold("map", &["floor-1-30".into()]).await.unwrap();
    assert_eq!(more.status, StatusCode::CREATED, "{}", more.body);
    let changed = http
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()["etag"].to_str().unwrap(), etag);
    let listing = http
        .get(format!("{}/api/v1/events/map/seats", run.api.base()))
        .send()
        .await
        .unwrap();
    assert!(listing.headers().contains_key("etag"));

    // 12,000 seats: not listed one by one, but by section, and compactly.
    let refused = ada.get("/api/v1/events/arena/seats").await.unwrap();
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.code(), "seat_map_too_large");
    let north = ada.seat_statuses("arena", "north").await.unwrap();
    assert_eq!(north.len(), 6_000);
    let arena = ada.get("/api/v1/events/arena/seatmap").await.unwrap();
    assert_eq!(arena.status, StatusCode::OK);
    for section in arena.body["sections"].as_array().unwrap() {
        assert_eq!(section["status"], "6000a");
    }
}
