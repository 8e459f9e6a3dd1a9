//! One Mercato process at a time on a data directory: `mercato up` and `mercato repair` each
//! hold an exclusive lock on `<data-dir>/mercato.lock` for as long as they run, so a repair can
//! never cut a frame a live process is writing, and a second `up` is told plainly who holds the
//! directory instead of the embedded database's "cannot acquire lock".
//!
//! The lock is the operating system's (`flock`, through `std::fs::File::try_lock`): it goes
//! with the process, so one killed with SIGKILL leaves nothing to clean up.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside a data directory.
pub const LOCK_FILE: &str = "mercato.lock";

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error(
        "another Mercato process holds {dir} ({holder}); stop it first: one process at a time \
         may use a data directory"
    )]
    Held { dir: PathBuf, holder: String },
    #[error("cannot lock {dir}: {cause}")]
    Io { dir: PathBuf, cause: std::io::Error },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

impl DataDirLock {
    /// Takes the lock on `dir` (made if missing) for `command`, or says who holds it.
    pub fn acquire(dir: &Path, command: &str) -> Result<Self, DataDirError> {
        let io = |cause| DataDirError::Io {
            dir: dir.to_owned(),
            cause,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(DataDirError::Held {
                    dir: dir.to_owned(),
                    holder: if holder.is_empty() {
                        "a process that has not said which".to_owned()
                    } else {
                        holder.to_owned()
                    },
                });
            }
            Err(TryLockError::Error(cause)) => return Err(io(cause)),
        }
        // Who holds it, for the message another process prints.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(
            file,
            "pid {}, `{command}` since {}",
            std::process::id(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
        .map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self { _file: file })
    }
}
