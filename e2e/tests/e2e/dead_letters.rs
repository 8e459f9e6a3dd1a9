//! A poison command on the whole platform: set aside in the dead letters with its reason while
//! the partition goes on, listed for admins, and replayed once its cause is fixed.

use std::time::{Duration, Instant};

use mercato_core::codec::{decode, encode};
use mercato_core::domain::commands::HoldCommand;
use mercato_core::domain::holds::Hold;
use mercato_core::names::{tables, topics};
use mercato_e2e::{event_manifest, harness};
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn letters(admin: &mercato_e2e::Api) -> Vec<Value> {
    let page = admin
        .get("/api/v1/admin/dead-letters?limit=100")
        .await
        .unwrap();
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["dead_letters"].as_array().unwrap().clone()
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_command_is_set_aside_listed_and_replayed_once_fixed() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event_manifest("gig", "pit", 20)).await.unwrap();
    let ada = run.api.shopper("ada@example.com").await.unwrap();
    let held = ada.hold("gig", &["pit-1-1".into()]).await.unwrap();
    assert_eq!(held.status, StatusCode::CREATED, "{}", held.body);
    let hold_id = held.body["id"].as_str().unwrap().to_owned();

    // The hold's row becomes unreadable (a bad disk, a botched migration).
    let store = &run.platform.ports.store;
    let (partition, clustering) = mercato_core::repo::holds::hold_key(&hold_id).unwrap();
    let good = store
        .get(tables::SEAT_CLAIMS, &partition, &clustering)
        .await
        .unwrap()
        .unwrap();
    let hold: Hold = decode(&good.value).unwrap();
    store
        .put(
            tables::SEAT_CLAIMS,
            &partition,
            &clustering,
            b"\x00garbage".to_vec(),
            None,
        )
        .await
        .unwrap();
    // Reading it is a server fault, not an outage to retry.
    let read = ada.get(&format!("/api/v1/holds/{hold_id}")).await.unwrap();
    assert_eq!(
        read.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        read.body
    );
    assert_eq!(read.code(), "unreadable_record");

    // A release of it reaches the holds worker (as from an older gateway), then other holds.
    let release = HoldCommand::Release {
        command_id: "cmd-poison".into(),
        hold_id: hold_id.clone(),
        user_id: hold.user_id.clone(),
    };
    run.platform
        .ports
        .bus
        .send(topics::HOLDS, b"gig/pit", encode(&release))
        .await
        .unwrap();
    let after = ada.hold("gig", &["pit-1-2".into()]).await.unwrap();
    assert_eq!(
        after.status,
        StatusCode::CREATED,
        "the partition moved on past the poison: {}",
        after.body
    );
    let listed = letters(&run.admin).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let letter = &listed[0];
    assert_eq!(letter["topic"], topics::HOLDS);
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("undecodable row"),
        "{letter}"
    );
    assert!(letter["replayed_at"].is_null());
    let offset = letter["offset"].as_u64().unwrap();

    let shopper_replay = ada
        .post(
            "/api/v1/admin/dead-letters/replay",
            &json!({"offsets": [offset]}),
        )
        .await
        .unwrap();
    assert_eq!(shopper_replay.status, StatusCode::FORBIDDEN);

    // Fixed: the row restored. The replay releases the hold, as the command meant to.
    store
        .put(
            tables::SEAT_CLAIMS,
            &partition,
            &clustering,
            good.value.clone(),
            None,
        )
        .await
        .unwrap();
    let replay = run
        .admin
        .post(
            "/api/v1/admin/dead-letters/replay",
            &json!({"offsets": [offset, 999]}),
        )
        .await
        .unwrap();
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.body);
    assert_eq!(replay.body["replayed"].as_array().unwrap().len(), 1);
    assert_eq!(replay.body["replayed"][0]["topic"], topics::HOLDS);
    assert_eq!(replay.body["skipped"][0]["code"], "not_found");
    wait_for("the replayed release", async || {
        let h = ada.get(&format!("/api/v1/holds/{hold_id}")).await.unwrap();
        h.body["status"] == "released"
    })
    .await;
    // The worker marks the hold released before it deletes the seat's claim (so no purchase
    // can start in between), and the replay answers before the worker acts: the seat is free
    // once the release is done, not at the instant the hold reads released.
    wait_for("the released seat free again", async || {
        let seats = ada.seat_statuses("gig", "pit").await.unwrap();
        seats
            .iter()
            .any(|(id, status)| id == "pit-1-1" && status == "available")
    })
    .await;

    let again = run
        .admin
        .post(
            "/api/v1/admin/dead-letters/replay",
            &json!({"offsets": [offset]}),
        )
        .await
        .unwrap();
    assert_eq!(again.body["replayed"], json!([]));
    assert_eq!(again.body["skipped"][0]["code"], "already_replayed");
    let listed = letters(&run.admin).await;
    assert_eq!(listed.len(), 1, "the replay did not fail again: {listed:?}");
    assert!(listed[0]["replayed_at"].is_string(), "{}", listed[0]);

    let bad = run
        .admin
        .post("/api/v1/admin/dead-letters/replay", &json!({"offsets": []}))
        .await
        .unwrap();
    assert_eq!(
        (bad.status, bad.code()),
        (StatusCode::BAD_REQUEST, "invalid_offsets")
    );
}
