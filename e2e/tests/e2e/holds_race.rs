//! 500 concurrent HTTP clients race for the same 50 seats.

use std::collections::HashSet;

use mercato_e2e::race::race_for_seats;
use mercato_e2e::{event_manifest, harness};

const CLIENTS: usize = 500;
const SEATS: u32 = 50;
const USERS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_clients_fifty_seats_exactly_fifty_held() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event_manifest("race", "floor", SEATS))
        .await
        .unwrap();
    let seats: Vec<String> = (1..=SEATS).map(|n| format!("floor-1-{n}")).collect();
    let shoppers = run.api.shoppers("racer", USERS).await.unwrap();
    // Each client has its own connection.
    let clients = (0..CLIENTS)
        .map(|i| shoppers[i % USERS].separate())
        .collect();
    race_for_seats(clients, "race", &seats).await;

    let statuses = run.api.seat_statuses("race", "floor").await.unwrap();
    let held: HashSet<_> = statuses
        .iter()
        .filter(|(_, s)| s == "held")
        .map(|(id, _)| id.clone())
        .collect();
    assert_eq!(
        held.len(),
        SEATS as usize,
        "the seat map agrees: {statuses:?}"
    );
    let event = run.api.get("/api/v1/events/race").await.unwrap();
    assert_eq!(event.body["availability"]["held"], SEATS);
    assert_eq!(event.body["availability"]["available"], 0);
    run.platform.stop().await;
}
