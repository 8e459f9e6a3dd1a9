//! Turning a seller's product record into a stored [`Product`], or into a reason it cannot be.
//!
//! Sellers' feeds are messy, so the rules are lenient where meaning is clear (extra spaces,
//! `Books > Fiction`, `"12.99"`, lowercase currencies) and strict where it is not (a price with
//! more decimals than its currency has, a SKU with spaces). Each refusal has a stable code.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{AttrValue, Product};
use crate::domain::Money;

pub use mercato_crds::{is_sku, MAX_SKU};
pub const MAX_NAME: usize = 200;
pub const MAX_DESCRIPTION: usize = 5_000;
pub const MAX_CATEGORY_DEPTH: usize = 8;
pub const MAX_SEGMENT: usize = 64;
pub const MAX_ATTRIBUTES: usize = 64;
pub const MAX_ATTRIBUTE_KEY: usize = 64;
pub const MAX_ATTRIBUTE_TEXT: usize = 500;
/// A hundred billion in major units of a two-decimal currency: beyond any real price, and far
/// from overflowing sums of many lines.
pub const MAX_AMOUNT: i64 = 10_000_000_000_000;

/// Why a record was refused: a stable code and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError {
    pub code: &'static str,
    pub message: String,
}

impl RecordError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// What a record is normalized against: its inventory's seller and default currency.
#[derive(Debug, Clone, Copy)]
pub struct NormalizeContext<'a> {
    pub seller: &'a str,
    pub inventory: &'a str,
    pub currency: Option<&'a str>,
}

/// Records at least this long were cut by the publisher: refused as too large.
pub const MAX_RECORD_BYTES: usize = 1024 * 1024;

pub fn normalize_product(raw: &[u8], ctx: NormalizeContext<'_>) -> Result<Product, RecordError> {
    if raw.len() >= MAX_RECORD_BYTES {
        return Err(RecordError::new(
            "record_too_large",
            format!("a record of {MAX_RECORD_BYTES} bytes or more"),
        ));
    }
    let text = std::str::from_utf8(raw)
        .map_err(|e| RecordError::new("invalid_utf8", format!("not UTF-8: {e}")))?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| RecordError::new("malformed_json", format!("not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(RecordError::new(
            "not_an_object",
            format!("a product is a JSON object, not {}", kind_of(&value)),
        ));
    };
    let sku = sku(&fields)?;
    let name = required_text(&fields, "name", MAX_NAME)?;
    let description = optional_text(&fields, "description", MAX_DESCRIPTION)?;
    Ok(Product {
        sku,
        seller: ctx.seller.to_owned(),
        inventory: ctx.inventory.to_owned(),
        name,
        description,
        category: category(fields.get("category"))?,
        price: price(&fields, ctx.currency)?,
        attributes: attributes(fields.get("attributes"))?,
    })
}

/// The SKU of a record, if it has a readable one: used to key records before validation.
pub fn peek_sku(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Peek<'a> {
        #[serde(borrow)]
        sku: Option<std::borrow::Cow<'a, str>>,
    }
    let peek: Peek<'_> = serde_json::from_slice(raw).ok()?;
    let sku = peek.sku?.trim().to_owned();
    is_sku(&sku).then_some(sku)
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn sku(fields: &Map<String, Value>) -> Result<String, RecordError> {
    match fields.get("sku") {
        None | Some(Value::Null) => Err(RecordError::new("missing_field", "sku is missing")),
        Some(Value::String(s)) if is_sku(s.trim()) => Ok(s.trim().to_owned()),
        Some(other) => Err(RecordError::new(
            "invalid_sku",
            format!("sku {other} must be 1-{MAX_SKU} letters, digits, '.', '_' or '-'"),
        )),
    }
}

/// Trims, folds runs of whitespace into one space and drops control characters.
pub fn clean_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for word in s.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().filter(|c| !c.is_control()));
    }
    out
}

fn required_text(
    fields: &Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<String, RecordError> {
    let text = optional_text(fields, field, max)?;
    if text.is_empty() {
        Err(RecordError::new(
            "missing_field",
            format!("{field} is missing or empty"),
        ))
    } else {
        Ok(text)
    }
}

fn optional_text(
    fields: &Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<String, RecordError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => {
            let text = clean_text(s);
            let chars = text.chars().count();
            if chars > max {
                Err(RecordError::new(
                    "field_too_long",
                    format!("{field} has {chars} characters; at most {max}"),
                ))
            } else {
                Ok(text)
            }
        }
        Some(other) => Err(RecordError::new(
            "invalid_field",
            format!("{field} must be a string, not {}", kind_of(other)),
        )),
    }
}

