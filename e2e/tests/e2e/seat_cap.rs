//! The cap on one shopper's seats in live holds at an event (`maxSeatsPerUser`): holds racing
//! through two sections (two partitions of the holds topic, decided concurrently) never take a
//! shopper past it; released, bought and lapsed holds stop counting.

use std::sync::Arc;
use std::time::Duration;

use mercato_e2e::harness;
use reqwest::StatusCode;
use serde_json::json;
use tokio::sync::Barrier;

const CAP: u64 = 6;

fn manifest() -> String {
    format!(
        r#"apiVersion: mercato.dev/v1alpha1
kind: Event
metadata:
  name: capped
spec:
  title: A capped on-sale
  venue: {{ name: Test Hall, city: Testville, lat: 10.0, lon: 20.0 }}
  startsAt: 2099-01-01T20:00:00Z
  onSaleAt: 2020-01-01T10:00:00Z
  maxSeatsPerHold: 4
  maxSeatsPerUser: {CAP}
  tiers:
    - {{ id: std, name: Standard, price: {{ amount: 2500, currency: EUR }} }}
  sections:
    - {{ id: east, tier: std, rows: 1, seatsPerRow: 60 }}
    - {{ id: west, tier: std, rows: 1, seatsPerRow: 60 }}
"#
    )
}

/// Two seats side by side: east for even `n`, west for odd; the race takes `n` below 30.
fn pair(n: usize) -> Vec<String> {
    let section = if n.is_multiple_of(2) { "east" } else { "west" };
    let first = 2 * (n / 2) + 1;
    vec![
        format!("{section}-1-{first}"),
        format!("{section}-1-{}", first + 1),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_holds_of_one_shopper_stop_at_the_cap() {
    let run = harness::start(None, Some(Duration::from_secs(3)))
        .await
        .unwrap();
    run.apply(&manifest()).await.unwrap();
    let event = run.api.get("/api/v1/events/capped").await.unwrap();
    assert_eq!(event.body["max_seats_per_user"], CAP);
    let ada = run.api.shopper("ada@example.com").await.unwrap();

    // 30 holds of two seats each, all at once, alternating sections: exactly three fit.
    let barrier = Arc::new(Barrier::new(30));
    let tasks: Vec<_> = (0..30)
        .map(|n| {
            let (ada, barrier) = (ada.separate(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                ada.hold("capped", &pair(n)).await.unwrap()
            })
        })
        .collect();
    let mut placed = Vec::new();
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status {
            StatusCode::CREATED => placed.push(answer.body["id"].as_str().unwrap().to_owned()),
            StatusCode::CONFLICT => {
                assert_eq!(answer.code(), "seat_cap_reached", "{}", answer.body);
                let details = &answer.body["error"]["details"];
                assert_eq!(details["max_seats_per_user"], CAP);
                assert!(details["held"].as_u64().unwrap() + 2 > CAP, "{details}");
            }
            other => panic!("never {other}: {}", answer.body),
        }
    }
    assert_eq!(placed.len(), 3, "6 seats in holds of 2: {placed:?}");
    let held: usize =
        futures::future::join_all(["east", "west"].map(|s| run.api.seat_statuses("capped", s)))
            .await
            .into_iter()
            .map(|statuses| {
                statuses
                    .unwrap()
                    .iter()
                    .filter(|(_, s)| s == "held")
                    .count()
            })
            .sum();
    assert_eq!(held, CAP as usize, "the seat map agrees");

    // Another shopper is not touched by Ada's cap.
    let bob = run.api.shopper("bob@example.com").await.unwrap();
    let answer = bob.hold("capped", &pair(30)).await.unwrap();
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);

    // A released hold gives its seats back to the cap at once.
    let released = ada
        .delete(&format!("/api/v1/holds/{}", placed[0]))
        .await
        .unwrap();
    assert_eq!(released.status, StatusCode::NO_CONTENT);
    let again = ada.hold("capped", &pair(32)).await.unwrap();
    assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);

    // A bought hold is no longer a live hold.
    let order = ada
        .post_keyed(
            "/api/v1/orders",
            &json!({"hold_id": placed[1], "payment": {"card_number": "4242 4242 4242 4242"}}),
            "ada-order",
        )
        .await
        .unwrap();
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    let paid = ada
        .order_with_status(
            order.body["id"].as_str().unwrap(),
            "paid",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(paid["tickets"].as_array().unwrap().len(), 2);
    let after_sale = ada.hold("capped", &pair(34)).await.unwrap();
    assert_eq!(
        after_sale.status,
        StatusCode::CREATED,
        "{}",
        after_sale.body
    );
    let full = ada.hold("capped", &pair(36)).await.unwrap();
    assert_eq!(full.code(), "seat_cap_reached", "{}", full.body);

    // Holds that lapse stop counting by themselves (3 s holds).
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    let lapsed = ada
        .hold("capped", &[pair(38), pair(40)[..1].to_vec()].concat())
        .await
        .unwrap();
    assert_eq!(lapsed.status, StatusCode::CREATED, "{}", lapsed.body);
    run.platform.stop().await;
}
