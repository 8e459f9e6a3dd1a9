//! 10,000 shoppers join one waiting room during its pre-queue, 256 HTTP requests at a time:
//! each gets a place of its own, the draw at the on-sale is a permutation unrelated to the
//! order they arrived in, joining again keeps a place, and those who join after the on-sale
//! queue behind everyone, first come, first served.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures::stream::{self, StreamExt};
use mercato_e2e::{harness, Api};
use serde_json::Value;

const CROWD: usize = 10_000;
const AT_ONCE: usize = 256;
const SEATS: usize = 10;
const LATE: usize = 50;

fn event(on_sale: chrono::DateTime<Utc>, seats: usize) -> String {
    format!(
        r#"apiVersion: mercato.dev/v1alpha1
kind: Event
metadata:
  name: crowd
spec:
  title: The crowd
  venue: {{ name: Hall, city: Testville, lat: 10.0, lon: 20.0 }}
  startsAt: 2099-01-01T20:00:00Z
  onSaleAt: {}
  maxSeatsPerUser: 1
  waitingRoom: {{ opensAt: 2h, admissionWindow: 10m, maxActive: 1000 }}
  tiers:
    - {{ id: std, name: Standard, price: {{ amount: 2500, currency: EUR }} }}
  sections:
    - {{ id: hall, tier: std, rows: {}, seatsPerRow: {} }}
"#,
        on_sale.to_rfc3339(),
        seats.div_ceil(100),
        seats.min(100),
    )
}

async fn join(api: &Api) -> Value {
    super::waiting_room::join(api, "crowd").await
}

async fn look(api: &Api, ticket: &str) -> Value {
    super::waiting_room::place(api, "crowd", ticket).await
}

/// Spearman's rank correlation of two permutations of 0..n.
fn rank_correlation(a: &[usize], b: &[usize]) -> f64 {
    let n = a.len() as f64;
    let d2: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
        .sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ten_thousand_joiners_each_get_a_place_in_a_fair_draw() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event(Utc::now() + chrono::Duration::hours(1), SEATS))
        .await
        .unwrap();
    // One pool of connections for the crowd; each shopper its own session.
    let shoppers: Vec<Api> = (0..CROWD + LATE)
        .map(|i| {
            let token = run.platform.session_for(&format!("fan{i}")).unwrap();
            run.api.with_token(&token)
        })
        .collect();

    // The pre-queue: everyone at once. Arrival is the order the joins were answered in.
    let started = Instant::now();
    let mut answered: Vec<(usize, String)> = stream::iter(0..CROWD)
        .map(|i| {
            let api = shoppers[i].clone();
            async move {
                let place = join(&api).await;
                assert_eq!(place["state"], "pre_queue", "{place}");
                assert!(place["position"].is_null(), "no position before the draw");
                (i, place["ticket"].as_str().unwrap().to_owned())
            }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let joining = started.elapsed();
    let arrival: HashMap<usize, usize> = answered
        .iter()
        .enumerate()
        .map(|(k, (i, _))| (*i, k))
        .collect();
    let tickets: HashSet<&String> = answered.iter().map(|(_, t)| t).collect();
    assert_eq!(tickets.len(), CROWD, "a ticket each");
    // Joining again keeps the place: a tenth of the crowd tries.
    for (i, ticket) in answered.iter().step_by(10) {
        assert_eq!(join(&shoppers[*i]).await["ticket"], ticket.as_str());
    }

    // The on-sale, brought forward to now: the draw, and one admission per seat.
    run.apply(&event(Utc::now() - chrono::Duration::seconds(1), SEATS))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (i, ticket) = &answered[0];
        let place = look(&shoppers[*i], ticket).await;
        if place["state"] != "pre_queue" {
            break;
        }
        assert!(Instant::now() < deadline, "the room never opened: {place}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The admitter lets in one shopper per seat within a few ticks, then waits on them.
    tokio::time::sleep(Duration::from_secs(2)).await;
    answered.sort_unstable();
    let places: Vec<(usize, Value)> = stream::iter(answered.iter().cloned())
        .map(|(i, ticket)| {
            let api = shoppers[i].clone();
            async move { (i, look(&api, &ticket).await) }
        })
        .buffer_unordered(AT_ONCE)
        .collect()
        .await;
    let admitted = places
        .iter()
        .filter(|(_, p)| p["state"] == "admitted")
        .count();
    assert_eq!(admitted, SEATS, "one admission per seat left");
    let mut by_position: Vec<(u64, usize)> = places
        .iter()
        .filter(|(_, p)| p["state"] != "admitted")
        .map(|(i, p)| (p["position"].as_u64().expect("a position"), *i))
        .collect();
    by_position.sort_unstable();
    let positions: Vec<u64> = by_position.iter().map(|(p, _)| *p).collect();
    assert_eq!(
        positions,
        (1..=(CROWD - SEATS) as u64).collect::<Vec<_>>(),
        "distinct places, none skipped"
    );
    // Arrival rank against drawn rank, over the shoppers still waiting.
    let arrival_rank: HashMap<usize, usize> = {
        let mut order: Vec<usize> = by_position.iter().map(|(_, i)| *i).collect();
        order.sort_unstable_by_key(|i| arrival[i]);
        order.into_iter().enumerate().map(|(r, i)| (i, r)).collect()
    };
    let drawn: Vec<usize> = (0..by_position.len()).collect();
    let arrived: Vec<usize> = by_position.iter().map(|(_, i)| arrival_rank[i]).collect();
    let rho = rank_correlation(&drawn, &arrived);
    // For 9,990 independent ranks the coefficient's spread is about 0.01.
    assert!(rho.abs() < 0.05, "the draw follows arrival: rho = {rho}");

    // After the on-sale: first come, first served, behind the draw.
    for (n, api) in shoppers[CROWD..].iter().enumerate() {
        let place = join(api).await;
        assert_eq!(
            place["position"].as_u64(),
            Some((CROWD - SEATS + n + 1) as u64),
            "{place}"
        );
    }
    println!(
        "{CROWD} joins in {joining:?} ({:.0}/s, {AT_ONCE} at once), rank correlation with arrival {rho:.4}",
        CROWD as f64 / joining.as_secs_f64()
    );
    run.platform.stop().await;
}

/// Everyone let in at once: every stream hears its own admission, none an error (a look
/// between the admitter's writes once found neither the place nor the admission).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_stream_hears_its_admission_when_all_are_let_in_at_once() {
    const STREAMS: usize = 300;
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event(Utc::now() + chrono::Duration::hours(1), STREAMS))
        .await
        .unwrap();
    let mut listening = Vec::new();
    for i in 0..STREAMS {
        let token = run.platform.session_for(&format!("streamer{i}")).unwrap();
        let shopper = run.api.with_token(&token);
        let ticket = join(&shopper).await["ticket"].as_str().unwrap().to_owned();
        listening.push(tokio::spawn(async move {
            let path = format!("/api/v1/events/crowd/queue/{ticket}/stream");
            super::waiting_room::stream_events(&shopper, &token, &path, Duration::from_secs(30))
                .await
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    run.apply(&event(Utc::now() - chrono::Duration::seconds(1), STREAMS))
        .await
        .unwrap();
    for heard in listening {
        let events = heard.await.unwrap();
        let names: Vec<&str> = events.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names.last(), Some(&"admitted"), "{events:?}");
        assert!(!names.contains(&"error"), "{events:?}");
        let admitted_at = events.last().unwrap().1["admitted_at"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(admitted_at).is_ok());
    }
    run.platform.stop().await;
}
