use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::event::EventSpec;
use crate::inventory::InventorySpec;
use crate::warehouse::WarehouseSpec;

pub const GROUP: &str = "mercato.dev";
pub const API_VERSION: &str = "mercato.dev/v1alpha1";

/// The part of Kubernetes' ObjectMeta a declaration needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl ObjectMeta {
    pub fn from_cluster(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> Self {
        Self {
            name: meta.name.clone().unwrap_or_default(),
            namespace: meta.namespace.clone(),
            labels: meta.labels.clone().unwrap_or_default(),
        }
    }
}

/// One validation problem: where it is, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("document {document}: not valid YAML: {message}")]
    Yaml { document: usize, message: String },
    #[error("document {document}: apiVersion must be {API_VERSION}, not {found:?}")]
    ApiVersion { document: usize, found: String },
    #[error("document {document}: unknown kind {kind:?} (expected Event, Inventory or Warehouse)")]
    UnknownKind { document: usize, kind: String },
    #[error("{kind} {name:?} is invalid: {}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Invalid {
        kind: String,
        name: String,
        problems: Vec<Problem>,
    },
}

impl ManifestError {
    /// A stable machine-readable code for the HTTP edge.
    pub fn code(&self) -> &'static str {
        match self {
            ManifestError::Yaml { .. } => "malformed_manifest",
            ManifestError::ApiVersion { .. } => "unsupported_api_version",
            ManifestError::UnknownKind { .. } => "unsupported_kind",
            ManifestError::Invalid { .. } => "invalid_manifest",
        }
    }
}

/// A validated declaration.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Manifest {
    Event {
        metadata: ObjectMeta,
        spec: EventSpec,
    },
    Inventory {
        metadata: ObjectMeta,
        spec: InventorySpec,
    },
    Warehouse {
        metadata: ObjectMeta,
        spec: WarehouseSpec,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    api_version: String,
    kind: String,
    metadata: ObjectMeta,
    #[serde(default)]
    spec: serde_yaml::Value,
}

impl Manifest {
    /// Parses and validates a YAML stream of declarations (documents separated by `---`).
    /// Empty documents are skipped. Nothing is returned unless every document is valid, so a
    /// half-valid stream is never half applied.
    pub fn parse_stream(text: &str) -> Result<Vec<Manifest>, ManifestError> {
        let mut out = Vec::new();
        for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let document = index + 1;
            let value = serde_yaml::Value::deserialize(doc).map_err(|e| ManifestError::Yaml {
                document,
                message: e.to_string(),
            })?;
            if value.is_null() {
                continue;
            }
            let envelope: Envelope =
                serde_yaml::from_value(value).map_err(|e| ManifestError::Yaml {
                    document,
                    message: e.to_string(),
                })?;
            out.push(Self::from_envelope(document, envelope)?);
        }
        Ok(out)
    }

    fn from_envelope(document: usize, envelope: Envelope) -> Result<Manifest, ManifestError> {
        if envelope.api_version != API_VERSION {
            return Err(ManifestError::ApiVersion {
                document,
                found: envelope.api_version,
            });
        }
        // A spec of the wrong shape is reported alone; a well-formed one is then validated.
        fn spec<T: serde::de::DeserializeOwned>(envelope: &Envelope) -> Result<T, ManifestError> {
            serde_yaml::from_value(envelope.spec.clone()).map_err(|e| ManifestError::Invalid {
                kind: envelope.kind.clone(),
                name: envelope.metadata.name.clone(),
                problems: vec![Problem::new("spec", e.to_string())],
            })
        }
        let manifest = match envelope.kind.as_str() {
            "Event" => Manifest::Event {
                spec: spec(&envelope)?,
                metadata: envelope.metadata,
            },
            "Inventory" => Manifest::Inventory {
                spec: spec(&envelope)?,
                metadata: envelope.metadata,
            },
            "Warehouse" => Manifest::Warehouse {
                spec: spec(&envelope)?,
                metadata: envelope.metadata,
            },
            _ => {
                return Err(ManifestError::UnknownKind {
                    document,
                    kind: envelope.kind,
                })
            }
        };
        manifest.validated()
    }

    /// A declaration read from the cluster, validated as `mercato apply` validates it (the
    /// API server checks the schema; the rules across fields are checked here).
    pub fn from_event(event: &crate::Event) -> Result<Manifest, ManifestError> {
        Manifest::Event {
            metadata: ObjectMeta::from_cluster(&event.metadata),
            spec: event.spec.clone(),
        }
        .validated()
    }

    pub fn from_inventory(inventory: &crate::Inventory) -> Result<Manifest, ManifestError> {
        Manifest::Inventory {
            metadata: ObjectMeta::from_cluster(&inventory.metadata),
            spec: inventory.spec.clone(),
        }
        .validated()
    }

    pub fn from_warehouse(warehouse: &crate::Warehouse) -> Result<Manifest, ManifestError> {
        Manifest::Warehouse {
            metadata: ObjectMeta::from_cluster(&warehouse.metadata),
            spec: warehouse.spec.clone(),
        }
        .validated()
    }

    fn validated(self) -> Result<Manifest, ManifestError> {
        let problems = match &self {
            Manifest::Event { spec, .. } => spec.validate(),
            Manifest::Inventory { spec, .. } => spec.validate(),
            Manifest::Warehouse { spec, .. } => spec.validate(),
        };
        Self::checked(self.kind(), self.metadata(), problems)?;
        Ok(self)
    }

    fn checked(
        kind: &str,
        metadata: &ObjectMeta,
        mut problems: Vec<Problem>,
    ) -> Result<(), ManifestError> {
        let mut all = validate_name(&metadata.name);
        all.append(&mut problems);
        if all.is_empty() {
            return Ok(());
        }
        Err(ManifestError::Invalid {
            kind: kind.to_owned(),
            name: metadata.name.clone(),
            problems: all,
        })
    }

    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Manifest::Event { metadata, .. }
            | Manifest::Inventory { metadata, .. }
            | Manifest::Warehouse { metadata, .. } => metadata,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Manifest::Event { .. } => "Event",
            Manifest::Inventory { .. } => "Inventory",
            Manifest::Warehouse { .. } => "Warehouse",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Manifest::Event { metadata, .. }
            | Manifest::Inventory { metadata, .. }
            | Manifest::Warehouse { metadata, .. } => &metadata.name,
        }
    }
}

