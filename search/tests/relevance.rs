//! The relevance test set: a catalog of 20,000 products with the shapes real catalogs have
//! (brand and model words, hyphenated models, digits glued to words, short names, descriptions
//! that mention other products' words), and 1,000 queries built from its names as shoppers
//! type them: exact names, one typo, two typos on long words, a swap, the last word cut short,
//! and a name's brand with one of its words, digits typed apart from
//! their word, a number typed onto the word before it, two words typed as one and one typed as
//! two. Each class reports precision at 1 (the product
//! asked for is the first hit) and at 10 (it is in the first ten), and fails below its floor.
//!
//! Everything is generated from fixed seeds, so the set is the same on every run and a change
//! of ranking moves the figures for a reason.

use std::collections::HashSet;

use mercato_core::domain::catalog::CatalogDoc;
use mercato_search::SearchRequest;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::Value;

mod common;
use common::{indexed, product};

const PRODUCTS: usize = 20_000;
const QUERIES_PER_CLASS: usize = 100;
const SYLLABLES: [&str; 40] = [
    "ka", "lo", "mi", "ran", "te", "vo", "sel", "dor", "bi", "nu", "ze", "ar", "pel", "tin", "go",
    "ru", "sa", "qui", "fen", "lor", "mas", "ti", "ven", "cor", "da", "ris", "hol", "bar", "ne",
    "xo", "pra", "lun", "ge", "sto", "wel", "fa", "ki", "mon", "tra", "ly",
];

/// Words of two to four syllables, distinct.
fn vocabulary(rng: &mut StdRng, n: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut words = Vec::with_capacity(n);
    while words.len() < n {
        let syllables = rng.gen_range(2..=4);
        let w: String = (0..syllables)
            .map(|_| *SYLLABLES.choose(rng).unwrap_or(&"ka"))
            .collect();
        if seen.insert(w.clone()) {
            words.push(w);
        }
    }
    words
}

fn capitalized(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// Common words far more common than rare ones, as in real text.
fn zipf<'a>(rng: &mut StdRng, words: &'a [String]) -> &'a str {
    let u: f64 = rng.gen();
    &words[((u * u * u) * words.len() as f64) as usize % words.len()]
}

struct Catalog {
    docs: Vec<CatalogDoc>,
}

fn catalog() -> Catalog {
    let mut rng = StdRng::seed_from_u64(21);
    let words = vocabulary(&mut rng, 6_000);
    let (brands, rest) = words.split_at(300);
    let mut names = HashSet::new();
    let mut docs = Vec::with_capacity(PRODUCTS);
    while docs.len() < PRODUCTS {
        let brand = capitalized(&brands[rng.gen_range(0..brands.len())]);
        let word = |rng: &mut StdRng| capitalized(&rest[rng.gen_range(0..rest.len())]);
        let name = match docs.len() % 10 {
            // A model with a hyphen and a number: "Kalo Tin-Dor 3000".
            0 | 1 => format!(
                "{brand} {}-{} {}",
                word(&mut rng),
                word(&mut rng),
                rng.gen_range(2..40) * 100
            ),
            // A word with digits glued on: "Selvo3 Ranmi".
            2 => format!(
                "{}{} {}",
                word(&mut rng),
                rng.gen_range(2..12),
                word(&mut rng)
            ),
            // A short name, one word.
            3 => word(&mut rng),
            // Four words.
            4 => format!(
                "{brand} {} {} {}",
                word(&mut rng),
                word(&mut rng),
                word(&mut rng)
            ),
            _ => format!("{brand} {} {}", word(&mut rng), word(&mut rng)),
        };
        if !names.insert(name.to_lowercase()) {
            continue;
        }
        // Descriptions mention common words, and the words of other products' names.
        let mut body: Vec<String> = (0..rng.gen_range(8..16))
            .map(|_| zipf(&mut rng, rest).to_owned())
            .collect();
        if let Some(other) = docs.choose(&mut rng).map(|d: &CatalogDoc| d.name.clone()) {
            body.extend(other.split(' ').map(str::to_lowercase));
        }
        body.shuffle(&mut rng);
        docs.push(CatalogDoc {
            category: vec![format!("dept{}", docs.len() % 20)],
            ..product(&format!("P-{}", docs.len()), &name, &body.join(" "))
        });
    }
    Catalog { docs }
}

