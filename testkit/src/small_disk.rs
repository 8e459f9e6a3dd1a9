//! A small disk for tests that fill it: a tmpfs of a given size mounted on a fresh directory,
//! filled to the brim by a filler file, and given its space back by deleting that file.
//!
//! Mounting needs root (or `CAP_SYS_ADMIN`). Where it is refused the test is skipped with a
//! message, unless `MERCATO_TEST_SMALL_DISK=required` (CI sets it), which turns the skip into a
//! failure so that a run which cannot fill a disk never passes as one that did.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk {
    /// The mount point, made for this disk and removed after the unmount.
    dir: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `bytes` on a fresh directory; `None` (after saying why) when this
    /// machine will not mount one and the test may be skipped.
    pub fn mount(bytes: u64) -> Option<SmallDisk> {
        let required = std::env::var("MERCATO_TEST_SMALL_DISK").is_ok_and(|v| v == "required");
        let skip = |why: String| {
            assert!(!required, "MERCATO_TEST_SMALL_DISK=required, but {why}");
            eprintln!("{why}: skipping the test that fills a disk");
            None
        };
        let dir = std::env::temp_dir().join(super::unique("mercato-small-disk"));
        if let Err(e) = std::fs::create_dir(&dir) {
            return skip(format!("cannot create {}: {e}", dir.display()));
        }
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("size={bytes}"))
            .arg("mercato-small-disk")
            .arg(&dir)
            .output();
        let refused = match mounted {
            Ok(out) if out.status.success() => {
                return Some(SmallDisk {
                    filler: dir.join("filler"),
                    dir,
                })
            }
            Ok(out) => format!(
                "mounting a tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => format!("cannot run mount: {e}"),
        };
        let _ = std::fs::remove_dir(&dir);
        skip(refused)
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Fills every byte left with the filler file, then frees `leave` of them.
    pub fn fill_leaving(&self, leave: u64) -> io::Result<()> {
        let mut filler = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)?;
        let chunk = vec![0xA5u8; 64 * 1024];
        loop {
            match filler.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if mercato_core::log_file::is_out_of_space(&e) => break,
                Err(e) => return Err(e),
            }
        }
        let len = filler.metadata()?.len();
        filler.set_len(len.saturating_sub(leave))
    }

    /// Gives the filler's space back.
    pub fn free(&self) -> io::Result<()> {
        match std::fs::remove_file(&self.filler) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a store or bus dropped a moment ago may still hold a file open.
        let unmounted = Command::new("umount").arg("-l").arg(&self.dir).status();
        if unmounted.is_ok_and(|s| s.success()) {
            let _ = std::fs::remove_dir(&self.dir);
        }
    }
}
