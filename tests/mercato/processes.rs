//! Running `mercato` roles and a private Redis as child processes, for the multi-process tests.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const MERCATO: &str = env!("CARGO_BIN_EXE_mercato");

/// A child that is killed (SIGKILL) when dropped.
pub struct Process {
    pub name: String,
    child: Child,
}

impl Process {
    /// Starts `mercato ARGS` and waits for a line of its standard output containing `ready`;
    /// returns the process and that line. Its logs go to `logs/<name>.log`.
    pub fn mercato(
        name: &str,
        args: &[String],
        env: &[(&str, &str)],
        logs: &Path,
        ready: &str,
    ) -> (Process, String) {
        Self::mercato_within(name, args, env, logs, ready, Duration::from_secs(60))
    }

    /// [`Process::mercato`], waiting up to `limit` for the ready line.
    pub fn mercato_within(
        name: &str,
        args: &[String],
        env: &[(&str, &str)],
        logs: &Path,
        ready: &str,
        limit: Duration,
    ) -> (Process, String) {
        let log = std::fs::File::create(logs.join(format!("{name}.log"))).unwrap();
        let mut child = Command::new(MERCATO)
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("MERCATO_TEST_CHILD_LOG")
                    .as_deref()
                    .unwrap_or("warn"),
            )
            // The tests play many shoppers from one address as fast as they can; a test that
            // wants the limits names them among `env`.
            .env("MERCATO_RATE_LIMITS", "off")
            // A test's own RUST_LOG, among `env`, wins.
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let wanted = ready.to_owned();
        let mut out = std::fs::File::create(logs.join(format!("{name}.out"))).unwrap();
        // Keeps draining the pipe after the ready line, so the child never blocks on it; what
        // it prints (its tracing logs among it) goes to logs/<name>.out.
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = writeln!(out, "{line}");
                if !told && line.contains(&wanted) {
                    told = tx.send(line).is_ok();
                }
            }
        });
        let line = rx.recv_timeout(limit).unwrap_or_else(|_| {
            let log = std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
            panic!("{name} did not get ready; its log:\n{log}")
        });
        (
            Process {
                name: name.to_owned(),
                child,
            },
            line,
        )
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two gateways, two holds workers and two payments workers on shared engines.
pub struct Cluster {
    pub gateways: Vec<String>,
    processes: Vec<Process>,
    env: Vec<(String, String)>,
    webhook: String,
    logs: tempfile::TempDir,
}

impl Cluster {
    pub fn start(bus: &str, coord: &str, store: &str, manifests: &Path) -> Cluster {
        let logs = tempfile::tempdir().unwrap();
        let mut env = vec![
            ("MERCATO_BUS".to_owned(), bus.to_owned()),
            ("MERCATO_STORE".to_owned(), store.to_owned()),
            ("MERCATO_COORD".to_owned(), coord.to_owned()),
        ];
        env.extend(secrets_env(&logs.path().join("secrets")));
        let mut cluster = Cluster {
            gateways: Vec::new(),
            processes: Vec::new(),
            env,
            webhook: String::new(),
            logs,
        };
        for n in 0..2 {
            let mut args = vec![
                "gateway".to_owned(),
                "--listen".into(),
                "127.0.0.1:0".into(),
            ];
            if n == 0 {
                args.extend(["--manifests".into(), manifests.display().to_string()]);
            }
            let (process, line) =
                cluster.spawn(&format!("gateway-{n}"), &args, "listening on http://");
            cluster.gateways.push(gateway_url(&line));
            cluster.processes.push(process);
        }
        cluster.webhook = format!("{}/api/v1/payments/webhook", cluster.gateways[0]);
        for role in ["holds", "payments"] {
            for replica in 0..2 {
                cluster.start_worker(role, replica);
            }
        }
        cluster
    }