/// One edit at random: a wrong letter, one missing, one too many (doubled), or a swap.
fn typo(rng: &mut StdRng, word: &str) -> String {
    let mut chars: Vec<char> = word.chars().collect();
    // Not the first letter: shoppers rarely get that wrong, and typo tolerance keys on it
    // nowhere, but a changed first letter makes another real word too often to be fair.
    let at = rng.gen_range(1..chars.len());
    match rng.gen_range(0..4) {
        0 => {
            let c = (b'a' + rng.gen_range(0..26)) as char;
            chars[at] = if chars[at] == c { 'q' } else { c };
        }
        1 => {
            chars.remove(at);
        }
        2 => {
            let c = chars[at];
            chars.insert(at, c);
        }
        _ => {
            let j = if at + 1 < chars.len() { at + 1 } else { at - 1 };
            if chars[at] == chars[j] {
                chars[at] = 'q';
            } else {
                chars.swap(at, j);
            }
        }
    }
    chars.into_iter().collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Exact,
    OneTypo,
    Swap,
    TwoTypos,
    Prefix,
    BrandAndWord,
    /// Digits glued to a word, typed apart: `Selvo 3` for "Selvo3".
    DigitsApart,
    /// A word and the number after it, typed together: `Dor3000` for "… Dor 3000".
    DigitsTogether,
    /// Two neighbouring words of the name typed as one: `kalovorteran` for "Kalo Vorteran".
    Joined,
    /// A long word of the name typed as two: `vorte ran` for "Vorteran".
    Split,
}

impl Class {
    const ALL: [Class; 10] = [
        Class::Exact,
        Class::OneTypo,
        Class::Swap,
        Class::TwoTypos,
        Class::Prefix,
        Class::BrandAndWord,
        Class::DigitsApart,
        Class::DigitsTogether,
        Class::Joined,
        Class::Split,
    ];

    /// The floor of precision at 1, and of precision at 10.
    fn floors(self) -> (f64, f64) {
        match self {
            Class::Exact | Class::OneTypo | Class::Swap => (0.95, 0.95),
            Class::TwoTypos | Class::Prefix => (0.0, 0.95),
            Class::BrandAndWord => (0.0, 0.80),
            Class::DigitsApart | Class::DigitsTogether => (0.90, 0.95),
            Class::Joined | Class::Split => (0.90, 0.95),
        }
    }
}