/// `"Books > Science  Fiction"`, `"books/science fiction"` and `["Books", "Science Fiction"]`
/// all become `["books", "science fiction"]`.
fn category(value: Option<&Value>) -> Result<Vec<String>, RecordError> {
    let segments: Vec<String> = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::String(s)) => s.split(['/', '>']).map(str::to_owned).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) if !s.contains(['/', '>']) => Ok(s.clone()),
                _ => Err(RecordError::new(
                    "invalid_category",
                    "category segments must be strings without '/' or '>'",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(RecordError::new(
                "invalid_category",
                format!(
                    "category must be a path string or an array, not {}",
                    kind_of(other)
                ),
            ))
        }
    };
    let mut path = Vec::with_capacity(segments.len());
    for segment in segments {
        let clean = clean_text(&segment).to_lowercase();
        if clean.is_empty() {
            return Err(RecordError::new(
                "invalid_category",
                "category has an empty segment",
            ));
        }
        if clean.chars().count() > MAX_SEGMENT {
            return Err(RecordError::new(
                "invalid_category",
                format!("category segment {clean:?} is longer than {MAX_SEGMENT} characters"),
            ));
        }
        path.push(clean);
    }
    if path.len() > MAX_CATEGORY_DEPTH {
        return Err(RecordError::new(
            "invalid_category",
            format!(
                "category is {} levels deep; at most {MAX_CATEGORY_DEPTH}",
                path.len()
            ),
        ));
    }
    Ok(path)
}

fn price(
    fields: &Map<String, Value>,
    default_currency: Option<&str>,
) -> Result<Money, RecordError> {
    let sibling_currency = match fields.get("currency") {
        None | Some(Value::Null) => None,
        Some(Value::String(c)) => Some(c.as_str()),
        Some(other) => {
            return Err(RecordError::new(
                "invalid_currency",
                format!("currency must be a string, not {}", kind_of(other)),
            ))
        }
    };
    let (amount, currency) = match fields.get("price") {
        None | Some(Value::Null) => {
            return Err(RecordError::new("missing_field", "price is missing"))
        }
        // Minor units, as the API speaks: {"amount": 1299, "currency": "USD"}.
        Some(Value::Object(money)) => {
            let currency = match money.get("currency") {
                Some(Value::String(c)) => currency_code(c)?,
                _ => {
                    return Err(RecordError::new(
                        "invalid_price",
                        "price.currency must be an ISO 4217 code",
                    ))
                }
            };
            let amount = match money.get("amount") {
                Some(Value::Number(n)) => n.as_i64().ok_or_else(|| {
                    RecordError::new(
                        "invalid_price",
                        format!("price.amount {n} must be a whole number of minor units"),
                    )
                })?,
                _ => {
                    return Err(RecordError::new(
                        "invalid_price",
                        "price.amount must be a whole number of minor units",
                    ))
                }
            };
            (amount, currency)
        }
        // Major units: 12.99 or "12.99" or "12.99 USD", with the currency beside it or the
        // inventory's default.
        Some(Value::Number(n)) => {
            let currency = currency_for(sibling_currency, None, default_currency)?;
            (decimal_to_minor(&n.to_string(), &currency)?, currency)
        }
        Some(Value::String(s)) => {
            let mut parts = s.split_whitespace();
            let number = parts.next().unwrap_or("");
            let inline = parts.next();
            if parts.next().is_some() {
                return Err(RecordError::new(
                    "invalid_price",
                    format!("price {s:?} is not a number with an optional currency"),
                ));
            }
            let currency = currency_for(sibling_currency, inline, default_currency)?;
            (decimal_to_minor(number, &currency)?, currency)
        }
        Some(other) => {
            return Err(RecordError::new(
                "invalid_price",
                format!(
                    "price must be a number, a string or {{amount, currency}}, not {}",
                    kind_of(other)
                ),
            ))
        }
    };
    if amount < 0 {
        return Err(RecordError::new(
            "invalid_price",
            "price must not be negative",
        ));
    }
    if amount > MAX_AMOUNT {
        return Err(RecordError::new(
            "invalid_price",
            format!("price {amount} is too large"),
        ));
    }
    Ok(Money { amount, currency })
}

