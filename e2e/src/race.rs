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

/// What a race for a general-admission floor ended with.
#[derive(Debug, Default)]
pub struct PlacesRaced {
    /// Which hold took each place.
    pub held_by: HashMap<String, String>,
    /// Each hold answered, with its places.
    pub holds: Vec<(String, Vec<String>)>,
    /// The quantities refused with 409 `not_enough_places`.
    pub refused: Vec<u32>,
    /// Requests that got no answer (the platform died under them).
    pub unanswered: usize,
}

/// Each client asks, at the same moment, for 1 to 4 places (round the clients) of the
/// general-admission `section` of `event_id`; `answered` counts the answers as they come.
/// Fails the test unless every hold got exactly its quantity of the section's places, no
/// place went to two holds, at most `capacity` places were taken, and every refusal is 409
/// `not_enough_places`. A request with no answer at all (a killed platform) is counted, not
/// failed.
pub async fn race_for_places(
    clients: Vec<Api>,
    event_id: &str,
    section: &str,
    capacity: usize,
    answered: Arc<std::sync::atomic::AtomicUsize>,
) -> PlacesRaced {
    let n = clients.len();
    let barrier = Arc::new(Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for (i, client) in clients.into_iter().enumerate() {
        let quantity = 1 + (i % 4) as u32;
        let body =
            serde_json::json!({"event_id": event_id, "quantity": quantity, "section": section});
        let (barrier, answered) = (Arc::clone(&barrier), Arc::clone(&answered));
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let answer = client.post("/api/v1/holds", &body).await;
            answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            (quantity, answer)
        }));
    }
    let mut raced = PlacesRaced::default();
    let prefix = format!("{section}-1-");
    for t in tasks {
        let (quantity, answer) = t.await.unwrap();
        let Ok(answer) = answer else {
            raced.unanswered += 1;
            continue;
        };
        match answer.status {
            StatusCode::CREATED => {
                let hold = answer.body["id"].as_str().unwrap().to_owned();
                let got: Vec<String> =
                    serde_json::from_value(answer.body["seat_ids"].clone()).unwrap();
                assert_eq!(got.len(), quantity as usize, "{}", answer.body);
                for place in &got {
                    let n: usize = place
                        .strip_prefix(&prefix)
                        .and_then(|n| n.parse().ok())
                        .unwrap_or_else(|| panic!("{place} is not a place of {section}"));
                    assert!((1..=capacity).contains(&n), "{place} is beyond the floor");
                    if let Some(other) = raced.held_by.insert(place.clone(), hold.clone()) {
                        panic!("place {place} held by both {other} and {hold}");
                    }
                }
                raced.holds.push((hold, got));
            }
            StatusCode::CONFLICT => {
                assert_eq!(answer.code(), "not_enough_places", "{}", answer.body);
                raced.refused.push(quantity);
            }
            other => panic!("unexpected answer {other}: {}", answer.body),
        }
    }
    assert!(
        raced.held_by.len() <= capacity,
        "more places held than the floor has"
    );
    raced
}
