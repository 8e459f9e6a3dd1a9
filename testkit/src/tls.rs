//! Certificates minted for a test: a CA, a server certificate it signed for `localhost` and
//! `127.0.0.1`, and a second CA that signed nothing here (to check that it is refused).

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// PEM files under the folder given to [`TestCertificates::mint`].
pub struct TestCertificates {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub other_ca: PathBuf,
}

impl TestCertificates {
    /// Writes `ca.pem`, `server.pem`, `server.key` and `other-ca.pem` into `dir`.
    pub fn mint(dir: &Path) -> TestCertificates {
        let (ca_pem, issuer) = authority("Mercato test CA");
        let (other_pem, _) = authority("Some other CA");
        let params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("valid names");
        let key = KeyPair::generate().expect("a key pair");
        let server = params
            .signed_by(&key, &issuer)
            .expect("a signed certificate");
        let files = TestCertificates {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            other_ca: dir.join("other-ca.pem"),
        };
        for (path, pem) in [
            (&files.ca, ca_pem),
            (&files.server_cert, server.pem()),
            (&files.server_key, key.serialize_pem()),
            (&files.other_ca, other_pem),
        ] {
            std::fs::write(path, pem).expect("the test folder is writable");
        }
        files
    }
}

fn authority(name: &str) -> (String, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("no names");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().expect("a key pair");
    let cert = params.self_signed(&key).expect("a self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}
