//! The admin commands that talk to a running `mercato up`: `apply`, `dlq` and `reindex`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// Where the running instance is, and the admin token to use.
#[derive(clap::Args, Clone)]
pub struct Target {
    /// The gateway of the running instance.
    #[arg(long, env = "MERCATO_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin token [default: read from <data-dir>/admin-token].
    #[arg(long, env = "MERCATO_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[arg(long, default_value = "./mercato-data")]
    pub data_dir: PathBuf,
    /// For an `https://` URL whose certificate a private CA signed: that CA's PEM certificate
    /// (trusted instead of the system's roots) [default: the system's roots].
    #[arg(long, env = "MERCATO_CACERT")]
    pub cacert: Option<PathBuf>,
}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(target: &Target) -> anyhow::Result<Client> {
        let token = match &target.token {
            Some(t) => t.clone(),
            None => {
                let path = target.data_dir.join("admin-token");
                std::fs::read_to_string(&path)
                    .with_context(|| format!("no --token given and {} is unreadable (is `mercato up` running with that --data-dir?)", path.display()))?
                    .trim()
                    .to_owned()
            }
        };
        Ok(Client {
            base: target.url.trim_end_matches('/').to_owned(),
            token,
            http: http_client(target.cacert.as_deref())?,
        })
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let resp = request.bearer_auth(&self.token).send().await.map_err(|e| {
            let hint = unreachable_hint(&e);
            anyhow::Error::new(e).context(format!("cannot reach {} ({hint})", self.base))
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!(render_error(status, &body));
        }
        Ok(body)
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query))
            .await
    }

    async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn post(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: String,
    ) -> anyhow::Result<Value> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .query(query)
                .header("content-type", "application/yaml")
                .body(body),
        )
        .await
    }
}

