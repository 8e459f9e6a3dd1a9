//! Issue 19's on-sale at full size: 20,000 shoppers queue for 2,000 seats, and each one let in
//! holds two seats and buys them. Nobody holds without an admission, the room lets in no more
//! shoppers than the seats left can serve (so no admitted shopper finds the seats gone), it
//! pauses while every seat is held or sold, admits again when a batch of holds is left to
//! lapse, and says `sold_out` when the last seat is sold.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use mercato_e2e::{harness, Api};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::waiting_room::{join, place, stream_until};

const CROWD: usize = 20_000;
const SEATS: usize = 2_000;
const PAIR: usize = 2;
/// HTTP requests in flight while the crowd joins and looks.
const AT_ONCE: usize = 256;
/// Shoppers following their places at once, from the head of the queue back.
const FOLLOWING: usize = 1_200;
/// Of the first shoppers to be let in, one in ten holds and never pays: those holds lapse.
const FIRST_WAVE: usize = SEATS / PAIR;
const LAPSE_EVERY: usize = 10;
const SUCCEEDS: &str = "4242 4242 4242 4242";

fn event(on_sale: chrono::DateTime<Utc>) -> String {
    format!(
        r#"apiVersion: mercato.dev/v1alpha1
kind: Event
metadata:
  name: final
spec:
  title: The final
  venue: {{ name: Stadium, city: Testville, lat: 10.0, lon: 20.0 }}
  startsAt: 2099-01-01T20:00:00Z
  onSaleAt: {}
  holdDuration: 20s
  maxSeatsPerUser: 4
  waitingRoom: {{ opensAt: 2h, admissionWindow: 60s, maxActive: 5000, abandonAfter: 10m }}
  tiers:
    - {{ id: std, name: Standard, price: {{ amount: 2500, currency: EUR }} }}
  sections:
    - {{ id: bowl, tier: std, rows: {}, seatsPerRow: 100 }}
"#,
        on_sale.to_rfc3339(),
        SEATS / 100,
    )
}

/// What became of one admitted shopper.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admitted {
    Bought,
    /// Held and walked away: the hold lapses.
    Lapsed,
    /// Let in, and the seats were gone.
    SeatsGone,
}