fn currency_for(
    sibling: Option<&str>,
    inline: Option<&str>,
    default: Option<&str>,
) -> Result<String, RecordError> {
    match (inline, sibling) {
        (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b) => Err(RecordError::new(
            "invalid_currency",
            format!("price says {a} but currency says {b}"),
        )),
        (Some(c), _) | (None, Some(c)) => currency_code(c),
        (None, None) => match default {
            Some(c) => currency_code(c),
            None => Err(RecordError::new(
                "missing_currency",
                "price has no currency and the inventory sets no default (spec.currency)",
            )),
        },
    }
}

fn currency_code(c: &str) -> Result<String, RecordError> {
    let code = c.trim().to_ascii_uppercase();
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(code)
    } else {
        Err(RecordError::new(
            "invalid_currency",
            format!("{c:?} is not an ISO 4217 currency code"),
        ))
    }
}

/// How many minor units a major unit has, per ISO 4217.
pub fn minor_digits(currency: &str) -> u32 {
    match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    }
}

/// Exact decimal parsing: "12.5" USD is 1250; "12.345" USD is refused, never rounded.
fn decimal_to_minor(text: &str, currency: &str) -> Result<i64, RecordError> {
    let bad = || {
        RecordError::new(
            "invalid_price",
            format!("price {text:?} is not a decimal number"),
        )
    };
    let digits = minor_digits(currency);
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, ""));
    if whole.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !fraction.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > digits as usize {
        return Err(RecordError::new(
            "invalid_price",
            format!("price {text} has more decimals than {currency} has ({digits})"),
        ));
    }
    let too_large = || RecordError::new("invalid_price", format!("price {text} is too large"));
    let whole: i64 = whole.parse().map_err(|_| too_large())?;
    let mut minor = whole
        .checked_mul(10_i64.pow(digits))
        .ok_or_else(too_large)?;
    if !fraction.is_empty() {
        let scale = 10_i64.pow(digits - fraction.len() as u32);
        let part: i64 = fraction.parse().map_err(|_| bad())?;
        minor = minor.checked_add(part * scale).ok_or_else(too_large)?;
    }
    Ok(if negative { -minor } else { minor })
}

