//! A search request as the API takes it: parsed and checked before it reaches the index.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use mercato_core::domain::catalog::{clean_text, DocKind};

pub const DEFAULT_LIMIT: usize = 20;
pub const MAX_LIMIT: usize = 100;
pub const DEFAULT_RADIUS_KM: f64 = 25.0;
pub const MAX_RADIUS_KM: f64 = 20_000.0;
pub const MAX_QUERY_CHARS: usize = 256;
/// A category path or a city: longer than any the catalog accepts, short enough that a filter
/// costs nothing to clean and compare.
pub const MAX_FILTER_CHARS: usize = 200;
/// Longer than any cursor this API issues (they are a few dozen characters).
pub const MAX_CURSOR_CHARS: usize = 512;

/// Every parameter a search takes; any other is refused, so a misspelt filter never widens it.
pub const PARAMS: [&str; 13] = [
    "q",
    "type",
    "category",
    "city",
    "near",
    "radius_km",
    "from",
    "to",
    "price_min",
    "price_max",
    "sort",
    "limit",
    "cursor",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Best match first (BM25).
    Relevance,
    /// Cheapest first.
    Price,
    /// Dearest first.
    PriceDesc,
    /// Soonest first.
    Date,
    /// Nearest to `near` first.
    Distance,
}

impl Sort {
    pub fn id(self) -> u8 {
        self as u8
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
}

/// Where the previous page ended: its last hit's sort value and tie-breaker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cursor {
    pub sort: u8,
    pub rank: f64,
    pub key: u64,
}

impl Cursor {
    pub fn encode(&self) -> String {
        let mut bytes = Vec::with_capacity(17);
        bytes.push(self.sort);
        bytes.extend_from_slice(&self.rank.to_bits().to_be_bytes());
        bytes.extend_from_slice(&self.key.to_be_bytes());
        hex::encode(bytes)
    }