    fn spawn(&self, name: &str, args: &[String], ready: &str) -> (Process, String) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        Process::mercato(name, args, &env, self.logs.path(), ready)
    }

    /// Starts replica `replica` of 2 of a worker role (again, after `kill_worker`).
    pub fn start_worker(&mut self, role: &str, replica: u32) {
        let args = vec![
            "worker".to_owned(),
            role.to_owned(),
            "--replica".into(),
            replica.to_string(),
            "--replicas".into(),
            "2".into(),
            "--webhook-url".into(),
            self.webhook.clone(),
        ];
        let (process, _) = self.spawn(&format!("{role}-{replica}"), &args, "running (");
        self.processes.push(process);
    }

    /// SIGKILL of gateway `n`.
    pub fn kill_gateway(&mut self, n: usize) {
        let name = format!("gateway-{n}");
        self.processes.retain(|p| p.name != name);
    }

    /// SIGKILL: the worker gets no chance to finish its batch or commit its offset.
    pub fn kill_worker(&mut self, role: &str, replica: u32) {
        let name = format!("{role}-{replica}");
        self.processes.retain(|p| p.name != name);
    }
}

/// A Redis of the test's own, with AOF fsynced on every write, so it can be killed and started
/// again on the same data.
pub struct RedisServer {
    port: u16,
    dir: tempfile::TempDir,
    process: Option<Child>,
}

impl RedisServer {
    /// `None` (after saying why) when the real-engine tests are not asked for.
    pub fn start() -> Option<RedisServer> {
        // The test runs a Redis of its own (it kills it), where the suites are told to.
        mercato_testkit::engine_address("MERCATO_TEST_REDIS")?;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let mut server = RedisServer {
            port,
            dir: tempfile::tempdir().unwrap(),
            process: None,
        };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (CI installs it)");
        self.process = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                // Loading the AOF happens before it listens.
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// SIGKILL: only what was fsynced survives, which with `appendfsync always` is every
    /// acknowledged write.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The URL a gateway's ready line (`mercato gateway listening on URL (...)`) names.
pub fn gateway_url(line: &str) -> String {
    line.split("listening on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("not a gateway's ready line: {line}"))
        .to_owned()
}

/// A new shopper `email` holds two seats of `event`'s floor and pays; the order must be paid
/// within 30 s (a session token signed and checked, a webhook signed, posted and verified).
pub async fn buy_two_seats(api: &mercato_e2e::Api, email: &str, event: &str) {
    let shopper = api.shopper(email).await.unwrap();
    let seats: Vec<String> = shopper
        .seat_statuses(event, "floor")
        .await
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .take(2)
        .collect();
    let hold = shopper.hold(event, &seats).await.unwrap();
    assert_eq!(hold.status, reqwest::StatusCode::CREATED, "{:?}", hold.body);
    let order = shopper
        .post_keyed(
            "/api/v1/orders",
            &serde_json::json!({"hold_id": hold.body["id"], "payment": {"card_number": "4242424242424242"}}),
            &format!("order-of-{email}"),
        )
        .await
        .unwrap();
    assert_eq!(
        order.status,
        reqwest::StatusCode::ACCEPTED,
        "{:?}",
        order.body
    );
    let settled = shopper
        .settled_order(order.body["id"].as_str().unwrap(), Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(settled["status"], "paid", "{settled}");
}

/// Makes the installation's secrets under `dir`; returns the variables that give them to a
/// gateway or a payments worker.
pub fn secrets_env(dir: &Path) -> Vec<(String, String)> {
    mercato::secrets::ensure(dir).expect("secrets");
    vec![
        (
            "MERCATO_SESSION_KEYS_DIR".to_owned(),
            dir.join("session-keys").display().to_string(),
        ),
        (
            "MERCATO_WEBHOOK_SECRET_FILE".to_owned(),
            dir.join("webhook-secret").display().to_string(),
        ),
    ]
}

pub fn postgres_url() -> Option<String> {
    mercato_testkit::engine_address("MERCATO_TEST_POSTGRES")
}

/// A new database on the server `url` names, so every run starts empty; returns its URL.
pub async fn fresh_database(url: &str) -> String {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let name = format!(
        "mercato_mp_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}
