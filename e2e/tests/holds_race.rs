//! 500 concurrent HTTP clients race for the same 50 seats.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use mercato_e2e::{event_manifest, harness, Api};
use rand::seq::SliceRandom;
use reqwest::StatusCode;
use tokio::sync::Barrier;

const CLIENTS: usize = 500;
const SEATS: u32 = 50;
const USERS: usize = 50;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_clients_fifty_seats_exactly_fifty_held() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event_manifest("race", "floor", SEATS))
        .await
        .unwrap();
    let seat = |n: u32| format!("floor-1-{n}");

    let mut shoppers = Vec::new();
    for u in 0..USERS {
        shoppers.push(
            run.api
                .shopper(&format!("racer{u}@example.com"))
                .await
                .unwrap(),
        );
    }
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        // Each client has its own connection; half want one seat, half want two to four.
        let client: Api = shoppers[i % USERS].separate();
        let wanted: Vec<String> = if i < CLIENTS / 2 {
            vec![seat(i as u32 % SEATS + 1)]
        } else {
            let mut all: Vec<u32> = (1..=SEATS).collect();
            all.shuffle(&mut rand::thread_rng());
            all.into_iter().take(2 + i % 3).map(seat).collect()
        };
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let answer = client.hold("race", &wanted).await.unwrap();
            (wanted, answer)
        }));
    }
    let mut held_by: HashMap<String, String> = HashMap::new();
    let mut refusals = Vec::new();
    for t in tasks {
        let (wanted, answer) = t.await.unwrap();
        match answer.status {
            StatusCode::CREATED => {
                let hold_id = answer.body["id"].as_str().unwrap().to_owned();
                let got: Vec<String> =
                    serde_json::from_value(answer.body["seat_ids"].clone()).unwrap();
                assert_eq!(got, wanted, "a hold is all or nothing");
                for s in got {
                    if let Some(other) = held_by.insert(s.clone(), hold_id.clone()) {
                        panic!("seat {s} held by both {other} and {hold_id}");
                    }
                }
            }
            StatusCode::CONFLICT => {
                assert_eq!(answer.code(), "seats_unavailable", "{}", answer.body);
                let named: Vec<String> =
                    serde_json::from_value(answer.body["error"]["details"]["unavailable"].clone())
                        .unwrap();
                assert!(!named.is_empty(), "a refusal names the taken seats");
                for s in &named {
                    assert!(wanted.contains(s), "{s} was not asked for");
                }
                refusals.push(named);
            }
            other => panic!("unexpected answer {other}: {}", answer.body),
        }
    }
    assert_eq!(
        held_by.len(),
        SEATS as usize,
        "every seat ends up held, by exactly one hold"
    );
    for named in refusals {
        for s in named {
            assert!(
                held_by.contains_key(&s),
                "{s} was named as taken, and is held"
            );
        }
    }
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
