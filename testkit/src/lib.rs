//! Test support, kept out of the platform's library: one conformance suite per port, the
//! fixtures tests share, and a small disk to fill.
//!
//! Every implementation of a port runs the same suite unchanged: the embedded engines always
//! (this crate's own tests), the real engines' adapters when an address is given (the engines
//! crate's tests). The suites panic on the first violation (they are test code), and use fresh
//! names so they can run against a shared, long-lived engine. Only dev-dependencies name this
//! crate, so none of it is compiled into `mercato`.

pub mod bus;
pub mod coord;
pub mod fixtures;
pub mod small_disk;
pub mod store;
pub mod tls;

#[cfg(test)]
mod disk_full_tests;
#[cfg(test)]
mod embedded_tests;

/// The address of a real engine the suites should run against, from `var` (such as
/// `MERCATO_TEST_POSTGRES`); `None`, after saying the suite is skipped, when it is unset.
pub fn engine_address(var: &str) -> Option<String> {
    let address = std::env::var(var).ok().filter(|a| !a.is_empty());
    if address.is_none() {
        eprintln!("{var} is not set: skipping the tests that need that engine");
    }
    address
}

/// The address of a TLS port of a real engine (`var`, a URL whose last parameter is
/// `sslrootcert=`) with the CA that signed its certificate replaced by `MERCATO_TEST_WRONG_CA`,
/// a CA that signed nothing; `None` when either is unset.
pub fn with_wrong_ca(var: &str) -> Option<String> {
    let url = engine_address(var)?;
    let wrong = engine_address("MERCATO_TEST_WRONG_CA")?;
    let (base, _) = url.split_once("sslrootcert=")?;
    Some(format!("{base}sslrootcert={wrong}"))
}

/// Asserts that a connection failed because the server's certificate was not signed by the
/// CA it was checked against, and says so somewhere in the error's chain of causes.
pub fn assert_refused_for_its_certificate(err: &(dyn std::error::Error + 'static)) {
    let chain = std::iter::successors(Some(err), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(
        chain.contains("invalid peer certificate: UnknownIssuer"),
        "the error does not say the certificate was refused: {chain}"
    );
    eprintln!("refused: {chain}");
}

/// A name no earlier run used.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}
