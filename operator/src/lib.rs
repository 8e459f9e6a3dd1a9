//! Reconcilers. A declaration becomes its desired state by a pure function ([`desired`]); only
//! the apply step differs between the local runtime of `mercato up` ([`local`]) and Kubernetes.

pub mod desired;
pub mod inventory;
pub mod local;
pub mod warehouse;

pub use desired::{desired, DesiredState, TopicSpec};
pub use local::{Applied, LocalReconciler};
