//! Queries as shoppers type them, over the bundled bookshop (`examples/`): the last word is a
//! prefix, long words forgive two typos, a swap of neighbours is one.

use std::sync::Arc;

use mercato_core::bus::Bus;
use mercato_core::domain::catalog::CatalogDoc;
use mercato_search::{Search, SearchRequest, SuggestRequest};
use serde_json::Value;

mod common;
use common::{indexed, product};

/// The bookshop's products as the catalog would hold them: name, description and author.
fn bookshop() -> Vec<CatalogDoc> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/bookstore-products.ndjson"
    );
    let text = std::fs::read_to_string(path).expect("the bundled bookshop");
    text.lines()
        .map(|line| {
            let p: Value = serde_json::from_str(line).expect("a product");
            let field = |k: &str| p[k].as_str().unwrap_or_default().to_owned();
            let body = format!(
                "{} {}",
                field("description"),
                p["attributes"]["author"].as_str().unwrap_or_default()
            );
            CatalogDoc {
                category: field("category").split(" > ").map(str::to_owned).collect(),
                ..product(&field("sku"), &field("name"), &body)
            }
        })
        .collect()
}

async fn bookshop_indexed() -> (Arc<Search>, Arc<dyn Bus>, tokio::sync::watch::Sender<bool>) {
    indexed(&bookshop(), 0).await
}

fn names(search: &Search, q: &str) -> Vec<String> {
    let r = SearchRequest {
        q: q.into(),
        ..SearchRequest::default()
    };
    let answer: Value = serde_json::from_str(&search.index().search(&r).unwrap()).unwrap();
    answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn what_shoppers_type_finds_the_book() {
    let (search, _bus, _stop) = bookshop_indexed().await;
    let first = |q: &str| names(&search, q).into_iter().next();
    for (typed, book) in [
        ("dun", "Dune"),
        ("dune", "Dune"),
        ("foundat", "Foundation"),
        // A prefix with a typo: one edit from five letters.
        ("fuondat", "Foundation"),
        ("neuromnacer", "Neuromancer"),
        // Two typos from nine letters: a swap and a wrong letter.
        ("nueromanser", "Neuromancer"),
        ("catterpilar", "The Very Hungry Caterpillar"),
        ("hungry cat", "The Very Hungry Caterpillar"),
        ("middlemrch", "Middlemarch"),
        ("selfish ge", "The Selfish Gene"),
    ] {
        assert_eq!(first(typed).as_deref(), Some(book), "q={typed:?}");
    }
    // A finished word is not a prefix, a one-letter word is not one either, and four letters
    // forgive no typo.
    assert!(names(&search, "foundat ").is_empty());
    assert!(!names(&search, "d").contains(&"Dune".to_owned()));
    assert!(names(&search, "dnue ").is_empty());
}

/// A product named exactly what was asked is the first hit, above products whose names and
/// descriptions say the words over and over (which BM25 alone ranks higher).
#[tokio::test]
async fn a_product_named_exactly_by_the_query_comes_first() {
    let mut docs = bookshop();
    docs.push(product(
        "SP-1",
        "Spice",
        "A jar of ground seeds from the east, for cooking and baking and much more besides",
    ));
    docs.push(product(
        "SP-2",
        "Spice spice rack",
        "spice spice spice spice",
    ));
    docs.push(product("SP-3", "Spice Girls poster", "spice girls spice"));
    docs.push(product(
        "LB-1",
        "Leather bookmark leather",
        "leather bookmark leather",
    ));
    let (search, _bus, _stop) = indexed(&docs, 0).await;
    for (q, first) in [
        ("spice", "Spice"),
        ("Spice", "Spice"),
        ("spice ", "Spice"),
        ("leather bookmark", "Leather bookmark"),
        ("LEATHER  bookmark", "Leather bookmark"),
        ("the name of the rose", "The Name of the Rose"),
    ] {
        assert_eq!(
            names(&search, q).first().map(String::as_str),
            Some(first),
            "q={q:?}: {:?}",
            names(&search, q)
        );
    }
}

/// The search box's suggestions: names best first, then the largest categories; nothing
/// without words; parameters checked.
#[tokio::test]
async fn suggestions_complete_what_is_typed() {
    let (search, _bus, _stop) = bookshop_indexed().await;
    let suggest = |q: &str, limit: Option<&str>| -> Value {
        let mut params = std::collections::HashMap::from([("q".to_owned(), q.to_owned())]);
        if let Some(l) = limit {
            params.insert("limit".into(), l.into());
        }
        let r = SuggestRequest::from_params(&params).unwrap();
        serde_json::from_str(&search.index().suggest(&r).unwrap()).unwrap()
    };
    let dun = suggest("dun", None);
    let first = &dun["suggestions"][0];
    assert_eq!(
        (
            first["type"].as_str(),
            first["text"].as_str(),
            first["id"].as_str()
        ),
        (Some("name"), Some("Dune"), Some("RB-0001")),
        "{dun}"
    );
    assert!(
        dun["suggestions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["type"] == "category" && s["text"] == "Books/Science Fiction"),
        "{dun}"
    );
    let the = suggest("the", Some("2"));
    let names = the["suggestions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["type"] == "name")
        .count();
    assert_eq!(names, 2, "{the}");
    assert_eq!(suggest("  ", None)["suggestions"], serde_json::json!([]));
    for bad in [
        vec![("q", "dun"), ("limit", "0")],
        vec![("q", "dun"), ("limit", "11")],
        vec![("q", "dun"), ("sort", "price")],
    ] {
        let params = bad
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert!(SuggestRequest::from_params(&params).is_err(), "{bad:?}");
    }
}