fn attributes(value: Option<&Value>) -> Result<BTreeMap<String, AttrValue>, RecordError> {
    let fields = match value {
        None | Some(Value::Null) => return Ok(BTreeMap::new()),
        Some(Value::Object(fields)) => fields,
        Some(other) => {
            return Err(RecordError::new(
                "invalid_attributes",
                format!("attributes must be an object, not {}", kind_of(other)),
            ))
        }
    };
    if fields.len() > MAX_ATTRIBUTES {
        return Err(RecordError::new(
            "invalid_attributes",
            format!("{} attributes; at most {MAX_ATTRIBUTES}", fields.len()),
        ));
    }
    let mut out = BTreeMap::new();
    for (key, value) in fields {
        let clean_key = clean_text(key).to_lowercase();
        if clean_key.is_empty() || clean_key.chars().count() > MAX_ATTRIBUTE_KEY {
            return Err(RecordError::new(
                "invalid_attributes",
                format!("attribute name {key:?} must be 1-{MAX_ATTRIBUTE_KEY} characters"),
            ));
        }
        let value = match value {
            Value::String(s) => {
                let text = clean_text(s);
                if text.chars().count() > MAX_ATTRIBUTE_TEXT {
                    return Err(RecordError::new(
                        "invalid_attributes",
                        format!("attribute {clean_key:?} is longer than {MAX_ATTRIBUTE_TEXT} characters"),
                    ));
                }
                AttrValue::Text(text)
            }
            Value::Bool(b) => AttrValue::Bool(*b),
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.is_finite() => AttrValue::Number(f),
                _ => {
                    return Err(RecordError::new(
                        "invalid_attributes",
                        format!("attribute {clean_key:?} is not a finite number"),
                    ))
                }
            },
            other => {
                return Err(RecordError::new(
                    "invalid_attributes",
                    format!(
                        "attribute {clean_key:?} must be a string, number or boolean, not {}",
                        kind_of(other)
                    ),
                ))
            }
        };
        if out.insert(clean_key.clone(), value).is_some() {
            return Err(RecordError::new(
                "invalid_attributes",
                format!("attribute {clean_key:?} is given twice (names ignore case and spaces)"),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: NormalizeContext<'static> = NormalizeContext {
        seller: "acme",
        inventory: "books",
        currency: Some("USD"),
    };

    fn ok(raw: &str) -> Product {
        normalize_product(raw.as_bytes(), CTX).unwrap()
    }

    fn code(raw: &str) -> &'static str {
        normalize_product(raw.as_bytes(), CTX).unwrap_err().code
    }

    #[test]
    fn a_messy_but_clear_record_is_normalized() {
        let p = ok(
            r#"{"sku":" BK-1 ","name":"  The   Left Hand\tof Darkness ","category":"Books > Science  Fiction",
            "price":"12.5","attributes":{" Author ":"Ursula K. Le Guin","Pages":304,"Signed":false}}"#,
        );
        assert_eq!(p.sku, "BK-1");
        assert_eq!(p.name, "The Left Hand of Darkness");
        assert_eq!(p.category, ["books", "science fiction"]);
        assert_eq!(
            p.price,
            Money {
                amount: 1250,
                currency: "USD".into()
            }
        );
        assert_eq!(
            p.attributes["author"],
            AttrValue::Text("Ursula K. Le Guin".into())
        );
        assert_eq!(p.attributes["pages"], AttrValue::Number(304.0));
        assert_eq!(p.seller, "acme");
    }

    #[test]
    fn prices_come_in_every_common_shape() {
        let price = |p: &str| ok(&format!(r#"{{"sku":"A","name":"a",{p}}}"#)).price;
        assert_eq!(
            price(r#""price":{"amount":999,"currency":"eur"}"#).amount,
            999
        );
        assert_eq!(
            price(r#""price":{"amount":999,"currency":"eur"}"#).currency,
            "EUR"
        );
        assert_eq!(price(r#""price":12.99"#).amount, 1299);
        assert_eq!(price(r#""price":7"#).amount, 700);
        assert_eq!(
            price(r#""price":"1500 JPY""#),
            Money {
                amount: 1500,
                currency: "JPY".into()
            }
        );
        assert_eq!(price(r#""price":"1.234","currency":"KWD""#).amount, 1234);
        assert_eq!(price(r#""price":"3.10""#).amount, 310);
    }

    #[test]
    fn every_kind_of_bad_record_has_its_code() {
        assert_eq!(code("{not json"), "malformed_json");
        assert_eq!(code("[1,2]"), "not_an_object");
        assert_eq!(
            normalize_product(&[0xff, 0xfe], CTX).unwrap_err().code,
            "invalid_utf8"
        );
        assert_eq!(code(r#"{"name":"a","price":1}"#), "missing_field");
        assert_eq!(code(r#"{"sku":"a b","name":"a","price":1}"#), "invalid_sku");
        assert_eq!(code(r#"{"sku":7,"name":"a","price":1}"#), "invalid_sku");
        assert_eq!(
            code(r#"{"sku":"A","name":"   ","price":1}"#),
            "missing_field"
        );
        assert_eq!(code(r#"{"sku":"A","name":"a"}"#), "missing_field");
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":-1}"#),
            "invalid_price"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":"12.345"}"#),
            "invalid_price"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":"ten"}"#),
            "invalid_price"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":{"amount":1.5,"currency":"USD"}}"#),
            "invalid_price"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":1,"currency":"dollars"}"#),
            "invalid_currency"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":"1 EUR","currency":"USD"}"#),
            "invalid_currency"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":1,"category":"a//b"}"#),
            "invalid_category"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":1,"category":5}"#),
            "invalid_category"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":1,"attributes":[1]}"#),
            "invalid_attributes"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":1,"attributes":{"x":{}}}"#),
            "invalid_attributes"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":1,"attributes":{"X":1,"x":2}}"#),
            "invalid_attributes"
        );
        assert_eq!(
            code(&format!(
                r#"{{"sku":"A","name":"{}","price":1}}"#,
                "n".repeat(201)
            )),
            "field_too_long"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":1,"description":3}"#),
            "invalid_field"
        );
        let no_default = NormalizeContext {
            currency: None,
            ..CTX
        };
        let e = normalize_product(br#"{"sku":"A","name":"a","price":1}"#, no_default).unwrap_err();
        assert_eq!(e.code, "missing_currency");
    }

    #[test]
    fn the_sku_is_peeked_without_validating_the_rest() {
        assert_eq!(
            peek_sku(br#"{"sku":" X-1 ","price":"bad"}"#).as_deref(),
            Some("X-1")
        );
        assert_eq!(peek_sku(br#"{"sku":"has space"}"#), None);
        assert_eq!(peek_sku(b"{broken"), None);
    }

    #[test]
    fn huge_prices_are_refused_not_wrapped() {
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":"99999999999999999999"}"#),
            "invalid_price"
        );
        assert_eq!(
            code(r#"{"sku":"A","name":"a","price":1e300}"#),
            "invalid_price"
        );
    }
}
