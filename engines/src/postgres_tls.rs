//! TLS to PostgreSQL, asked for in the URL as libpq users write it:
//! `postgres://user@host/db?sslmode=verify-full&sslrootcert=/etc/mercato/ca.crt`.
//!
//! - `sslmode=disable` (the default, as before: a URL without `sslmode` connects as it did),
//!   `prefer` (TLS when the server offers it), `require`, `verify-ca` and `verify-full`.
//! - Whenever TLS is used, the server's certificate is verified, chain and host name, against
//!   `sslrootcert` (a PEM file of CA certificates) or else the system's roots. libpq's
//!   `require` and `verify-ca` verify less; Mercato never talks TLS to a server it has not
//!   verified, so both behave as `verify-full`.

use mercato_core::store::StoreError;
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
    let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    let (parsed, tls) = crate::tls::take_params(parsed, &["sslmode", "sslrootcert"]);
    let mut config: tokio_postgres::Config =
        parsed.as_str().parse().map_err(|e| bad(format!("{e}")))?;
    let ssl_mode = match tls.get("sslmode").map_or("disable", String::as_str) {
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
    let tls = crate::tls::client_config(tls.get("sslrootcert").map(String::as_str))
        .map_err(|e| StoreError::invalid(format!("TLS for PostgreSQL: {e}")))?;
    Ok(Connection {
        config,
        tls: MakeRustlsConnect::new(tls),
    })
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
