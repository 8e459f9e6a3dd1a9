//! The waiting room: shoppers who join during the pre-queue are drawn in a random order at the
//! on-sale, later ones queue first come first served, joining twice keeps one place, nobody
//! holds seats without an admission, admissions never outnumber the seats left, the room
//! pauses while every seat is held and admits again when holds lapse.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use mercato_e2e::{harness, Api};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SEATS: u32 = 10;
const EARLY: usize = 40;
const LATE: usize = 5;
const HOLD: Duration = Duration::from_secs(3);

fn event(name: &str, on_sale_in: Duration) -> String {
    let on_sale = Utc::now() + chrono::Duration::from_std(on_sale_in).unwrap();
    format!(
        r#"apiVersion: mercato.dev/v1alpha1
kind: Event
metadata:
  name: {name}
spec:
  title: Queued gig
  venue: {{ name: Hall, city: Testville, lat: 10.0, lon: 20.0 }}
  startsAt: 2099-01-01T20:00:00Z
  onSaleAt: {}
  holdDuration: 3s
  maxSeatsPerUser: 1
  waitingRoom: {{ opensAt: 1h, admissionWindow: 60s, maxActive: 1000 }}
  tiers:
    - {{ id: std, name: Standard, price: {{ amount: 2500, currency: EUR }} }}
  sections:
    - {{ id: hall, tier: std, rows: 1, seatsPerRow: {SEATS} }}
"#,
        on_sale.to_rfc3339()
    )
}