/// A query of `class` for `doc`, if its name lends itself to one.
fn query(rng: &mut StdRng, class: Class, doc: &CatalogDoc) -> Option<String> {
    let words: Vec<&str> = doc.name.split(' ').collect();
    let replace = |at: usize, with: String| {
        let mut w: Vec<String> = words.iter().map(|s| (*s).to_owned()).collect();
        w[at] = with;
        w.join(" ")
    };
    let long = |min: usize| -> Vec<usize> {
        (0..words.len())
            .filter(|i| {
                words[*i].chars().count() >= min && words[*i].chars().all(char::is_alphabetic)
            })
            .collect()
    };
    match class {
        Class::Exact => Some(if rng.gen() {
            doc.name.to_lowercase()
        } else {
            doc.name.clone()
        }),
        Class::OneTypo => {
            let at = *long(5).choose(rng)?;
            Some(replace(at, typo(rng, words[at])))
        }
        Class::Swap => {
            let at = *long(5).choose(rng)?;
            let mut c: Vec<char> = words[at].chars().collect();
            let i = rng.gen_range(1..c.len() - 1);
            if c[i] == c[i + 1] {
                return None;
            }
            c.swap(i, i + 1);
            Some(replace(at, c.into_iter().collect()))
        }
        Class::TwoTypos => {
            // Two typos are forgiven from nine letters as typed: a word that two deletions
            // take below nine is a one-typo word and not in this class.
            let at = *long(9).choose(rng)?;
            let once = typo(rng, words[at]);
            let twice = typo(rng, &once);
            (twice.chars().count() >= 9).then(|| replace(at, twice))
        }
        Class::Prefix => {
            let last = words.len() - 1;
            let n = words[last].chars().count();
            if n < 4 || !words[last].chars().all(char::is_alphabetic) {
                return None;
            }
            let keep = n - rng.gen_range(1..=(n - 3).min(3));
            Some(replace(last, words[last].chars().take(keep).collect()))
        }
        Class::DigitsApart => {
            let at = words.iter().position(|w| {
                w.chars().any(|c| c.is_ascii_digit()) && w.chars().any(char::is_alphabetic)
            })?;
            let cut = words[at].find(|c: char| c.is_ascii_digit())?;
            let (head, tail) = words[at].split_at(cut);
            Some(replace(at, format!("{head} {tail}")))
        }
        Class::DigitsTogether => {
            let at = words
                .iter()
                .position(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()))?;
            if at == 0 {
                return None;
            }
            let mut w: Vec<String> = words.iter().map(|s| (*s).to_owned()).collect();
            w[at - 1] = format!("{}{}", words[at - 1], words[at]);
            w.remove(at);
            Some(w.join(" "))
        }
        Class::Joined => {
            let alpha = |w: &str| w.chars().all(char::is_alphabetic);
            let at = (0..words.len().saturating_sub(1))
                .find(|i| alpha(words[*i]) && alpha(words[i + 1]))?;
            let mut w: Vec<String> = words.iter().map(|s| (*s).to_owned()).collect();
            w[at] = format!("{}{}", words[at], words[at + 1].to_lowercase());
            w.remove(at + 1);
            Some(w.join(" "))
        }
        Class::Split => {
            let at = *long(7).choose(rng)?;
            let cut = rng.gen_range(3..words[at].len() - 2);
            let (head, tail) = words[at].split_at(cut);
            Some(replace(at, format!("{head} {tail}")))
        }
        Class::BrandAndWord => {
            if words.len() < 3 || doc.name.contains('-') {
                return None;
            }
            Some(format!(
                "{} {}",
                words[0],
                words[rng.gen_range(1..words.len())]
            ))
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relevance_test_set_meets_its_floors() {
    let catalog = catalog();
    let (search, _bus, _stop) = indexed(&catalog.docs, 0).await;
    let mut rng = StdRng::seed_from_u64(2121);
    let mut report = Vec::new();
    let mut below = Vec::new();
    for class in Class::ALL {
        let (mut asked, mut at1, mut at10) = (0usize, 0usize, 0usize);
        let mut misses = Vec::new();
        while asked < QUERIES_PER_CLASS {
            let doc = &catalog.docs[rng.gen_range(0..catalog.docs.len())];
            let Some(q) = query(&mut rng, class, doc) else {
                continue;
            };
            asked += 1;
            let r = SearchRequest {
                q: q.clone(),
                limit: 10,
                ..SearchRequest::default()
            };
            let answer: Value = serde_json::from_str(&search.index().search(&r).unwrap()).unwrap();
            let ids: Vec<&str> = answer["hits"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|h| h["id"].as_str())
                .collect();
            match ids.iter().position(|id| *id == doc.id) {
                Some(0) => {
                    at1 += 1;
                    at10 += 1;
                }
                Some(_) => at10 += 1,
                None => {}
            }
            if ids.first() != Some(&doc.id.as_str()) && misses.len() < 3 {
                let above: Vec<&str> = answer["hits"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .take(2)
                    .filter_map(|h| h["name"].as_str())
                    .collect();
                misses.push(format!("{q:?} for {:?}, not {above:?}", doc.name));
            }
        }
        let (p1, p10) = (at1 as f64 / asked as f64, at10 as f64 / asked as f64);
        let (floor1, floor10) = class.floors();
        report.push(format!(
            "{class:?}: P@1 {p1:.2} (floor {floor1:.2}), P@10 {p10:.2} (floor {floor10:.2}); e.g. missed {misses:?}"
        ));
        if p1 < floor1 || p10 < floor10 {
            below.push(format!("{class:?}"));
        }
    }
    println!("relevance over {PRODUCTS} products, {QUERIES_PER_CLASS} queries per class:");
    for line in &report {
        println!("  {line}");
    }
    assert!(
        below.is_empty(),
        "below the floor: {below:?}\n{}",
        report.join("\n")
    );
}
