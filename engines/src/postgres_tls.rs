//! TLS to PostgreSQL, asked for in the URL as libpq users write it:
//! `postgres://user@host/db?sslmode=verify-full&sslrootcert=/etc/mercato/ca.crt`.
//!
//! - `sslmode=disable` (the default, as before: a URL without `sslmode` connects as it did),
//!   `prefer` (TLS when the server offers it), `require`, `verify-ca` and `verify-full`.
//! - Whenever TLS is used, the server's certificate is verified, chain and host name, against
//!   `sslrootcert` (a PEM file of CA certificates) or else the system's roots. libpq's
//!   `require` and `verify-ca` verify less; Mercato never talks TLS to a server it has not
//!   verified, so both behave as `verify-full`.

use std::sync::Arc;

use mercato_core::store::StoreError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The connection settings and the TLS connector a URL asks for.
pub struct Connection {
    pub config: tokio_postgres::Config,
    pub tls: MakeRustlsConnect,
}

/// Parses `url`, taking out the TLS parameters tokio-postgres does not know (`sslrootcert`,
/// the `verify-*` modes).
pub fn connection(url: &str) -> Result<Connection, StoreError> {
    let bad = |why: String| StoreError::invalid(format!("bad PostgreSQL URL: {why}"));
    let mut parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let (mut mode, mut root) = (None, None);
    let rest: Vec<(String, String)> = parsed
        .query_pairs()
        .filter_map(|(key, value)| match key.as_ref() {
            "sslmode" => {
                mode = Some(value.into_owned());
                None
            }
            "sslrootcert" => {
                root = Some(value.into_owned());
                None
            }
            _ => Some((key.into_owned(), value.into_owned())),
        })
        .collect();
    if rest.is_empty() {
        parsed.set_query(None);
    } else {
        parsed.query_pairs_mut().clear().extend_pairs(rest);
    }
    let mut config: tokio_postgres::Config =
        parsed.as_str().parse().map_err(|e| bad(format!("{e}")))?;
    let ssl_mode = match mode.as_deref().unwrap_or("disable") {
        "disable" => SslMode::Disable,
        "prefer" => SslMode::Prefer,
        "require" | "verify-ca" | "verify-full" => SslMode::Require,
        other => {
            return Err(bad(format!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            )))
        }
    };
    config.ssl_mode(ssl_mode);
    let roots = match &root {
        Some(path) => roots_from(path)?,
        None => system_roots(),
    };
    let tls =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::invalid(format!("TLS for PostgreSQL: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Connection {
        config,
        tls: MakeRustlsConnect::new(tls),
    })
}

/// The CA certificates of a PEM file; an unreadable or empty file is an error, not "trust
/// nothing" (every connection would then fail with a less telling message).
fn roots_from(path: &str) -> Result<RootCertStore, StoreError> {
    let bad = |why: String| StoreError::invalid(format!("sslrootcert {path}: {why}"));
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
    tracing::debug!(added, ignored, "system root certificates for PostgreSQL");
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_rest_kept() {
        let c = connection("postgres://u@db:5433/shop?sslmode=prefer&application_name=m").unwrap();
        assert_eq!(c.config.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(c.config.get_application_name(), Some("m"));
        assert_eq!(c.config.get_dbname(), Some("shop"));
        let plain = connection("postgres://u@db/shop").unwrap();
        assert_eq!(plain.config.get_ssl_mode(), SslMode::Disable);
        let full = connection("postgres://u@db/shop?sslmode=verify-full").unwrap();
        assert_eq!(full.config.get_ssl_mode(), SslMode::Require);
    }

    #[test]
    fn a_bad_mode_or_root_file_is_a_clear_error() {
        let mode = connection("postgres://u@db/shop?sslmode=always")
            .err()
            .unwrap();
        assert!(mode.to_string().contains("sslmode \"always\""), "{mode}");
        let missing =
            connection("postgres://u@db/shop?sslmode=require&sslrootcert=/nonexistent/ca.crt")
                .err()
                .unwrap();
        assert!(
            missing
                .to_string()
                .contains("sslrootcert /nonexistent/ca.crt"),
            "{missing}"
        );
    }
}