/// Kubernetes object names: a DNS-1123 label (lowercase alphanumerics and '-', at most 63).
/// Mercato uses the name as the id in URLs and topic names, so the rule is enforced locally too.
pub fn validate_name(name: &str) -> Vec<Problem> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Vec::new()
    } else {
        vec![Problem::new(
            "metadata.name",
            format!("{name:?} must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const THEATRE: &str = r#"
apiVersion: mercato.dev/v1alpha1
kind: Event
metadata:
  name: hamlet
spec:
  title: Hamlet
  venue: { name: Globe, city: London, lat: 51.508, lon: -0.097 }
  startsAt: 2027-03-01T19:30:00Z
  onSaleAt: 2026-01-01T10:00:00Z
  tiers:
    - { id: stalls, name: Stalls, price: { amount: 4500, currency: GBP } }
  sections:
    - { id: a, tier: stalls, rows: 2, seatsPerRow: 3 }
"#;

    #[test]
    fn parses_an_event_with_defaults() {
        let parsed = Manifest::parse_stream(THEATRE).unwrap();
        let [Manifest::Event { metadata, spec }] = parsed.as_slice() else {
            panic!("one event expected");
        };
        assert_eq!(metadata.name, "hamlet");
        assert_eq!(spec.hold_duration().as_secs(), 600);
        assert_eq!(spec.capacity(), 6);
    }

    #[test]
    fn reports_every_problem_with_its_path() {
        let bad = THEATRE
            .replace("tier: stalls, rows: 2", "tier: vip, rows: 0")
            .replace("lat: 51.508", "lat: 151.5")
            .replace("name: hamlet", "name: Hamlet_1");
        let err = Manifest::parse_stream(&bad).unwrap_err();
        let ManifestError::Invalid { problems, .. } = &err else {
            panic!("{err}")
        };
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"metadata.name"), "{paths:?}");
        assert!(paths.contains(&"spec.venue.lat"), "{paths:?}");
        assert!(paths.contains(&"spec.sections[0].tier"), "{paths:?}");
        assert!(paths.contains(&"spec.sections[0].rows"), "{paths:?}");
        assert_eq!(err.code(), "invalid_manifest");
    }

    #[test]
    fn rejects_foreign_and_malformed_documents() {
        let e = Manifest::parse_stream("apiVersion: v1\nkind: Event\nmetadata: {name: x}\n")
            .unwrap_err();
        assert_eq!(e.code(), "unsupported_api_version");
        let e = Manifest::parse_stream("kind: [").unwrap_err();
        assert_eq!(e.code(), "malformed_manifest");
        let e = Manifest::parse_stream(
            "apiVersion: mercato.dev/v1alpha1\nkind: Pod\nmetadata: {name: x}\n",
        )
        .unwrap_err();
        assert_eq!(e.code(), "unsupported_kind");
        let e = Manifest::parse_stream(
            &THEATRE.replace("title: Hamlet", "title: Hamlet\n  colour: red"),
        )
        .unwrap_err();
        assert_eq!(
            e.code(),
            "invalid_manifest",
            "unknown fields are typos: {e}"
        );
    }

    #[test]
    fn a_section_is_seated_or_a_standing_floor_never_both_nor_neither() {
        let problems = |section: &str| -> Vec<String> {
            let text = THEATRE.replace("{ id: a, tier: stalls, rows: 2, seatsPerRow: 3 }", section);
            match Manifest::parse_stream(&text) {
                Ok(parsed) => {
                    let [Manifest::Event { spec, .. }] = parsed.as_slice() else {
                        panic!("one event expected");
                    };
                    assert_eq!(spec.capacity(), 250);
                    Vec::new()
                }
                Err(ManifestError::Invalid { problems, .. }) => {
                    problems.into_iter().map(|p| p.path).collect()
                }
                Err(other) => panic!("{other}"),
            }
        };
        assert!(
            problems("{ id: a, tier: stalls, generalAdmission: { capacity: 250 } }").is_empty()
        );
        assert_eq!(
            problems("{ id: a, tier: stalls, generalAdmission: { capacity: 0 } }"),
            ["spec.sections[0].generalAdmission.capacity"]
        );
        assert_eq!(
            problems("{ id: a, tier: stalls, generalAdmission: { capacity: 100001 } }"),
            ["spec.sections[0].generalAdmission.capacity"]
        );
        assert_eq!(
            problems("{ id: a, tier: stalls, rows: 2, generalAdmission: { capacity: 5 } }"),
            ["spec.sections[0].generalAdmission"]
        );
        assert_eq!(
            problems("{ id: a, tier: stalls }"),
            ["spec.sections[0].rows", "spec.sections[0].seatsPerRow"]
        );
        assert_eq!(
            problems("{ id: a, tier: stalls, rows: 3 }"),
            ["spec.sections[0].seatsPerRow"]
        );
    }
}
