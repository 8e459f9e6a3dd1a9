//! The installation's secrets, from files: the session tokens' signing keys (a folder, one file
//! per key id, as a mounted Kubernetes Secret lays them out) and the payment provider's webhook
//! secret. Never from the shared store, never logged.
//!
//! `mercato up` keeps a set under its data folder, made on first start; the split processes
//! and the cluster are given theirs (`mercato secrets init DIR` makes a set).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use mercato_gateway::keyring::{KeyRing, MIN_KEY_BYTES};
use mercato_gateway::Secrets;
use rand::RngCore;

/// The folder of signing keys under a secrets folder.
const SESSION_KEYS: &str = "session-keys";
/// The webhook secret's file under a secrets folder.
const WEBHOOK_SECRET: &str = "webhook-secret";

#[derive(clap::Args, Debug, Clone)]
pub struct SecretFlags {
    /// A folder of session-token signing keys, one file per key, named by its key id (a
    /// mounted Secret); the greatest name signs, every key verifies.
    #[arg(long, env = "MERCATO_SESSION_KEYS_DIR")]
    pub session_keys_dir: Option<PathBuf>,
    /// A file holding the payment provider's webhook secret (at least 32 bytes).
    #[arg(long, env = "MERCATO_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
}

impl SecretFlags {
    /// The gateway's secrets: both flags are required, the same for every gateway.
    pub fn gateway(&self) -> anyhow::Result<Secrets> {
        let dir = self.session_keys_dir.as_deref().ok_or_else(|| {
            missing(
                "mercato gateway",
                "--session-keys-dir",
                "MERCATO_SESSION_KEYS_DIR",
            )
        })?;
        Ok(Secrets {
            session_keys: KeyRing::from_dir(dir).context("--session-keys-dir")?,
            webhook_secret: self.webhook_secret("mercato gateway")?,
        })
    }

    /// The webhook secret a payments worker signs with (the gateways verify with it).
    pub fn webhook_secret(&self, who: &str) -> anyhow::Result<Vec<u8>> {
        webhook_secret(self.webhook_secret_file.as_deref(), who)
    }
}

/// The webhook secret in `file` (`--webhook-secret-file`), required of `who`.
pub fn webhook_secret(file: Option<&Path>, who: &str) -> anyhow::Result<Vec<u8>> {
    let path =
        file.ok_or_else(|| missing(who, "--webhook-secret-file", "MERCATO_WEBHOOK_SECRET_FILE"))?;
    read_secret(path).context("--webhook-secret-file")
}

/// The first admin, from a Secret: an email and a file with the password.
#[derive(clap::Args, Debug, Clone)]
pub struct AdminFlags {
    /// The first admin's email: the account is created at start when no account has it.
    #[arg(long, env = "MERCATO_ADMIN_EMAIL", requires = "admin_password_file")]
    pub admin_email: Option<String>,
    /// A file holding the first admin's password (8 to 128 characters).
    #[arg(long, env = "MERCATO_ADMIN_PASSWORD_FILE", requires = "admin_email")]
    pub admin_password_file: Option<PathBuf>,
}

impl AdminFlags {
    /// The email and password to bootstrap, when asked for.
    pub fn read(&self) -> anyhow::Result<Option<(String, String)>> {
        let (Some(email), Some(path)) = (&self.admin_email, &self.admin_password_file) else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--admin-password-file: cannot read {}", path.display()))?;
        Ok(Some((
            email.clone(),
            text.trim_end_matches(['\r', '\n']).to_owned(),
        )))
    }
}

fn missing(who: &str, flag: &str, var: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "{who} needs {flag} (or {var}), the same for every process of the installation; \
         `mercato secrets init DIR` makes a set (DIR/{SESSION_KEYS}, DIR/{WEBHOOK_SECRET})"
    )
}

fn read_secret(path: &Path) -> anyhow::Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let secret = bytes.trim_ascii_end().to_vec();
    if secret.len() < MIN_KEY_BYTES {
        bail!(
            "{} holds {} bytes; a secret has at least {MIN_KEY_BYTES}",
            path.display(),
            secret.len()
        );
    }
    Ok(secret)
}

/// The secrets under `dir`, made first where absent (`mercato up`, `mercato secrets init`).
pub fn ensure(dir: &Path) -> anyhow::Result<Secrets> {
    let keys = dir.join(SESSION_KEYS);
    private_dir(&keys)?;
    let has_key = std::fs::read_dir(&keys)
        .with_context(|| format!("cannot read {}", keys.display()))?
        .filter_map(Result::ok)
        .any(|e| !e.file_name().to_string_lossy().starts_with('.'));
    if !has_key {
        let kid = format!("k-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
        write_new(&keys.join(kid), &random_secret())?;
    }
    let webhook = dir.join(WEBHOOK_SECRET);
    if !webhook.exists() {
        write_new(&webhook, &random_secret())?;
    }
    Ok(Secrets {
        session_keys: KeyRing::from_dir(&keys).context("the session keys")?,
        webhook_secret: read_secret(&webhook)?,
    })
}

/// Secrets for a run that keeps nothing (tests, a data folder-less `up`).
pub fn ephemeral() -> Secrets {
    let key = random_secret().into_bytes();
    Secrets {
        session_keys: KeyRing::from_keys(vec![("k-memory".to_owned(), key)])
            .unwrap_or_else(|e| unreachable!("a random key of 96 bytes is valid: {e}")),
        webhook_secret: random_secret().into_bytes(),
    }
}

/// `mercato secrets init DIR`: makes what is missing and says how to use it.
pub fn init(dir: &Path) -> anyhow::Result<()> {
    ensure(dir)?;
    let keys = dir.join(SESSION_KEYS);
    let webhook = dir.join(WEBHOOK_SECRET);
    println!(
        "Secrets in {dir} (readable by you alone):
  {keys}/   session-token signing keys (the greatest file name signs)
  {webhook}   the payment provider's webhook secret

Give every gateway and payments worker the same:
  --session-keys-dir {keys} --webhook-secret-file {webhook}
On Kubernetes, as Secrets the chart mounts (values secrets.sessionKeys, secrets.webhook):
  kubectl create secret generic mercato-session-keys --from-file={keys}
  kubectl create secret generic mercato-webhook --from-file=webhook-secret={webhook}
Rotate the signing key by adding a file whose name sorts last; remove the old one a day later
(sessions last 24 hours).",
        dir = dir.display(),
        keys = keys.display(),
        webhook = webhook.display(),
    );
    Ok(())
}

/// 48 random bytes, in hex: a file that survives copying into a Secret and back.
fn random_secret() -> String {
    let mut bytes = [0u8; 48];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for d in dir.ancestors().take(2) {
            std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("cannot make {} private", d.display()))?;
        }
    }
    Ok(())
}

/// Writes a file readable by its owner alone, refusing to replace one.
fn write_new(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("cannot write {}", path.display()))
}
