//! CA certificates a client trusts instead of the system's roots, for servers whose certificate
//! a private CA signed (`mercato apply --cacert`, `mercato worker --webhook-cacert`).

use std::path::Path;

use anyhow::{bail, Context};

/// The PEM certificates in `path`; `flag` names where the path came from in errors.
pub fn ca_certificates(flag: &str, path: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    let pem = std::fs::read(path)
        .with_context(|| format!("{flag} {}: cannot read it", path.display()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("{flag} {}: not PEM certificates", path.display()))?;
    if roots.is_empty() {
        bail!(
            "{flag} {}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(roots)
}

/// A client builder that trusts `roots` only, or the system's roots when there are none.
pub fn trusting(
    builder: reqwest::ClientBuilder,
    roots: Vec<reqwest::Certificate>,
) -> reqwest::ClientBuilder {
    if roots.is_empty() {
        return builder;
    }
    roots
        .into_iter()
        .fold(builder.tls_built_in_root_certs(false), |b, root| {
            b.add_root_certificate(root)
        })
}
