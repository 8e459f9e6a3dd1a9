//! The keys session tokens are signed with: a folder of HS256 keys, one file per key, the file's
//! name its key id (`kid`). The greatest name signs; every key in the folder verifies.
//!
//! That is the layout of a Kubernetes Secret mounted as a volume, and it makes rotation a
//! matter of adding a key whose name sorts last (`k-2027-01`), waiting for the mount to reach
//! every gateway, and removing the old key once the tokens it signed have expired. A token
//! naming a key this gateway has not read yet makes it read the folder again (at most once a
//! second), and the signing key is picked up again every minute, so gateways converge on a
//! rotation without a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jsonwebtoken::{DecodingKey, EncodingKey};
use parking_lot::RwLock;

/// The shortest key accepted: HS256 wants at least the hash's 32 bytes.
pub const MIN_KEY_BYTES: usize = 32;
/// How often the folder may be read again for a token naming a key not known yet.
const RELOAD_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// How often the signing key is looked for again.
const SIGNER_REFRESH: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the signing keys in {path}: {cause}")]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("{dir} holds no signing key: put one file per key there (its name is the key id)")]
    Empty { dir: PathBuf },
    #[error(
        "signing key {kid:?} has {len} bytes; a key has at least {MIN_KEY_BYTES} \
         (`head -c 48 /dev/urandom | base64` makes one)"
    )]
    TooShort { kid: String, len: usize },
    #[error("{name:?} is not a key id: use letters, digits, '.', '_' and '-' (1 to 64)")]
    BadKid { name: String },
}

struct Ring {
    signer: (String, EncodingKey),
    verifiers: BTreeMap<String, DecodingKey>,
    read_at: Instant,
}

/// The signing key and the verifying keys, from a folder or given.
pub struct KeyRing {
    ring: RwLock<Ring>,
    dir: Option<PathBuf>,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key ids only: the keys stay out of debug output.
        let ring = self.ring.read();
        f.debug_struct("KeyRing")
            .field("signer", &ring.signer.0)
            .field("verifiers", &ring.verifiers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeyRing {
    /// Keys given as (key id, key); the greatest key id signs.
    pub fn from_keys(keys: Vec<(String, Vec<u8>)>) -> Result<Self, KeyError> {
        Ok(Self {
            ring: RwLock::new(ring(keys, Path::new("(given)"))?),
            dir: None,
        })
    }

    /// Every file in `dir` not starting with '.' (a mounted Secret's own bookkeeping).
    pub fn from_dir(dir: &Path) -> Result<Self, KeyError> {
        Ok(Self {
            ring: RwLock::new(ring(read_dir(dir)?, dir)?),
            dir: Some(dir.to_owned()),
        })
    }

    /// The key id and key that sign new tokens.
    pub fn signer(&self) -> (String, EncodingKey) {
        if self.ring.read().read_at.elapsed() > SIGNER_REFRESH {
            self.reload();
        }
        self.ring.read().signer.clone()
    }

    /// The key that verifies tokens naming `kid`, reading the folder again if it is new.
    pub fn verifier(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(key) = self.ring.read().verifiers.get(kid) {
            return Some(key.clone());
        }
        if self.ring.read().read_at.elapsed() < RELOAD_AT_MOST_EVERY {
            return None;
        }
        self.reload();
        self.ring.read().verifiers.get(kid).cloned()
    }

    /// Reads the folder again; a folder that became unreadable or empty keeps the keys read
    /// before (a Secret being rewritten is briefly neither), and says so.
    fn reload(&self) {
        let Some(dir) = &self.dir else {
            self.ring.write().read_at = Instant::now();
            return;
        };
        match read_dir(dir).and_then(|keys| ring(keys, dir)) {
            Ok(fresh) => {
                let mut ring = self.ring.write();
                if fresh.signer.0 != ring.signer.0 {
                    tracing::info!(kid = %fresh.signer.0, "signing sessions with a new key");
                }
                *ring = fresh;
            }
            Err(e) => {
                tracing::warn!(error = %e, "keeping the signing keys read before");
                self.ring.write().read_at = Instant::now();
            }
        }
    }
}

fn read_dir(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, KeyError> {
    let failed = |path: &Path| {
        let path = path.to_owned();
        move |cause| KeyError::Read { path, cause }
    };
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(failed(dir))? {
        let path = entry.map_err(failed(dir))?.path();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Follows symbolic links, as a mounted Secret's files are.
        if name.starts_with('.') || !path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&path).map_err(failed(&path))?;
        keys.push((name, bytes));
    }
    Ok(keys)
}

fn ring(keys: Vec<(String, Vec<u8>)>, dir: &Path) -> Result<Ring, KeyError> {
    let mut verifiers = BTreeMap::new();
    let mut signer: Option<(String, Vec<u8>)> = None;
    for (kid, bytes) in keys {
        let key = bytes.trim_ascii_end().to_vec();
        if kid.is_empty()
            || kid.len() > 64
            || !kid
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(KeyError::BadKid { name: kid });
        }
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                kid,
                len: key.len(),
            });
        }
        verifiers.insert(kid.clone(), DecodingKey::from_secret(&key));
        if signer.as_ref().is_none_or(|(s, _)| kid > *s) {
            signer = Some((kid, key));
        }
    }
    let (kid, key) = signer.ok_or_else(|| KeyError::Empty {
        dir: dir.to_owned(),
    })?;
    Ok(Ring {
        signer: (kid, EncodingKey::from_secret(&key)),
        verifiers,
        read_at: Instant::now(),
    })
}
