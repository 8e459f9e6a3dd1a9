//! Whole-platform testing over HTTP: a small typed client of the gateway API, shared by the
//! end-to-end tests and the load generator.

use std::time::Duration;

use anyhow::{anyhow, Context};
use reqwest::StatusCode;
use serde_json::{json, Value};

/// One shopper's HTTP client: its own connection pool and, once signed in, its token.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: Option<String>,
    /// The CA certificates an `https://` gateway is verified against; the system's when empty.
    roots: Vec<reqwest::Certificate>,
}

/// A response: status and JSON body (Null when there is none).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl Api {
    pub fn new(base: &str) -> Self {
        Self::trusting(base, Vec::new())
    }

    /// A client of a gateway serving TLS with a certificate one of `roots` signed.
    pub fn trusting(base: &str, roots: Vec<reqwest::Certificate>) -> Self {
        let builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4);
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http: mercato::trust::trusting(builder, roots.clone())
                .build()
                .unwrap_or_default(),
            token: None,
            roots,
        }
    }

    pub fn with_token(&self, token: &str) -> Self {
        Self {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    /// A fresh client (own connections) for the same shopper.
    pub fn separate(&self) -> Self {
        let mut a = Api::trusting(&self.base, self.roots.clone());
        a.token = self.token.clone();
        a
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&[u8]>,
        idempotency_key: Option<&str>,
    ) -> anyhow::Result<Answer> {
        let mut req = self.http.request(method, self.url(path));
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_vec());
        }
        let resp = req
            .send()
            .await
            .with_context(|| format!("request to {path}"))?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Ok(Answer { status, body })
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(reqwest::Method::GET, path, None, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        self.send(
            reqwest::Method::POST,
            path,
            Some(body.to_string().as_bytes()),
            None,
        )
        .await
    }

    pub async fn post_keyed(&self, path: &str, body: &Value, key: &str) -> anyhow::Result<Answer> {
        self.send(
            reqwest::Method::POST,
            path,
            Some(body.to_string().as_bytes()),
            Some(key),
        )
        .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let bytes = serde_json::to_vec(body)?;
        self.send(reqwest::Method::PUT, path, Some(&bytes), None)
            .await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        self.send(reqwest::Method::DELETE, path, None, None).await
    }

    /// Signs a new shopper up and in; returns a client carrying their token.
    pub async fn shopper(&self, email: &str) -> anyhow::Result<Api> {
        let password = "correct horse battery";
        let created = self
            .post_when_not_overloaded(
                "/api/v1/users",
                &json!({"email": email, "password": password, "name": email}),
            )
            .await?;
        if created.status != StatusCode::CREATED && created.code() != "email_taken" {
            return Err(anyhow!(
                "sign-up of {email} failed: {} {}",
                created.status,
                created.body
            ));
        }
        let session = self
            .post_when_not_overloaded(
                "/api/v1/sessions",
                &json!({"email": email, "password": password}),
            )
            .await?;
        let token = session.body["token"]
            .as_str()
            .ok_or_else(|| anyhow!("sign-in of {email} failed: {}", session.body))?;
        Ok(self.with_token(token))
    }

    /// A POST retried, as a well-behaved client would, while the gateway answers 503
    /// `overloaded` (a flood of sign-ups queues behind the password-hashing slots).
    pub async fn post_when_not_overloaded(
        &self,
        path: &str,
        body: &Value,
    ) -> anyhow::Result<Answer> {
        for _ in 0..60 {
            let a = self.post(path, body).await?;
            if a.status != StatusCode::SERVICE_UNAVAILABLE || a.code() != "overloaded" {
                return Ok(a);
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
        Err(anyhow!("{path}: still overloaded after 30 s"))
    }

    /// Applies a manifest stream (this client must carry an admin token), as `mercato apply
    /// -f` does; an error unless it was accepted.
    pub async fn apply(&self, yaml: &str) -> anyhow::Result<()> {
        let a = self
            .send(
                reqwest::Method::POST,
                "/api/v1/admin/manifests",
                Some(yaml.as_bytes()),
                None,
            )
            .await?;
        anyhow::ensure!(
            a.status == StatusCode::ACCEPTED,
            "apply failed: {} {}",
            a.status,
            a.body
        );
        Ok(())
    }

    pub async fn hold(&self, event_id: &str, seats: &[String]) -> anyhow::Result<Answer> {
        self.post(
            "/api/v1/holds",
            &json!({"event_id": event_id, "seat_ids": seats}),
        )
        .await
    }

    /// Seat id -> status for one section.
    pub async fn seat_statuses(
        &self,
        event_id: &str,
        section: &str,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let a = self
            .get(&format!(
                "/api/v1/events/{event_id}/seats?section={section}"
            ))
            .await?;
        let seats = a.body["seats"]
            .as_array()
            .ok_or_else(|| anyhow!("no seat map: {}", a.body))?;
        Ok(seats
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap_or("").to_owned(),
                    s["status"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect())
    }

    /// Seat id -> status for one section, read from the compact seat map (runs of
    /// `<count><a|h|s>` over the section's seats, row by row).
    pub async fn seat_map_statuses(
        &self,
        event_id: &str,
        section: &str,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let a = self
            .get(&format!(
                "/api/v1/events/{event_id}/seatmap?section={section}"
            ))
            .await?;
        compact_statuses(&a.body["sections"][0])
            .with_context(|| format!("no compact seat map: {}", a.body))
    }

    /// The gateway's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Polls an order until `done` holds for it (or the deadline passes).
    pub async fn order_until(
        &self,
        id: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let a = self.get(&format!("/api/v1/orders/{id}")).await?;
            if a.status == StatusCode::OK && done(&a.body) {
                return Ok(a.body);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!(
                    "order {id} did not get there: {} {}",
                    a.status,
                    a.body
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls an order until its status is `status`.
    pub async fn order_with_status(
        &self,
        id: &str,
        status: &str,
        within: Duration,
    ) -> anyhow::Result<Value> {
        self.order_until(id, within, |o| o["status"] == status)
            .await
    }

    /// Polls an order until it leaves `pending_payment`.
    pub async fn settled_order(&self, id: &str, within: Duration) -> anyhow::Result<Value> {
        self.order_until(id, within, |o| o["status"] != "pending_payment")
            .await
    }

    /// Polls a product until it is ingested and shows `available` units.
    pub async fn product_with_available(&self, sku: &str, available: u64) -> anyhow::Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let a = self.get(&format!("/api/v1/products/{sku}")).await?;
            if a.status == StatusCode::OK && a.body["available"] == available {
                return Ok(a.body);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(anyhow!(
                    "{sku} never showed {available} available: {} {}",
                    a.status,
                    a.body
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `n` shoppers signed up as `<prefix><i>@example.com`.
    pub async fn shoppers(&self, prefix: &str, n: usize) -> anyhow::Result<Vec<Api>> {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            out.push(self.shopper(&format!("{prefix}{i}@example.com")).await?);
        }
        Ok(out)
    }

    /// The same shopper (token) against another gateway: after a restart, say.
    pub fn against(&self, gateway: &Api) -> Api {
        let mut api = Api::trusting(&gateway.base, gateway.roots.clone());
        api.token = self.token.clone();
        api
    }
}

/// A warehouse for [`goods_manifests`]: name, lat, lon, and units per SKU.
pub type WarehouseDecl<'a> = (&'a str, f64, f64, &'a [(&'a str, u64)]);

/// An Inventory of `(sku, name, price in cents)` products in USD, and a Warehouse per
/// `(name, lat, lon, [(sku, units)])`, for tests.
pub fn goods_manifests(
    inventory: &str,
    seller: &str,
    products: &[(&str, &str, i64)],
    warehouses: &[WarehouseDecl<'_>],
) -> String {
    let mut out = format!(
        "apiVersion: mercato.dev/v1alpha1\nkind: Inventory\nmetadata: {{name: {inventory}}}\nspec:\n  seller: {{id: {seller}, name: {seller}}}\n  lowStockThreshold: 3\n  products:\n"
    );
    for (sku, name, cents) in products {
        out.push_str(&format!(
            "    - {{sku: {sku}, name: \"{name}\", category: Test, price: {{amount: {cents}, currency: USD}}}}\n"
        ));
    }
    for (name, lat, lon, stock) in warehouses {
        out.push_str(&format!(
            "---\napiVersion: mercato.dev/v1alpha1\nkind: Warehouse\nmetadata: {{name: {name}}}\nspec:\n  location: {{lat: {lat}, lon: {lon}}}\n  stock:\n"
        ));
        for (sku, units) in *stock {
            out.push_str(&format!("    - {{sku: {sku}, physical: {units}}}\n"));
        }
    }
    out
}

/// An Event manifest with one section of `seats` seats in a row, for tests. Its cap on one
/// shopper's seats is out of the way: the races are run by a few shoppers standing for many
/// (the cap has its own test, `seat_cap`).
pub fn event_manifest(name: &str, section: &str, seats: u32) -> String {
    format!(
        r#"apiVersion: mercato.dev/v1alpha1
kind: Event
metadata:
  name: {name}
spec:
  title: Test event {name}
  venue: {{ name: Test Hall, city: Testville, lat: 10.0, lon: 20.0 }}
  startsAt: 2099-01-01T20:00:00Z
  onSaleAt: 2020-01-01T10:00:00Z
  maxSeatsPerHold: 10
  maxSeatsPerUser: 10000
  tiers:
    - {{ id: std, name: Standard, price: {{ amount: 2500, currency: EUR }} }}
  sections:
    - {{ id: {section}, tier: std, rows: 1, seatsPerRow: {seats} }}
"#
    )
}

/// Seat id -> status of one section of a compact seat map (runs of `<count><a|h|s>` over its
/// seats, row by row), as the seat map and the seat stream's snapshot give it.
pub fn compact_statuses(section: &Value) -> anyhow::Result<Vec<(String, String)>> {
    let id = section["id"].as_str().context("a section without an id")?;
    let (rows, per_row) = (
        section["rows"].as_u64().unwrap_or(0),
        section["seats_per_row"].as_u64().unwrap_or(0),
    );
    let runs = section["status"]
        .as_str()
        .context("a section without a status")?;
    let mut statuses = Vec::new();
    let mut count = String::new();
    for c in runs.chars() {
        if c.is_ascii_digit() {
            count.push(c);
            continue;
        }
        let n: usize = count.parse().context("a run without a count")?;
        count.clear();
        let status = match c {
            'a' => "available",
            'h' => "held",
            's' => "sold",
            other => return Err(anyhow!("unknown status {other:?} in {runs}")),
        };
        statuses.extend(std::iter::repeat_n(status, n));
    }
    if statuses.len() as u64 != rows * per_row {
        return Err(anyhow!(
            "{} statuses for {} seats",
            statuses.len(),
            rows * per_row
        ));
    }
    let ids = (1..=rows).flat_map(|r| (1..=per_row).map(move |n| format!("{id}-{r}-{n}")));
    Ok(ids
        .zip(statuses)
        .map(|(id, s)| (id, s.to_owned()))
        .collect())
}

/// Starting the platform in this process, for tests.
pub mod race;
pub mod storm;

pub mod harness {
    use std::path::PathBuf;
    use std::time::Duration;

    use mercato::platform::{Platform, PlatformConfig};

    use super::Api;

    pub struct Running {
        pub platform: Platform,
        pub api: Api,
        pub admin: Api,
    }

    /// A platform on a free port; `data_dir` None keeps it in memory.
    pub async fn start(
        data_dir: Option<PathBuf>,
        hold_ttl: Option<Duration>,
    ) -> anyhow::Result<Running> {
        start_with(config(data_dir, hold_ttl)).await
    }

    /// The tests' platform: embedded engines on a free loopback port, sources in the
    /// temporary folder; `data_dir` None keeps it in memory. Tests change what they need with
    /// `PlatformConfig { checkout_ttl: …, ..config(…) }`.
    pub fn config(data_dir: Option<PathBuf>, hold_ttl: Option<Duration>) -> PlatformConfig {
        PlatformConfig {
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            manifests: None,
            hold_ttl,
            checkout_ttl: None,
            engines: Default::default(),
            poison_attempts: mercato::platform::DEFAULT_POISON_ATTEMPTS,
            search_cache: mercato_search::DEFAULT_CACHE_ENTRIES,
            sources: sources(),
            // The tests play many shoppers from one address, as fast as they can; the limits
            // have their own test (`rate_limits`).
            rate_limits: mercato::platform::RateLimits::off(),
            client_address: Default::default(),
        }
    }

    /// Tests write their product sources to temporary folders.
    pub fn sources() -> mercato::platform::SourcePolicy {
        mercato::platform::SourcePolicy::new(
            [std::env::temp_dir()],
            mercato::platform::DEFAULT_MAX_SOURCE_BYTES,
        )
        .expect("the temporary folder exists")
    }

    /// A platform configured in full; `listen` should be a port-0 address.
    pub async fn start_with(config: PlatformConfig) -> anyhow::Result<Running> {
        let platform = Platform::start(config).await?;
        let api = Api::new(&format!("http://{}", platform.addr));
        let admin = api.with_token(&platform.admin_token);
        Ok(Running {
            platform,
            api,
            admin,
        })
    }

    impl Running {
        /// Applies a manifest stream through the admin API, as `mercato apply -f` does.
        pub async fn apply(&self, yaml: &str) -> anyhow::Result<()> {
            self.admin.apply(yaml).await
        }
    }
}

/// A platform in a child process that a test can SIGKILL. The test binary re-executes itself
/// to run an ignored test (the child) that calls [`child::serve`] and prints its address.
pub mod child {
    use std::io::{BufRead, BufReader};
    use std::process::{Child, Command, Stdio};

    use mercato::platform::PlatformConfig;
    use serde_json::Value;

    use super::{harness, Api};

    /// Where the child keeps its data: the environment variable it reads.
    pub const DATA_DIR_ENV: &str = "MERCATO_E2E_CHILD_DATA_DIR";

    pub struct ChildPlatform {
        child: Child,
        pub api: Api,
        pub admin: Api,
    }

    impl Drop for ChildPlatform {
        /// SIGKILL: the platform gets no chance to finish anything.
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    /// The body of the child test: starts the platform on the data dir the parent named and
    /// serves until killed. Does nothing when not run as a child.
    pub fn serve(config: impl FnOnce(std::path::PathBuf) -> PlatformConfig) {
        let Ok(dir) = std::env::var(DATA_DIR_ENV) else {
            return;
        };
        let runtime = tokio::runtime::Runtime::new().expect("a runtime for the child");
        runtime.block_on(async {
            let run = harness::start_with(config(dir.into()))
                .await
                .expect("the child platform starts");
            println!(
                "MERCATO_ADDR={} {}",
                run.platform.addr, run.platform.admin_token
            );
            std::future::pending::<()>().await;
        });
    }

    /// Bytes in the store's journal of a platform on `dir`: after a kill mid-flight, the
    /// writes acknowledged since the last checkpoint, which the restart must apply again.
    pub fn journal_bytes(dir: &std::path::Path) -> u64 {
        std::fs::metadata(dir.join("store").join("store.journal")).map_or(0, |m| m.len())
    }

    /// Runs the ignored test `child_test` of this test binary as the child, on `dir`.
    pub fn spawn(child_test: &str, dir: &std::path::Path) -> ChildPlatform {
        let mut child = Command::new(std::env::current_exe().expect("the test binary"))
            .args([
                "--exact",
                child_test,
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DATA_DIR_ENV, dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the child starts");
        let stdout = child.stdout.take().expect("the child's stdout");
        let mut lines = BufReader::new(stdout).lines();
        // The test harness prints "test <name> ... " before the child's own line.
        let line = lines
            .find_map(|l| {
                l.ok().and_then(|l| {
                    l.split_once("MERCATO_ADDR=")
                        .map(|(_, rest)| rest.to_owned())
                })
            })
            .expect("the child platform prints its address");
        let (addr, token) = line.trim().split_once(' ').expect("address and token");
        let api = Api::new(&format!("http://{addr}"));
        let admin = api.with_token(token);
        ChildPlatform { child, api, admin }
    }

    /// Every order of the caller, through the paged listing.
    pub async fn all_orders(api: &Api) -> anyhow::Result<Vec<Value>> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/v1/orders?limit=100&cursor={c}"),
                None => "/api/v1/orders?limit=100".to_owned(),
            };
            let page = api.get(&path).await?;
            out.extend(page.body["orders"].as_array().cloned().unwrap_or_default());
            match page.body["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return Ok(out),
            }
        }
    }
}
