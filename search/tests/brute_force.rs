//! The index against a brute-force computation over the same catalog: for random catalogs and
//! random requests (typos, filters, sorts, page sizes), paging through every answer must give
//! exactly the documents, order, totals and facet counts a plain scan gives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use mercato_core::codec::encode;
use mercato_core::domain::catalog::{doc_key, CatalogDoc, CatalogFact, DocKind};
use mercato_core::domain::Money;
use mercato_core::names::topics;
use mercato_search::{
    haversine_km, typo_budget, uid_key, Cursor, Near, SearchRequest, Sort, MAX_FACET_VALUES,
    PARAMS, PREFIX_MIN_CHARS,
};
use proptest::prelude::*;

mod common;
use common::indexed;
use serde_json::Value;

const WORDS: [&str; 16] = [
    "guitar", "piano", "violin", "drums", "harp", "amp", "jazz", "rock", "opera", "ballet",
    "concert", "acoustic", "electric", "vintage", "classic", "mini",
];
const CITIES: [&str; 4] = ["London", "Paris", "Berlin", "New York"];
const CATEGORIES: [&str; 7] = [
    "music box",
    "music/guitars/electric",
    "music/guitars",
    "music/pianos",
    "music",
    "books/fiction",
    "books",
];

fn words(n: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(WORDS.to_vec()), n).prop_map(|w| w.join(" "))
}

fn doc_strategy() -> impl Strategy<Value = CatalogDoc> {
    (
        prop::bool::ANY,
        words(1..4),
        words(0..5),
        prop::option::of(prop::sample::select(CATEGORIES.to_vec())),
        prop::option::of(prop::sample::select(CITIES.to_vec())),
        prop::option::of((50.0f64..52.0, -1.0f64..1.0)),
        prop::option::of(0i64..5_000),
        prop::option::of(1_700_000_000_000i64..1_700_000_100_000),
    )
        .prop_map(
            |(event, name, body, cat, city, geo, price, starts)| CatalogDoc {
                kind: if event {
                    DocKind::Event
                } else {
                    DocKind::Product
                },
                id: String::new(),
                name,
                body,
                category: cat
                    .map(|c| c.split('/').map(str::to_owned).collect())
                    .unwrap_or_default(),
                city: city.map(str::to_owned),
                geo,
                price: price.map(|amount| Money {
                    amount,
                    currency: "USD".into(),
                }),
                price_max: None,
                starts_at_ms: starts,
                seller: None,
                venue: None,
            },
        )
}

/// A query word, sometimes with one typo.
fn query_word() -> impl Strategy<Value = String> {
    (
        prop::sample::select(WORDS.to_vec()),
        0usize..5,
        0usize..10,
        b'a'..=b'z',
    )
        .prop_map(|(w, op, at, letter)| {
            let mut chars: Vec<char> = w.chars().collect();
            let at = at % chars.len();
            match op {
                1 => chars[at] = letter as char,
                2 => {
                    chars.remove(at);
                }
                3 => chars.insert(at, letter as char),
                4 if at + 1 < chars.len() => chars.swap(at, at + 1),
                _ => {}
            }
            chars.into_iter().collect()
        })
}

fn request_strategy() -> impl Strategy<Value = SearchRequest> {
    (
        prop::collection::vec(query_word(), 0..3),
        prop::option::of(prop::bool::ANY),
        prop::option::of(prop::sample::select(vec![
            "music",
            "music/guitars",
            "books",
        ])),
        prop::option::of(prop::sample::select(CITIES.to_vec())),
        prop::option::of(((50.0f64..52.0, -1.0f64..1.0), 10.0f64..150.0)),
        prop::option::of((0i64..5_000, 0i64..5_000)),
        prop::option::of((1_700_000_000_000i64..1_700_000_100_000, 0i64..60_000)),
        0usize..5,
        1usize..8,
        prop::bool::ANY,
    )
        .prop_map(
            |(q, kind, cat, city, near, price, date, sort, limit, done)| {
                let near = near.map(|((lat, lon), radius_km)| Near {
                    lat,
                    lon,
                    radius_km,
                });
                let sort = match sort {
                    0 => Sort::Relevance,
                    1 => Sort::Price,
                    2 => Sort::PriceDesc,
                    3 => Sort::Date,
                    _ if near.is_some() => Sort::Distance,
                    _ => Sort::Price,
                };
                SearchRequest {
                    // A query ending in a space has finished its last word.
                    q: q.join(" ") + if done { " " } else { "" },
                    kind: kind.map(|e| if e { DocKind::Event } else { DocKind::Product }),
                    category: cat.map(str::to_owned),
                    city: city.map(str::to_lowercase),
                    near,
                    price_min: price.map(|(a, b)| a.min(b)),
                    price_max: price.map(|(a, b)| a.max(b)),
                    from_ms: date.map(|(a, _)| a),
                    to_ms: date.map(|(a, span)| a + span),
                    sort,
                    limit,
                    cursor: None,
                }
            },
        )
}

