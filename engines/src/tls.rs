//! What the engines' TLS connections share: taking TLS parameters out of a URL's query (named
//! as libpq names them: `sslmode`, `sslrootcert`) before the driver reads it, and the rustls
//! client configuration that verifies a server against a CA file or the system's roots.

use std::collections::HashMap;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};

/// `url` without the query parameters named in `names`, and their values.
pub fn take_params(mut url: url::Url, names: &[&str]) -> (url::Url, HashMap<String, String>) {
    let mut taken = HashMap::new();
    let rest: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(key, value)| {
            if names.contains(&key.as_ref()) {
                taken.insert(key.into_owned(), value.into_owned());
                None
            } else {
                Some((key.into_owned(), value.into_owned()))
            }
        })
        .collect();
    if rest.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(rest);
    }
    (url, taken)
}

/// A rustls client configuration (ring) verifying servers, chain and host name, against the
/// CA certificates of the PEM file `root_cert`, or the system's roots without one.
pub fn client_config(root_cert: Option<&str>) -> Result<ClientConfig, String> {
    let roots = match root_cert {
        Some(path) => roots_from(path)?,
        None => system_roots(),
    };
    Ok(ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// The CA certificates of a PEM file; an unreadable or empty file is an error, not "trust
/// nothing" (every connection would then fail with a less telling message).
fn roots_from(path: &str) -> Result<RootCertStore, String> {
    let bad = |why: String| format!("sslrootcert {path}: {why}");
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|e| bad(e.to_string()))?;
        roots.add(cert).map_err(|e| bad(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(bad("no certificate in the file".into()));
    }
    Ok(roots)
}

fn system_roots() -> RootCertStore {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!(%error, "cannot read a system root certificate");
    }
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(found.certs);
    tracing::debug!(added, ignored, "system root certificates");
    roots
}
