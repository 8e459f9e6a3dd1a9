//! `mercato repair`: makes the embedded engines' logs openable again after corruption.
//!
//! Opening the bus log or the store journal cuts a torn tail by itself, but refuses a log with
//! damage in the middle, naming the file and the offset: what follows the damage was
//! acknowledged, and only an operator may decide to give it up. This command does that, keeping
//! a copy of every byte it cuts beside the file, so nothing is lost that cannot be looked at.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use mercato_core::log_file::{self, Damage};

/// The frame files of a data dir, as `mercato up` lays it out: the bus log's segments (and the
/// single log of buses from before segments) and the store's journal. The bus's snapshot and
/// index files are not among them: they are rebuilt from the segments when they do not agree.
fn logs(data_dir: &Path) -> Vec<PathBuf> {
    let bus = data_dir.join("bus");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&bus)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("bus") && n.ends_with(".log"))
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.push(data_dir.join("store").join("store.journal"));
    found
}

fn describe(damage: &Damage) -> String {
    let kind = if damage.torn {
        "a torn tail (opening cuts it by itself)"
    } else {
        "corruption (opening refuses the file)"
    };
    format!(
        "{kind} at byte {}: {}, {} bytes from there to the end",
        damage.offset, damage.reason, damage.following
    )
}

/// Checks (and unless `check_only`, repairs) every log of `data_dir`; `mercato up` must not be
/// running on it.
pub fn run(data_dir: &Path, check_only: bool) -> anyhow::Result<()> {
    if !data_dir.is_dir() {
        anyhow::bail!("{} is not a data dir", data_dir.display());
    }
    // Held to the end: `mercato up` cannot start on the directory meanwhile, and a running one
    // makes this refuse (a live writer's last frame is not damage, and must not be cut).
    let command = if check_only {
        "mercato repair --check"
    } else {
        "mercato repair"
    };
    let _lock = crate::data_dir::DataDirLock::acquire(data_dir, command)?;
    let mut damaged = 0;
    for path in logs(data_dir) {
        if !path.exists() {
            continue;
        }
        let found =
            log_file::inspect(&path).with_context(|| format!("reading {}", path.display()))?;
        let Some(damage) = found else {
            println!("{}: whole", path.display());
            continue;
        };
        damaged += 1;
        println!("{}: {}", path.display(), describe(&damage));
        if check_only {
            continue;
        }
        match log_file::repair(&path).with_context(|| format!("repairing {}", path.display()))? {
            Some((cut, copy)) => println!(
                "{}: kept {} bytes; the {} bytes cut are in {}",
                path.display(),
                cut.offset,
                cut.following,
                copy.display()
            ),
            None => println!("{}: whole by now", path.display()),
        }
    }
    if check_only && damaged > 0 {
        anyhow::bail!("{damaged} log(s) damaged; run `mercato repair` without --check to cut the damage (a copy is kept)");
    }
    Ok(())
}