fn tokens(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Optimal string alignment distance: edits and swaps of neighbours cost one.
fn osa(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[a.len()][b.len()]
}

struct Expected {
    ids: Vec<String>,
    facets: HashMap<&'static str, BTreeMap<String, u64>>,
}

fn brute_force(docs: &[CatalogDoc], r: &SearchRequest) -> Expected {
    let q = tokens(&r.q);
    // The last word is taken as a prefix when the query ends in it.
    let typing = r.q.chars().last().is_some_and(char::is_alphanumeric);
    let mut ranked = Vec::new();
    let mut facets: HashMap<&'static str, BTreeMap<String, u64>> = HashMap::new();
    for d in docs {
        let words: HashSet<String> = tokens(&format!("{}\n{}\n{}", d.name, d.id, d.body))
            .into_iter()
            .collect();
        let matches = q.iter().enumerate().all(|(i, t)| {
            let budget = usize::from(typo_budget(t.chars().count()));
            let as_prefix = typing && i + 1 == q.len() && t.chars().count() >= PREFIX_MIN_CHARS;
            words.iter().any(|w| {
                w == t
                    || osa(t, w) <= budget
                    || (as_prefix && {
                        let w: Vec<char> = w.chars().collect();
                        (0..=w.len()).any(|k| osa(t, &w[..k].iter().collect::<String>()) <= budget)
                    })
            })
        });
        let path = d.category.join("/");
        let ok = matches
            && r.kind.is_none_or(|k| k == d.kind)
            && r.category
                .as_ref()
                .is_none_or(|c| path == *c || path.starts_with(&format!("{c}/")))
            && r.city
                .as_ref()
                .is_none_or(|c| d.city.as_ref().is_some_and(|x| x.to_lowercase() == *c))
            && (r.price_min.is_none() && r.price_max.is_none()
                || d.price.as_ref().is_some_and(|p| {
                    r.price_min.is_none_or(|m| p.amount >= m)
                        && r.price_max.is_none_or(|m| p.amount <= m)
                }))
            && (r.from_ms.is_none() && r.to_ms.is_none()
                || d.starts_at_ms.is_some_and(|t| {
                    r.from_ms.is_none_or(|m| t >= m) && r.to_ms.is_none_or(|m| t <= m)
                }));
        let distance = r
            .near
            .and_then(|n| d.geo.map(|g| haversine_km((n.lat, n.lon), g)));
        if !ok
            || r.near
                .is_some_and(|n| distance.is_none_or(|x| x > n.radius_km))
        {
            continue;
        }
        if !path.is_empty() {
            *facets
                .entry("category")
                .or_default()
                .entry(path)
                .or_default() += 1;
        }
        if let Some(c) = &d.city {
            *facets
                .entry("city")
                .or_default()
                .entry(c.clone())
                .or_default() += 1;
        }
        *facets
            .entry("type")
            .or_default()
            .entry(d.kind.as_str().to_owned())
            .or_default() += 1;
        let inf = f64::INFINITY;
        let rank = match r.sort {
            Sort::Relevance => 0.0,
            Sort::Price => d.price.as_ref().map_or(inf, |p| p.amount as f64),
            Sort::PriceDesc => d.price.as_ref().map_or(inf, |p| -(p.amount as f64)),
            Sort::Date => d.starts_at_ms.map_or(inf, |t| t as f64),
            Sort::Distance => distance.unwrap_or(inf),
        };
        ranked.push((rank, uid_key(&doc_key(d.kind, &d.id)), d.id.clone()));
    }
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    Expected {
        ids: ranked.into_iter().map(|(_, _, id)| id).collect(),
        facets,
    }
}

fn facet_map(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, n)| (k.clone(), n.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    #[test]
    fn search_agrees_with_a_brute_force_scan(
        mut docs in prop::collection::vec(doc_strategy(), 1..50),
        requests in prop::collection::vec(request_strategy(), 1..6),
    ) {
        for (i, d) in docs.iter_mut().enumerate() {
            d.id = format!("d{i}");
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (search, _bus, _stop) = indexed(&docs, 16).await;
            for r in &requests {
                let expected = brute_force(&docs, r);
                let mut got = Vec::new();
                let mut req = r.clone();
                let mut first = true;
                loop {
                    let page: Value = serde_json::from_str(&search.index().search(&req).unwrap()).unwrap();
                    if first {
                        prop_assert_eq!(page["total"].as_u64(), Some(expected.ids.len() as u64), "total of {:?}", r);
                        for f in ["category", "city", "type"] {
                            prop_assert_eq!(facet_map(&page["facets"][f]), expected.facets.get(f).cloned().unwrap_or_default(), "facet {} of {:?}", f, r);
                        }
                        first = false;
                    }
                    let hits = page["hits"].as_array().unwrap();
                    prop_assert!(hits.len() <= r.limit);
                    got.extend(hits.iter().map(|h| h["id"].as_str().unwrap().to_owned()));
                    match page["next_cursor"].as_str() {
                        Some(c) => req.cursor = Some(Cursor::decode(c).unwrap()),
                        None => break,
                    }
                }
                if r.sort == Sort::Relevance {
                    let mut sorted = got.clone();
                    sorted.sort();
                    sorted.dedup();
                    prop_assert_eq!(sorted.len(), got.len(), "a hit repeated across pages: {:?}", r);
                    let mut want = expected.ids.clone();
                    want.sort();
                    prop_assert_eq!(sorted, want, "hits of {:?}", r);
                } else {
                    prop_assert_eq!(&got, &expected.ids, "order of {:?}", r);
                }
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn updates_and_removals_are_reflected_and_a_rebuild_gives_the_same_index() {
    let doc = |id: &str, name: &str| CatalogDoc {
        kind: DocKind::Product,
        id: id.into(),
        name: name.into(),
        body: String::new(),
        category: vec!["music".into()],
        city: None,
        geo: None,
        price: Some(Money {
            amount: 100,
            currency: "USD".into(),
        }),
        price_max: None,
        starts_at_ms: None,
        seller: None,
        venue: None,
    };
    let (search, bus, _stop) =
        indexed(&[doc("a", "vintage guitar"), doc("b", "grand piano")], 64).await;
    let q = |text: &str| SearchRequest {
        q: text.into(),
        ..SearchRequest::default()
    };
    let ids = |text: Arc<str>| -> Vec<String> {
        let v: Value = serde_json::from_str(&text).unwrap();
        v["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids(search.index().search(&q("gitar")).unwrap()),
        ["a"],
        "one typo finds it"
    );
    // Asked twice before the change: the second answer comes from the cache...
    assert_eq!(ids(search.index().search(&q("vintage")).unwrap()), ["a"]);
    assert_eq!(ids(search.index().search(&q("vintage")).unwrap()), ["a"]);
    assert!(search.index().cache_stats().hits >= 1);
    let change = |f: CatalogFact| (f.key().into_bytes(), encode(&f));
    bus.send_batch(
        topics::CATALOG,
        vec![
            change(CatalogFact::Upsert(Box::new(doc("a", "electric guitar")))),
            change(CatalogFact::Remove {
                kind: DocKind::Product,
                id: "b".into(),
            }),
        ],
    )
    .await
    .unwrap();
    search
        .caught_up(&*bus, Duration::from_secs(10))
        .await
        .unwrap();
    // ...and after it, never: the commit started a new generation.
    assert!(ids(search.index().search(&q("vintage")).unwrap()).is_empty());
    assert_eq!(ids(search.index().search(&q("electric")).unwrap()), ["a"]);
    assert!(ids(search.index().search(&q("piano")).unwrap()).is_empty());
    assert_eq!(search.index().num_docs(), 1);

    search.reindex().await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    search
        .caught_up(&*bus, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(search.index().num_docs(), 1);
    assert_eq!(ids(search.index().search(&q("electric")).unwrap()), ["a"]);
    assert!(search.status().rebuilding_to.is_none());
}

/// A facet with more values than an answer lists keeps the largest counts, and the total still
/// counts every match.
#[tokio::test]
async fn a_facet_lists_its_largest_values_only() {
    let cities = MAX_FACET_VALUES + 50;
    let doc = |i: usize, city: usize| CatalogDoc {
        kind: DocKind::Product,
        id: format!("p{i}"),
        name: "vintage guitar".into(),
        body: String::new(),
        category: vec!["music".into()],
        city: Some(format!("city{city:03}")),
        geo: None,
        price: None,
        price_max: None,
        starts_at_ms: None,
        seller: None,
        venue: None,
    };
    // city000 has 3 products, city001 2, every other city 1.
    let mut docs: Vec<CatalogDoc> = (0..cities).map(|c| doc(c, c)).collect();
    docs.extend([doc(cities, 0), doc(cities + 1, 0), doc(cities + 2, 1)]);
    let (search, _bus, _stop) = indexed(&docs, 0).await;
    let answer: Value = serde_json::from_str(
        &search
            .index()
            .search(&SearchRequest {
                q: "guitar".into(),
                ..SearchRequest::default()
            })
            .unwrap(),
    )
    .unwrap();
    assert_eq!(answer["total"], docs.len());
    let listed = answer["facets"]["city"].as_object().unwrap();
    assert_eq!(listed.len(), MAX_FACET_VALUES);
    let counts = facet_map(&answer["facets"]["city"]);
    assert_eq!(counts["city000"], 3);
    assert_eq!(counts["city001"], 2);
    assert_eq!(
        counts.values().sum::<u64>(),
        3 + 2 + (MAX_FACET_VALUES as u64 - 2)
    );
}

/// A parameter value: arbitrary text, or something close to what the parameter expects.
fn param_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,40}",
        "[a-z]{1,12}( [a-z]{1,12}){0,3}",
        "-?[0-9]{1,25}(\\.[0-9]{0,6})?",
        "20[0-9]{2}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)?",
        "-?[0-9]{1,3}\\.[0-9]{1,8},-?[0-9]{1,3}\\.[0-9]{1,8}",
        prop::sample::select(WORDS.to_vec()).prop_map(|w| format!("{w}*")),
        "[\"()*:+\\-^~ ]{1,12}",
    ]
}

fn search_params() -> impl Strategy<Value = HashMap<String, String>> {
    // Every parameter a search takes, and one it does not.
    let keys: Vec<&str> = PARAMS.iter().copied().chain(["x"]).collect();
    prop::collection::hash_map(prop::sample::select(keys), param_value(), 0..5)
        .prop_map(|m| m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(6),
        ..ProptestConfig::default()
    })]

    /// Property-based fuzzing of the query path (hardening 8): any parameters are either
    /// refused with the parameter named, or answered; the index never fails or panics on a
    /// request that parsed, whatever its text (operators, quotes, unicode, huge numbers).
    #[test]
    fn any_search_parameters_are_refused_by_name_or_answered(
        mut docs in prop::collection::vec(doc_strategy(), 1..30),
        requests in prop::collection::vec(search_params(), 100..200),
    ) {
        for (i, d) in docs.iter_mut().enumerate() {
            d.id = format!("d{i}");
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let (search, _bus, _stop) = indexed(&docs, 16).await;
            for params in &requests {
                match SearchRequest::from_params(params) {
                    Ok(req) => {
                        let answer = search.index().search(&req);
                        prop_assert!(answer.is_ok(), "{:?}: {:?}", params, answer.err());
                    }
                    Err(bad) => prop_assert!(
                        bad.param == "query" || params.contains_key(bad.param),
                        "{:?} named {:?}", params, bad.param
                    ),
                }
            }
            Ok(())
        })?;
    }
}
