//! Catalog ingest end to end: a 100,000-product NDJSON file in which 1% of the records are bad
//! in ten different ways. Every good product must be searchable, every bad one listed with its
//! reason and line, and the counts must add up exactly; a second apply must remove, change and
//! leave alone exactly what it should.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use mercato_e2e::harness;
use mercato_e2e::Api;
use reqwest::StatusCode;
use serde_json::{json, Value};

const PRODUCTS: usize = 100_000;
const NOUNS: [&str; 8] = [
    "lantern", "teapot", "blanket", "notebook", "backpack", "candle", "kettle", "compass",
];
const ADJECTIVES: [&str; 6] = [
    "copper", "woollen", "vintage", "folding", "scented", "pocket",
];

fn good(i: usize, name_suffix: &str) -> String {
    let colour = ["red", "green", "blue"][i % 3];
    json!({
        "sku": format!("SKU-{i:06}"),
        "name": format!("{} {} {i}{name_suffix}", ADJECTIVES[i % 6], NOUNS[(i / 6) % 8]),
        "description": format!("Item number {i} of the test catalog."),
        "category": if i.is_multiple_of(2) { "Home > Kitchen" } else { "Outdoor > Camping" },
        "price": {"amount": 100 + (i % 5000) as i64, "currency": "USD"},
        "attributes": {"colour": colour},
    })
    .to_string()
}

/// Every hundredth record is bad, in one of ten ways; returns the file's lines and, for each
/// bad line (1-based), the code it must be rejected with.
fn catalog() -> (Vec<String>, BTreeMap<u64, &'static str>) {
    let mut lines = Vec::with_capacity(PRODUCTS);
    let mut bad = BTreeMap::new();
    for i in 0..PRODUCTS {
        if i % 100 != 99 {
            lines.push(good(i, ""));
            continue;
        }
        let sku = format!("SKU-{i:06}");
        let (line, code) = match (i / 100) % 10 {
            0 => (
                format!("{{\"sku\": \"{sku}\", \"name\": \"cut off"),
                "malformed_json",
            ),
            1 => ("[1, 2, 3]".to_owned(), "not_an_object"),
            2 => (
                json!({"name": "no sku", "price": 1}).to_string(),
                "missing_field",
            ),
            3 => (
                json!({"sku": "has spaces", "name": "x", "price": 1}).to_string(),
                "invalid_sku",
            ),
            4 => (json!({"sku": sku, "price": 1}).to_string(), "missing_field"),
            5 => (
                json!({"sku": sku, "name": "x", "price": -5}).to_string(),
                "invalid_price",
            ),
            6 => (
                json!({"sku": sku, "name": "x", "price": "1.999"}).to_string(),
                "invalid_price",
            ),
            7 => (
                json!({"sku": sku, "name": "x", "price": {"amount": 1, "currency": "dollars"}})
                    .to_string(),
                "invalid_currency",
            ),
            8 => (
                json!({"sku": sku, "name": "x", "price": 1, "category": "a//b"}).to_string(),
                "invalid_category",
            ),
            // The same SKU as the good record just before it.
            _ => (good(i - 1, " again"), "duplicate_sku"),
        };
        lines.push(line);
        bad.insert(i as u64 + 1, code);
    }
    (lines, bad)
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.flush().unwrap();
}

fn manifest(file: &str) -> String {
    format!(
        "apiVersion: mercato.dev/v1alpha1\nkind: Inventory\nmetadata:\n  name: big-shop\nspec:\n  seller: {{id: big-shop, name: Big Shop}}\n  currency: USD\n  source:\n    file: {file}\n"
    )
}

async fn apply(admin: &Api, yaml: &str, base_dir: &Path) -> Value {
    let path = format!(
        "/api/v1/admin/manifests?base_dir={}",
        base_dir.display().to_string().replace('/', "%2F")
    );
    let a = admin
        .send(reqwest::Method::POST, &path, Some(yaml.as_bytes()), None)
        .await
        .unwrap();
    assert_eq!(a.status, 202, "{}", a.body);
    a.body
}

