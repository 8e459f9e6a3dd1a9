//! Many HTTP clients racing for the same seats, released at once, and what every answer must
//! be: the check behind the one-process and the multi-process race tests.

use std::collections::HashMap;
use std::sync::Arc;

use rand::seq::SliceRandom;
use reqwest::StatusCode;
use tokio::sync::Barrier;

use crate::Api;

/// Which hold won each seat.
pub struct Raced {
    pub held_by: HashMap<String, String>,
    /// How many clients were refused.
    pub refused: usize,
}

/// Each client (its own connection) asks, at the same moment, for seats of `event_id`: the
/// first half for one seat each, round the list, the rest for two to four at random. Fails the
/// test unless every hold got exactly what it asked for, no seat went to two holds, every
/// refusal is 409 `seats_unavailable` naming taken seats it asked for, and every seat ended up
/// held.
pub async fn race_for_seats(clients: Vec<Api>, event_id: &str, seats: &[String]) -> Raced {
    let n = clients.len();
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for (i, client) in clients.into_iter().enumerate() {
        let wanted: Vec<String> = if i < n / 2 {
            vec![seats[i % seats.len()].clone()]
        } else {
            let mut all = seats.to_vec();
            all.shuffle(&mut rand::thread_rng());
            all.truncate(2 + i % 3);
            all
        };
        let (barrier, event_id) = (Arc::clone(&barrier), event_id.to_owned());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let answer = client.hold(&event_id, &wanted).await.unwrap();
            (wanted, answer)
        }));
    }
    let mut held_by: HashMap<String, String> = HashMap::new();
    let mut named_taken = Vec::new();
    for t in tasks {
        let (wanted, answer) = t.await.unwrap();
        match answer.status {
            StatusCode::CREATED => {
                let hold = answer.body["id"].as_str().unwrap().to_owned();
                let got: Vec<String> =
                    serde_json::from_value(answer.body["seat_ids"].clone()).unwrap();
                assert_eq!(got, wanted, "a hold is all or nothing");
                for s in got {
                    if let Some(other) = held_by.insert(s.clone(), hold.clone()) {
                        panic!("seat {s} held by both {other} and {hold}");
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
                named_taken.push(named);
            }
            other => panic!("unexpected answer {other}: {}", answer.body),
        }
    }
    assert_eq!(
        held_by.len(),
        seats.len(),
        "every seat ends up held, by exactly one hold"
    );
    for s in named_taken.iter().flatten() {
        assert!(
            held_by.contains_key(s),
            "{s} was named as taken, and is held"
        );
    }
    Raced {
        held_by,
        refused: named_taken.len(),
    }
}