/// Holds a pair with the admission, and buys it unless told to walk away. A hold that lost
/// its races ("try again") is tried again, as a shopper would; one that finds too few seats
/// left is final.
async fn take_pair(api: &Api, admission: &str, walk_away: bool) -> Admitted {
    let mut tries = 0;
    let hold = loop {
        let hold = api
            .post(
                "/api/v1/holds",
                &json!({"event_id": "final", "quantity": PAIR, "together": false, "admission": admission}),
            )
            .await
            .unwrap();
        tries += 1;
        match (hold.status, hold.code()) {
            (StatusCode::CONFLICT, "not_enough_seats") => return Admitted::SeatsGone,
            (StatusCode::CONFLICT, "seats_unavailable") if tries < 5 => continue,
            _ => break hold,
        }
    };
    assert_eq!(hold.status, StatusCode::CREATED, "{}", hold.body);
    assert_eq!(hold.body["seat_ids"].as_array().unwrap().len(), PAIR);
    if walk_away {
        return Admitted::Lapsed;
    }
    let hold_id = hold.body["id"].as_str().unwrap();
    let order = api
        .post_keyed(
            "/api/v1/orders",
            &json!({"hold_id": hold_id, "payment": {"card_number": SUCCEEDS}}),
            &format!("buy-{hold_id}"),
        )
        .await
        .unwrap();
    assert_eq!(order.status, StatusCode::ACCEPTED, "{}", order.body);
    let id = order.body["id"].as_str().unwrap();
    let settled = api
        .settled_order(id, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(settled["status"], "paid", "{settled}");
    Admitted::Bought
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_thousand_queue_for_two_thousand_seats_and_nobody_is_let_in_for_nothing() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event(Utc::now() + chrono::Duration::hours(1)))
        .await
        .unwrap();
    let shoppers: Vec<Api> = (0..CROWD)
        .map(|i| {
            let token = run.platform.session_for(&format!("fan{i}")).unwrap();
            run.api.with_token(&token)
        })
        .collect();
    let started = Instant::now();
    let tickets: Vec<String> = stream::iter(0..CROWD)
        .map(|i| {
            let api = shoppers[i].clone();
            async move {
                join(&api, "final").await["ticket"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }
        })
        .buffered(AT_ONCE)
        .collect()
        .await;
    let joining = started.elapsed();

    // The on-sale, brought forward to now.
    run.apply(&event(Utc::now() - chrono::Duration::seconds(1)))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while place(&shoppers[0], "final", &tickets[0]).await["state"] == "pre_queue" {
        assert!(Instant::now() < deadline, "the room never opened");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Everyone's place once: the order the room will admit in.
    let places: Vec<Value> = stream::iter(0..CROWD)
        .map(|i| {
            let api = shoppers[i].clone();
            let ticket = tickets[i].clone();
            async move { place(&api, "final", &ticket).await }
        })
        .buffered(AT_ONCE)
        .collect()
        .await;
    let mut order: Vec<(u64, usize)> = places
        .iter()
        .enumerate()
        .map(|(i, p)| (p["position"].as_u64().unwrap_or(0), i))
        .collect();
    order.sort_unstable();
    let first_round = places.iter().filter(|p| p["state"] == "admitted").count();
    assert!(
        first_round > 0 && first_round <= SEATS / PAIR,
        "the first round lets in no more than the seats can serve at the most one shopper may hold: {first_round}"
    );

    // No hold without a valid admission: none, another shopper's, forged.
    let (_, last) = *order.last().unwrap();
    let (_, head) = order[0];
    let bare = shoppers[last]
        .post(
            "/api/v1/holds",
            &json!({"event_id": "final", "quantity": PAIR}),
        )
        .await
        .unwrap();
    assert_eq!(bare.code(), "admission_required", "{}", bare.body);
    let head_admission = places[head]["admission"].as_str().unwrap();
    let borrowed = shoppers[last]
        .post(
            "/api/v1/holds",
            &json!({"event_id": "final", "quantity": PAIR, "admission": head_admission}),
        )
        .await
        .unwrap();
    assert_eq!(borrowed.code(), "admission_other_user", "{}", borrowed.body);

    // The last in the queue watches the room's state throughout.
    let sold_out = Arc::new(AtomicBool::new(false));
    let states = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
    let watcher = {
        let (api, ticket) = (shoppers[last].clone(), tickets[last].clone());
        let (sold_out, states) = (sold_out.clone(), states.clone());
        tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            // Until it hears the end itself: the followers may hear it a moment before.
            while Instant::now() < deadline {
                let state = place(&api, "final", &ticket).await["state"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                {
                    let mut seen = states.lock().unwrap();
                    if seen.last().map(|(_, s)| s) != Some(&state) {
                        seen.push((Instant::now(), state.clone()));
                    }
                }
                if state == "sold_out" {
                    sold_out.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };

    // From the head of the queue back, each shopper follows their place until let in (then
    // takes a pair) or until the room is sold out.
    let acted = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::new();
    let sale_started = Instant::now();
    let outcomes: Vec<(Instant, Admitted)> = stream::iter(order.iter().map(|(_, i)| *i))
        .filter(|i| std::future::ready(*i != last))
        .map(|i| {
            let api = shoppers[i].clone();
            let ticket = tickets[i].clone();
            let known = places[i]["admission"].as_str().map(str::to_owned);
            let (client, sold_out, acted) = (client.clone(), sold_out.clone(), acted.clone());
            async move {
                if sold_out.load(Ordering::SeqCst) {
                    return None;
                }
                let admission = match known {
                    Some(a) => a,
                    None => {
                        let token = api.token.clone().unwrap();
                        let path = format!("/api/v1/events/final/queue/{ticket}/stream");
                        let heard = stream_until(
                            &client,
                            &api,
                            &token,
                            &path,
                            Duration::from_secs(120),
                            |name, data| name == "admitted" || data["state"] == "sold_out",
                        )
                        .await;
                        let (name, data) = heard.last().expect("the stream said something");
                        if name != "admitted" {
                            assert_eq!(data["state"], "sold_out", "{heard:?}");
                            sold_out.store(true, Ordering::SeqCst);
                            return None;
                        }
                        data["admission"].as_str().unwrap().to_owned()
                    }
                };
                let n = acted.fetch_add(1, Ordering::SeqCst);
                let walk_away = n < FIRST_WAVE && n % LAPSE_EVERY == 0;
                let at = Instant::now();
                Some((at, take_pair(&api, &admission, walk_away).await))
            }
        })
        .buffer_unordered(FOLLOWING)
        .filter_map(std::future::ready)
        .collect()
        .await;
    let sale = sale_started.elapsed();
    watcher.await.unwrap();

    let count = |what| outcomes.iter().filter(|(_, o)| *o == what).count();
    let (bought, lapsed, gone) = (
        count(Admitted::Bought),
        count(Admitted::Lapsed),
        count(Admitted::SeatsGone),
    );
    let states = states.lock().unwrap().clone();
    let names: Vec<&str> = states.iter().map(|(_, s)| s.as_str()).collect();
    println!(
        "{CROWD} joined in {joining:?}; first round {first_round} let in; {} let in over {sale:?}: \
         {bought} bought, {lapsed} walked away, {gone} found the seats gone; room states {names:?}",
        outcomes.len()
    );
    assert_eq!(gone, 0, "every shopper let in found seats");
    assert_eq!(lapsed, FIRST_WAVE / LAPSE_EVERY);
    assert_eq!(bought * PAIR, SEATS, "every seat sold, each once");
    let event = run.api.get("/api/v1/events/final").await.unwrap();
    let availability = &event.body["availability"];
    assert_eq!(availability["sold"], SEATS, "{availability}");
    assert_eq!(availability["held"], 0, "{availability}");
    assert_eq!(availability["available"], 0, "{availability}");

    // The room paused while every seat was held or sold, admitted again once the walked-away
    // holds lapsed (those let in then bought what came back), and ended sold out.
    let paused = states
        .iter()
        .position(|(_, s)| s == "paused")
        .unwrap_or_else(|| panic!("the room never paused: {names:?}"));
    let resumed = states[paused..]
        .iter()
        .position(|(_, s)| s == "admitting")
        .map(|k| states[paused + k].0)
        .unwrap_or_else(|| panic!("the room never admitted again: {names:?}"));
    assert_eq!(names.last(), Some(&"sold_out"), "{names:?}");
    let after = outcomes.iter().filter(|(at, _)| *at >= resumed).count();
    assert!(
        after >= lapsed / 2,
        "the lapsed holds' seats went to the next in the queue: {after} let in after resuming"
    );
    run.platform.stop().await;
}