async fn ready(admin: &Api, generation: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let s = admin
            .get("/api/v1/admin/inventories/big-shop")
            .await
            .unwrap()
            .body;
        if s["generation"] == generation && s["state"] == "ready" {
            return s;
        }
        assert_ne!(s["state"], "failed", "{s}");
        assert!(Instant::now() < deadline, "ingest did not finish: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn searchable(admin: &Api) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = admin.get("/api/v1/admin/search").await.unwrap().body;
        if s["lag"] == 0 && s["rebuilding_to"].is_null() {
            return;
        }
        assert!(Instant::now() < deadline, "index did not catch up: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every product the index returns for a query, paging with cursors.
async fn all_hits(api: &Api, query: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/search?{query}&limit=100&cursor={c}"),
            None => format!("/api/v1/search?{query}&limit=100"),
        };
        let page = api.get(&path).await.unwrap();
        assert_eq!(page.status, 200, "{}", page.body);
        for h in page.body["hits"].as_array().unwrap() {
            ids.push(h["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return ids,
        }
    }
}

async fn rejected(admin: &Api) -> BTreeMap<u64, String> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => {
                format!("/api/v1/admin/dead-letters?inventory=big-shop&limit=100&cursor={c}")
            }
            None => "/api/v1/admin/dead-letters?inventory=big-shop&limit=100".to_owned(),
        };
        let page = admin.get(&path).await.unwrap().body;
        for l in page["dead_letters"].as_array().unwrap() {
            let position = l["position"].as_u64().unwrap();
            assert!(!l["message"].as_str().unwrap().is_empty());
            assert!(out
                .insert(position, l["code"].as_str().unwrap().to_owned())
                .is_none());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_products_with_one_percent_bad_add_up_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let feed = dir.path().join("feed.ndjson");
    let (mut lines, bad) = catalog();
    write_lines(&feed, &lines);
    let p = harness::start(Some(dir.path().join("data")), None)
        .await
        .unwrap();

    let started = Instant::now();
    apply(&p.admin, &manifest("feed.ndjson"), dir.path()).await;
    let s = ready(&p.admin, 1).await;
    searchable(&p.admin).await;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "ingest+index: {PRODUCTS} records in {seconds:.1} s ({:.0} records/s)",
        PRODUCTS as f64 / seconds
    );
    assert_eq!(s["records"], PRODUCTS as u64, "{s}");
    assert_eq!(s["accepted"], (PRODUCTS - bad.len()) as u64, "{s}");
    assert_eq!(s["rejected"], bad.len() as u64, "{s}");

    let listed = rejected(&p.admin).await;
    let expected: BTreeMap<u64, String> = bad.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(line, code)| listed.get(*line) != Some(*code))
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "bad records listed wrongly or not at all: {wrong:?}"
    );
    assert_eq!(
        listed.len(),
        expected.len(),
        "nothing listed that is not bad"
    );

    let good_skus: BTreeSet<String> = (0..PRODUCTS)
        .filter(|i| i % 100 != 99)
        .map(|i| format!("SKU-{i:06}"))
        .collect();
    let hits = all_hits(&p.api, "type=product&sort=price").await;
    assert_eq!(
        hits.len(),
        good_skus.len(),
        "no product twice, none missing"
    );
    assert_eq!(hits.into_iter().collect::<BTreeSet<_>>(), good_skus);

    // A typo finds it; a product reads back normalized.
    // SKU-000003 is the "folding lantern 3".
    let typo = p
        .api
        .get("/api/v1/search?q=lanterm%203")
        .await
        .unwrap()
        .body;
    assert!(
        typo["hits"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["id"] == "SKU-000003"),
        "{typo}"
    );
    let product = p.api.get("/api/v1/products/SKU-000003").await.unwrap();
    assert_eq!(product.body["name"], "folding lantern 3");
    assert_eq!(product.body["category"], "outdoor/camping");

    // Apply again: ten products gone, five renamed, the rest unchanged.
    for line in &mut lines[..10] {
        line.clear();
    }
    for (i, line) in lines.iter_mut().enumerate().take(15).skip(10) {
        *line = good(i, " deluxe");
    }
    write_lines(&feed, &lines);
    apply(&p.admin, &manifest("feed.ndjson"), dir.path()).await;
    let s = ready(&p.admin, 2).await;
    searchable(&p.admin).await;
    assert_eq!(s["removed"], 10, "{s}");
    assert_eq!(s["written"], 5, "{s}");
    assert_eq!(s["unchanged"], (PRODUCTS - bad.len() - 15) as u64, "{s}");
    assert_eq!(
        p.api
            .get("/api/v1/products/SKU-000003")
            .await
            .unwrap()
            .status,
        404
    );
    let deluxe = all_hits(&p.api, "q=deluxe").await;
    assert_eq!(deluxe.len(), 5, "{deluxe:?}");
    let total = p
        .api
        .get("/api/v1/search?type=product&limit=1")
        .await
        .unwrap()
        .body;
    assert_eq!(total["total"], (good_skus.len() - 10) as u64);
    p.platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_and_file_records_are_told_apart_and_json_arrays_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("items.json"),
        r#"[{"sku": "X-1", "name": "bad price", "price": "free"}, {"sku": "X-2", "name": "Brass compass", "price": 12.5}]"#,
    )
    .unwrap();
    let yaml = "apiVersion: mercato.dev/v1alpha1\nkind: Inventory\nmetadata:\n  name: big-shop\nspec:\n  seller: {id: s, name: S}\n  currency: EUR\n  products:\n    - {sku: 'bad sku', name: x, price: 1}\n  source: {file: items.json}\n";
    let p = harness::start(None, None).await.unwrap();
    apply(&p.admin, yaml, dir.path()).await;
    let s = ready(&p.admin, 1).await;
    assert_eq!(
        (s["accepted"].as_u64(), s["rejected"].as_u64()),
        (Some(1), Some(2)),
        "{s}"
    );
    let page = p
        .admin
        .get("/api/v1/admin/dead-letters?inventory=big-shop")
        .await
        .unwrap()
        .body;
    let listed: Vec<(String, u64, String)> = page["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["source"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_owned(),
                l["position"].as_u64().unwrap(),
                l["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        listed.contains(&("inline".into(), 1, "invalid_sku".into())),
        "{listed:?}"
    );
    assert!(
        listed.contains(&("items.json".into(), 1, "invalid_price".into())),
        "{listed:?}"
    );
    searchable(&p.admin).await;
    let hit = p.api.get("/api/v1/search?q=brass").await.unwrap().body;
    assert_eq!(hit["hits"][0]["price"]["amount"], 1250, "{hit}");
    assert_eq!(hit["hits"][0]["price"]["currency"], "EUR");
    p.platform.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_applied_is_searchable_within_a_second() {
    let p = harness::start(None, None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let yaml = "apiVersion: mercato.dev/v1alpha1\nkind: Inventory\nmetadata:\n  name: quick\nspec:\n  seller: {id: q, name: Q}\n  products:\n    - {sku: Q-1, name: Marzipan harmonica, price: {amount: 900, currency: USD}}\n";
    let started = Instant::now();
    apply(&p.admin, yaml, dir.path()).await;
    loop {
        let found = p.api.get("/api/v1/search?q=marzipan").await.unwrap().body;
        if found["total"] == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "not searchable a second after it was applied"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "searchable {} ms after the apply",
        started.elapsed().as_millis()
    );
    // As typed: the last word a prefix, through HTTP, where a space after it finishes it.
    let typed = p.api.get("/api/v1/search?q=marzip").await.unwrap().body;
    assert_eq!(typed["total"], 1, "{typed}");
    let finished = p.api.get("/api/v1/search?q=marzip%20").await.unwrap().body;
    assert_eq!(finished["total"], 0, "{finished}");
    let suggested = p
        .api
        .get("/api/v1/search/suggest?q=marz&limit=3")
        .await
        .unwrap();
    assert_eq!(suggested.status, StatusCode::OK, "{}", suggested.body);
    assert_eq!(
        suggested.body["suggestions"][0]["text"], "Marzipan harmonica",
        "{}",
        suggested.body
    );
    let refused = p
        .api
        .get("/api/v1/search/suggest?q=marz&limit=50")
        .await
        .unwrap();
    assert_eq!(
        (refused.status, refused.code()),
        (StatusCode::BAD_REQUEST, "invalid_query"),
        "{}",
        refused.body
    );
    p.platform.stop().await;
}
