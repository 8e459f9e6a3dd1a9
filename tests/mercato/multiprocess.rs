//! Mercato as separate processes on PostgreSQL and Redis: two gateways, two holds workers and
//! two payments workers, each its own `mercato` process.
//!
//! - 500 HTTP clients, spread over both gateways, race for the same 50 seats: exactly 50 are
//!   held, each by one hold, and every loser hears which seats were taken.
//! - In a purchase storm, one holds worker is killed (SIGKILL) and started again, then Redis
//!   (the bus and coordination) is killed and started again: every accepted order settles, no
//!   seat is sold twice, and while Redis is away requests fail fast with 503 and a code.
//! - A waiting room across both gateways: shoppers join through either and see the same
//!   places through the other; one gateway is killed mid-queue: no place is lost, the other
//!   gateway goes on admitting, and no shopper is admitted twice or beyond the seats left.
//!
//! Runs when `MERCATO_TEST_POSTGRES` and `MERCATO_TEST_REDIS` are set (CI sets both) and
//! `redis-server` is installed: the test runs a Redis of its own, so that it can kill it. With
//! `MERCATO_TEST_FLUVIO` set too, the same scenario runs again with the bus on Fluvio (Redis
//! then carries coordination only, and is still killed and restarted).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::processes::{Cluster, RedisServer};
use mercato_e2e::child;
use mercato_e2e::race::race_for_seats;
use mercato_e2e::storm::{Shopper, Storm};
use mercato_e2e::{event_manifest, Answer, Api};
use rand::seq::SliceRandom;
use reqwest::StatusCode;
use serde_json::{json, Value};

const RACE_CLIENTS: usize = 500;
const RACE_SEATS: u32 = 50;
const RACERS: usize = 50;
/// Rows of 500 seats: enough that the storm never runs out.
const STORM_ROWS: u32 = 6;
const ROW_SEATS: u32 = 500;
const STORM_SHOPPERS: usize = 24;
const QUEUE_SEATS: u32 = 20;
const QUEUERS: usize = 60;

