//! Bad input of every kind gets its documented 4xx and code, and nothing panics.

use mercato_e2e::{event_manifest, harness};
use reqwest::{Method, StatusCode};
use serde_json::json;

/// A request: method, path and body.
type Request = (Method, String, Option<Vec<u8>>);
/// What is sent, by whom, and the status and code it must get.
type Case<'a> = (&'a str, mercato_e2e::Api, Request, StatusCode, &'a str);

/// Sends each case (with the idempotency key `key` gives it) and checks its status and code,
/// and that the error says why.
async fn expect_errors(checks: Vec<Case<'_>>, key: impl Fn(&str) -> Option<String>) {
    for (name, client, (method, path, body), status, code) in checks {
        let key = key(name);
        let a = client
            .send(method, &path, body.as_deref(), key.as_deref())
            .await
            .unwrap();
        assert_eq!((a.status, a.code()), (status, code), "{name}: {}", a.body);
        assert!(
            !a.body["error"]["message"].as_str().unwrap_or("").is_empty(),
            "{name}: every error says why"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&event_manifest("gig", "pit", 20)).await.unwrap();
    let anon = run.api.clone();
    let ada = run.api.shopper("ada@example.com").await.unwrap();

    let forged = {
        // A token signed with another key.
        let parts: Vec<&str> = ada.token.as_deref().unwrap().split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0], parts[1], "c2lnbmF0dXJlLW9mLWFub3RoZXIta2V5"
        )
    };
    let many_seats: Vec<String> = (1..=10_000).map(|n| format!("pit-1-{n}")).collect();
    let raw =
        |m: Method, path: &str, body: &str| (m, path.to_owned(), Some(body.as_bytes().to_vec()));

    let checks: Vec<Case> = vec![
        (
            "malformed JSON",
            ada.clone(),
            raw(Method::POST, "/api/v1/holds", "{\"event_id\": "),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "wrong JSON shape",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                "{\"event_id\": 5, \"seat_ids\": []}",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unknown field",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                "{\"event_id\": \"gig\", \"seat_ids\": [\"pit-1-1\"], \"x\": 1}",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "empty body",
            ada.clone(),
            raw(Method::POST, "/api/v1/holds", ""),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "unknown event",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "nope", "seat_ids": ["pit-1-1"]}).to_string(),
            ),
            StatusCode::NOT_FOUND,
            "event_not_found",
        ),
        (
            "unknown seat",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": ["pit-1-1", "pit-9-99"]}).to_string(),
            ),
            StatusCode::NOT_FOUND,
            "seat_not_found",
        ),
        (
            "malformed seat id",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": ["💺"]}).to_string(),
            ),
            StatusCode::NOT_FOUND,
            "seat_not_found",
        ),
        (
            "empty seat list",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": []}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "empty_seat_list",
        ),
        (
            "duplicate seats",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": ["pit-1-1", "pit-1-1"]}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "duplicate_seats",
        ),
        (
            // Once accepted, priced three times and ticketed three times for one seat.
            "one seat in three spellings",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": ["pit-1-1", "pit-01-1", "pit-1-01"]})
                    .to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_seat_id",
        ),
        (
            "a seat in capitals",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": ["PIT-1-2"]}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_seat_id",
        ),
        (
            "a signed seat number",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": ["pit-+1-1"]}).to_string(),
            ),
            StatusCode::NOT_FOUND,
            "seat_not_found",
        ),
        (
            "too many seats",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": many_seats[..11]}).to_string(),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_seats",
        ),
        (
            "10,000 seats",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": many_seats}).to_string(),
            ),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "no token",
            anon.clone(),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": ["pit-1-1"]}).to_string(),
            ),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "forged token",
            anon.with_token(&forged),
            raw(
                Method::POST,
                "/api/v1/holds",
                &json!({"event_id": "gig", "seat_ids": ["pit-1-1"]}).to_string(),
            ),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "garbage token",
            anon.with_token("not-a-jwt"),
            (Method::GET, "/api/v1/orders".into(), None),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "a category longer than any (bounded work per request)",
            anon.clone(),
            (
                Method::GET,
                format!("/api/v1/search?category={}", "a/".repeat(2_000)),
                None,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "a city longer than any",
            anon.clone(),
            (
                Method::GET,
                format!("/api/v1/search?city={}", "x".repeat(5_000)),
                None,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "a search cursor longer than any",
            anon.clone(),
            (
                Method::GET,
                format!("/api/v1/search?q=gig&cursor={}", "A".repeat(5_000)),
                None,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "an orders cursor longer than any",
            ada.clone(),
            (
                Method::GET,
                format!("/api/v1/orders?cursor={}", "61".repeat(5_000)),
                None,
            ),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "unknown hold",
            ada.clone(),
            (Method::GET, "/api/v1/holds/hold_nope".into(), None),
            StatusCode::NOT_FOUND,
            "hold_not_found",
        ),
        (
            "unknown event page",
            anon.clone(),
            (Method::GET, "/api/v1/events/nope".into(), None),
            StatusCode::NOT_FOUND,
            "event_not_found",
        ),
        (
            "unknown section",
            anon.clone(),
            (
                Method::GET,
                "/api/v1/events/gig/seats?section=nope".into(),
                None,
            ),
            StatusCode::NOT_FOUND,
            "section_not_found",
        ),
        (
            "bad limit",
            anon.clone(),
            (Method::GET, "/api/v1/events?limit=1000".into(), None),
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        (
            "bad cursor",
            anon.clone(),
            (Method::GET, "/api/v1/events?cursor=zz".into(), None),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "unknown route",
            anon.clone(),
            (Method::GET, "/api/v1/nothing".into(), None),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "wrong method",
            anon.clone(),
            (Method::PUT, "/api/v1/events".into(), None),
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "invalid card",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/orders",
                &json!({"hold_id": "hold_x", "payment": {"card_number": "4242 4242 4242 4241"}})
                    .to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_card",
        ),
        (
            "order for unknown hold",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/orders",
                &json!({"hold_id": "hold_x", "payment": {"card_number": "4242424242424242"}})
                    .to_string(),
            ),
            StatusCode::NOT_FOUND,
            "hold_not_found",
        ),
        (
            "order without hold",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/orders",
                &json!({"payment": {"card_number": "4242424242424242"}}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "unsigned webhook",
            anon.clone(),
            raw(Method::POST, "/api/v1/payments/webhook", "{}"),
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
        ),
        (
            "weak password",
            anon.clone(),
            raw(
                Method::POST,
                "/api/v1/users",
                &json!({"email": "x@example.com", "password": "short", "name": "X"}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "weak_password",
        ),
        (
            "bad email",
            anon.clone(),
            raw(
                Method::POST,
                "/api/v1/users",
                &json!({"email": "nope", "password": "long enough", "name": "X"}).to_string(),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_email",
        ),
        (
            "taken email",
            anon.clone(),
            raw(
                Method::POST,
                "/api/v1/users",
                &json!({"email": "ADA@example.com", "password": "long enough", "name": "X"})
                    .to_string(),
            ),
            StatusCode::CONFLICT,
            "email_taken",
        ),
        (
            "wrong password",
            anon.clone(),
            raw(
                Method::POST,
                "/api/v1/sessions",
                &json!({"email": "ada@example.com", "password": "wrong password"}).to_string(),
            ),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "shopper applying manifests",
            ada.clone(),
            raw(Method::POST, "/api/v1/admin/manifests", "kind: Event"),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "invalid manifest",
            run.admin.clone(),
            raw(
                Method::POST,
                "/api/v1/admin/manifests",
                &event_manifest("Bad_Name", "pit", 0),
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_manifest",
        ),
        (
            "malformed manifest",
            run.admin.clone(),
            raw(Method::POST, "/api/v1/admin/manifests", "kind: [\n"),
            StatusCode::BAD_REQUEST,
            "malformed_manifest",
        ),
        (
            "long idempotency key",
            ada.clone(),
            (
                Method::POST,
                "/api/v1/holds".into(),
                Some(
                    json!({"event_id": "gig", "seat_ids": ["pit-1-1"]})
                        .to_string()
                        .into_bytes(),
                ),
            ),
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
        ),
    ];
    expect_errors(checks, |name| {
        (name == "long idempotency key").then(|| "k".repeat(300))
    })
    .await;
    // A seat in another spelling is refused with the spelling to use.
    let spelled = ada
        .post(
            "/api/v1/holds",
            &json!({"event_id": "gig", "seat_ids": ["pit-1-1", "pit-01-1"]}),
        )
        .await
        .unwrap();
    assert_eq!(
        spelled.body["error"]["details"]["invalid"],
        json!([{"seat_id": "pit-01-1", "canonical": "pit-1-1"}]),
        "{}",
        spelled.body
    );
    // After all that, the platform still serves and nothing was held by the bad requests.
    let seats = ada.seat_statuses("gig", "pit").await.unwrap();
    assert!(seats.iter().all(|(_, s)| s == "available"));
    assert_eq!(
        run.api.get("/healthz").await.unwrap().status,
        StatusCode::OK
    );
    assert_eq!(run.api.get("/readyz").await.unwrap().status, StatusCode::OK);
    run.platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_goods_requests_get_clear_errors() {
    let run = harness::start(None, None).await.unwrap();
    run.apply(&mercato_e2e::goods_manifests(
        "bad-goods",
        "bad-seller",
        &[("G-1", "Goods", 900)],
        &[("bad-wh", 1.0, 2.0, &[("G-1", 5)])],
    ))
    .await
    .unwrap();
    run.api.product_with_available("G-1", 5).await.unwrap();
    let anon = run.api.clone();
    let ada = run.api.shopper("ada@example.com").await.unwrap();
    let admin = run.admin.clone();
    let raw =
        |m: Method, path: &str, body: &str| (m, path.to_owned(), Some(body.as_bytes().to_vec()));
    let order = |extra: serde_json::Value| {
        let mut body =
            json!({"checkout_id": "chk_nope", "payment": {"card_number": "4242424242424242"}});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        raw(Method::POST, "/api/v1/orders", &body.to_string())
    };
    let bad_warehouse = "apiVersion: mercato.dev/v1alpha1\nkind: Warehouse\nmetadata: {name: w}\n\
        spec:\n  location: {lat: 1, lon: 2}\n  stock:\n    - {sku: G-1, physical: 1, available: 2}\n";
    let checks: Vec<Case> = vec![
        (
            "checkout of an empty cart",
            ada.clone(),
            raw(Method::POST, "/api/v1/checkouts", ""),
            StatusCode::CONFLICT,
            "cart_empty",
        ),
        (
            "checkout with a body",
            ada.clone(),
            raw(Method::POST, "/api/v1/checkouts", "{\"sku\": 1}"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "cart without a token",
            anon.clone(),
            raw(Method::PUT, "/api/v1/cart/items/G-1", "{\"quantity\": 1}"),
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        ),
        (
            "cart malformed JSON",
            ada.clone(),
            raw(Method::PUT, "/api/v1/cart/items/G-1", "{\"quantity\": "),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            "negative quantity",
            ada.clone(),
            raw(Method::PUT, "/api/v1/cart/items/G-1", "{\"quantity\": -1}"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "huge quantity",
            ada.clone(),
            raw(
                Method::PUT,
                "/api/v1/cart/items/G-1",
                "{\"quantity\": 1001}",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_quantity",
        ),
        (
            "unknown product",
            ada.clone(),
            raw(
                Method::PUT,
                "/api/v1/cart/items/NOPE-1",
                "{\"quantity\": 1}",
            ),
            StatusCode::NOT_FOUND,
            "product_not_found",
        ),
        (
            "not a SKU",
            ada.clone(),
            raw(Method::PUT, "/api/v1/cart/items/a%20b", "{\"quantity\": 1}"),
            StatusCode::NOT_FOUND,
            "product_not_found",
        ),
        (
            "more than in stock",
            ada.clone(),
            raw(Method::PUT, "/api/v1/cart/items/G-1", "{\"quantity\": 6}"),
            StatusCode::CONFLICT,
            "insufficient_stock",
        ),
        (
            "unknown checkout",
            ada.clone(),
            (Method::GET, "/api/v1/checkouts/chk_nope".into(), None),
            StatusCode::NOT_FOUND,
            "checkout_not_found",
        ),
        (
            "delete unknown checkout",
            ada.clone(),
            (Method::DELETE, "/api/v1/checkouts/chk_nope".into(), None),
            StatusCode::NOT_FOUND,
            "checkout_not_found",
        ),
        (
            "order for an unknown checkout",
            ada.clone(),
            order(json!({})),
            StatusCode::NOT_FOUND,
            "checkout_not_found",
        ),
        (
            "hold and checkout at once",
            ada.clone(),
            order(json!({"hold_id": "hold-a.b.c"})),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "latitude out of range",
            ada.clone(),
            order(json!({"shipping_address": {"lat": 100.0, "lon": 0.0}})),
            StatusCode::BAD_REQUEST,
            "invalid_address",
        ),
        (
            "latitude without longitude",
            ada.clone(),
            order(json!({"shipping_address": {"lat": 10.0}})),
            StatusCode::BAD_REQUEST,
            "invalid_address",
        ),
        (
            "address not an object",
            ada.clone(),
            order(json!({"shipping_address": "Main St"})),
            StatusCode::BAD_REQUEST,
            "invalid_address",
        ),
        (
            "cancel an unknown order",
            ada.clone(),
            raw(Method::POST, "/api/v1/orders/ord_nope/cancel", ""),
            StatusCode::NOT_FOUND,
            "order_not_found",
        ),
        (
            "return nothing",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/orders/ord_nope/returns",
                "{\"items\": []}",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_return",
        ),
        (
            "return zero units",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/orders/ord_nope/returns",
                "{\"items\": [{\"sku\": \"G-1\", \"quantity\": 0}]}",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_return",
        ),
        (
            "return from an unknown order",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/orders/ord_nope/returns",
                "{\"items\": [{\"sku\": \"G-1\", \"quantity\": 1}]}",
            ),
            StatusCode::NOT_FOUND,
            "order_not_found",
        ),
        (
            "shopper shipping",
            ada.clone(),
            raw(
                Method::POST,
                "/api/v1/warehouses/bad-wh/shipments/ord_x.1/ship",
                "{\"tracking_number\": \"T\"}",
            ),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "unknown shipment",
            admin.clone(),
            raw(
                Method::POST,
                "/api/v1/warehouses/bad-wh/shipments/ord_x.1/ship",
                "{\"tracking_number\": \"T\"}",
            ),
            StatusCode::NOT_FOUND,
            "shipment_not_found",
        ),
        (
            "empty tracking number",
            admin.clone(),
            raw(
                Method::POST,
                "/api/v1/warehouses/bad-wh/shipments/ord_x.1/ship",
                "{\"tracking_number\": \" \"}",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_tracking_number",
        ),
        (
            "shopper reading alerts",
            ada.clone(),
            (
                Method::GET,
                "/api/v1/sellers/bad-seller/alerts".into(),
                None,
            ),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "shopper listing flagged orders",
            ada.clone(),
            (Method::GET, "/api/v1/admin/flagged-orders".into(), None),
            StatusCode::FORBIDDEN,
            "forbidden",
        ),
        (
            "reallocating an unknown order",
            admin.clone(),
            raw(Method::POST, "/api/v1/admin/orders/ord_nope/allocate", ""),
            StatusCode::NOT_FOUND,
            "order_not_found",
        ),
        (
            "more available than physical",
            admin.clone(),
            raw(Method::POST, "/api/v1/admin/manifests", bad_warehouse),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_manifest",
        ),
    ];
    expect_errors(checks, |_| None).await;
    // Nothing was reserved by any of it.
    let p = run.api.get("/api/v1/products/G-1").await.unwrap();
    assert_eq!(p.body["available"], 5);
    run.platform.stop().await;
}

/// A sign-in for an email with no account answers exactly as one with a wrong password, and
/// takes as long: both check a password hash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_email_signs_in_like_a_wrong_password_in_answer_and_time() {
    let run = harness::start(None, None).await.unwrap();
    run.api.shopper("known@example.com").await.unwrap();
    let sign_in = |email: String| {
        let api = run.api.clone();
        async move {
            let started = std::time::Instant::now();
            let a = api
                .post(
                    "/api/v1/sessions",
                    &json!({"email": email, "password": "not the password"}),
                )
                .await
                .unwrap();
            (a, started.elapsed())
        }
    };
    // One of each first: the unknown-email hash is made once, on first use.
    sign_in("nobody-0@example.com".into()).await;
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for i in 1..=5 {
        let (a, took) = sign_in(format!("nobody-{i}@example.com")).await;
        let (b, took_wrong) = sign_in("known@example.com".into()).await;
        assert_eq!((a.status, a.code()), (b.status, b.code()));
        assert_eq!(a.body, b.body, "the same answer, word for word");
        unknown.push(took);
        wrong.push(took_wrong);
    }
    unknown.sort();
    wrong.sort();
    let (unknown, wrong) = (unknown[2], wrong[2]);
    println!("sign-in medians: unknown email {unknown:?}, wrong password {wrong:?}");
    assert!(
        unknown * 3 >= wrong && wrong * 3 >= unknown,
        "an unknown email answers in {unknown:?}, a wrong password in {wrong:?}"
    );
    run.platform.stop().await;
}
