//! The index's fields, and how a catalog document becomes a tantivy document.

use mercato_core::domain::catalog::{doc_key, CatalogDoc};
use serde::{Deserialize, Serialize};
use tantivy::schema::{
    Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, FAST, STORED,
    STRING,
};
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
};
use tantivy::TantivyDocument;

use crate::digits::DigitParts;

/// Bumped when fields or their encoding change: an index of another version is rebuilt from
/// the catalog topic. 2: column dictionaries without zstd (tantivy's `columnar-zstd-compression`
/// is off, and an index written with it could not be read). 3: `name_key`, the name as words.
/// 4: `name` and `name_words`, for the attribute and exactness rules; words with digits
/// indexed with their parts.
pub const SCHEMA_VERSION: u32 = 4;
pub const TOKENIZER: &str = "mercato";
/// Tokens at least this long are dropped (tantivy's RemoveLongFilter keeps `len < limit`).
pub const MAX_TOKEN_BYTES: usize = 40;

#[derive(Debug, Clone, Copy)]
pub struct Fields {
    /// `<kind>:<id>`: what an update or removal replaces.
    pub uid: Field,
    pub kind: Field,
    /// Every searchable word of the document: the name (twice, so its words weigh double in
    /// BM25), the body and the id (shoppers paste SKUs). One field, so matching a word reads one
    /// posting list instead of a union of several, which is most of a query's cost.
    pub text: Field,
    /// The name's words on their own (also in `text`): a query word found here ranks above
    /// one found only in a description.
    pub name: Field,
    /// How many words the name has: a query that covers more of a name ranks it higher.
    pub name_words: Field,
    /// The name's words, lowercased and folded, joined by single spaces: what a query naming
    /// the product exactly comes to (see [`words_of`]).
    pub name_key: Field,
    /// Stored only: what snippets are cut from.
    pub body: Field,
    /// The full category path, for facet counts.
    pub category: Field,
    /// Every prefix of the category path, for filters (`books` matches `books/fiction`).
    pub category_path: Field,
    /// The city as declared, for facet counts.
    pub city: Field,
    /// The city in lowercase, for filters.
    pub city_key: Field,
    pub lat: Field,
    pub lon: Field,
    pub price: Field,
    pub starts_at: Field,
    /// A stable hash of the uid: the tie-breaker that makes every sort total.
    pub key: Field,
    /// The hit as the API shows it, as JSON.
    pub hit: Field,
}

/// How documents are tokenized: words, lowercased and folded, each word with letters and
/// digits also cut into its parts ([`crate::digits`]).
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(DigitParts)
        .build()
}

/// How queries are tokenized: as documents, but words stay whole; the query asks for a word's
/// parts itself, as another way to match it.
pub fn query_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

/// The words of `text` as the index tokenizes them, in order, joined by single spaces: a name
/// and a query that names it come to the same.
pub fn words_of(text: &str) -> String {
    let mut analyzer = query_analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = String::with_capacity(text.len());
    while let Some(t) = stream.next() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&t.text);
    }
    out
}

pub fn build() -> (Schema, Fields) {
    let mut b = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(TOKENIZER)
            .set_index_option(IndexRecordOption::WithFreqs),
    );
    let fast_i64 = NumericOptions::default().set_fast();
    let fields = Fields {
        uid: b.add_text_field("uid", STRING),
        kind: b.add_text_field("kind", STRING | FAST),
        text: b.add_text_field("text", text),
        name: b.add_text_field(
            "name",
            TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(TOKENIZER)
                    .set_index_option(IndexRecordOption::Basic),
            ),
        ),
        name_words: b.add_u64_field("name_words", FAST),
        name_key: b.add_text_field("name_key", STRING | FAST),
        body: b.add_text_field("body", STORED),
        category: b.add_text_field("category", STRING | FAST),
        category_path: b.add_text_field("category_path", STRING),
        city: b.add_text_field("city", STRING | FAST),
        city_key: b.add_text_field("city_key", STRING),
        lat: b.add_f64_field("lat", FAST),
        lon: b.add_f64_field("lon", FAST),
        price: b.add_i64_field("price", fast_i64.clone()),
        starts_at: b.add_i64_field("starts_at", fast_i64),
        key: b.add_u64_field("key", FAST),
        hit: b.add_text_field("hit", STORED),
    };
    (b.build(), fields)
}

/// FNV-1a of the uid: deterministic across processes and releases, unlike std's hasher.
pub fn uid_key(uid: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in uid.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What a search hit shows besides its snippet and score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredHit {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<mercato_core::domain::Money>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_max: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seller: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
}

pub fn to_document(fields: &Fields, doc: &CatalogDoc) -> TantivyDocument {
    let uid = doc_key(doc.kind, &doc.id);
    let mut d = TantivyDocument::default();
    d.add_text(fields.uid, &uid);
    d.add_text(fields.kind, doc.kind.as_str());
    d.add_text(
        fields.text,
        format!("{}\n{}\n{}\n{}", doc.name, doc.name, doc.body, doc.id),
    );
    d.add_text(fields.name, &doc.name);
    let name_key = words_of(&doc.name);
    let name_words = name_key.split(' ').filter(|w| !w.is_empty()).count();
    d.add_u64(fields.name_words, name_words as u64);
    d.add_text(fields.name_key, name_key);
    d.add_text(fields.body, &doc.body);
    let path = doc.category.join("/");
    if !doc.category.is_empty() {
        d.add_text(fields.category, &path);
        for depth in 1..=doc.category.len() {
            d.add_text(fields.category_path, doc.category[..depth].join("/"));
        }
    }
    if let Some(city) = &doc.city {
        d.add_text(fields.city, city);
        d.add_text(fields.city_key, city.to_lowercase());
    }
    if let Some((lat, lon)) = doc.geo {
        d.add_f64(fields.lat, lat);
        d.add_f64(fields.lon, lon);
    }
    if let Some(price) = &doc.price {
        d.add_i64(fields.price, price.amount);
    }
    if let Some(ms) = doc.starts_at_ms {
        d.add_i64(fields.starts_at, ms);
    }
    d.add_u64(fields.key, uid_key(&uid));
    let hit = StoredHit {
        kind: doc.kind.as_str().to_owned(),
        id: doc.id.clone(),
        name: doc.name.clone(),
        price: doc.price.clone(),
        price_max: doc.price_max,
        category: (!doc.category.is_empty()).then_some(path),
        city: doc.city.clone(),
        venue: doc.venue.clone(),
        location: doc.geo.map(|(lat, lon)| Location { lat, lon }),
        starts_at: doc
            .starts_at_ms
            .map(|ms| mercato_core::clock::to_rfc3339(ms.max(0) as u64)),
        seller: doc.seller.clone(),
    };
    // A plain struct always serializes.
    d.add_text(fields.hit, serde_json::to_string(&hit).unwrap_or_default());
    d
}