/// Codes a request may fail with while an engine or a worker is away: all 503.
const AWAY: [&str; 4] = [
    "bus_unavailable",
    "store_unavailable",
    "coord_unavailable",
    "command_timeout",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_processes_on_postgres_and_redis() {
    separate_processes(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_processes_on_postgres_fluvio_and_redis() {
    let Some(fluvio) = mercato_testkit::engine_address("MERCATO_TEST_FLUVIO") else {
        return;
    };
    separate_processes(Some(fluvio)).await;
}

/// The scenario, with the bus on `bus` (Fluvio) or, without it, on the test's Redis.
async fn separate_processes(bus: Option<String>) {
    let Some(postgres) = crate::processes::postgres_url() else {
        return;
    };
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let manifests = tempfile::tempdir().unwrap();
    std::fs::write(
        manifests.path().join("events.yaml"),
        format!(
            "{}---\n{}",
            event_manifest("race", "floor", RACE_SEATS),
            event_manifest("storm", "hall", ROW_SEATS)
                .replace("rows: 1,", &format!("rows: {STORM_ROWS},")),
        ) + "---\n"
            + &event_manifest("queued", "hall", QUEUE_SEATS).replace(
                "  maxSeatsPerHold: 10\n  maxSeatsPerUser: 10000\n",
                "  maxSeatsPerHold: 10\n  maxSeatsPerUser: 1\n  holdDuration: 3s\n  waitingRoom: { opensAt: 1h }\n",
            ),
    )
    .unwrap();
    let store = crate::processes::fresh_database(&postgres).await;
    let bus = bus.unwrap_or_else(|| redis.url());
    let mut cluster = Cluster::start(&bus, &redis.url(), &store, manifests.path());
    let gateways = [
        Api::new(&cluster.gateways[0]),
        Api::new(&cluster.gateways[1]),
    ];

    race_across_gateways(&gateways).await;
    storm_through_failures(&gateways, &mut cluster, &mut redis).await;
    queue_across_gateways(&gateways, &mut cluster).await;
}

/// Where a shopper stands, asked of one gateway.
async fn queue_place(api: &Api, ticket: &str) -> Value {
    let a = api
        .get(&format!("/api/v1/events/queued/queue/{ticket}"))
        .await
        .unwrap();
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    a.body
}

async fn queue_across_gateways(gateways: &[Api; 2], cluster: &mut Cluster) {
    let shoppers = gateways[0].shoppers("queuer", QUEUERS).await.unwrap();
    // Join one by one, through alternate gateways: first come, first served.
    let mut tickets = Vec::new();
    for (i, s) in shoppers.iter().enumerate() {
        let a = s
            .against(&gateways[i % 2])
            .post("/api/v1/events/queued/queue", &json!({}))
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
        tickets.push(a.body["ticket"].as_str().unwrap().to_owned());
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Both gateways say the same of every place; as many admitted as there are seats.
    let mut admitted: HashMap<usize, String> = HashMap::new();
    for (i, s) in shoppers.iter().enumerate() {
        let there = queue_place(&s.against(&gateways[0]), &tickets[i]).await;
        let here = queue_place(&s.against(&gateways[1]), &tickets[i]).await;
        assert_eq!(there["state"], here["state"], "{there} / {here}");
        assert_eq!(there["position"], here["position"], "{there} / {here}");
        if there["state"] == "admitted" {
            admitted.insert(i, there["admission"].as_str().unwrap().to_owned());
        }
    }
    assert_eq!(
        admitted.len(),
        QUEUE_SEATS as usize,
        "one admission per seat"
    );
    assert!(
        admitted.keys().all(|i| *i < QUEUE_SEATS as usize),
        "the first to join are the first in: {:?}",
        admitted.keys().collect::<Vec<_>>()
    );

    // One gateway dies mid-queue; the other goes on: half the admitted hold a seat (which
    // uses their admissions up: the other half still count against the seats left, so nobody
    // new is let in), the holds lapse, and as many more are let in, in order, each once.
    cluster.kill_gateway(1);
    let survivor = &gateways[0];
    let mut seat = 0;
    for i in 0..(QUEUE_SEATS as usize / 2) {
        seat += 1;
        let a = shoppers[i]
            .against(survivor)
            .post(
                "/api/v1/holds",
                &json!({"event_id": "queued", "seat_ids": [format!("hall-1-{seat}")], "admission": admitted[&i]}),
            )
            .await
            .unwrap();
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    }
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut now_admitted = HashSet::new();
    let mut waiting = Vec::new();
    for (i, s) in shoppers.iter().enumerate() {
        let p = queue_place(&s.against(survivor), &tickets[i]).await;
        match p["state"].as_str().unwrap() {
            "admitted" => {
                now_admitted.insert(i);
            }
            _ => waiting.push(p["position"].as_u64().unwrap()),
        }
    }
    let expected: HashSet<usize> = (0..(QUEUE_SEATS as usize * 3 / 2)).collect();
    assert_eq!(
        now_admitted, expected,
        "the next ten, in order, and nobody else: no place lost, nobody twice"
    );
    waiting.sort_unstable();
    assert_eq!(
        waiting,
        (1..=(QUEUERS - QUEUE_SEATS as usize * 3 / 2) as u64).collect::<Vec<_>>(),
        "the rest keep their places, in order"
    );
    println!(
        "waiting room: {QUEUERS} joined over two gateways, {} admitted for {QUEUE_SEATS} seats; one gateway killed, the other admitted the next {} in order",
        admitted.len(),
        QUEUE_SEATS / 2
    );
}

async fn race_across_gateways(gateways: &[Api; 2]) {
    let racers = gateways[0].shoppers("racer", RACERS).await.unwrap();
    let seats: Vec<String> = (1..=RACE_SEATS).map(|n| format!("floor-1-{n}")).collect();
    // Every client has its own connection, to one gateway or the other.
    let clients = (0..RACE_CLIENTS)
        .map(|i| racers[i % RACERS].against(&gateways[i % 2]))
        .collect();
    let raced = race_for_seats(clients, "race", &seats).await;
    for gateway in gateways {
        let event = gateway.get("/api/v1/events/race").await.unwrap();
        assert_eq!(
            event.body["availability"]["held"], RACE_SEATS,
            "{}",
            event.body
        );
    }
    println!(
        "race: {} holds won all {RACE_SEATS} seats, {} refused, over two gateways",
        raced.held_by.values().collect::<HashSet<_>>().len(),
        raced.refused
    );
}

/// What the storm saw: accepted orders, and every 5xx answer's code.
#[derive(Default)]
struct Seen {
    accepted: Vec<(usize, String)>,
    failures: Vec<(StatusCode, String)>,
}

async fn shop(api: Api, who: usize, shopper: Shopper<Seen>) {
    let mut seats: Vec<String> = (1..=STORM_ROWS)
        .flat_map(|r| (1..=ROW_SEATS).map(move |n| format!("hall-{r}-{n}")))
        .collect();
    let note = |answer: &Answer| {
        if answer.status.is_server_error() {
            let failure = (answer.status, answer.code().to_owned());
            shopper.record(|seen| seen.failures.push(failure));
        }
    };
    while shopper.running() {
        seats.shuffle(&mut rand::thread_rng());
        let wanted: Vec<String> = seats[..2].to_vec();
        let Ok(hold) = api.hold("storm", &wanted).await else {
            continue;
        };
        note(&hold);
        if hold.status != StatusCode::CREATED {
            if hold.status.is_server_error() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        }
        let body =
            json!({"hold_id": hold.body["id"], "payment": {"card_number": "4242424242424242"}});
        let key = uuid::Uuid::new_v4().to_string();
        let Ok(order) = api.post_keyed("/api/v1/orders", &body, &key).await else {
            continue;
        };
        note(&order);
        if order.status == StatusCode::ACCEPTED {
            let id = order.body["id"].as_str().unwrap().to_owned();
            shopper.record(|seen| seen.accepted.push((who, id)));
        }
    }
}

async fn storm_through_failures(
    gateways: &[Api; 2],
    cluster: &mut Cluster,
    redis: &mut RedisServer,
) {
    let shoppers: Vec<Api> = gateways[0]
        .shoppers("storm", STORM_SHOPPERS)
        .await
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, s)| s.against(&gateways[i % 2]))
        .collect();
    let storm = Storm::start(&shoppers, shop);
    println!("storm started");
    let count = || storm.seen(|seen| seen.accepted.len());

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = count();
    cluster.kill_worker("holds", 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.start_worker("holds", 0);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_redis = count();
    redis.kill();
    let away = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.restart();
    println!("redis was away for {:?}", away.elapsed());
    tokio::time::sleep(Duration::from_millis(3000)).await;
    let seen = storm.stop().await;
    let after = seen.accepted.len();
    assert!(
        before_kill > 5,
        "orders before the worker was killed: {before_kill}"
    );
    assert!(
        after > before_redis,
        "orders were accepted again after Redis came back ({before_redis} before, {after} in all)"
    );
    for (status, code) in &seen.failures {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "{code}");
        assert!(AWAY.contains(&code.as_str()), "unexpected 503 code {code}");
    }

    // Every accepted order settles; none is lost.
    for (who, id) in &seen.accepted {
        let order = shoppers[*who]
            .settled_order(id, Duration::from_secs(60))
            .await
            .unwrap();
        let status = order["status"].as_str().unwrap_or_default();
        assert!(
            matches!(status, "paid" | "expired" | "payment_failed"),
            "order {id} ended {status}"
        );
    }
    // An order whose 202 never reached its client (Redis died between taking the command and
    // answering) is still an order: the seat map is checked against every order there is, once
    // the commands still on the bus have been worked off.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (settled, sold) = loop {
        let settled = settled_orders(&shoppers).await;
        let sold = sold_seats(&settled);
        let statuses = gateways[1].seat_statuses("storm", "hall").await.unwrap();
        let sold_on_map: HashSet<&String> = statuses
            .iter()
            .filter(|(_, s)| s == "sold")
            .map(|(id, _)| id)
            .collect();
        let ticketed: HashSet<&String> = sold.keys().collect();
        if sold_on_map == ticketed {
            break (settled, sold);
        }
        let untold: Vec<_> = sold_on_map.difference(&ticketed).take(5).collect();
        let unsold: Vec<_> = ticketed.difference(&sold_on_map).take(5).collect();
        assert!(
            Instant::now() < deadline,
            "the seat map shows exactly the ticketed seats as sold: {} sold on the map, {} \
             ticketed; sold without a ticket {untold:?}, ticketed but not sold {unsold:?}",
            sold_on_map.len(),
            ticketed.len()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let accepted: HashSet<&String> = seen.accepted.iter().map(|(_, id)| id).collect();
    for id in &accepted {
        assert!(
            settled.contains_key(*id),
            "accepted order {id} is not listed"
        );
    }
    let paid = settled.values().filter(|o| o["status"] == "paid").count();
    println!(
        "storm: {} orders accepted ({before_kill} before the holds worker was killed, \
         {before_redis} before Redis was), {} more placed whose answer was lost, {paid} paid, \
         {} seats sold once each, {} answers 503",
        seen.accepted.len(),
        settled.len() - accepted.len(),
        sold.len(),
        seen.failures.len()
    );
}

/// Every order of these shoppers, each once it has left `pending_payment`, by id.
async fn settled_orders(shoppers: &[Api]) -> HashMap<String, Value> {
    let mut settled = HashMap::new();
    for shopper in shoppers {
        for order in child::all_orders(shopper).await.unwrap() {
            let id = order["id"].as_str().unwrap().to_owned();
            let order = shopper
                .settled_order(&id, Duration::from_secs(60))
                .await
                .unwrap();
            settled.insert(id, order);
        }
    }
    settled
}

/// Seat -> the paid order whose ticket it is; fails the test if a seat has two.
fn sold_seats(orders: &HashMap<String, Value>) -> HashMap<String, String> {
    let mut sold: HashMap<String, String> = HashMap::new();
    for (id, order) in orders.iter().filter(|(_, o)| o["status"] == "paid") {
        for ticket in order["tickets"].as_array().unwrap() {
            let seat = ticket["seat_id"].as_str().unwrap().to_owned();
            if let Some(other) = sold.insert(seat.clone(), id.clone()) {
                panic!("seat {seat} sold to both {other} and {id}");
            }
        }
    }
    sold
}
