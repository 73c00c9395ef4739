//! The build's scratch space: a work directory removed on drop (success or failure) that first
//! detaches anything still mounted inside it (debootstrap mounts /proc, /sys, /dev in the tree),
//! stale work directories of dead builds, and the per-output build lock.

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// A directory that is removed (with whatever is mounted inside detached first) when dropped.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates `path` (it must not exist yet).
    pub fn create(path: &Path) -> anyhow::Result<WorkDir> {
        if path.exists() {
            remove_safely(path)?;
        }
        fs::create_dir(path)
            .with_context(|| format!("cannot create the work directory {}", path.display()))?;
        Ok(WorkDir {
            path: path.to_path_buf(),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Removes a subtree of the work directory early (detaching mounts inside it first).
    pub fn remove_tree(&self, sub: &Path) -> anyhow::Result<()> {
        if !sub.starts_with(&self.path) {
            bail!(
                "{} is not inside the work directory {}",
                sub.display(),
                self.path.display()
            );
        }
        remove_safely(sub)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Err(e) = remove_safely(&self.path) {
            eprintln!(
                "warning: cannot remove the work directory {}: {e:#}",
                self.path.display()
            );
        }
    }
}

/// Mount points at or below `dir` (from /proc/self/mountinfo), deepest first.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    found
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Detaches every mount below `dir`, then removes it. Refuses to remove anything while a mount
/// is left (deleting through a bind mount would delete the host's files).
pub fn remove_safely(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    for mount in mounts_below(&dir) {
        let c = std::ffi::CString::new(mount.as_os_str().as_encoded_bytes())
            .context("mount point with a NUL byte")?;
        // SAFETY: `c` is a valid NUL-terminated path; MNT_DETACH only affects this mount.
        unsafe {
            libc::umount2(c.as_ptr(), libc::MNT_DETACH);
        }
    }
    let left = mounts_below(&dir);
    if !left.is_empty() {
        bail!(
            "{} still has mounts inside ({}); not removing it",
            dir.display(),
            left.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))
}

/// Removes `<dir>/<prefix><pid>` work directories whose build process is gone.
pub fn remove_stale(dir: &Path, prefix: &str) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            if let Err(e) = remove_safely(&entry.path()) {
                eprintln!("warning: stale work directory {name}: {e:#}");
            }
        }
    }
}

/// An exclusive `flock` on a lock file, released on drop (two builds of one output serialize).
#[derive(Debug)]
pub struct Lock {
    _file: File,
}

impl Lock {
    /// Blocks until the lock on `path` (created if needed) is ours.
    pub fn acquire(path: &Path) -> anyhow::Result<Lock> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        // SAFETY: a valid open file descriptor; flock has no memory effects.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot lock {}", path.display()));
        }
        Ok(Lock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), r"/a b\c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/x\04"), r"/x\04");
    }

    #[test]
    fn work_dir_is_removed_on_drop() {
        let base = tempfile::tempdir().unwrap();
        let p = base.path().join("w");
        {
            let w = WorkDir::create(&p).unwrap();
            fs::create_dir_all(w.path().join("a/b")).unwrap();
            fs::write(w.path().join("a/b/f"), "x").unwrap();
            assert!(p.join("a/b/f").exists());
        }
        assert!(!p.exists());
    }

    #[test]
    fn stale_dirs_of_dead_pids_go() {
        let base = tempfile::tempdir().unwrap();
        let dead = base.path().join(".img.build-999999999");
        let mine = base
            .path()
            .join(format!(".img.build-{}", std::process::id()));
        let other = base.path().join("keep");
        for d in [&dead, &mine, &other] {
            fs::create_dir(d).unwrap();
        }
        remove_stale(base.path(), ".img.build-");
        assert!(!dead.exists());
        assert!(mine.exists());
        assert!(other.exists());
    }
}
