//! The installation's secrets stay in their files: a run of `mercato up`, and of the split
//! processes on PostgreSQL and Redis, leaves none of them in the store or the logs (logged at
//! `debug`), while sessions, webhooks and the first admin, bootstrapped from a password file,
//! all work with them.

use std::path::{Path, PathBuf};

use crate::processes::{buy_two_seats, gateway_url, Process, RedisServer};
use mercato_e2e::Api;
use reqwest::StatusCode;
use serde_json::json;

const ADMIN_EMAIL: &str = "ops@example.com";
const ADMIN_PASSWORD: &str = "a long admin password 7f3c";

/// Every secret under `dir`: the session keys, the webhook secret.
fn secrets_in(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walk(dir) {
        let text = std::fs::read_to_string(&entry).unwrap();
        out.push(text.trim_end().to_owned());
    }
    assert!(
        out.len() >= 2,
        "a session key and a webhook secret: {out:?}"
    );
    out
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Asserts that no secret appears in `haystack` (named `what`), as text or as its bytes.
fn assert_absent(secrets: &[String], what: &str, haystack: &[u8]) {
    for secret in secrets {
        // PostgreSQL shows bytes as hex: the secret's own bytes in hex too.
        for form in [secret.clone(), hex::encode(secret)] {
            assert!(
                !haystack.windows(form.len()).any(|w| w == form.as_bytes()),
                "a secret ({}…) is in {what}",
                &secret[..6]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mercato_up_keeps_its_secrets_out_of_the_store_and_the_logs() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let manifests = work.path().join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("event.yaml"),
        mercato_e2e::event_manifest("quiet", "floor", 4),
    )
    .unwrap();
    let args: Vec<String> = ["up", "--listen", "127.0.0.1:0", "--data-dir"]
        .iter()
        .map(|s| s.to_string())
        .chain([data.display().to_string()])
        .chain(["--manifests".into(), manifests.display().to_string()])
        .collect();
    let (up, line) = Process::mercato(
        "up",
        &args,
        &[("RUST_LOG", "debug")],
        work.path(),
        "Mercato is up at ",
    );
    let base = line
        .split("Mercato is up at ")
        .nth(1)
        .unwrap()
        .trim()
        .to_owned();
    buy_two_seats(&Api::new(&base), "buyer@example.com", "quiet").await;
    drop(up);

    let secrets = secrets_in(&data.join("secrets"));
    for file in walk(&data) {
        if file.starts_with(data.join("secrets")) {
            continue;
        }
        assert_absent(
            &secrets,
            &file.display().to_string(),
            &std::fs::read(&file).unwrap(),
        );
    }
    let mut logged = 0;
    for log in ["up.log", "up.out"] {
        let text = std::fs::read(work.path().join(log)).unwrap();
        logged += text.len();
        assert_absent(&secrets, log, &text);
    }
    assert!(logged > 10_000, "the debug logs were read: {logged} bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_processes_keep_their_secrets_out_of_the_store_and_the_logs() {
    let Some(postgres) = crate::processes::postgres_url() else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let store = crate::processes::fresh_database(&postgres).await;
    // An earlier version's secrets in the store are deleted at start.
    let stale = mercato::engines::Engines::parse(&redis.url(), &store, &redis.url())
        .unwrap()
        .connect(None)
        .await
        .unwrap();
    for name in mercato_core::repo::RETIRED_STORED_SECRETS {
        stale
            .store
            .put(
                mercato_core::names::tables::SETTINGS,
                name,
                "",
                b"an old stored secret 0123456789abcdef".to_vec(),
                None,
            )
            .await
            .unwrap();
    }
    let admin_password = work.path().join("admin-password");
    std::fs::write(&admin_password, format!("{ADMIN_PASSWORD}\n")).unwrap();
    let mut env = vec![
        ("MERCATO_BUS".to_owned(), redis.url()),
        ("MERCATO_COORD".to_owned(), redis.url()),
        ("MERCATO_STORE".to_owned(), store.clone()),
        ("RUST_LOG".to_owned(), "debug".to_owned()),
        ("MERCATO_ADMIN_EMAIL".to_owned(), ADMIN_EMAIL.to_owned()),
        (
            "MERCATO_ADMIN_PASSWORD_FILE".to_owned(),
            admin_password.display().to_string(),
        ),
    ];
    env.extend(crate::processes::secrets_env(&work.path().join("secrets")));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let manifest = work.path().join("manifests");
    std::fs::create_dir_all(&manifest).unwrap();
    std::fs::write(
        manifest.join("event.yaml"),
        mercato_e2e::event_manifest("hushed", "floor", 4),
    )
    .unwrap();
    let gateway_args: Vec<String> = ["gateway", "--listen", "127.0.0.1:0", "--manifests"]
        .iter()
        .map(|s| s.to_string())
        .chain([manifest.display().to_string()])
        .collect();
    let (gateway, line) = Process::mercato(
        "gateway",
        &gateway_args,
        &env,
        work.path(),
        "listening on http://",
    );
    let addr = gateway_url(&line);
    let webhook = format!("{addr}/api/v1/payments/webhook");
    let mut workers = vec![gateway];
    for role in ["holds", "payments"] {
        let args: Vec<String> = ["worker", role, "--webhook-url", &webhook]
            .iter()
            .map(|s| s.to_string())
            .collect();
        workers.push(Process::mercato(role, &args, &env, work.path(), "running (").0);
    }
    let api = Api::new(&addr);
    buy_two_seats(&api, "buyer@example.com", "hushed").await;

    // The first admin signs in with the password from the file, and is an admin.
    let session = api
        .post(
            "/api/v1/sessions",
            &json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD}),
        )
        .await
        .unwrap();
    assert_eq!(session.status, StatusCode::CREATED, "{:?}", session.body);
    let admin = api.with_token(session.body["token"].as_str().unwrap());
    let listed = admin.get("/api/v1/admin/inventories").await.unwrap();
    assert_eq!(listed.status, StatusCode::OK, "{:?}", listed.body);
    drop(workers);

    let mut secrets = secrets_in(&work.path().join("secrets"));
    secrets.push(ADMIN_PASSWORD.to_owned());
    for name in mercato_core::repo::RETIRED_STORED_SECRETS {
        let row = stale
            .store
            .get(mercato_core::names::tables::SETTINGS, name, "")
            .await
            .unwrap();
        assert!(row.is_none(), "{name} is still in the store");
    }
    let (client, connection) = tokio_postgres::connect(&store, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let dump: String = client
        .query_one(
            "SELECT string_agg(t::text, E'\\n') FROM mercato_rows t",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        dump.contains("buyer@example.com"),
        "the dump holds the run's rows"
    );
    assert_absent(&secrets, "the PostgreSQL store", dump.as_bytes());
    for file in walk(work.path()) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".log") || name.ends_with(".out") {
            assert_absent(&secrets, &name, &std::fs::read(&file).unwrap());
        }
    }
}
