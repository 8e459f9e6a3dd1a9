//! The gateway serving TLS itself (`--tls-cert/--tls-key`), and the admin commands verifying
//! it (`mercato apply --url https://… --cacert`).
//!
//! The certificate is minted by the test; the gateway runs as its own process on PostgreSQL
//! and a Redis of the test's own, so it runs where the multi-process tests run (CI).

use std::path::Path;
use std::process::{Command, Output};

use crate::processes::{buy_two_seats, gateway_url, Process, RedisServer};
use mercato_e2e::Api;
use mercato_testkit::tls::TestCertificates;

const MERCATO: &str = env!("CARGO_BIN_EXE_mercato");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_tls_that_the_admin_commands_verify() {
    let Some(postgres) = crate::processes::postgres_url() else {
        return;
    };
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let certs = TestCertificates::mint(work.path());
    let store = crate::processes::fresh_database(&postgres).await;
    let token_file = work.path().join("admin-token");
    let args: Vec<String> = [
        "gateway",
        "--listen",
        "127.0.0.1:0",
        "--accept-manifests",
        "--admin-token-file",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([token_file.display().to_string()])
    .chain(["--tls-cert".into(), certs.server_cert.display().to_string()])
    .chain(["--tls-key".into(), certs.server_key.display().to_string()])
    .collect();
    let mut env = vec![
        ("MERCATO_BUS".to_owned(), redis.url()),
        ("MERCATO_COORD".to_owned(), redis.url()),
        ("MERCATO_STORE".to_owned(), store),
    ];
    env.extend(crate::processes::secrets_env(&work.path().join("secrets")));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let (_gateway, line) = Process::mercato(
        "gateway-tls",
        &args,
        &env,
        work.path(),
        "listening on https://",
    );
    let url = gateway_url(&line);
    let addr = url.strip_prefix("https://").unwrap().to_owned();
    let port = addr.rsplit(':').next().unwrap();
    let manifest = work.path().join("event.yaml");
    std::fs::write(
        &manifest,
        mercato_e2e::event_manifest("tls-night", "floor", 4),
    )
    .unwrap();
    let token = std::fs::read_to_string(&token_file).unwrap();

    // Verified against the CA that signed it, by IP and by host name.
    for url in [
        format!("https://{addr}"),
        format!("https://localhost:{port}"),
    ] {
        let out = apply(&url, &certs.ca, &token, &manifest);
        assert!(
            out.status.success(),
            "apply over {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("event.mercato.dev/tls-night"),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    // Another CA's word is not taken, and the refusal says why.
    let refused = apply(
        &format!("https://{addr}"),
        &certs.other_ca,
        &token,
        &manifest,
    );
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains("--cacert"), "{said}");
    assert!(!said.contains("panicked"), "{said}");

    // The port speaks TLS only: plain HTTP gets no answer from the API.
    let plain = apply(&format!("http://{addr}"), &certs.ca, &token, &manifest);
    assert!(!plain.status.success());
    let said = String::from_utf8_lossy(&plain.stderr);
    assert!(said.contains("https://?"), "{said}");

    // A purchase over HTTPS, settled by the payments worker's webhook posted over HTTPS to the
    // same gateway, verified against the CA.
    let webhook = format!("https://localhost:{port}/api/v1/payments/webhook");
    let mut workers = Vec::new();
    for role in ["holds", "payments"] {
        let args: Vec<String> = [
            "worker",
            role,
            "--webhook-url",
            &webhook,
            "--webhook-cacert",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([certs.ca.display().to_string()])
        .collect();
        workers.push(Process::mercato(role, &args, &env, work.path(), "running (").0);
    }
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&certs.ca).unwrap()).unwrap();
    let api = Api::trusting(&format!("https://localhost:{port}"), vec![ca]);
    buy_two_seats(&api, "tls@example.com", "tls-night").await;
}

/// Wrong certificate files stop the gateway before it touches an engine, with the reason.
#[test]
fn a_key_that_is_not_a_key_is_refused_at_start() {
    let work = tempfile::tempdir().unwrap();
    let certs = TestCertificates::mint(work.path());
    let start = |cert: &Path, key: &Path| {
        Command::new(MERCATO)
            .args(["gateway", "--listen", "127.0.0.1:0", "--tls-cert"])
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .output()
            .unwrap()
    };
    for (cert, key, reason) in [
        (&certs.server_cert, &certs.ca, "holds no PEM private key"),
        (
            &certs.server_key,
            &certs.server_key,
            "holds no PEM certificate",
        ),
        (
            &certs.server_cert,
            &work.path().join("absent.key"),
            "cannot read",
        ),
    ] {
        let out = start(cert, key);
        let said = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{said}");
        assert!(said.contains(reason), "wanted {reason:?}: {said}");
    }
    // A certificate with the key of another.
    let elsewhere = tempfile::tempdir().unwrap();
    let other = TestCertificates::mint(elsewhere.path());
    let out = start(&certs.server_cert, &other.server_key);
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("do not go together"), "{said}");
    // Half a pair is refused by the flags.
    let out = Command::new(MERCATO)
        .args(["gateway", "--tls-cert"])
        .arg(&certs.server_cert)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
}

fn apply(url: &str, cacert: &Path, token: &str, manifest: &Path) -> Output {
    Command::new(MERCATO)
        .args(["apply", "--no-wait", "--url", url, "--cacert"])
        .arg(cacert)
        .args(["--token", token.trim(), "-f"])
        .arg(manifest)
        .output()
        .unwrap()
}