pub(crate) async fn join(api: &Api, event: &str) -> Value {
    let a = api
        .post(&format!("/api/v1/events/{event}/queue"), &json!({}))
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

pub(crate) async fn place(api: &Api, event: &str, ticket: &str) -> Value {
    let a = api
        .get(&format!("/api/v1/events/{event}/queue/{ticket}"))
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

async fn hold(api: &Api, event: &str, seat: u32, admission: Option<&str>) -> mercato_e2e::Answer {
    let mut body = json!({"event_id": event, "seat_ids": [format!("hall-1-{seat}")]});
    if let Some(token) = admission {
        body["admission"] = json!(token);
    }
    api.post("/api/v1/holds", &body).await.unwrap()
}

/// The events of a place's stream, until it ends (an admission) or `within` passes.
pub(crate) async fn stream_events(
    api: &Api,
    token: &str,
    path: &str,
    within: Duration,
) -> Vec<(String, Value)> {
    let client = reqwest::Client::new();
    stream_until(&client, api, token, path, within, |_, _| false).await
}

/// The events of a place's stream through `client` (no overall timeout, unlike [`Api`]'s),
/// until it ends, `within` passes or an event satisfies `enough`.
pub(crate) async fn stream_until(
    client: &reqwest::Client,
    api: &Api,
    token: &str,
    path: &str,
    within: Duration,
    enough: impl Fn(&str, &Value) -> bool,
) -> Vec<(String, Value)> {
    let mut resp = client
        .get(format!("{}{path}", api.base()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let deadline = tokio::time::Instant::now() + within;
    let mut text = String::new();
    let mut events = Vec::new();
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, resp.chunk()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut name, mut data) = (String::new(), Value::Null);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = serde_json::from_str(v.trim()).unwrap();
                }
            }
            if !name.is_empty() {
                let done = enough(&name, &data);
                events.push((name, data));
                if done {
                    return events;
                }
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_room_draws_the_pre_queue_admits_against_the_seats_left_and_resumes_on_lapses() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event("queued", Duration::from_secs(5)))
        .await
        .unwrap();
    run.apply(&mercato_e2e::event_manifest("other", "hall", SEATS))
        .await
        .unwrap();
    let shoppers = run.api.shoppers("queued", EARLY + LATE).await.unwrap();

    // The pre-queue: everyone joins (at once), nobody has a position yet; joining again
    // keeps the ticket; no hold without an admission.
    let joins: Vec<_> = shoppers[..EARLY]
        .iter()
        .map(|s| {
            let s = s.separate();
            tokio::spawn(async move { join(&s, "queued").await })
        })
        .collect();
    let mut tickets = Vec::new();
    for j in joins {
        let place = j.await.unwrap();
        assert_eq!(place["state"], "pre_queue", "{place}");
        assert!(place["position"].is_null(), "{place}");
        tickets.push(place["ticket"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        tickets.iter().collect::<HashSet<_>>().len(),
        EARLY,
        "a ticket each"
    );
    assert_eq!(join(&shoppers[0], "queued").await["ticket"], tickets[0]);
    let refused = hold(&shoppers[0], "queued", 1, None).await;
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::FORBIDDEN, "admission_required"),
        "{}",
        refused.body
    );
    let other_ticket = shoppers[1]
        .get(&format!("/api/v1/events/queued/queue/{}", tickets[0]))
        .await
        .unwrap();
    assert_eq!(other_ticket.code(), "ticket_not_found");
    let no_room = shoppers[0]
        .post("/api/v1/events/other/queue", &json!({}))
        .await
        .unwrap();
    assert_eq!(no_room.code(), "no_waiting_room");

    // The on-sale: the admitter lets in as many as there are seats, the rest wait in a random
    // order unrelated to when they joined; later joiners queue behind, in order.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut admitted = Vec::new();
    let mut positions = Vec::new();
    for (i, s) in shoppers[..EARLY].iter().enumerate() {
        let p = place(s, "queued", &tickets[i]).await;
        match p["state"].as_str().unwrap() {
            "admitted" => {
                let at = chrono::DateTime::parse_from_rfc3339(p["admitted_at"].as_str().unwrap());
                let until = chrono::DateTime::parse_from_rfc3339(
                    p["admission_expires_at"].as_str().unwrap(),
                );
                let (at, until) = (at.unwrap(), until.unwrap());
                assert!(at <= Utc::now() && until > at, "{p}");
                admitted.push((i, p["admission"].as_str().unwrap().to_owned()))
            }
            _ => {
                assert!(p["eta_seconds"].as_u64().is_some(), "a wait estimate: {p}");
                positions.push((p["position"].as_u64().unwrap(), i));
            }
        }
    }
    assert_eq!(
        admitted.len(),
        SEATS as usize,
        "one admission per seat left"
    );
    let mut ranks: Vec<u64> = positions.iter().map(|(p, _)| *p).collect();
    ranks.sort_unstable();
    assert_eq!(
        ranks,
        (1..=(EARLY - SEATS as usize) as u64).collect::<Vec<_>>(),
        "distinct places, none skipped"
    );
    positions.sort_unstable();
    let order: Vec<usize> = positions.iter().map(|(_, i)| *i).collect();
    let arrival: Vec<usize> = {
        let mut a = order.clone();
        a.sort_unstable();
        a
    };
    assert_ne!(order, arrival, "the draw is not the order of arrival");
    let mut late_positions = Vec::new();
    for s in &shoppers[EARLY..] {
        let p = join(s, "queued").await;
        late_positions.push(p["position"].as_u64().unwrap());
    }
    let behind = (EARLY - SEATS as usize) as u64;
    assert_eq!(
        late_positions,
        (behind + 1..=behind + LATE as u64).collect::<Vec<_>>(),
        "later joiners queue behind the draw, first come first served"
    );

    // Admissions are checked: another user's, another event's, a forged one.
    let (first, token) = admitted[0].clone();
    let not_mine = hold(&shoppers[(first + 1) % EARLY], "queued", 1, Some(&token)).await;
    assert_eq!(not_mine.code(), "admission_other_user", "{}", not_mine.body);
    let forged = hold(
        &shoppers[first],
        "queued",
        1,
        Some("eyJhbGciOiJIUzI1NiJ9.e30.x"),
    )
    .await;
    assert_eq!(forged.code(), "admission_invalid", "{}", forged.body);
    // Every admitted shopper holds a seat: the room is then paused (all held), and nobody
    // else is admitted while it is.
    for (n, (i, token)) in admitted.iter().enumerate() {
        let a = hold(&shoppers[*i], "queued", n as u32 + 1, Some(token)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (head, head_shopper) = positions[0];
    assert_eq!(head, 1);
    // The head of the queue watches its place: it hears the pause, then its admission, and
    // the stream ends there.
    let watcher = {
        let api = shoppers[head_shopper].clone();
        let token = api.token.clone().unwrap();
        let path = format!(
            "/api/v1/events/queued/queue/{}/stream",
            tickets[head_shopper]
        );
        tokio::spawn(
            async move { stream_events(&api, &token, &path, Duration::from_secs(20)).await },
        )
    };
    let waiting = place(
        &shoppers[positions[0].1],
        "queued",
        &tickets[positions[0].1],
    )
    .await;
    assert_eq!(waiting["state"], "paused", "{waiting}");
    // The holds lapse: the seats are back, and the next ten are let in.
    tokio::time::sleep(HOLD + Duration::from_secs(2)).await;
    let mut again = 0;
    for (_, i) in &positions {
        let p = place(&shoppers[*i], "queued", &tickets[*i]).await;
        if p["state"] == "admitted" {
            again += 1;
        }
    }
    assert_eq!(
        again, SEATS as usize,
        "admitting again once the holds lapsed"
    );
    let heard = watcher.await.unwrap();
    let names: Vec<&str> = heard.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"place"), "{heard:?}");
    assert_eq!(
        names.last(),
        Some(&"admitted"),
        "the stream ends with the admission: {heard:?}"
    );
    assert!(
        heard.iter().any(|(_, p)| p["state"] == "paused"),
        "the pause was heard: {heard:?}"
    );
    let admission = &heard.last().unwrap().1["admission"];
    let now = place(&shoppers[head_shopper], "queued", &tickets[head_shopper]).await;
    assert_eq!(&now["admission"], admission);
    run.platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_place_nobody_looks_at_is_skipped_and_can_be_taken_again() {
    let run = harness::start(None, None).await.unwrap();
    let manifest = event("deserted", Duration::from_secs(12))
        .replace("maxActive: 1000 }", "maxActive: 1000, abandonAfter: 10s }")
        .replace(&format!("seatsPerRow: {SEATS}"), "seatsPerRow: 3");
    assert!(manifest.contains("abandonAfter: 10s"));
    run.apply(&manifest).await.unwrap();
    let shoppers = run.api.shoppers("deserted", 3).await.unwrap();
    let mut tickets = Vec::new();
    for s in &shoppers {
        tickets.push(
            join(s, "deserted").await["ticket"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    // Two keep looking at their places until the on-sale is past; the first never does.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(14);
    while tokio::time::Instant::now() < deadline {
        for i in 1..3 {
            place(&shoppers[i], "deserted", &tickets[i]).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for i in 1..3 {
        let p = place(&shoppers[i], "deserted", &tickets[i]).await;
        assert_eq!(p["state"], "admitted", "{p}");
    }
    let gone = shoppers[0]
        .get(&format!("/api/v1/events/deserted/queue/{}", tickets[0]))
        .await
        .unwrap();
    assert_eq!(
        (gone.status, gone.code()),
        (StatusCode::NOT_FOUND, "ticket_not_found"),
        "the abandoned place was skipped: {}",
        gone.body
    );
    // Joining again takes a new place at the back, and the seat left is there for it.
    let back = join(&shoppers[0], "deserted").await;
    assert_eq!(back["position"], 1, "{back}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let p = place(&shoppers[0], "deserted", &tickets[0]).await;
    assert_eq!(p["state"], "admitted", "{p}");
    run.platform.stop().await;
}

/// A shopper who only streams their place keeps it, however long they wait: the stream's own
/// looks keep it from being taken as abandoned (abandonAfter 10 s here, a 15 s wait).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_streamed_place_is_kept_through_a_long_wait() {
    let run = harness::start(None, None).await.unwrap();
    let manifest = event("patient", Duration::from_secs(3))
        .replace("maxActive: 1000 }", "maxActive: 1000, abandonAfter: 10s }")
        .replace(&format!("seatsPerRow: {SEATS}"), "seatsPerRow: 1");
    run.apply(&manifest).await.unwrap();
    let mut streams = Vec::new();
    for name in ["first", "second"] {
        let token = run.platform.session_for(name).unwrap();
        let shopper = run.api.with_token(&token);
        let ticket = join(&shopper, "patient").await["ticket"]
            .as_str()
            .unwrap()
            .to_owned();
        let path = format!("/api/v1/events/patient/queue/{ticket}/stream");
        let listener = shopper.clone();
        streams.push((
            shopper,
            tokio::spawn(async move {
                stream_events(&listener, &token, &path, Duration::from_secs(45)).await
            }),
        ));
    }
    // One seat: the head of the draw is admitted at the on-sale, the other waits.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let mut heard = Vec::new();
    let mut waiting = None;
    for (shopper, stream) in streams {
        if stream.is_finished() {
            heard.push((shopper, stream.await.unwrap()));
        } else {
            waiting = Some(stream);
        }
    }
    assert_eq!(heard.len(), 1, "one admitted, one waiting");
    let (first, events) = heard.pop().unwrap();
    let admission = events.last().unwrap().1["admission"]
        .as_str()
        .unwrap()
        .to_owned();
    // Longer than abandonAfter, with nothing but the stream looking at the second place.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let held = hold(&first, "patient", 1, Some(&admission)).await;
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    // The 3 s hold lapses; the seat comes back and the second shopper is let in.
    let events = waiting.unwrap().await.unwrap();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"admitted"), "{events:?}");
    assert!(!names.contains(&"error"), "{events:?}");
    run.platform.stop().await;
}
