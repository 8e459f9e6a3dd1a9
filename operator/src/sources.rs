//! Which files an Inventory's `source.file` may name (and which URLs its `source.url` may,
//! fetched by `remote.rs`): a regular file, under one of the folders
//! this process was told to read sources from, no larger than its cap.
//!
//! Anyone who may apply a manifest may name a path, so the path is checked where it is read:
//! canonicalised (no `..`, no symlink left in it), under a configured folder, a regular file
//! (never a device or a FIFO that would block the publisher), and within the size cap. The
//! file is opened again for every read without following a symlink, and checked once more,
//! so a swap after the check gains nothing.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mercato_crds::ProductSource;

/// The largest source read by default: a million products of about a kilobyte each.
pub const DEFAULT_MAX_SOURCE_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
    #[error("{0}")]
    Invalid(String),
    #[error(
        "{path}: product sources are read only from {roots}; put the file there or start with \
         --sources-dir naming its folder"
    )]
    OutsideRoots { path: String, roots: String },
    #[error("{path}: not a regular file")]
    NotAFile { path: String },
    #[error(
        "{path}: {size} bytes, over the {max}-byte cap on a product source (--max-source-bytes)"
    )]
    TooLarge { path: String, size: u64, max: u64 },
    #[error(
        "{url}: product sources are fetched only from URLs starting with {prefixes}; start with \
         --sources-url-prefix naming it"
    )]
    UrlNotAllowed { url: String, prefixes: String },
    #[error("{url}: cannot fetch it: {cause}")]
    Unreachable {
        url: String,
        cause: String,
        /// Whether asking again may help (a timeout, a 503), or not (a 404, a 403).
        transient: bool,
    },
    #[error("{url}: its SHA-256 is {actual}, not the declared {expected}")]
    Checksum {
        url: String,
        expected: String,
        actual: String,
    },
}

impl SourceError {
    /// The API's code for it.
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::Io { .. } | SourceError::Invalid(_) => "source_unreadable",
            SourceError::OutsideRoots { .. } => "source_outside_roots",
            SourceError::NotAFile { .. } => "source_not_a_file",
            SourceError::TooLarge { .. } => "source_too_large",
            SourceError::UrlNotAllowed { .. } => "source_url_not_allowed",
            SourceError::Unreachable { .. } => "source_unreachable",
            SourceError::Checksum { .. } => "source_checksum_mismatch",
        }
    }

    /// Whether a download that failed so may succeed if tried again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SourceError::Unreachable {
                transient: true,
                ..
            }
        )
    }
}

/// The folders product sources may be read from, and how large one may be.
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    roots: Vec<PathBuf>,
    max_bytes: u64,
    /// URLs a `source.url` may name, by prefix (`https://`, `s3://catalogs/`).
    url_prefixes: Vec<String>,
}

impl Default for SourcePolicy {
    /// Reads no file: every `source.file` is refused until folders are configured.
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            max_bytes: DEFAULT_MAX_SOURCE_BYTES,
            url_prefixes: Vec::new(),
        }
    }
}

impl SourcePolicy {
    /// Every root must exist; each is kept canonical, so a comparison with a canonical path
    /// is a plain prefix test.
    pub fn new(
        roots: impl IntoIterator<Item = PathBuf>,
        max_bytes: u64,
    ) -> Result<Self, SourceError> {
        let mut canonical: Vec<PathBuf> = Vec::new();
        for root in roots {
            let c = std::fs::canonicalize(&root).map_err(|cause| io(&root, cause))?;
            if !c.is_dir() {
                return Err(SourceError::Invalid(format!(
                    "{}: a sources folder must be a folder",
                    root.display()
                )));
            }
            if !canonical.contains(&c) {
                canonical.push(c);
            }
        }
        Ok(Self {
            roots: canonical,
            max_bytes,
            url_prefixes: Vec::new(),
        })
    }

    /// Allows `source.url`s starting with one of `prefixes`.
    pub fn with_url_prefixes(mut self, prefixes: Vec<String>) -> Self {
        self.url_prefixes = prefixes;
        self
    }

