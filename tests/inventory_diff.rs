//! Differential tests: every folder in `tests/fixtures/inventory/` is an inventory; `duststack
//! inventory` must print the same `--list` JSON, `--graph --vars` text and `--host` JSON as the
//! real `ansible-inventory`. Folders under `_errors/` must fail with `file:line:col`.
//!
//! A case folder holds its source as `inv`, `inv.yml`, `inv.yaml`, `inv.json` or `inv.ini`
//! (file or directory), or a `sources` file listing several (one per line). An optional `host`
//! file names a host (pattern) to compare with `--host`; an optional `limit` file a pattern for
//! `--list --limit`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inventory")
}

fn case_dirs(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn sources(case: &Path) -> Vec<PathBuf> {
    let list = case.join("sources");
    if list.exists() {
        return std::fs::read_to_string(list)
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| case.join(l.trim()))
            .collect();
    }
    for name in ["inv", "inv.yml", "inv.yaml", "inv.json", "inv.ini"] {
        if case.join(name).exists() {
            return vec![case.join(name)];
        }
    }
    panic!("fixture {} has no inventory source", case.display());
}

fn ours(sources: &[PathBuf], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_duststack"));
    cmd.arg("inventory");
    for s in sources {
        cmd.arg("-i").arg(s);
    }
    cmd.args(args).output().unwrap()
}

fn ansible(sources: &[PathBuf], args: &[&str], home: &Path) -> Output {
    let mut cmd = Command::new("ansible-inventory");
    for s in sources {
        cmd.arg("-i").arg(s);
    }
    cmd.args(args)
        .env("ANSIBLE_NOCOLOR", "1")
        .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "1")
        .env("ANSIBLE_LOCAL_TEMP", home.join("tmp"))
        .env("HOME", home)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ansible-inventory: {e}"))
}

fn require_ansible() {
    let found = Command::new("ansible-inventory").arg("--version").output();
    assert!(
        matches!(&found, Ok(o) if o.status.success()),
        "ansible-inventory is not on PATH: the differential inventory tests need ansible-core \
         (pip install ansible-core) — they refuse to pass without the oracle"
    );
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn json_of(o: &Output, who: &str, case: &Path) -> Result<Value, String> {
    if !o.status.success() {
        return Err(format!("{who} failed on {}:\n{}", case.display(), text(o)));
    }
    serde_json::from_slice(&o.stdout).map_err(|e| {
        format!(
            "{who} printed invalid JSON on {}: {e}\n{}",
            case.display(),
            text(o)
        )
    })
}

/// Compares one fixture; returns the differences found.
fn check_case(case: &Path, home: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let srcs = sources(case);
    let name = case.file_name().unwrap().to_string_lossy().into_owned();
    let mut runs: Vec<(String, Vec<&str>)> = vec![
        ("--list".into(), vec!["--list"]),
        ("--graph --vars".into(), vec!["--graph", "--vars"]),
    ];
    let host = std::fs::read_to_string(case.join("host"))
        .ok()
        .map(|h| h.trim().to_owned());
    if let Some(h) = &host {
        runs.push((format!("--host {h}"), vec!["--host", h.as_str()]));
    }
    let limit = std::fs::read_to_string(case.join("limit"))
        .ok()
        .map(|l| l.trim().to_owned());
    if let Some(l) = &limit {
        runs.push((
            format!("--list --limit {l}"),
            vec!["--list", "--limit", l.as_str()],
        ));
    }
    for (label, args) in runs {
        let a = ansible(&srcs, &args, home);
        let o = ours(&srcs, &args);
        if label.starts_with("--graph") {
            if !a.status.success() {
                problems.push(format!("[{name}] ansible {label} failed:\n{}", text(&a)));
                continue;
            }
            let want = String::from_utf8_lossy(&a.stdout).trim_end().to_owned();
            let got = String::from_utf8_lossy(&o.stdout).trim_end().to_owned();
            if !o.status.success() || want != got {
                let diff = similar::TextDiff::from_lines(&want, &got)
                    .unified_diff()
                    .header("ansible-inventory", "duststack")
                    .to_string();
                problems.push(format!("[{name}] {label} differs:\n{diff}\n{}", text(&o)));
            }
            continue;
        }
        match (
            json_of(&a, "ansible-inventory", case),
            json_of(&o, "duststack", case),
        ) {
            (Ok(want), Ok(got)) if want == got => {}
            (Ok(want), Ok(got)) => problems.push(format!(
                "[{name}] {label} differs:\nansible:  {}\nduststack: {}",
                serde_json::to_string(&want).unwrap(),
                serde_json::to_string(&got).unwrap()
            )),
            (Err(e), _) | (_, Err(e)) => problems.push(format!("[{name}] {label}: {e}")),
        }
    }
    problems
}

#[test]
fn inventories_match_ansible_inventory() {
    require_ansible();
    let home = tempfile::tempdir().unwrap();
    let cases: Vec<PathBuf> = case_dirs(&fixtures())
        .into_iter()
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('_'))
        .collect();
    assert!(
        cases.len() >= 30,
        "expected at least 30 fixtures, found {}",
        cases.len()
    );
    // ansible-inventory takes ~1 s to start: run cases on a few threads.
    let chunks: Vec<Vec<PathBuf>> = (0..3)
        .map(|i| cases.iter().skip(i).step_by(3).cloned().collect())
        .collect();
    let problems: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .iter()
            .map(|chunk| {
                s.spawn(|| {
                    chunk
                        .iter()
                        .flat_map(|c| check_case(c, home.path()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    assert!(
        problems.is_empty(),
        "{} difference(s):\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn malformed_inventories_fail_with_file_line_col() {
    require_ansible();
    let home = tempfile::tempdir().unwrap();
    let mut problems = Vec::new();
    let cases = case_dirs(&fixtures().join("_errors"));
    assert!(cases.len() >= 5, "expected error fixtures");
    for case in cases {
        let srcs = sources(&case);
        let expect = std::fs::read_to_string(case.join("expect"))
            .unwrap()
            .trim()
            .to_owned();
        let a = ansible(&srcs, &["--list"], home.path());
        if a.status.success() {
            problems.push(format!(
                "{}: ansible-inventory accepts it, so it is not an error case",
                case.display()
            ));
        }
        let o = ours(&srcs, &["--list"]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        if o.status.success() || !stderr.contains(&expect) {
            problems.push(format!(
                "{}: expected failure mentioning {expect:?}\n{}",
                case.display(),
                text(&o)
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
}
