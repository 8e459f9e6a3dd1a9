//! Rate limits as a script meets them: sign-ups per client address (read from the proxy's
//! `x-forwarded-for`), sign-ins per account, holds per shopper; each refusal a 429
//! `rate_limited` with `Retry-After`, never a 5xx, and a bucket that refills lets the same
//! client in again.

use std::sync::Arc;
use std::time::Duration;

use mercato::platform::{ClientAddress, PlatformConfig, RateLimits};
use mercato_e2e::{event_manifest, harness, Api};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::Barrier;

/// A sign-up from `address` (as the proxy in front says): status, Retry-After, body.
async fn sign_up(api: &Api, address: &str, email: &str) -> (StatusCode, Option<u64>, Value) {
    let response = api
        .http
        .post(format!("{}/api/v1/users", api.base))
        .header("x-forwarded-for", format!("198.51.100.99, {address}"))
        .json(&json!({"email": email, "password": "correct horse battery", "name": "x"}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (
        status,
        retry_after,
        response.json().await.unwrap_or(Value::Null),
    )
}

fn refused_by(body: &Value, limit: &str) {
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert_eq!(body["error"]["details"]["limit"], limit, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn scripts_are_slowed_to_the_declared_pace_and_people_are_not() {
    let limits = RateLimits::parse(&[
        "sign-up-per-address=3/1h",
        "sign-in-per-account=2/1h",
        "holds-per-user=4/1s",
    ])
    .unwrap();
    let run = harness::start_with(PlatformConfig {
        rate_limits: limits,
        client_address: ClientAddress::Header("x-forwarded-for".into()),
        ..harness::config(None, None)
    })
    .await
    .unwrap();
    run.apply(&event_manifest("limited", "hall", 40))
        .await
        .unwrap();

    // Three sign-ups from one address, then 429 with a wait; another address is not touched.
    for n in 0..3 {
        let (status, _, body) =
            sign_up(&run.api, "203.0.113.1", &format!("s{n}@example.com")).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, retry_after, body) = sign_up(&run.api, "203.0.113.1", "s3@example.com").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    refused_by(&body, "sign-up-per-address");
    assert!(retry_after.is_some_and(|s| s >= 1), "{retry_after:?}");
    let (status, _, body) = sign_up(&run.api, "203.0.113.2", "s3@example.com").await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "a neighbour is not limited: {body}"
    );

    // Sign-ins of one account: two tries, then even the right password waits.
    for _ in 0..2 {
        let wrong = run
            .api
            .post(
                "/api/v1/sessions",
                &json!({"email": "s0@example.com", "password": "guess"}),
            )
            .await
            .unwrap();
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    }
    let right = run
        .api
        .post(
            "/api/v1/sessions",
            &json!({"email": "s0@example.com", "password": "correct horse battery"}),
        )
        .await
        .unwrap();
    assert_eq!(
        right.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        right.body
    );
    refused_by(&right.body, "sign-in-per-account");

    // Ten holds of one shopper at once: four go through, six wait; the bucket refills.
    let session = run
        .api
        .post(
            "/api/v1/sessions",
            &json!({"email": "s1@example.com", "password": "correct horse battery"}),
        )
        .await
        .unwrap();
    let ada = run
        .api
        .with_token(session.body["token"].as_str().expect("signed in"));
    let barrier = Arc::new(Barrier::new(10));
    let tasks: Vec<_> = (1..=10)
        .map(|n| {
            let (ada, barrier) = (ada.separate(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                ada.hold("limited", &[format!("hall-1-{n}")]).await.unwrap()
            })
        })
        .collect();
    let mut placed = 0;
    for task in tasks {
        let answer = task.await.unwrap();
        match answer.status {
            StatusCode::CREATED => placed += 1,
            StatusCode::TOO_MANY_REQUESTS => refused_by(&answer.body, "holds-per-user"),
            other => panic!("never {other}: {}", answer.body),
        }
    }
    assert_eq!(placed, 4, "the bucket's burst");
    let statuses = run.api.seat_statuses("limited", "hall").await.unwrap();
    let held = statuses.iter().filter(|(_, s)| s == "held").count();
    assert_eq!(held, 4, "a refused request did nothing");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let later = ada.hold("limited", &["hall-1-20".into()]).await.unwrap();
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.body);
    run.platform.stop().await;
}