    /// Finds a declared source: a file checked against the folders, or a URL checked against
    /// the prefixes and downloaded. Relative paths are relative to `base_dir`.
    pub async fn locate(
        &self,
        source: &ProductSource,
        base_dir: Option<&Path>,
    ) -> Result<Source, SourceError> {
        match (&source.file, &source.url) {
            (Some(file), None) => self.resolve(file, base_dir),
            (None, Some(url)) => {
                self.allow_url(url)?;
                crate::remote::download(url, source.sha256.as_deref(), self.max_bytes).await
            }
            _ => Err(SourceError::Invalid(
                "a product source gives one of file and url".into(),
            )),
        }
    }

    fn allow_url(&self, url: &str) -> Result<(), SourceError> {
        if self
            .url_prefixes
            .iter()
            .any(|p| url.starts_with(p.as_str()))
        {
            return Ok(());
        }
        let prefixes = if self.url_prefixes.is_empty() {
            "nothing (this process fetches no product sources)".to_owned()
        } else {
            self.url_prefixes.join(", ")
        };
        Err(SourceError::UrlNotAllowed {
            url: url.to_owned(),
            prefixes,
        })
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Checks a declared `source.file`; relative paths are relative to `base_dir`, the folder
    /// the manifest came from.
    pub fn resolve(&self, file: &str, base_dir: Option<&Path>) -> Result<Source, SourceError> {
        let path = absolute(file, base_dir)?;
        let canonical = std::fs::canonicalize(&path).map_err(|cause| io(&path, cause))?;
        if !self.roots.iter().any(|root| canonical.starts_with(root)) {
            let roots = if self.roots.is_empty() {
                "no folder (this process reads no product sources)".to_owned()
            } else {
                self.roots
                    .iter()
                    .map(|r| r.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(SourceError::OutsideRoots {
                path: path.display().to_string(),
                roots,
            });
        }
        let source = Source {
            path: canonical,
            max_bytes: self.max_bytes,
            download: None,
        };
        source.open()?;
        Ok(source)
    }
}

/// A source file that passed the policy, or a downloaded copy of a URL's.
#[derive(Debug, Clone)]
pub struct Source {
    path: PathBuf,
    max_bytes: u64,
    /// The URL it was downloaded from, and the temporary file, removed with the last clone.
    download: Option<(String, Arc<tempfile::TempPath>)>,
}

impl Source {
    /// A URL's bytes, saved in `file`.
    pub(crate) fn downloaded(url: &str, file: Arc<tempfile::TempPath>, max_bytes: u64) -> Self {
        Self {
            path: file.to_path_buf(),
            max_bytes,
            download: Some((url.to_owned(), file)),
        }
    }

    /// Its canonical path (for a URL, the temporary copy's).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where it came from, for messages: the URL, or the path.
    pub fn label(&self) -> String {
        match &self.download {
            Some((url, _)) => url.clone(),
            None => self.path.display().to_string(),
        }
    }

    /// Whether it is a URL's downloaded copy.
    pub fn is_download(&self) -> bool {
        self.download.is_some()
    }

    /// Opens it for reading without following a symlink put in its place, and checks the
    /// opened file (not the name) is a regular file within the cap.
    pub fn open(&self) -> Result<File, SourceError> {
        let path = self.path.as_path();
        // O_NONBLOCK: a FIFO swapped in would otherwise block the open until a writer came.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(|cause| io(path, cause))?;
        let meta = file.metadata().map_err(|cause| io(path, cause))?;
        if !meta.is_file() {
            return Err(SourceError::NotAFile {
                path: path.display().to_string(),
            });
        }
        if meta.len() > self.max_bytes {
            return Err(SourceError::TooLarge {
                path: path.display().to_string(),
                size: meta.len(),
                max: self.max_bytes,
            });
        }
        Ok(file)
    }
}

/// Makes a source path absolute: relative paths are relative to the manifest's folder.
fn absolute(file: &str, base_dir: Option<&Path>) -> Result<PathBuf, SourceError> {
    let file = file.trim();
    let path = match file.strip_prefix("file://") {
        Some(rest) => PathBuf::from(rest),
        None => PathBuf::from(file),
    };
    if path.is_absolute() {
        return Ok(path);
    }
    match base_dir {
        Some(base) => Ok(base.join(path)),
        None => Err(SourceError::Invalid(format!(
            "source {file:?} is relative, and the manifest came without a folder to resolve it \
             against: use `mercato apply -f`, an absolute path or a file:// URL"
        ))),
    }
}

pub(crate) fn io(path: &Path, cause: std::io::Error) -> SourceError {
    SourceError::Io {
        path: path.display().to_string(),
        cause,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(root: &Path, max: u64) -> SourcePolicy {
        SourcePolicy::new([root.to_owned()], max).unwrap()
    }

    #[test]
    fn a_regular_file_under_a_root_is_read() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p.ndjson"), "{}\n").unwrap();
        let p = policy(dir.path(), 100);
        let s = p.resolve("p.ndjson", Some(dir.path())).unwrap();
        assert_eq!(
            s.path(),
            std::fs::canonicalize(dir.path().join("p.ndjson")).unwrap()
        );
        let url = format!("file://{}", dir.path().join("p.ndjson").display());
        assert!(p.resolve(&url, None).is_ok());
    }

    #[test]
    fn paths_leaving_the_roots_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        let p = policy(root.path(), 100);
        let dotdot = format!(
            "../{}/secret",
            outside.path().file_name().unwrap().to_string_lossy()
        );
        let e = p.resolve(&dotdot, Some(root.path())).unwrap_err();
        assert_eq!(e.code(), "source_outside_roots", "{e}");
        let abs = outside.path().join("secret").display().to_string();
        assert_eq!(
            p.resolve(&abs, None).unwrap_err().code(),
            "source_outside_roots"
        );
        // A symlink inside the root pointing out is judged by its target.
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("link"))
            .unwrap();
        let e = p.resolve("link", Some(root.path())).unwrap_err();
        assert_eq!(e.code(), "source_outside_roots", "{e}");
        // A process configured with no folder reads nothing.
        let e = SourcePolicy::default().resolve(&abs, None).unwrap_err();
        assert!(e.to_string().contains("reads no product sources"), "{e}");
    }

    #[test]
    fn devices_folders_fifos_and_large_files_are_refused() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("sub")).unwrap();
        std::fs::write(root.path().join("big"), vec![b'x'; 101]).unwrap();
        let fifo = root.path().join("fifo");
        let c = std::ffi::CString::new(fifo.display().to_string()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a file.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let p = policy(root.path(), 100);
        assert_eq!(
            p.resolve("sub", Some(root.path())).unwrap_err().code(),
            "source_not_a_file"
        );
        assert_eq!(
            p.resolve("fifo", Some(root.path())).unwrap_err().code(),
            "source_not_a_file"
        );
        let e = p.resolve("big", Some(root.path())).unwrap_err();
        assert_eq!(e.code(), "source_too_large", "{e}");
        let dev = SourcePolicy::new([PathBuf::from("/dev")], 100).unwrap();
        assert_eq!(
            dev.resolve("/dev/zero", None).unwrap_err().code(),
            "source_not_a_file"
        );
        assert_eq!(
            p.resolve("missing", Some(root.path())).unwrap_err().code(),
            "source_unreadable"
        );
    }

    #[test]
    fn a_file_swapped_for_a_symlink_after_the_check_is_not_followed() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("p"), "{}\n").unwrap();
        std::fs::write(outside.path().join("secret"), "x").unwrap();
        let s = policy(root.path(), 100)
            .resolve("p", Some(root.path()))
            .unwrap();
        std::fs::remove_file(root.path().join("p")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("p")).unwrap();
        assert_eq!(s.open().unwrap_err().code(), "source_unreadable");
    }

    #[test]
    fn a_missing_root_is_an_error() {
        let e = SourcePolicy::new([PathBuf::from("/nonexistent/mercato")], 1).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/mercato"), "{e}");
    }
}
