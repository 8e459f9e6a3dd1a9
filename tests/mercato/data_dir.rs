//! One process at a time on a data directory: with `mercato up` running, `mercato repair` (and
//! `--check`) and a second `mercato up` are refused, saying which process holds it, and change
//! nothing; once `up` is gone (killed, so nothing is cleaned up by hand), repair runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::processes::Process;

const MERCATO: &str = env!("CARGO_BIN_EXE_mercato");

fn run(args: &[&str], data: &Path) -> Output {
    Command::new(MERCATO)
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .unwrap()
}

/// Every file under `dir` with its length.
fn files(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            let len = std::fs::metadata(&path).unwrap().len();
            out.push((path, len));
        }
    }
    out.sort();
    out
}

fn assert_refused(out: &Output, what: &str) {
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {said}");
    assert!(
        said.contains("another Mercato process holds")
            && said.contains("pid ")
            && said.contains("`mercato up`"),
        "{what}: {said}"
    );
    assert!(!said.contains("Database already open"), "{what}: {said}");
}

#[test]
fn a_data_directory_in_use_is_refused_to_repair_and_to_a_second_up() {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let args: Vec<String> = ["up", "--listen", "127.0.0.1:0", "--data-dir"]
        .iter()
        .map(|s| s.to_string())
        .chain([data.display().to_string()])
        .collect();
    let (up, _) = Process::mercato("up", &args, &[], work.path(), "Mercato is up at ");
    let logs: Vec<(PathBuf, u64)> = files(&data)
        .into_iter()
        .filter(|(p, _)| p.extension().is_some_and(|e| e == "log" || e == "journal"))
        .collect();
    assert!(!logs.is_empty(), "up wrote its logs");

    assert_refused(&run(&["repair"], &data), "repair");
    assert_refused(&run(&["repair", "--check"], &data), "repair --check");
    assert_refused(
        &run(&["up", "--listen", "127.0.0.1:0"], &data),
        "a second up",
    );
    // Nothing was cut or copied aside (the live `up` only appends meanwhile).
    for (path, len) in &logs {
        let now = std::fs::metadata(path).unwrap().len();
        assert!(
            now >= *len,
            "{} was cut from {len} to {now}",
            path.display()
        );
    }
    assert!(
        !files(&data)
            .iter()
            .any(|(p, _)| p.display().to_string().contains(".cut")),
        "{:?}",
        files(&data)
    );

    // SIGKILL: the lock goes with the process.
    drop(up);
    let out = run(&["repair", "--check"], &data);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
