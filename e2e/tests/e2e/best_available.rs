//! Best available under a race: 500 clients each ask for the 2 best seats together in a
//! 200-seat section, at the same moment.

use std::collections::HashSet;
use std::sync::Arc;

use mercato_e2e::harness;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Barrier;

const CLIENTS: usize = 500;
const USERS: usize = 50;

/// One section of 10 rows of 20 seats, and a front row of 4 for the rule.
const HALL: &str = r#"apiVersion: mercato.dev/v1alpha1
kind: Event
metadata:
  name: best
spec:
  title: Best available
  venue: { name: Hall, city: Testville, lat: 10.0, lon: 20.0 }
  startsAt: 2099-01-01T20:00:00Z
  onSaleAt: 2020-01-01T10:00:00Z
  maxSeatsPerUser: 10000
  tiers:
    - { id: std, name: Standard, price: { amount: 2500, currency: EUR } }
    - { id: vip, name: VIP, price: { amount: 9000, currency: EUR } }
  sections:
    - { id: box, tier: vip, rows: 2, seatsPerRow: 4 }
    - { id: floor, tier: std, rows: 10, seatsPerRow: 20 }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_clients_two_together_at_most_a_hundred_pairs_each_adjacent() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(HALL).await.unwrap();
    let shoppers = run.api.shoppers("best", USERS).await.unwrap();

    // The rule, where nobody races: the box's front row first, whole.
    let vip = shoppers[0]
        .post(
            "/api/v1/holds",
            &json!({"event_id": "best", "quantity": 4, "tier": "vip"}),
        )
        .await
        .unwrap();
    assert_eq!(vip.status, StatusCode::CREATED, "{}", vip.body);
    let front: Vec<String> = serde_json::from_value(vip.body["seat_ids"].clone()).unwrap();
    assert!(
        front == ["box-1-1", "box-1-2", "box-1-3", "box-1-4"]
            || front == ["box-2-1", "box-2-2", "box-2-3", "box-2-4"],
        "{front:?}"
    );
    // Bad asks get their codes.
    for (body, status, code) in [
        (
            json!({"event_id": "best", "quantity": 0}),
            StatusCode::BAD_REQUEST,
            "empty_seat_list",
        ),
        (
            json!({"event_id": "best", "quantity": 11}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_seats",
        ),
        (
            json!({"event_id": "best", "quantity": 2, "section": "roof"}),
            StatusCode::NOT_FOUND,
            "section_not_found",
        ),
        (
            json!({"event_id": "best", "quantity": 2, "tier": "gold"}),
            StatusCode::NOT_FOUND,
            "tier_not_found",
        ),
        (
            json!({"event_id": "best", "quantity": 2, "seat_ids": ["floor-1-1"]}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"event_id": "best", "seat_ids": ["floor-1-1"], "together": true}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"event_id": "best", "quantity": 5, "section": "box"}),
            StatusCode::CONFLICT,
            "not_enough_seats",
        ),
    ] {
        let a = shoppers[1].post("/api/v1/holds", &body).await.unwrap();
        assert_eq!((a.status, a.code()), (status, code), "{body}: {}", a.body);
    }

    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut tasks = Vec::with_capacity(CLIENTS);
    for i in 0..CLIENTS {
        let client = shoppers[i % USERS].separate();
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            client
                .post(
                    "/api/v1/holds",
                    &json!({"event_id": "best", "quantity": 2, "section": "floor", "together": true}),
                )
                .await
                .unwrap()
        }));
    }
    let mut held = HashSet::new();
    let (mut won, mut refused) = (0, 0);
    for t in tasks {
        let a = t.await.unwrap();
        match a.status {
            StatusCode::CREATED => {
                won += 1;
                let seats: Vec<String> =
                    serde_json::from_value(a.body["seat_ids"].clone()).unwrap();
                assert_eq!(seats.len(), 2, "{}", a.body);
                let parsed: Vec<(u32, u32)> = seats
                    .iter()
                    .map(|s| {
                        let mut p = s.strip_prefix("floor-").unwrap().split('-');
                        (
                            p.next().unwrap().parse().unwrap(),
                            p.next().unwrap().parse().unwrap(),
                        )
                    })
                    .collect();
                assert_eq!(parsed[0].0, parsed[1].0, "one row: {seats:?}");
                assert_eq!(parsed[0].1 + 1, parsed[1].1, "adjacent: {seats:?}");
                for s in seats {
                    assert!(held.insert(s.clone()), "{s} held twice");
                }
            }
            StatusCode::CONFLICT => {
                refused += 1;
                assert!(
                    ["not_enough_seats", "seats_unavailable"].contains(&a.code()),
                    "{}",
                    a.body
                );
            }
            other => panic!("unexpected {other}: {}", a.body),
        }
    }
    println!("best available: {won} pairs held, {refused} refused");
    assert!(won > 0 && won <= 100, "{won} pairs");
    assert_eq!(won + refused, CLIENTS);
    let map = run.api.seat_map_statuses("best", "floor").await.unwrap();
    let on_map: HashSet<String> = map
        .into_iter()
        .filter(|(_, s)| s == "held")
        .map(|(id, _)| id)
        .collect();
    assert_eq!(
        on_map, held,
        "the seat map shows exactly the pairs answered"
    );
    run.platform.stop().await;
}
