use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::manifest::Problem;
use crate::status::InventoryStatus;
use crate::workers::{validate_scale, InventoryWorkers};

pub const DEFAULT_LOW_STOCK_THRESHOLD: u32 = 5;
/// Inline products are for small catalogs and examples; larger ones belong in a file.
pub const MAX_INLINE_PRODUCTS: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Seller {
    /// Lowercase letters, digits and '-': it appears in URLs (`/sellers/{id}/alerts`).
    #[schemars(regex(pattern = "^[a-z0-9-]{1,63}$"))]
    pub id: String,
    pub name: String,
}

/// Where a large catalog comes from: a file, or a URL (on a cluster, where the operator has no
/// folder of the seller's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProductSource {
    /// A path relative to the manifest's folder, an absolute path, or a `file://` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// An `https://` URL, or `s3://BUCKET/KEY` (S3-compatible storage, credentials from the
    /// standard AWS variables). Fetched only if the process allows its prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The SHA-256 of the source's bytes, in hex: a download with other bytes is refused, and an
    /// unchanged declaration is not downloaded again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = "^[0-9a-fA-F]{64}$"))]
    pub sha256: Option<String>,
    /// `ndjson` (one product per line) or `json` (one array); by default from the extension.
    #[serde(default)]
    pub format: Option<SourceFormat>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Ndjson,
    Json,
}

impl ProductSource {
    /// The file or the URL, whichever is given: where the source is, as declared.
    pub fn location(&self) -> &str {
        self.file
            .as_deref()
            .or(self.url.as_deref())
            .unwrap_or_default()
    }

    pub fn format(&self) -> SourceFormat {
        self.format.unwrap_or_else(|| {
            let location = self.location().to_ascii_lowercase();
            // A URL's query (a presigned URL's signature) is not its extension.
            let path = location.split(['?', '#']).next().unwrap_or_default();
            if path.ends_with(".json") {
                SourceFormat::Json
            } else {
                SourceFormat::Ndjson
            }
        })
    }
}

/// A seller's catalog. Products are records, not spec fields: each one is validated by the
/// ingest worker, and a bad one goes to the dead-letter topic with its reason and position
/// instead of failing the whole declaration. Applying an Inventory again replaces its catalog:
/// products it no longer lists are removed.
// The printer columns repeat `type_ = "integer"`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "mercato.dev",
    version = "v1alpha1",
    kind = "Inventory",
    plural = "inventories",
    namespaced,
    status = "InventoryStatus",
    shortname = "inv",
    category = "mercato",
    printcolumn(name = "Products", type_ = "integer", json_path = ".status.products"),
    printcolumn(name = "Rejected", type_ = "integer", json_path = ".status.rejected"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InventorySpec {
    pub seller: Seller,
    /// Available stock at or below this raises a low-stock alert; 5 by default.
    #[serde(default)]
    pub low_stock_threshold: Option<u32>,
    /// The currency of prices given as plain numbers (`"price": 12.99`).
    #[serde(default)]
    #[schemars(regex(pattern = "^[A-Z]{3}$"))]
    pub currency: Option<String>,
    /// Products as the ingest worker reads them: each is checked there, and a bad one is
    /// rejected with its reason without failing the rest.
    #[serde(default)]
    #[schemars(schema_with = "crate::status::free_form_list")]
    pub products: Vec<serde_json::Value>,
    #[serde(default)]
    pub source: Option<ProductSource>,
    /// The ingest and checkout workers this inventory needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workers: Option<InventoryWorkers>,
}

impl InventorySpec {
    pub fn low_stock_threshold(&self) -> u32 {
        self.low_stock_threshold
            .unwrap_or(DEFAULT_LOW_STOCK_THRESHOLD)
    }

    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let mut need = |ok: bool, path: &str, message: String| {
            if !ok {
                problems.push(Problem::new(path, message));
            }
        };
        need(
            is_seller_id(&self.seller.id),
            "spec.seller.id",
            format!(
                "{:?} must be 1-63 lowercase letters, digits or '-'",
                self.seller.id
            ),
        );
        need(
            !self.seller.name.trim().is_empty(),
            "spec.seller.name",
            "must not be empty".into(),
        );
        if let Some(c) = &self.currency {
            need(
                c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()),
                "spec.currency",
                format!("{c:?} is not an ISO 4217 code"),
            );
        }
        need(
            self.products.len() <= MAX_INLINE_PRODUCTS,
            "spec.products",
            format!(
                "{} inline products; more than {MAX_INLINE_PRODUCTS} belong in spec.source",
                self.products.len()
            ),
        );
        if let Some(source) = &self.source {
            match (&source.file, &source.url) {
                (Some(_), Some(_)) | (None, None) => {
                    need(false, "spec.source", "give one of file and url".into())
                }
                (Some(file), None) => {
                    let file = file.trim();
                    need(
                        !file.is_empty(),
                        "spec.source.file",
                        "must not be empty".into(),
                    );
                    need(
                        !file.contains("://") || file.starts_with("file://"),
                        "spec.source.file",
                        format!(
                            "{file:?}: a path or a file:// URL (other URLs go in spec.source.url)"
                        ),
                    );
                }
                (None, Some(url)) => need(
                    ["https://", "http://", "s3://"]
                        .iter()
                        .any(|scheme| url.starts_with(scheme) && url.len() > scheme.len()),
                    "spec.source.url",
                    format!("{url:?}: an https:// (or http://) URL or s3://BUCKET/KEY"),
                ),
            }
            if let Some(sum) = &source.sha256 {
                need(
                    sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()),
                    "spec.source.sha256",
                    format!("{sum:?} is not a SHA-256 in hex (64 digits)"),
                );
            }
        }
        if let Some(workers) = &self.workers {
            for (role, scale) in [("ingest", &workers.ingest), ("checkout", &workers.checkout)] {
                if let Some(scale) = scale {
                    validate_scale(&format!("spec.workers.{role}"), scale, &mut problems);
                }
            }
        }
        problems
    }
}

