//! Reconcilers. A declaration becomes its desired state by a pure function ([`desired`]); only
//! the apply step differs between the local runtime of `mercato up` ([`local`]) and Kubernetes.

pub mod cluster;
pub mod conditions;
pub mod desired;
pub mod inventory;
pub mod local;
pub mod remote;
pub mod render;
pub mod sources;
pub mod topics;
pub mod topology;
pub mod warehouse;
pub mod workloads;

pub use desired::{desired, DesiredState, TopicSpec};
pub use local::{ApplyReport, LocalReconciler};
pub use sources::{Source, SourceError, SourcePolicy, DEFAULT_MAX_SOURCE_BYTES};
