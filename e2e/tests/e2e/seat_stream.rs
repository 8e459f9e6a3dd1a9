//! The live seat stream: 200 clients watching a section while 500 clients race for its seats
//! and holds are placed, released and lapse end with the store's seat map, see every version
//! once and in order, hear a lapse within a second of its expiry, and a client resuming with
//! `Last-Event-ID` gets exactly what it missed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mercato_e2e::race::race_for_seats;
use mercato_e2e::{compact_statuses, event_manifest, harness};
use reqwest::StatusCode;
use serde_json::Value;

const WATCHERS: usize = 200;
const RACERS: usize = 500;
const SEATS: u32 = 40;
/// Long enough for the race to be over before its first hold lapses.
const TTL: Duration = Duration::from_millis(3000);

#[derive(Default)]
struct View {
    seats: HashMap<String, String>,
    versions: Vec<u64>,
    /// When each lapsed seat was heard, in ms since the epoch.
    lapsed_at: HashMap<String, i64>,
    snapshots: usize,
}

/// Seat id -> status from a compact section.
fn statuses(section: &Value) -> HashMap<String, String> {
    compact_statuses(section).unwrap().into_iter().collect()
}

/// Opens the stream (resuming after `last`) and applies what comes to `view` until the
/// connection ends or `stop` is set.
async fn watch(base: String, last: Option<u64>, view: Arc<Mutex<View>>, stop: Arc<Mutex<bool>>) {
    let mut req = reqwest::Client::new().get(format!(
        "{base}/api/v1/events/live/seats/stream?section=floor"
    ));
    if let Some(last) = last {
        req = req.header("last-event-id", last.to_string());
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut text = String::new();
    while !*stop.lock().unwrap() {
        let chunk = match tokio::time::timeout(Duration::from_millis(100), resp.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(_) => return,
            Err(_) => continue,
        };
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let (mut kind, mut data) = ("", "");
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    kind = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data = v.trim();
                }
            }
            if kind.is_empty() {
                continue; // a keep-alive
            }
            let body: Value = serde_json::from_str(data).unwrap();
            let mut v = view.lock().unwrap();
            if kind == "snapshot" {
                v.snapshots += 1;
                v.seats = statuses(&body["section"]);
                v.versions.push(body["version"].as_u64().unwrap());
                continue;
            }
            let version = body["version"].as_u64().unwrap();
            if let Some(previous) = v.versions.last() {
                assert_eq!(version, previous + 1, "a gap or a repeat after {previous}");
            }
            v.versions.push(version);
            let status = match kind {
                "held" => "held",
                "sold" => "sold",
                "released" | "lapsed" => "available",
                other => panic!("unexpected event {other}"),
            };
            for seat in body["seat_ids"].as_array().unwrap() {
                let seat = seat.as_str().unwrap().to_owned();
                if kind == "lapsed" {
                    v.lapsed_at
                        .insert(seat.clone(), chrono::Utc::now().timestamp_millis());
                }
                v.seats.insert(seat, status.to_owned());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn watchers_follow_holds_releases_and_lapses_and_resume_exactly() {
    let run = harness::start(None, Some(TTL)).await.unwrap();
    run.apply(&event_manifest("live", "floor", SEATS))
        .await
        .unwrap();
    let base = run.api.base().to_owned();
    // Asked wrongly: a code, not a stream.
    for (path, last, code) in [
        ("/api/v1/events/live/seats/stream", None, "section_required"),
        (
            "/api/v1/events/live/seats/stream?section=roof",
            None,
            "section_not_found",
        ),
        (
            "/api/v1/events/nope/seats/stream?section=floor",
            None,
            "event_not_found",
        ),
        (
            "/api/v1/events/live/seats/stream?section=floor",
            Some("x7"),
            "invalid_last_event_id",
        ),
    ] {
        let mut req = reqwest::Client::new().get(format!("{base}{path}"));
        if let Some(last) = last {
            req = req.header("last-event-id", last);
        }
        let resp = req.send().await.unwrap();
        assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{path}");
    }
    let stop = Arc::new(Mutex::new(false));
    let views: Vec<Arc<Mutex<View>>> = (0..WATCHERS).map(|_| Arc::default()).collect();
    for view in &views {
        tokio::spawn(watch(
            base.clone(),
            None,
            Arc::clone(view),
            Arc::clone(&stop),
        ));
    }
    // The late one watches from the start, drops out, and comes back with its last id.
    let (late, late_stop) = (Arc::<Mutex<View>>::default(), Arc::new(Mutex::new(false)));
    tokio::spawn(watch(
        base.clone(),
        None,
        Arc::clone(&late),
        Arc::clone(&late_stop),
    ));
    tokio::time::sleep(Duration::from_millis(300)).await;

    let shoppers = run.api.shoppers("live", 4).await.unwrap();
    // 500 clients race for seats 21 to 38 at once; their holds lapse later, like the rest.
    let raced: Vec<String> = (21..=38).map(|n| format!("floor-1-{n}")).collect();
    let racers = (0..RACERS).map(|i| shoppers[i % 4].separate()).collect();
    let started = Instant::now();
    let race = race_for_seats(racers, "live", &raced).await;
    println!(
        "seat stream: {RACERS} racers took {} seats in {} ms while {WATCHERS} watched",
        race.held_by.len(),
        started.elapsed().as_millis()
    );
    let mut holds = Vec::new();
    for i in 0..10u32 {
        let seats = vec![
            format!("floor-1-{}", 2 * i + 1),
            format!("floor-1-{}", 2 * i + 2),
        ];
        let a = shoppers[i as usize % 4].hold("live", &seats).await.unwrap();
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        holds.push((
            i as usize % 4,
            a.body["id"].as_str().unwrap().to_owned(),
            a.body["expires_at"].clone(),
        ));
    }
    *late_stop.lock().unwrap() = true;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen_by_late = *late.lock().unwrap().versions.last().unwrap();
    // Three released by hand, while the late one is away; the rest lapse.
    for (shopper, id, _) in &holds[..3] {
        let a = shoppers[*shopper]
            .send(
                reqwest::Method::DELETE,
                &format!("/api/v1/holds/{id}"),
                None,
                None,
            )
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::NO_CONTENT, "{}", a.body);
    }
    let resumed = Arc::<Mutex<View>>::default();
    {
        // It comes back with what it had: its view and its last id.
        let mut r = resumed.lock().unwrap();
        r.versions.push(seen_by_late);
        r.seats = late.lock().unwrap().seats.clone();
    }
    tokio::spawn(watch(
        base.clone(),
        Some(seen_by_late),
        Arc::clone(&resumed),
        Arc::clone(&stop),
    ));

    // Two more held at the end, still standing when the views are compared.
    tokio::time::sleep(TTL + Duration::from_millis(1200)).await;
    for seat in ["floor-1-39", "floor-1-40"] {
        let a = shoppers[0].hold("live", &[seat.to_owned()]).await.unwrap();
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        // The store now (the two last holds lapse too, soon): every watcher must get there.
        let map = run
            .api
            .get("/api/v1/events/live/seatmap?section=floor")
            .await
            .unwrap();
        let truth = statuses(&map.body["sections"][0]);
        let all_agree = views
            .iter()
            .chain([&resumed])
            .all(|v| v.lock().unwrap().seats == truth);
        if all_agree {
            break;
        }
        if Instant::now() >= deadline {
            for (n, v) in views.iter().chain([&resumed]).enumerate() {
                let v = v.lock().unwrap();
                let diff: Vec<_> = truth
                    .iter()
                    .filter(|(k, s)| v.seats.get(*k) != Some(*s))
                    .map(|(k, s)| (k.clone(), s.clone(), v.seats.get(k).cloned()))
                    .collect();
                assert!(
                    diff.is_empty(),
                    "watcher {n} never matched the store: {diff:?}, versions {:?}, {} lapsed heard",
                    v.versions,
                    v.lapsed_at.len()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    *stop.lock().unwrap() = true;

    // Every watcher saw one snapshot and then the same numbered deltas, with no gap.
    let reference = views[0].lock().unwrap().versions.clone();
    for v in &views {
        let v = v.lock().unwrap();
        assert_eq!(v.snapshots, 1);
        assert_eq!(v.versions, reference);
    }
    // The resumed one got exactly what it missed: no snapshot, the versions after its last.
    {
        let r = resumed.lock().unwrap();
        assert_eq!(r.snapshots, 0, "resumed without a snapshot");
        let after: Vec<u64> = reference
            .iter()
            .copied()
            .filter(|v| *v > seen_by_late)
            .collect();
        assert_eq!(r.versions[1..], after[..]);
    }
    // Each lapse reached the watchers within a second of its hold's expiry.
    {
        let v0 = views[0].lock().unwrap();
        for (i, (_, id, expires_at)) in holds.iter().enumerate().skip(3) {
            let expires = chrono::DateTime::parse_from_rfc3339(expires_at.as_str().unwrap())
                .unwrap()
                .timestamp_millis();
            for seat in [
                format!("floor-1-{}", 2 * i + 1),
                format!("floor-1-{}", 2 * i + 2),
            ] {
                let heard = v0.lapsed_at.get(&seat).copied();
                let heard =
                    heard.unwrap_or_else(|| panic!("{id}: the lapse of {seat} was not heard"));
                assert!(
                    heard - expires <= 1_000,
                    "{seat} heard {} ms after expiry",
                    heard - expires
                );
            }
        }
    }
    run.platform.stop().await;
}