fn is_seller_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> InventorySpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn a_small_inventory_is_valid_and_defaults_apply() {
        let s = spec(
            "seller: {id: acme-books, name: Acme Books}\nproducts:\n  - {sku: B-1, name: Dune}\n",
        );
        assert!(s.validate().is_empty());
        assert_eq!(s.low_stock_threshold(), 5);
        assert_eq!(s.products.len(), 1);
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let s = spec(
            "seller: {id: Acme, name: ' '}\ncurrency: usd\nsource: {file: 'https://x/y.json'}\n",
        );
        let paths: Vec<_> = s.validate().into_iter().map(|p| p.path).collect();
        assert_eq!(
            paths,
            [
                "spec.seller.id",
                "spec.seller.name",
                "spec.currency",
                "spec.source.file"
            ]
        );
    }

    #[test]
    fn the_format_follows_the_extension_unless_given() {
        let file = |f: &str| ProductSource {
            file: Some(f.into()),
            url: None,
            sha256: None,
            format: None,
        };
        assert_eq!(file("a/b.ndjson").format(), SourceFormat::Ndjson);
        assert_eq!(file("a/b.JSON").format(), SourceFormat::Json);
        assert_eq!(file("a/b.jsonl").format(), SourceFormat::Ndjson);
        let url = ProductSource {
            file: None,
            url: Some("https://x.example/b.json?X-Amz-Signature=ab.ndjson".into()),
            sha256: None,
            format: None,
        };
        assert_eq!(url.format(), SourceFormat::Json);
        let forced = ProductSource {
            format: Some(SourceFormat::Json),
            ..file("x.txt")
        };
        assert_eq!(forced.format(), SourceFormat::Json);
    }

    #[test]
    fn a_source_is_a_file_or_a_url_with_an_optional_checksum() {
        let problems = |source: &str| -> Vec<String> {
            spec(&format!("seller: {{id: a, name: A}}\nsource: {source}\n"))
                .validate()
                .into_iter()
                .map(|p| p.path)
                .collect()
        };
        assert!(problems("{url: 'https://x.example/b.ndjson'}").is_empty());
        assert!(problems(
            "{url: 's3://bucket/b.ndjson', sha256: '%s'}"
                .replace("%s", &"ab".repeat(32))
                .as_str()
        )
        .is_empty());
        assert_eq!(problems("{file: a, url: 'https://x/y'}"), ["spec.source"]);
        assert_eq!(problems("{format: json}"), ["spec.source"]);
        assert_eq!(problems("{url: 'ftp://x/y'}"), ["spec.source.url"]);
        assert_eq!(problems("{url: 'https://'}"), ["spec.source.url"]);
        assert_eq!(
            problems("{url: 'https://x/y', sha256: 'abc'}"),
            ["spec.source.sha256"]
        );
    }
}
