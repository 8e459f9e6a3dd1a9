//! An Inventory's `source.url`, fetched from real servers the test starts: plain HTTP (warp)
//! and an S3-protocol server on a folder (s3s-fs, requests signed and verified). Sources are
//! ingested from both; a declared SHA-256 is enforced and spares an unchanged declaration a
//! second download; a 503 is retried; a 404, a missing object, a URL outside the allowed
//! prefixes and a source over the cap are refused with their code.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper_util::rt::{TokioExecutor, TokioIo};
use mercato::platform::{PlatformConfig, SourcePolicy};
use mercato_e2e::{harness, Answer, Api};
use reqwest::StatusCode;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use warp::Filter;

const MAX_BYTES: u64 = 64 * 1024;
const ACCESS_KEY: &str = "mercato-test";
const SECRET_KEY: &str = "mercato-test-secret-key";

fn products(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"sku": format!("{prefix}-{i}"), "name": format!("{prefix} thing {i}"), "price": 100})
                .to_string()
                + "\n"
        })
        .collect()
}

fn inventory(name: &str, url: &str, sha256: Option<&str>) -> String {
    let sum = sha256
        .map(|s| format!("\n    sha256: {s}"))
        .unwrap_or_default();
    format!(
        "apiVersion: mercato.dev/v1alpha1\nkind: Inventory\nmetadata:\n  name: {name}\nspec:\n  seller: {{id: {name}, name: Shop}}\n  currency: USD\n  source:\n    url: {url}{sum}\n"
    )
}

/// Plain HTTP: the books, a source that fails once with 503, one over the cap; counts requests.
async fn http_server(books: String, downloads: Arc<AtomicUsize>) -> SocketAddr {
    let flaky_calls = Arc::new(AtomicUsize::new(0));
    let counted = {
        let books = books.clone();
        warp::path!("books.ndjson").map(move || {
            downloads.fetch_add(1, Ordering::SeqCst);
            books.clone()
        })
    };
    let flaky = {
        let books = books.clone();
        warp::path!("flaky.ndjson").map(move || {
            if flaky_calls.fetch_add(1, Ordering::SeqCst) == 0 {
                warp::reply::with_status(String::new(), warp::http::StatusCode::SERVICE_UNAVAILABLE)
            } else {
                warp::reply::with_status(books.clone(), warp::http::StatusCode::OK)
            }
        })
    };
    let big = warp::path!("big.ndjson").map(|| products("BIG", 2_000));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let routes = warp::get().and(counted.or(flaky).or(big));
    tokio::spawn(warp::serve(routes).incoming(listener).run());
    addr
}

/// An S3-protocol server whose buckets are the folders under `root`, checking signatures.
async fn s3_server(root: &std::path::Path) -> SocketAddr {
    let mut builder = s3s::service::S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).unwrap());
    builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((socket, _)) = listener.accept().await else {
                continue;
            };
            let service = service.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
        }
    });
    addr
}

async fn apply(admin: &Api, yaml: &str) -> Answer {
    tokio::time::timeout(
        Duration::from_secs(60),
        admin.send(
            reqwest::Method::POST,
            "/api/v1/admin/manifests",
            Some(yaml.as_bytes()),
            None,
        ),
    )
    .await
    .expect("the apply answered in time")
    .expect("the gateway answered")
}

fn refused(a: &Answer, code: &str) {
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.code(), code, "{}", a.body);
}

