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
  waitingRoom: {{ opensAt: 1h, admissionWindow: 60s, maxActive: 1000 }}
  tiers:
    - {{ id: std, name: Standard, price: {{ amount: 2500, currency: EUR }} }}
  sections:
    - {{ id: hall, tier: std, rows: 1, seatsPerRow: {SEATS} }}
"#,
        on_sale.to_rfc3339()
    )
}

async fn join(api: &Api, event: &str) -> Value {
    let a = api
        .post(&format!("/api/v1/events/{event}/queue"), &json!({}))
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

async fn place(api: &Api, event: &str, ticket: &str) -> Value {
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
            "admitted" => admitted.push((i, p["admission"].as_str().unwrap().to_owned())),
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
    let (head, _) = positions[0];
    assert_eq!(head, 1);
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
    run.platform.stop().await;
}
