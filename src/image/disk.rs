//! The disk: a sparse raw file filled by `mke2fs -t ext4 -d TREE` (no mount, no loop device),
//! converted to qcow2 by `qemu-img convert`; plus size parsing and the image checksum.

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};

/// The smallest image size accepted.
pub const MIN_SIZE: u64 = 512 << 20;

/// Parses `4G`, `4096M`, `4GiB`, `1.5G`, `4294967296` (binary units; plain numbers are bytes).
pub fn parse_size(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .with_context(|| format!("invalid size {s:?} (expected e.g. 4G, 4096M)"))?;
    let mult: u64 = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => bail!("invalid size {s:?}: unknown unit {unit:?} (use K, M, G or T)"),
    };
    let bytes = n * mult as f64;
    if !bytes.is_finite() || bytes < 1.0 || bytes > u64::MAX as f64 {
        bail!("invalid size {s:?}");
    }
    // Whole 1 MiB units keep mke2fs and qemu-img happy.
    let bytes = bytes as u64;
    Ok(bytes.div_ceil(1 << 20) * (1 << 20))
}

/// `4G`, `4608M`, `512M` (inverse of [`parse_size`] for whole MiB).
pub fn format_size(bytes: u64) -> String {
    if bytes % (1 << 30) == 0 {
        format!("{}G", bytes >> 30)
    } else if bytes % (1 << 20) == 0 {
        format!("{}M", bytes >> 20)
    } else {
        format!("{bytes}")
    }
}

/// Bytes the tree at `root` occupies (allocated blocks) and its inode count.
pub fn tree_usage(root: &Path) -> anyhow::Result<(u64, u64)> {
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))? {
            let entry = entry?;
            let md = entry.metadata()?;
            inodes += 1;
            bytes += md.blocks() * 512;
            if md.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok((bytes, inodes))
}

/// Creates `raw` (`size` bytes, sparse) holding an ext4 filesystem labelled `label` with the
/// contents of `tree` (owners, modes, device nodes and symlinks preserved by `mke2fs -d`).
pub fn make_ext4(
    mke2fs: &Path,
    tree: &Path,
    raw: &Path,
    size: u64,
    label: &str,
) -> anyhow::Result<()> {
    let (used, inodes) = tree_usage(tree)?;
    // ext4 metadata (journal, inode tables, reserved blocks) needs room beyond the files.
    let needed = used + used / 5 + (160 << 20);
    if size < needed {
        bail!(
            "image size {} is too small for the {} the system needs; use --size {} or more",
            format_size(size),
            format_size(used.div_ceil(1 << 20) << 20),
            format_size(needed.div_ceil(1 << 30) << 30)
        );
    }
    let f = File::create(raw).with_context(|| format!("cannot create {}", raw.display()))?;
    f.set_len(size)
        .with_context(|| format!("cannot size {}", raw.display()))?;
    drop(f);
    let mut cmd = Command::new(mke2fs);
    cmd.args(["-q", "-F", "-t", "ext4", "-L", label])
        // Enough inodes for the tree even on small sizes (the default ratio is 16 KiB per inode).
        .args(["-N", &(inodes * 2).max(65536).to_string()])
        .arg("-d")
        .arg(tree)
        .arg(raw)
        .env("LC_ALL", "C");
    super::run_tool(&mut cmd, "mke2fs")?;
    Ok(())
}

/// `qemu-img convert -O qcow2 raw qcow2` (sparse areas stay unallocated).
pub fn convert_qcow2(qemu_img: &Path, raw: &Path, qcow2: &Path) -> anyhow::Result<()> {
    let mut cmd = Command::new(qemu_img);
    cmd.args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(raw)
        .arg(qcow2);
    super::run_tool(&mut cmd, "qemu-img convert")?;
    Ok(())
}

/// Lowercase hex SHA-256 of a file.
pub fn sha256_file(path: &Path) -> anyhow::Result<String> {
    let mut f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("4GiB").unwrap(), 4 << 30);
        assert_eq!(parse_size("4096M").unwrap(), 4 << 30);
        assert_eq!(parse_size("1.5G").unwrap(), 1536 << 20);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("1000").unwrap(), 1 << 20, "rounded up to MiB");
        assert!(parse_size("4X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("").is_err());
        assert_eq!(format_size(4 << 30), "4G");
        assert_eq!(format_size(4608 << 20), "4608M");
    }

    #[test]
    fn sha256_of_a_file() {
        let t = tempfile::NamedTempFile::new().unwrap();
        fs::write(t.path(), "abc").unwrap();
        assert_eq!(
            sha256_file(t.path()).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn ext4_from_a_tree_without_mounting() {
        let (Some(mke2fs), Some(debugfs)) = (
            super::super::find_program("mke2fs"),
            super::super::find_program("debugfs"),
        ) else {
            panic!("e2fsprogs (mke2fs, debugfs) is required for this test");
        };
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        fs::create_dir_all(tree.join("etc")).unwrap();
        fs::write(tree.join("etc/hello"), "world\n").unwrap();
        let raw = t.path().join("disk.raw");
        make_ext4(&mke2fs, &tree, &raw, 256 << 20, "t-root").unwrap();
        assert_eq!(fs::metadata(&raw).unwrap().len(), 256 << 20);
        let out = Command::new(debugfs)
            .args(["-R", "cat /etc/hello"])
            .arg(&raw)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "world\n");
        // Too small for the tree + ext4 overhead.
        let err = make_ext4(&mke2fs, &tree, &raw, 64 << 20, "t").unwrap_err();
        assert!(err.to_string().contains("too small"), "{err}");
    }
}
