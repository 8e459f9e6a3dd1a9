//! The manifests route and the files it reads: the caller's role is checked before a byte of
//! the body is read, the route exists only where a local reconciler applies manifests, and an
//! Inventory's source is read only inside the configured folders, only if it is a regular file
//! and only up to the size limit. Every refusal names its cause with a code.

use std::path::Path;
use std::time::Duration;

use mercato::platform::{PlatformConfig, SourcePolicy};
use mercato_e2e::{harness, Answer, Api};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MANIFESTS: &str = "/api/v1/admin/manifests";

fn inventory(name: &str, file: &str) -> String {
    format!(
        "apiVersion: mercato.dev/v1alpha1\nkind: Inventory\nmetadata:\n  name: {name}\nspec:\n  seller: {{id: {name}, name: Shop}}\n  currency: USD\n  source:\n    file: {file}\n"
    )
}

async fn apply(admin: &Api, yaml: &str) -> Answer {
    // A hang (a FIFO opened for reading blocks until a writer comes) fails the test instead
    // of stalling it.
    tokio::time::timeout(
        Duration::from_secs(20),
        admin.send(
            reqwest::Method::POST,
            MANIFESTS,
            Some(yaml.as_bytes()),
            None,
        ),
    )
    .await
    .expect("the apply answered in time")
    .expect("the gateway answered")
}

/// Sends only the headers of a request announcing a 17 MiB body and returns the status line.
async fn status_line_for_announced_body(addr: std::net::SocketAddr, token: Option<&str>) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {MANIFESTS} HTTP/1.1\r\nhost: {addr}\r\n{auth}content-type: application/yaml\r\ncontent-length: {}\r\n\r\n",
        17 * 1024 * 1024
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    let mut buf = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !reply.windows(2).any(|w| w == b"\r\n") {
            let n = stream.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    assert!(read.is_ok(), "no answer before the body was sent");
    let text = String::from_utf8_lossy(&reply).into_owned();
    text.lines().next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_role_is_checked_before_the_body_is_read() {
    let run = harness::start(None, None).await.unwrap();
    let addr = run.platform.addr;

    // Before the fix a stranger announcing 17 MiB was told 413: the body was measured before
    // anyone asked who was sending it.
    let anonymous = status_line_for_announced_body(addr, None).await;
    assert!(anonymous.starts_with("HTTP/1.1 401"), "{anonymous}");
    let forged = status_line_for_announced_body(addr, Some("not-a-token")).await;
    assert!(forged.starts_with("HTTP/1.1 401"), "{forged}");
    let shopper = run.api.shopper("ada@example.com").await.unwrap();
    let token = shopper.token.clone().unwrap();
    let shopper_line = status_line_for_announced_body(addr, Some(&token)).await;
    assert!(shopper_line.starts_with("HTTP/1.1 403"), "{shopper_line}");

    // A small body from the wrong caller: the same refusals, with their codes.
    let yaml = inventory("shop", "/nowhere.ndjson");
    let a = apply(&run.api.with_token("not-a-token"), &yaml).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.body);
    assert_eq!(a.code(), "unauthorized");
    let a = apply(&shopper, &yaml).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{}", a.body);
    assert_eq!(a.code(), "forbidden");

    // The admin's oversized body is still refused by size.
    let admin_line = status_line_for_announced_body(addr, Some(&run.platform.admin_token)).await;
    assert!(admin_line.starts_with("HTTP/1.1 413"), "{admin_line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_without_a_local_reconciler_has_no_manifests_route() {
    let ports = mercato::engines::Engines::default()
        .connect(None)
        .await
        .unwrap();
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let gateway = mercato::platform::start_gateway(
        &ports,
        mercato::platform::GatewayRole {
            listen: "127.0.0.1:0".parse().unwrap(),
            search_dir: None,
            search_cache: 0,
            hold_ttl: None,
            checkout_ttl: None,
            manifests: None,
            accept_manifests: false,
            sources: SourcePolicy::default(),
            secrets: mercato::secrets::ephemeral(),
            tls: None,
            rate_limits: mercato::platform::RateLimits::off(),
            client_address: Default::default(),
        },
        &stop,
    )
    .await
    .unwrap();
    let token = mercato::platform::admin_token(&gateway.state).unwrap();
    let admin = Api::new(&format!("http://{}", gateway.addr)).with_token(&token);

    let a = apply(&admin, &inventory("shop", "/etc/passwd")).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    assert_eq!(a.code(), "not_found");
    // The rest of the admin API is there.
    let listed = admin.get("/api/v1/admin/inventories").await.unwrap();
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
}

fn refused(a: &Answer, code: &str) {
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(a.code(), code, "{}", a.body);
}

fn write_products(path: &Path, n: usize) {
    let lines: Vec<String> = (0..n)
        .map(|i| {
            json!({"sku": format!("SKU-{i}"), "name": format!("thing {i}"), "price": 100})
                .to_string()
        })
        .collect();
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_are_read_only_inside_the_folders_only_as_regular_files_and_only_so_big() {
    let folder = tempfile::tempdir().unwrap();
    let run = harness::start_with(PlatformConfig {
        sources: SourcePolicy::new([folder.path().to_path_buf()], 1024).unwrap(),
        ..harness::config(None, None)
    })
    .await
    .unwrap();
    let dir = folder.path();

    // A file outside the folders, named outright or through a symlink or `..`.
    refused(
        &apply(&run.admin, &inventory("shop", "/etc/passwd")).await,
        "source_outside_roots",
    );
    std::os::unix::fs::symlink("/etc/passwd", dir.join("passwd.ndjson")).unwrap();
    let link = dir.join("passwd.ndjson").display().to_string();
    refused(
        &apply(&run.admin, &inventory("shop", &link)).await,
        "source_outside_roots",
    );
    let climbing = format!("{}/../../etc/passwd", dir.display());
    refused(
        &apply(&run.admin, &inventory("shop", &climbing)).await,
        "source_outside_roots",
    );

    // Inside the folders but not a regular file: a FIFO (opening it for reading would wait
    // for a writer forever) and a folder.
    let fifo = dir.join("products.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    refused(
        &apply(&run.admin, &inventory("shop", &fifo.display().to_string())).await,
        "source_not_a_file",
    );
    std::fs::create_dir(dir.join("folder.ndjson")).unwrap();
    let folder_source = dir.join("folder.ndjson").display().to_string();
    refused(
        &apply(&run.admin, &inventory("shop", &folder_source)).await,
        "source_not_a_file",
    );

    // Missing, and over the 1 KiB limit.
    let missing = dir.join("missing.ndjson").display().to_string();
    refused(
        &apply(&run.admin, &inventory("shop", &missing)).await,
        "source_unreadable",
    );
    let big = dir.join("big.ndjson");
    write_products(&big, 40);
    assert!(std::fs::metadata(&big).unwrap().len() > 1024);
    let a = apply(&run.admin, &inventory("shop", &big.display().to_string())).await;
    refused(&a, "source_too_large");
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Inventory shop"),
        "{}",
        a.body
    );

    // Nothing refused was recorded; a small regular file inside the folder is applied.
    let listed = run.admin.get("/api/v1/admin/inventories").await.unwrap();
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert!(
        !listed.body.to_string().contains("\"shop\""),
        "a refused inventory was recorded: {}",
        listed.body
    );
    let small = dir.join("small.ndjson");
    write_products(&small, 3);
    let a = apply(&run.admin, &inventory("shop", &small.display().to_string())).await;
    assert_eq!(a.status, StatusCode::ACCEPTED, "{}", a.body);
}
