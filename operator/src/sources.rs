//! Which files an Inventory's `source.file` may name: a regular file, under one of the folders
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
}

impl SourceError {
    /// The API's code for it.
    pub fn code(&self) -> &'static str {
        match self {
            SourceError::Io { .. } | SourceError::Invalid(_) => "source_unreadable",
            SourceError::OutsideRoots { .. } => "source_outside_roots",
            SourceError::NotAFile { .. } => "source_not_a_file",
            SourceError::TooLarge { .. } => "source_too_large",
        }
    }
}

/// The folders product sources may be read from, and how large one may be.
#[derive(Debug, Clone)]
pub struct SourcePolicy {
    roots: Vec<PathBuf>,
    max_bytes: u64,
}

impl Default for SourcePolicy {
    /// Reads no file: every `source.file` is refused until folders are configured.
    fn default() -> Self {
        Self {
            roots: Vec::new(),
            max_bytes: DEFAULT_MAX_SOURCE_BYTES,
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
        };
        source.open()?;
        Ok(source)
    }
}

/// A source file that passed the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    path: PathBuf,
    max_bytes: u64,
}

impl Source {
    /// Its canonical path.
    pub fn path(&self) -> &Path {
        &self.path
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
