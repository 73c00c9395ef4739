//! Kernel and initrd for direct kernel boot, copied out of the tree's `/boot`
//! (`vmlinuz-<version>`, `initrd.img-<version>`; the newest version when there are several).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The copied boot files (inside the work directory, renamed into place later).
#[derive(Debug, Clone)]
pub struct BootFiles {
    /// The kernel image.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// `6.1.0-50-amd64`.
    pub kernel_version: String,
}

/// Compares Debian kernel versions like `6.1.0-9-amd64` < `6.1.0-50-amd64` (numeric runs as numbers).
fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut num = String::new();
    let mut text = String::new();
    for c in v.chars() {
        if c.is_ascii_digit() {
            if !text.is_empty() {
                out.push((0, std::mem::take(&mut text)));
            }
            num.push(c);
        } else {
            if !num.is_empty() {
                out.push((num.parse().unwrap_or(u64::MAX), String::new()));
                num.clear();
            }
            text.push(c);
        }
    }
    if !num.is_empty() {
        out.push((num.parse().unwrap_or(u64::MAX), String::new()));
    }
    if !text.is_empty() {
        out.push((0, text));
    }
    out
}

/// The kernel versions that have both `vmlinuz-V` and `initrd.img-V` in `boot`, newest last.
pub fn kernel_versions(boot: &Path) -> anyhow::Result<Vec<String>> {
    let mut versions = Vec::new();
    for entry in fs::read_dir(boot).with_context(|| format!("cannot read {}", boot.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(v) = name.strip_prefix("vmlinuz-") {
            if boot.join(format!("initrd.img-{v}")).is_file() {
                versions.push(v.to_string());
            }
        }
    }
    versions.sort_by_key(|v| version_key(v));
    Ok(versions)
}

/// Copies the newest kernel and its initrd from `root/boot` into `dest` (`vmlinuz`, `initrd`).
pub fn extract(root: &Path, dest: &Path) -> anyhow::Result<BootFiles> {
    let boot = root.join("boot");
    let versions = kernel_versions(&boot)?;
    let Some(version) = versions.last() else {
        bail!(
            "no kernel with an initrd in {} (is linux-image-amd64 installed, did update-initramfs run?)",
            boot.display()
        );
    };
    let kernel = dest.join("vmlinuz");
    let initrd = dest.join("initrd");
    for (from, to) in [
        (boot.join(format!("vmlinuz-{version}")), &kernel),
        (boot.join(format!("initrd.img-{version}")), &initrd),
    ] {
        fs::copy(&from, to)
            .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))?;
        if fs::metadata(to)?.len() == 0 {
            bail!("{} is empty", from.display());
        }
    }
    Ok(BootFiles {
        kernel,
        initrd,
        kernel_version: version.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_kernel_with_initrd_wins() {
        let t = tempfile::tempdir().unwrap();
        let boot = t.path().join("boot");
        fs::create_dir_all(&boot).unwrap();
        for f in [
            "vmlinuz-6.1.0-9-amd64",
            "initrd.img-6.1.0-9-amd64",
            "vmlinuz-6.1.0-50-amd64",
            "initrd.img-6.1.0-50-amd64",
            "vmlinuz-6.1.0-99-amd64", // no initrd
        ] {
            fs::write(boot.join(f), f).unwrap();
        }
        assert_eq!(
            kernel_versions(&boot).unwrap(),
            ["6.1.0-9-amd64", "6.1.0-50-amd64"]
        );
        let out = tempfile::tempdir().unwrap();
        let files = extract(t.path(), out.path()).unwrap();
        assert_eq!(files.kernel_version, "6.1.0-50-amd64");
        assert_eq!(
            fs::read_to_string(&files.initrd).unwrap(),
            "initrd.img-6.1.0-50-amd64"
        );
        let empty = tempfile::tempdir().unwrap();
        fs::create_dir_all(empty.path().join("boot")).unwrap();
        assert!(extract(empty.path(), out.path()).is_err());
    }
}
