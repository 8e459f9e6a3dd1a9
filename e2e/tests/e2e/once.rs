//! Once means once under real concurrency: 50 deliveries of one provider event at once queue
//! it exactly once, and 50 admins replaying one dead letter at once send it back exactly once;
//! every other request is told why it did nothing. A delivery that arrives while another is
//! queueing the event is not acknowledged (503, deliver again): the other may still fail.

use std::sync::Arc;

use mercato_core::bus::Bus;
use mercato_core::codec::encode;
use mercato_core::domain::dead_letters::DeadLetter;
use mercato_core::domain::payments::{sign, SIGNATURE_HEADER};
use mercato_core::names::topics;
use mercato_e2e::harness;
use reqwest::StatusCode;
use serde_json::{json, Value};

const AT_ONCE: usize = 50;

async fn records(bus: &dyn Bus, topic: &str) -> u64 {
    let mut total = 0;
    for p in 0..bus.partitions(topic).await.unwrap() {
        total += bus.end_offset(topic, p).await.unwrap();
    }
    total
}

/// Sends the same request from `AT_ONCE` tasks released together; returns the answers.
async fn all_at_once<F, Fut>(send: F) -> Vec<(StatusCode, Value)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = (StatusCode, Value)> + Send + 'static,
{
    let gate = Arc::new(tokio::sync::Barrier::new(AT_ONCE));
    let tasks: Vec<_> = (0..AT_ONCE)
        .map(|_| {
            let gate = Arc::clone(&gate);
            let request = send();
            tokio::spawn(async move {
                gate.wait().await;
                request.await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_deliveries_of_one_provider_event_queue_it_once() {
    let run = harness::start(None, None).await.unwrap();
    let bus = Arc::clone(&run.platform.ports.bus);
    let before = records(&*bus, topics::PAYMENTS).await;
    let body = serde_json::to_vec(&json!({
        "id": "evt_once_1", "type": "charge.succeeded", "order_id": "ord_nobody",
        "payment_id": "pay_nobody", "amount": {"amount": 100, "currency": "USD"},
    }))
    .unwrap();
    let url = format!("{}/api/v1/payments/webhook", run.api.base);
    let secret = run.platform.webhook_secret.clone();
    let client = reqwest::Client::new();
    let answers = all_at_once(|| {
        let (client, url, body) = (client.clone(), url.clone(), body.clone());
        let now = chrono::Utc::now().timestamp();
        let signature = sign(&secret, now, &body);
        async move {
            let resp = client
                .post(url)
                .header(SIGNATURE_HEADER, signature)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = resp.status();
            (status, resp.json().await.unwrap_or_default())
        }
    })
    .await;
    // Each other delivery hears it is a duplicate, or, while the first is at work, to deliver
    // again (not acknowledged: the first may still fail).
    for (status, answer) in &answers {
        assert!(
            (*status == StatusCode::OK && answer["received"] == true)
                || (*status == StatusCode::SERVICE_UNAVAILABLE
                    && answer["error"]["code"] == "webhook_in_progress"),
            "{status} {answer}"
        );
    }
    let queued: Vec<_> = answers
        .iter()
        .filter(|(s, a)| *s == StatusCode::OK && a["duplicate"] != true)
        .collect();
    assert_eq!(
        queued.len(),
        1,
        "queued by {} deliveries: {answers:?}",
        queued.len()
    );
    assert_eq!(records(&*bus, topics::PAYMENTS).await - before, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_admins_replaying_one_dead_letter_send_it_back_once() {
    let run = harness::start(None, None).await.unwrap();
    let bus = Arc::clone(&run.platform.ports.bus);
    // A topic no worker reads, so that its length counts the replays.
    bus.ensure_topic("once-test", 1).await.unwrap();
    let letter = DeadLetter {
        topic: "once-test".into(),
        partition: 0,
        offset: 0,
        reason: "a test letter".into(),
        key: b"k".to_vec(),
        value: b"the original".to_vec(),
    };
    let (_, offset) = bus
        .send(topics::DEAD_LETTERS, b"k", encode(&letter))
        .await
        .unwrap();
    let admin = run.admin.clone();
    let answers = all_at_once(|| {
        let admin = admin.separate();
        async move {
            let a = admin
                .post(
                    "/api/v1/admin/dead-letters/replay",
                    &json!({"offsets": [offset]}),
                )
                .await
                .unwrap();
            (a.status, a.body)
        }
    })
    .await;
    assert!(
        answers.iter().all(|(s, _)| *s == StatusCode::OK),
        "{answers:?}"
    );
    let replayed = answers
        .iter()
        .filter(|(_, a)| a["replayed"].as_array().is_some_and(|r| r.len() == 1))
        .count();
    assert_eq!(replayed, 1, "{answers:?}");
    for (_, a) in &answers {
        if let Some(skip) = a["skipped"].as_array().and_then(|s| s.first()) {
            let code = skip["code"].as_str().unwrap_or_default();
            assert!(
                code == "already_replayed" || code == "replay_in_progress",
                "{skip}"
            );
        }
    }
    assert_eq!(records(&*bus, "once-test").await, 1);
    // Asked for again explicitly, it goes once more.
    let again = run
        .admin
        .post(
            "/api/v1/admin/dead-letters/replay",
            &json!({"offsets": [offset], "again": true}),
        )
        .await
        .unwrap();
    assert_eq!(
        again.body["replayed"].as_array().map(Vec::len),
        Some(1),
        "{}",
        again.body
    );
    assert_eq!(records(&*bus, "once-test").await, 2);
}