/// Waits until the inventory's products are published and returns its status.
async fn ready(admin: &Api, name: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = admin
            .get(&format!("/api/v1/admin/inventories/{name}"))
            .await
            .unwrap()
            .body;
        if s["state"] == "ready" {
            return s;
        }
        assert_ne!(s["state"], "failed", "{s}");
        assert!(Instant::now() < deadline, "ingest did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_fetched_from_http_and_s3_checked_and_capped() {
    let books = products("BOOK", 3);
    let sha256 = hex::encode(Sha256::digest(books.as_bytes()));
    let downloads = Arc::new(AtomicUsize::new(0));
    let http = http_server(books.clone(), Arc::clone(&downloads)).await;
    let buckets = tempfile::tempdir().unwrap();
    std::fs::create_dir(buckets.path().join("catalogs")).unwrap();
    std::fs::write(
        buckets.path().join("catalogs").join("music.ndjson"),
        products("MUSIC", 4),
    )
    .unwrap();
    let s3 = s3_server(buckets.path()).await;
    // object_store reads the standard variables; only this test sets them.
    for (key, value) in [
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_ENDPOINT", format!("http://{s3}")),
        ("AWS_ALLOW_HTTP", "true".to_owned()),
    ] {
        std::env::set_var(key, value);
    }
    let base = format!("http://{http}");
    let run = harness::start_with(PlatformConfig {
        sources: SourcePolicy::new(Vec::new(), MAX_BYTES)
            .unwrap()
            .with_url_prefixes(vec![format!("{base}/"), "s3://catalogs/".to_owned()]),
        ..harness::config(None, None)
    })
    .await
    .unwrap();
    let admin = &run.admin;

    // Over HTTP, pinned by its checksum: ingested; applied again unchanged, not downloaded.
    let pinned = inventory("books", &format!("{base}/books.ndjson"), Some(&sha256));
    let a = apply(admin, &pinned).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let status = ready(admin, "books").await;
    assert_eq!(status["published"], 3, "{status}");
    let product = run.api.get("/api/v1/products/BOOK-2").await.unwrap();
    assert_eq!(product.status, StatusCode::OK, "{}", product.body);
    assert_eq!(downloads.load(Ordering::SeqCst), 1);
    let again = apply(admin, &pinned).await;
    assert_eq!(
        again.body["applied"][0]["action"], "unchanged",
        "{}",
        again.body
    );
    assert_eq!(
        downloads.load(Ordering::SeqCst),
        1,
        "an unchanged pin is not fetched"
    );

    // Other bytes than declared: refused, nothing recorded.
    let wrong = "0".repeat(64);
    let a = apply(
        admin,
        &inventory("tampered", &format!("{base}/books.ndjson"), Some(&wrong)),
    )
    .await;
    refused(&a, "source_checksum_mismatch");
    assert!(a.body.to_string().contains(&sha256), "{}", a.body);

    // A 503 is asked again; a 404 is not, and says what the server answered.
    let a = apply(
        admin,
        &inventory("flaky", &format!("{base}/flaky.ndjson"), None),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    ready(admin, "flaky").await;
    let a = apply(
        admin,
        &inventory("gone", &format!("{base}/gone.ndjson"), None),
    )
    .await;
    refused(&a, "source_unreachable");
    assert!(a.body.to_string().contains("404"), "{}", a.body);

    // Over the cap; outside the allowed prefixes (the cluster's internal services, say).
    let a = apply(
        admin,
        &inventory("big", &format!("{base}/big.ndjson"), None),
    )
    .await;
    refused(&a, "source_too_large");
    let a = apply(
        admin,
        &inventory("metadata", "http://169.254.169.254/latest/meta-data", None),
    )
    .await;
    refused(&a, "source_url_not_allowed");

    // From S3-compatible storage, signed; a missing object is refused.
    let a = apply(
        admin,
        &inventory("music", "s3://catalogs/music.ndjson", None),
    )
    .await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
    let status = ready(admin, "music").await;
    assert_eq!(status["published"], 4, "{status}");
    let a = apply(
        admin,
        &inventory("nothing", "s3://catalogs/absent.ndjson", None),
    )
    .await;
    refused(&a, "source_unreachable");
    let a = apply(
        admin,
        &inventory("elsewhere", "s3://other-bucket/music.ndjson", None),
    )
    .await;
    refused(&a, "source_url_not_allowed");

    let listed = admin.get("/api/v1/admin/inventories").await.unwrap();
    for name in [
        "tampered",
        "gone",
        "big",
        "metadata",
        "nothing",
        "elsewhere",
    ] {
        assert!(
            !listed.body.to_string().contains(&format!("\"{name}\"")),
            "refused {name} was recorded: {}",
            listed.body
        );
    }
}