    pub fn decode(text: &str) -> Option<Cursor> {
        let bytes = hex::decode(text).ok()?;
        if bytes.len() != 17 {
            return None;
        }
        let rank = f64::from_bits(u64::from_be_bytes(bytes[1..9].try_into().ok()?));
        let key = u64::from_be_bytes(bytes[9..17].try_into().ok()?);
        (!rank.is_nan()).then_some(Cursor {
            sort: bytes[0],
            rank,
            key,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SearchRequest {
    pub q: String,
    pub kind: Option<DocKind>,
    /// A lowercase category path; matches it and everything below it.
    pub category: Option<String>,
    /// Lowercase.
    pub city: Option<String>,
    pub near: Option<Near>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub price_min: Option<i64>,
    pub price_max: Option<i64>,
    pub sort: Sort,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Default for SearchRequest {
    fn default() -> Self {
        Self {
            q: String::new(),
            kind: None,
            category: None,
            city: None,
            near: None,
            from_ms: None,
            to_ms: None,
            price_min: None,
            price_max: None,
            sort: Sort::Relevance,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

/// A parameter the request cannot be served with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{param}: {message}")]
pub struct BadParam {
    pub param: &'static str,
    pub message: String,
}

pub(crate) fn bad(param: &'static str, message: impl Into<String>) -> BadParam {
    BadParam {
        param,
        message: message.into(),
    }
}

/// The `q` parameter, if it has any words: trimmed at the start only, since a space after the
/// last word says the word is finished (it is not taken as a prefix).
pub(crate) fn query_text(params: &HashMap<String, String>) -> Result<Option<String>, BadParam> {
    let Some(q) = params
        .get("q")
        .map(|v| v.trim_start())
        .filter(|v| !v.is_empty())
    else {
        return Ok(None);
    };
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(bad("q", format!("at most {MAX_QUERY_CHARS} characters")));
    }
    Ok(Some(q.to_owned()))
}

impl SearchRequest {
    /// Parses the query string of `GET /api/v1/search`. Unknown parameters are refused, so a
    /// typo (`catgory=`) is an error rather than a silently unfiltered answer.
    pub fn from_params(params: &HashMap<String, String>) -> Result<SearchRequest, BadParam> {
        if let Some(unknown) = params.keys().find(|k| !PARAMS.contains(&k.as_str())) {
            return Err(bad(
                "query",
                format!(
                    "unknown parameter {unknown:?}; known: {}",
                    PARAMS.join(", ")
                ),
            ));
        }
        let get = |k: &str| params.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
        let mut r = SearchRequest::default();
        if let Some(q) = query_text(params)? {
            r.q = q;
        }
        if let Some(t) = get("type") {
            r.kind =
                Some(DocKind::parse(t).ok_or_else(|| bad("type", "must be event or product"))?);
        }
        if let Some(c) = get("category") {
            if c.chars().count() > MAX_FILTER_CHARS {
                return Err(bad(
                    "category",
                    format!("at most {MAX_FILTER_CHARS} characters"),
                ));
            }
            let path: Vec<String> = c
                .split(['/', '>'])
                .map(|s| clean_text(s).to_lowercase())
                .collect();
            if path.iter().any(String::is_empty) {
                return Err(bad("category", "has an empty segment"));
            }
            r.category = Some(path.join("/"));
        }
        if let Some(c) = get("city") {
            if c.chars().count() > MAX_FILTER_CHARS {
                return Err(bad(
                    "city",
                    format!("at most {MAX_FILTER_CHARS} characters"),
                ));
            }
            r.city = Some(clean_text(c).to_lowercase());
        }
        let radius = match get("radius_km") {
            Some(v) => {
                let km: f64 = v.parse().map_err(|_| bad("radius_km", "not a number"))?;
                if !(km > 0.0 && km <= MAX_RADIUS_KM) {
                    return Err(bad("radius_km", format!("must be in (0, {MAX_RADIUS_KM}]")));
                }
                Some(km)
            }
            None => None,
        };
        if let Some(near) = get("near") {
            let (lat, lon) = near
                .split_once(',')
                .and_then(|(a, b)| {
                    Some((a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?))
                })
                .ok_or_else(|| bad("near", "must be lat,lon"))?;
            if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                return Err(bad(
                    "near",
                    "latitude must be in -90..90 and longitude in -180..180",
                ));
            }
            r.near = Some(Near {
                lat,
                lon,
                radius_km: radius.unwrap_or(DEFAULT_RADIUS_KM),
            });
        } else if radius.is_some() {
            return Err(bad("radius_km", "needs near=lat,lon"));
        }
        r.from_ms = get("from")
            .map(|v| parse_time("from", v, false))
            .transpose()?;
        r.to_ms = get("to").map(|v| parse_time("to", v, true)).transpose()?;
        if let (Some(f), Some(t)) = (r.from_ms, r.to_ms) {
            if f > t {
                return Err(bad("to", "is before from"));
            }
        }
        r.price_min = get("price_min")
            .map(|v| parse_amount("price_min", v))
            .transpose()?;
        r.price_max = get("price_max")
            .map(|v| parse_amount("price_max", v))
            .transpose()?;
        if let (Some(a), Some(b)) = (r.price_min, r.price_max) {
            if a > b {
                return Err(bad("price_max", "is below price_min"));
            }
        }
        if let Some(s) = get("sort") {
            r.sort = match s {
                "relevance" => Sort::Relevance,
                "price" => Sort::Price,
                "-price" | "price_desc" => Sort::PriceDesc,
                "date" => Sort::Date,
                "distance" if r.near.is_some() => Sort::Distance,
                "distance" => return Err(bad("sort", "distance needs near=lat,lon")),
                _ => {
                    return Err(bad(
                        "sort",
                        "must be relevance, price, price_desc, date or distance",
                    ))
                }
            };
        }
        if let Some(l) = get("limit") {
            let limit: usize = l.parse().map_err(|_| bad("limit", "not a number"))?;
            if !(1..=MAX_LIMIT).contains(&limit) {
                return Err(bad("limit", format!("must be in 1..{MAX_LIMIT}")));
            }
            r.limit = limit;
        }
        if let Some(c) = get("cursor") {
            if c.len() > MAX_CURSOR_CHARS {
                return Err(bad("cursor", "not a cursor this API gave"));
            }
            let cursor =
                Cursor::decode(c).ok_or_else(|| bad("cursor", "not a cursor this API gave"))?;
            if cursor.sort != r.sort.id() {
                return Err(bad("cursor", "belongs to another sort order"));
            }
            r.cursor = Some(cursor);
        }
        Ok(r)
    }
}

/// RFC 3339, or a plain date (a `to` date means the end of that day).
fn parse_time(param: &'static str, v: &str, end_of_day: bool) -> Result<i64, BadParam> {
    if let Ok(t) = DateTime::parse_from_rfc3339(v) {
        return Ok(t.with_timezone(&Utc).timestamp_millis());
    }
    let date = NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .map_err(|_| bad(param, "must be an RFC 3339 time or a YYYY-MM-DD date"))?;
    let t = if end_of_day {
        date.and_hms_milli_opt(23, 59, 59, 999)
    } else {
        date.and_hms_opt(0, 0, 0)
    };
    t.map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| bad(param, "not a valid date"))
}

fn parse_amount(param: &'static str, v: &str) -> Result<i64, BadParam> {
    let amount: i64 = v.parse().map_err(|_| {
        bad(
            param,
            "must be a whole number of minor units (1299 for 12.99)",
        )
    })?;
    if amount < 0 {
        return Err(bad(param, "must not be negative"));
    }
    Ok(amount)
}

pub use mercato_core::geo::haversine_km;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<SearchRequest, BadParam> {
        let params = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        SearchRequest::from_params(&params)
    }

    #[test]
    fn every_parameter_parses() {
        let r = parse(&[
            ("q", " dune "),
            ("type", "product"),
            ("category", "Books > Science Fiction"),
            ("city", "London"),
            ("near", "51.5,-0.12"),
            ("radius_km", "10"),
            ("from", "2026-01-01"),
            ("to", "2026-01-31"),
            ("price_min", "100"),
            ("price_max", "5000"),
            ("sort", "price"),
            ("limit", "50"),
        ])
        .unwrap();
        assert_eq!(
            r.q, "dune ",
            "a space after the last word finishes it: kept"
        );
        assert_eq!(r.kind, Some(DocKind::Product));
        assert_eq!(r.category.as_deref(), Some("books/science fiction"));
        assert_eq!(r.city.as_deref(), Some("london"));
        assert_eq!(r.near.map(|n| n.radius_km), Some(10.0));
        assert_eq!(r.to_ms.unwrap() - r.from_ms.unwrap(), 31 * 86_400_000 - 1);
        assert_eq!(r.sort, Sort::Price);
        assert_eq!(r.limit, 50);
    }

    #[test]
    fn bad_parameters_name_themselves() {
        let param = |pairs: &[(&str, &str)]| parse(pairs).unwrap_err().param;
        assert_eq!(param(&[("type", "pony")]), "type");
        assert_eq!(param(&[("near", "north")]), "near");
        assert_eq!(param(&[("near", "91,0")]), "near");
        assert_eq!(param(&[("radius_km", "5")]), "radius_km");
        assert_eq!(param(&[("from", "yesterday")]), "from");
        assert_eq!(param(&[("from", "2026-02-01"), ("to", "2026-01-01")]), "to");
        assert_eq!(param(&[("price_min", "-1")]), "price_min");
        assert_eq!(
            param(&[("price_min", "9"), ("price_max", "1")]),
            "price_max"
        );
        assert_eq!(param(&[("sort", "distance")]), "sort");
        assert_eq!(param(&[("limit", "101")]), "limit");
        assert_eq!(param(&[("cursor", "zz")]), "cursor");
        assert_eq!(param(&[("catgory", "x")]), "query");
        let long = "x".repeat(300);
        assert_eq!(param(&[("q", long.as_str())]), "q");
    }

    #[test]
    fn filters_and_cursors_are_bounded() {
        let param = |pairs: &[(&str, &str)]| parse(pairs).unwrap_err().param;
        let long = "x".repeat(MAX_FILTER_CHARS + 1);
        assert_eq!(param(&[("category", long.as_str())]), "category");
        assert_eq!(param(&[("city", long.as_str())]), "city");
        let deep = "a/".repeat(MAX_FILTER_CHARS) + "a";
        assert_eq!(param(&[("category", deep.as_str())]), "category");
        let cursor = "A".repeat(MAX_CURSOR_CHARS + 1);
        assert_eq!(param(&[("cursor", cursor.as_str())]), "cursor");
        let fits = "x".repeat(MAX_FILTER_CHARS);
        assert!(parse(&[("category", fits.as_str()), ("city", fits.as_str())]).is_ok());
    }

    #[test]
    fn cursors_round_trip_and_belong_to_their_sort() {
        let c = Cursor {
            sort: Sort::Price.id(),
            rank: 1299.0,
            key: 42,
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        let e = parse(&[("cursor", &c.encode()), ("sort", "date")]).unwrap_err();
        assert_eq!(e.param, "cursor");
    }

    #[test]
    fn distances_are_great_circle() {
        let london = (51.5074, -0.1278);
        let paris = (48.8566, 2.3522);
        let d = haversine_km(london, paris);
        assert!((d - 343.5).abs() < 1.0, "{d}");
    }
}