/// What to check when a request got no answer, by what went wrong.
fn unreachable_hint(error: &reqwest::Error) -> &'static str {
    let chain = std::iter::successors(Some(error as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    if chain.contains("certificate") {
        "its TLS certificate is not trusted: give the CA that signed it with --cacert"
    } else if chain.contains("invalid HTTP version") {
        "it answered in something other than HTTP: does it serve https://?"
    } else {
        "is `mercato up` or the gateway running there?"
    }
}

/// An HTTP client that verifies `https://` servers against `cacert`, or the system's roots.
fn http_client(cacert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let roots = match cacert {
        Some(path) => crate::trust::ca_certificates("--cacert", path)?,
        None => Vec::new(),
    };
    crate::trust::trusting(reqwest::Client::builder(), roots)
        .build()
        .context("cannot set up the HTTP client")
}

fn render_error(status: reqwest::StatusCode, body: &Value) -> String {
    let code = body["error"]["code"].as_str().unwrap_or("unknown");
    let message = body["error"]["message"].as_str().unwrap_or("");
    match body["error"]["details"]["problems"].as_array() {
        Some(problems) => {
            let mut text = format!("{status} {code}: the manifest is invalid:");
            for p in problems {
                text.push_str(&format!(
                    "\n  {}: {}",
                    p["path"].as_str().unwrap_or(""),
                    p["message"].as_str().unwrap_or("")
                ));
            }
            text
        }
        None => format!("{status} {code}: {message}"),
    }
}

/// `mercato apply -f`: sends the manifests, then follows each changed Inventory until its
/// products are ingested and searchable (unless `wait` is off).
pub async fn apply(target: &Target, file: &Path, wait: bool) -> anyhow::Result<()> {
    let (yaml, base_dir) = if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        (
            s,
            std::env::current_dir().context("finding the current folder")?,
        )
    } else {
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let absolute =
            std::fs::canonicalize(file).with_context(|| format!("resolving {}", file.display()))?;
        let dir = absolute.parent().map(Path::to_owned).unwrap_or_default();
        (text, dir)
    };
    let client = Client::new(target)?;
    let body = client
        .post(
            "/api/v1/admin/manifests",
            &[("base_dir", base_dir.display().to_string())],
            yaml,
        )
        .await?;
    let mut follow = Vec::new();
    for a in body["applied"].as_array().into_iter().flatten() {
        let kind = a["kind"].as_str().unwrap_or("");
        let name = a["name"].as_str().unwrap_or("");
        let action = a["action"].as_str().unwrap_or("");
        println!("{}.mercato.dev/{name} {action}", kind.to_lowercase());
        if kind == "Inventory" && action != "unchanged" {
            follow.push(name.to_owned());
        }
    }
    if wait {
        for name in follow {
            follow_inventory(&client, &name).await?;
        }
    }
    Ok(())
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

async fn follow_inventory(client: &Client, name: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut last_done = 0u64;
    loop {
        let s = client
            .get(&format!("/api/v1/admin/inventories/{name}"), &[])
            .await?;
        let state = s["state"].as_str().unwrap_or("");
        let done = count(&s["accepted"]) + count(&s["rejected"]);
        if state == "failed" {
            bail!(
                "inventory/{name}: {}",
                s["error"].as_str().unwrap_or("publishing failed")
            );
        }
        if state == "ready" {
            let seconds = started.elapsed().as_secs_f64().max(0.001);
            println!(
                "inventory/{name}: {} records: {} accepted ({} new or changed, {} unchanged), {} rejected, {} removed in {seconds:.1} s ({:.0} records/s)",
                count(&s["records"]),
                count(&s["accepted"]),
                count(&s["written"]),
                count(&s["unchanged"]),
                count(&s["rejected"]),
                count(&s["removed"]),
                done as f64 / seconds,
            );
            if count(&s["rejected"]) > 0 {
                println!("  rejected records: mercato dlq --inventory {name}");
            }
            break;
        }
        if last_line.elapsed() >= Duration::from_secs(1) {
            let rate = (done - last_done.min(done)) as f64 / last_line.elapsed().as_secs_f64();
            println!(
                "inventory/{name}: {state}: {} published, {} accepted, {} rejected ({rate:.0} records/s)",
                count(&s["published"]),
                count(&s["accepted"]),
                count(&s["rejected"]),
            );
            last_line = Instant::now();
            last_done = done;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_searchable(client, &format!("inventory/{name}")).await
}

/// Waits until the search index has folded in everything on the catalog topic.
async fn wait_searchable(client: &Client, what: &str) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_line = Instant::now();
    loop {
        let s = client.get("/api/v1/admin/search", &[]).await?;
        let lag = count(&s["lag"]);
        if lag == 0 && s["rebuilding_to"].is_null() {
            println!(
                "{what}: searchable ({} documents in the index)",
                count(&s["docs"])
            );
            return Ok(());
        }
        if last_line.elapsed() >= Duration::from_secs(1) {
            println!("{what}: indexing, {lag} changes to go");
            last_line = Instant::now();
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("{what}: the search index did not catch up in 10 minutes ({lag} changes behind)");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `mercato dlq`: rejected records of an inventory, or the whole dead-letter topic.
pub async fn dlq(
    target: &Target,
    inventory: Option<String>,
    generation: Option<u64>,
    all: bool,
) -> anyhow::Result<()> {
    let client = Client::new(target)?;
    let mut cursor: Option<String> = None;
    let mut shown = 0u64;
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        if let Some(i) = &inventory {
            query.push(("inventory", i.clone()));
        }
        if let Some(g) = generation {
            query.push(("generation", g.to_string()));
        }
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page = client.get("/api/v1/admin/dead-letters", &query).await?;
        if shown == 0 {
            match &inventory {
                Some(name) => println!(
                    "inventory/{name}, generation {}: {} rejected",
                    count(&page["generation"]),
                    count(&page["rejected"])
                ),
                None => println!("dead-letter topic: {} records", count(&page["total"])),
            }
        }
        for l in page["dead_letters"].as_array().into_iter().flatten() {
            shown += 1;
            if inventory.is_some() {
                println!(
                    "{}:{}\t{}\t{}\n\t{}",
                    l["source"].as_str().unwrap_or(""),
                    count(&l["position"]),
                    l["code"].as_str().unwrap_or(""),
                    l["message"].as_str().unwrap_or(""),
                    l["record"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(160)
                        .collect::<String>(),
                );
            } else {
                let replayed = l["replayed_at"]
                    .as_str()
                    .map(|at| format!("\t(replayed {at})"))
                    .unwrap_or_default();
                println!(
                    "#{}\t{}/{}@{}\t{}{replayed}",
                    count(&l["offset"]),
                    l["topic"].as_str().unwrap_or(""),
                    count(&l["partition"]),
                    count(&l["origin_offset"]),
                    l["reason"].as_str().unwrap_or(""),
                );
            }
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        match &cursor {
            None => return Ok(()),
            Some(_) if !all => {
                println!("(more: add --all to list every one)");
                return Ok(());
            }
            Some(_) => {}
        }
    }
}

/// `mercato dlq replay`: sends dead letters back to their topics, in chunks the gateway takes.
pub async fn dlq_replay(
    target: &Target,
    offsets: Vec<u64>,
    all: bool,
    again: bool,
) -> anyhow::Result<()> {
    let client = Client::new(target)?;
    let offsets = if all {
        not_replayed(&client).await?
    } else {
        offsets
    };
    if offsets.is_empty() {
        println!("no dead letters to replay");
        return Ok(());
    }
    let (mut replayed, mut skipped) = (0usize, 0usize);
    for chunk in offsets.chunks(1000) {
        let answer = client
            .post_json(
                "/api/v1/admin/dead-letters/replay",
                &serde_json::json!({"offsets": chunk, "again": again}),
            )
            .await?;
        for r in answer["replayed"].as_array().into_iter().flatten() {
            replayed += 1;
            println!(
                "#{}	replayed to {}/{}@{}",
                count(&r["offset"]),
                r["topic"].as_str().unwrap_or(""),
                count(&r["partition"]),
                count(&r["new_offset"]),
            );
        }
        for s in answer["skipped"].as_array().into_iter().flatten() {
            skipped += 1;
            println!(
                "#{}	skipped ({}): {}",
                count(&s["offset"]),
                s["code"].as_str().unwrap_or(""),
                s["message"].as_str().unwrap_or(""),
            );
        }
    }
    println!("{replayed} replayed, {skipped} skipped");
    Ok(())
}

/// Offsets of every dead letter on the topic not replayed yet.
async fn not_replayed(client: &Client) -> anyhow::Result<Vec<u64>> {
    let mut offsets = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        if let Some(c) = &cursor {
            query.push(("cursor", c.clone()));
        }
        let page = client.get("/api/v1/admin/dead-letters", &query).await?;
        for l in page["dead_letters"].as_array().into_iter().flatten() {
            if l["topic"].is_string() && l["replayed_at"].is_null() {
                offsets.extend(l["offset"].as_u64());
            }
        }
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return Ok(offsets);
        }
    }
}

/// `mercato reindex`: rebuilds the search index from offset 0 of the catalog topic.
pub async fn reindex(target: &Target) -> anyhow::Result<()> {
    let client = Client::new(target)?;
    client
        .post("/api/v1/admin/reindex", &[], String::new())
        .await?;
    println!("rebuilding the search index from offset 0 (searches use the old index meanwhile)");
    let started = Instant::now();
    let mut last_line = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s = client.get("/api/v1/admin/search", &[]).await?;
        let Some(target) = s["rebuilding_to"].as_array() else {
            break;
        };
        if last_line.elapsed() >= Duration::from_secs(1) {
            let total: u64 = target.iter().map(count).sum();
            let applied: u64 = s["applied"]
                .as_array()
                .into_iter()
                .flatten()
                .map(count)
                .sum();
            println!("reindex: {applied} of {total} catalog changes folded");
            last_line = Instant::now();
        }
    }
    println!("reindex: done in {:.1} s", started.elapsed().as_secs_f64());
    wait_searchable(&client, "reindex").await
}
