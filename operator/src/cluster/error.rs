use mercato_core::bus::BusError;
use mercato_core::repo::RepoError;

use crate::local::ApplyError;
use crate::workloads::BuildError;

/// Everything a reconcile can fail with; each has a metric label.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("topics: {0}")]
    Bus(#[from] BusError),
    #[error("engines: {0}")]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

impl Error {
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Kube(_) => "api",
            Error::Bus(_) => "bus",
            Error::Repo(_) | Error::Apply(_) => "engines",
            Error::Build(_) => "build",
            Error::Finalizer(e) => match &**e {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.metric_label(),
                _ => "finalizer",
            },
            Error::NoNamespace(_) => "namespace",
        }
    }

    /// The condition reason a failure shows as.
    pub fn reason(&self) -> &'static str {
        match self.metric_label() {
            "api" => "ApiError",
            "bus" => "TopicError",
            "engines" => "EngineError",
            "build" => "BuildError",
            _ => "ReconcileError",
        }
    }
}
