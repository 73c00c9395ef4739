//! `systemctl enable/disable` for a tree that is not running: reads a unit's `[Install]`
//! section and creates (or removes) the `.wants`/`.requires`/alias symlinks by hand.

use std::collections::HashSet;
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// Directories (inside the tree) searched for unit files, in systemd's priority order.
const UNIT_DIRS: &[&str] = &[
    "etc/systemd/system",
    "lib/systemd/system",
    "usr/lib/systemd/system",
];

/// The `[Install]` section of a unit file.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Install {
    /// `WantedBy=` targets.
    pub wanted_by: Vec<String>,
    /// `RequiredBy=` targets.
    pub required_by: Vec<String>,
    /// `Alias=` names.
    pub alias: Vec<String>,
    /// `Also=` units enabled together with this one.
    pub also: Vec<String>,
}

/// Parses the `[Install]` section of a unit file's text.
pub fn parse_install(text: &str) -> Install {
    let mut install = Install::default();
    let mut in_install = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_install = line == "[Install]";
            continue;
        }
        if !in_install || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let list = match key.trim() {
            "WantedBy" => &mut install.wanted_by,
            "RequiredBy" => &mut install.required_by,
            "Alias" => &mut install.alias,
            "Also" => &mut install.also,
            _ => continue,
        };
        list.extend(value.split_whitespace().map(str::to_string));
    }
    install
}

/// Where `unit` lives in the tree: (host path, path as the booted system sees it).
fn find_unit(root: &Path, unit: &str) -> Option<(PathBuf, String)> {
    UNIT_DIRS.iter().find_map(|dir| {
        let p = root.join(dir).join(unit);
        p.is_file().then(|| (p, format!("/{dir}/{unit}")))
    })
}

/// Enables `unit` (and its `Also=` units) in the tree at `root`; returns the links created.
pub fn enable(root: &Path, unit: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut seen = HashSet::new();
    let mut links = Vec::new();
    enable_inner(root, unit, &mut seen, &mut links)?;
    Ok(links)
}

fn enable_inner(
    root: &Path,
    unit: &str,
    seen: &mut HashSet<String>,
    links: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    if !seen.insert(unit.to_string()) {
        return Ok(());
    }
    let Some((file, target)) = find_unit(root, unit) else {
        bail!("unit {unit} is not installed in the image");
    };
    let text =
        fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
    let install = parse_install(&text);
    let etc = root.join("etc/systemd/system");
    let mut want = Vec::new();
    for t in &install.wanted_by {
        want.push(etc.join(format!("{t}.wants")).join(unit));
    }
    for t in &install.required_by {
        want.push(etc.join(format!("{t}.requires")).join(unit));
    }
    for a in &install.alias {
        want.push(etc.join(a));
    }
    for link in want {
        if let Some(dir) = link.parent() {
            fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        match fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot replace {}", link.display())),
        }
        std::os::unix::fs::symlink(&target, &link)
            .with_context(|| format!("cannot link {} → {target}", link.display()))?;
        links.push(link);
    }
    for also in &install.also {
        enable_inner(root, also, seen, links)?;
    }
    Ok(())
}

/// Disables `unit`: removes every symlink under `/etc/systemd/system` named like it or pointing
/// at it (wants links and aliases). Returns the links removed.
pub fn disable(root: &Path, unit: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    for link in links_to(root, unit)? {
        fs::remove_file(&link).with_context(|| format!("cannot remove {}", link.display()))?;
        removed.push(link);
    }
    Ok(removed)
}

/// Symlinks under `/etc/systemd/system` of the tree that name or point at `unit`.
pub fn links_to(root: &Path, unit: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![root.join("etc/systemd/system")];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let path = entry.path();
            let ft = entry.file_type()?;
            if ft.is_dir() {
                stack.push(path);
            } else if ft.is_symlink() {
                let target = fs::read_link(&path)?;
                let named = entry.file_name().to_string_lossy() == unit;
                let points = target
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy() == unit);
                if named || points {
                    out.push(path);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NETWORKD: &str =
        "[Unit]\nDescription=Network Configuration\n\n[Service]\nExecStart=x\n\n\
        [Install]\nWantedBy=multi-user.target\nAlso=systemd-networkd.socket\n\
        Alias=dbus-org.freedesktop.network1.service\n\n# We want to enable this too\n\
        Also=systemd-networkd-wait-online.service\n";

    #[test]
    fn parses_install() {
        let i = parse_install(NETWORKD);
        assert_eq!(i.wanted_by, ["multi-user.target"]);
        assert_eq!(i.alias, ["dbus-org.freedesktop.network1.service"]);
        assert_eq!(
            i.also,
            [
                "systemd-networkd.socket",
                "systemd-networkd-wait-online.service"
            ]
        );
        assert!(i.required_by.is_empty());
    }

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let lib = t.path().join("lib/systemd/system");
        fs::create_dir_all(&lib).unwrap();
        fs::write(lib.join("systemd-networkd.service"), NETWORKD).unwrap();
        fs::write(
            lib.join("systemd-networkd.socket"),
            "[Install]\nWantedBy=sockets.target\n",
        )
        .unwrap();
        fs::write(
            lib.join("systemd-networkd-wait-online.service"),
            "[Install]\nWantedBy=network-online.target\n",
        )
        .unwrap();
        fs::write(
            lib.join("etcd.service"),
            "[Install]\nWantedBy=multi-user.target\nAlias=etcd2.service\n",
        )
        .unwrap();
        t
    }

    #[test]
    fn enable_follows_also_and_alias() {
        let t = tree();
        let links = enable(t.path(), "systemd-networkd.service").unwrap();
        assert_eq!(links.len(), 4);
        let etc = t.path().join("etc/systemd/system");
        assert_eq!(
            fs::read_link(etc.join("multi-user.target.wants/systemd-networkd.service")).unwrap(),
            PathBuf::from("/lib/systemd/system/systemd-networkd.service")
        );
        assert_eq!(
            fs::read_link(etc.join("dbus-org.freedesktop.network1.service")).unwrap(),
            PathBuf::from("/lib/systemd/system/systemd-networkd.service")
        );
        assert!(
            fs::symlink_metadata(etc.join("sockets.target.wants/systemd-networkd.socket")).is_ok()
        );
        assert!(fs::symlink_metadata(
            etc.join("network-online.target.wants/systemd-networkd-wait-online.service")
        )
        .is_ok());
        // Idempotent.
        assert_eq!(
            enable(t.path(), "systemd-networkd.service").unwrap().len(),
            4
        );
        assert!(enable(t.path(), "nope.service").is_err());
    }

    #[test]
    fn disable_removes_wants_and_aliases() {
        let t = tree();
        enable(t.path(), "etcd.service").unwrap();
        enable(t.path(), "systemd-networkd.service").unwrap();
        let removed = disable(t.path(), "etcd.service").unwrap();
        assert_eq!(removed.len(), 2);
        assert!(links_to(t.path(), "etcd.service").unwrap().is_empty());
        assert_eq!(
            links_to(t.path(), "systemd-networkd.service")
                .unwrap()
                .len(),
            2
        );
    }
}
