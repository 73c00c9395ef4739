//! Runs `debootstrap --variant=minbase` (package cache kept between builds), turns its output
//! into progress, and reads back which packages ended up installed.

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;

use anyhow::{bail, Context};

use super::progress::Progress;

/// One debootstrap run.
#[derive(Debug)]
pub struct Debootstrap<'a> {
    /// The debootstrap program.
    pub program: &'a Path,
    /// Suite (`bookworm`).
    pub suite: &'a str,
    /// Mirror URL.
    pub mirror: &'a str,
    /// Target directory (created by debootstrap).
    pub target: &'a Path,
    /// `--include` packages.
    pub packages: &'a [String],
    /// `--cache-dir`: downloaded `.deb`s are kept and reused here.
    pub cache_dir: &'a Path,
    /// Where the full output is written.
    pub log: &'a Path,
}

impl Debootstrap<'_> {
    /// The command line (without the program).
    pub fn args(&self) -> Vec<String> {
        vec![
            "--variant=minbase".into(),
            format!("--cache-dir={}", self.cache_dir.display()),
            format!("--include={}", self.packages.join(",")),
            self.suite.to_string(),
            self.target.display().to_string(),
            self.mirror.to_string(),
        ]
    }
}

/// Runs debootstrap, showing its stage as progress detail; fails with the tail of its output.
pub fn run(d: &Debootstrap<'_>, progress: &Progress) -> anyhow::Result<()> {
    let mut log =
        File::create(d.log).with_context(|| format!("cannot create {}", d.log.display()))?;
    let mut child = Command::new(d.program)
        .args(d.args())
        .env("LC_ALL", "C.UTF-8")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", d.program.display()))?;
    let (tx, rx) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        }));
    }
    drop(tx);
    let mut all = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut count = 0usize;
    for line in rx {
        let _ = writeln!(log, "{line}");
        if let Some(stage) = stage_of(&line) {
            count += 1;
            if seen.insert(stage.to_string()) {
                // A new stage: shown in plain output too.
                progress.detail(line_detail(&line));
            } else if progress.is_live() {
                // The spinner shows every line; plain output only each stage's first.
                progress.detail(&format!("{} [{count}]", line_detail(&line)));
            }
        }
        all.push(line);
    }
    for r in readers {
        let _ = r.join();
    }
    let status = child.wait().context("waiting for debootstrap")?;
    if !status.success() {
        let tail = super::tail_lines(&all.join("\n"), 25);
        let hint = if all.iter().any(|l| l.contains("Failure trying to run")) {
            format!(
                "\n(see {}/debootstrap/debootstrap.log inside the tree for the failing package)",
                d.target.display()
            )
        } else {
            String::new()
        };
        bail!(
            "debootstrap {} from {} failed ({status}):\n{tail}{hint}",
            d.suite,
            d.mirror
        );
    }
    Ok(())
}

/// The stage of a debootstrap `I:` line: the first word (`Retrieving`, `Validating`,
/// `Extracting`, `Installing`, `Unpacking`, `Configuring`, ...).
pub fn stage_of(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("I: ")?;
    let word = rest.split_whitespace().next()?;
    Some(word.trim_end_matches(['.', ':']))
}

fn line_detail(line: &str) -> &str {
    line.strip_prefix("I: ")
        .unwrap_or(line)
        .trim_end_matches("...")
}

/// Names of the packages whose status is `install ok installed` in a dpkg status file.
pub fn installed_packages(status: &str) -> HashSet<String> {
    let mut out = HashSet::new();
    for stanza in status.split("\n\n") {
        let mut name = None;
        let mut installed = false;
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package:") {
                name = Some(v.trim().to_string());
            } else if let Some(v) = line.strip_prefix("Status:") {
                installed = v.trim() == "install ok installed";
            }
        }
        if let (Some(n), true) = (name, installed) {
            out.insert(n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages() {
        assert_eq!(
            stage_of("I: Retrieving libacl1 2.3.1-3"),
            Some("Retrieving")
        );
        assert_eq!(
            stage_of("I: Configuring linux-image-6.1.0-50-amd64..."),
            Some("Configuring")
        );
        assert_eq!(
            stage_of("I: Base system installed successfully."),
            Some("Base")
        );
        assert_eq!(stage_of("W: something"), None);
        assert_eq!(line_detail("I: Configuring dbus..."), "Configuring dbus");
    }

    #[test]
    fn dpkg_status() {
        let status = "Package: containerd\nStatus: install ok installed\nVersion: 1.6\n\n\
                      Package: removed\nStatus: deinstall ok config-files\n\n\
                      Package: etcd-server\nStatus: install ok installed\n";
        let got = installed_packages(status);
        assert!(got.contains("containerd"));
        assert!(got.contains("etcd-server"));
        assert!(!got.contains("removed"));
        assert_eq!(got.len(), 2);
    }

    #[test]
    fn args_carry_cache_and_includes() {
        let pk = vec!["a".to_string(), "b".to_string()];
        let d = Debootstrap {
            program: Path::new("/usr/sbin/debootstrap"),
            suite: "bookworm",
            mirror: "http://m/debian",
            target: Path::new("/w/rootfs"),
            packages: &pk,
            cache_dir: Path::new("/c/bookworm"),
            log: Path::new("/w/log"),
        };
        assert_eq!(
            d.args(),
            [
                "--variant=minbase",
                "--cache-dir=/c/bookworm",
                "--include=a,b",
                "bookworm",
                "/w/rootfs",
                "http://m/debian"
            ]
        );
    }
}
