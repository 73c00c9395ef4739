//! The seed volume of a Hyper-V lab VM: the same NoCloud files as [`super::seed_image`], written
//! in process as an ISO 9660 image labelled `CIDATA` (Hyper-V attaches seeds with
//! `Add-VMDvdDrive`, which takes only ISO images), with Rock Ridge (the names Linux shows) and
//! Joliet (the names Windows shows) so `meta-data`, `duststack/ssh_host_ed25519_key.pub`, ...
//! keep their exact spelling; and read back (a re-run of `lab up` reuses the host keys in it).

use std::io::Cursor;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use hadris_iso::joliet::JolietLevel;
use hadris_iso::read::{IsoImage, PathSeparator};
use hadris_iso::rrip::RripOptions;
use hadris_iso::write::options::{BaseIsoLevel, CreationFeatures, IsoFormatOptions};
use hadris_iso::write::{File as IsoFile, InputFiles, IsoImageWriter};

/// Volume id of every seed. ISO 9660 volume ids are d-characters (uppercase); blkid reports it
/// as the filesystem label, and cloud-init's NoCloud source accepts `cidata` or `CIDATA`.
pub const VOLUME_ID: &str = "CIDATA";

/// ISO 9660 logical sector size (the only one the writer and every reader support).
const SECTOR: usize = 2048;

/// Builds the ISO image holding `files` (`dir/name` paths, directories created as needed; when
/// a path repeats, the last content wins, as with [`super::seed_image::build`]).
pub fn build(files: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
    let mut root: Vec<IsoFile> = Vec::new();
    for (path, content) in files {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let (name, dirs) = parts
            .split_last()
            .ok_or_else(|| anyhow!("seed file with an empty path"))?;
        if parts.iter().any(|p| *p == "." || *p == "..") {
            bail!("seed file {path:?}: `.` and `..` are not allowed in seed paths");
        }
        insert(&mut root, dirs, name, content)
            .with_context(|| format!("seed ISO: adding {path}"))?;
    }
    let options = IsoFormatOptions {
        volume_name: VOLUME_ID.to_string(),
        system_id: None,
        volume_set_id: None,
        publisher_id: None,
        preparer_id: None,
        application_id: Some("DUSTSTACK".to_string()),
        sector_size: SECTOR,
        path_separator: PathSeparator::ForwardSlash,
        strict_charset: true,
        features: CreationFeatures {
            // The primary tree keeps 8.3-style uppercase names (readable by anything); the real
            // names live in the Rock Ridge NM entries and in the Joliet tree.
            filenames: BaseIsoLevel::Level1 {
                supports_lowercase: false,
                supports_rrip: true,
            },
            joliet: Some(JolietLevel::Level3),
            rock_ridge: Some(RripOptions::default()),
            ..CreationFeatures::default()
        },
    };
    let tree = InputFiles {
        path_separator: PathSeparator::ForwardSlash,
        files: root,
    };
    let mut image = IsoImageWriter::create(Cursor::new(Vec::new()), tree, options)
        .context("writing the seed ISO image")?
        .into_inner();
    // Whole sectors, at least up to the volume space size the descriptor announces.
    let announced = volume_space_bytes(&image)?;
    let len = image.len().max(announced).div_ceil(SECTOR) * SECTOR;
    image.resize(len, 0);
    Ok(image)
}

/// Adds one file below `dirs` in the tree being built, creating directories on the way.
fn insert(
    level: &mut Vec<IsoFile>,
    dirs: &[&str],
    name: &str,
    content: &[u8],
) -> anyhow::Result<()> {
    let Some((dir, rest)) = dirs.split_first() else {
        match level.iter_mut().find(|f| f.name().as_str() == name) {
            Some(IsoFile::File { contents, .. }) => *contents = content.to_vec(),
            Some(IsoFile::Directory { .. }) => bail!("{name} is already a directory"),
            None => level.push(IsoFile::File {
                name: Arc::new(name.to_string()),
                contents: content.to_vec(),
            }),
        }
        return Ok(());
    };
    let index = match level.iter().position(|f| f.name().as_str() == *dir) {
        Some(i) => i,
        None => {
            level.push(IsoFile::Directory {
                name: Arc::new(dir.to_string()),
                children: Vec::new(),
            });
            level.len() - 1
        }
    };
    match &mut level[index] {
        IsoFile::Directory { children, .. } => insert(children, rest, name, content),
        IsoFile::File { .. } => bail!("{dir} is already a file"),
    }
}

/// The volume space size recorded in the primary volume descriptor, in bytes.
fn volume_space_bytes(image: &[u8]) -> anyhow::Result<usize> {
    // Sector 16 holds the primary volume descriptor; bytes 80..84 are the little-endian
    // volume space size (ECMA-119 8.4.8), in logical blocks of 2048 bytes.
    let pvd = image
        .get(16 * SECTOR..17 * SECTOR)
        .ok_or_else(|| anyhow!("the seed ISO image has no primary volume descriptor"))?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        bail!("the seed ISO image does not start with a primary volume descriptor");
    }
    let blocks = u32::from_le_bytes([pvd[80], pvd[81], pvd[82], pvd[83]]);
    Ok(blocks as usize * SECTOR)
}

/// Reads one file (`dir/name`, names as written) back from a seed ISO; `None` if it is not
/// there. Names resolve through Joliet or Rock Ridge, so the spelling is exact.
pub fn read(image: &[u8], path: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let iso = IsoImage::open(Cursor::new(image))
        .map_err(|e| anyhow!("the seed image is not an ISO 9660 filesystem: {e}"))?;
    let entry = match iso
        .find_path(path)
        .map_err(|e| anyhow!("seed ISO: looking up {path}: {e}"))?
    {
        Some(e) if !e.is_directory() => e,
        _ => return Ok(None),
    };
    let content = iso
        .read_file(&entry)
        .map_err(|e| anyhow!("seed ISO: reading {path}: {e}"))?;
    Ok(Some(content))
}

/// The volume id stored in the primary volume descriptor (trailing spaces removed).
pub fn label(image: &[u8]) -> anyhow::Result<String> {
    let pvd = image
        .get(16 * SECTOR..17 * SECTOR)
        .ok_or_else(|| anyhow!("the seed image is too short for an ISO 9660 filesystem"))?;
    if pvd[0] != 1 || &pvd[1..6] != b"CD001" {
        bail!("the seed image is not an ISO 9660 filesystem");
    }
    // Volume identifier: bytes 40..72 (ECMA-119 8.4.6), a-/d-characters padded with spaces.
    Ok(String::from_utf8_lossy(&pvd[40..72]).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_files() -> Vec<(String, Vec<u8>)> {
        vec![
            ("meta-data".to_string(), b"instance-id: x\n".to_vec()),
            ("user-data".to_string(), b"#cloud-config\n".to_vec()),
            ("network-config".to_string(), b"version: 2\n".to_vec()),
            ("duststack/hostname".to_string(), b"k8s-node-1\n".to_vec()),
            (
                "duststack/authorized_keys".to_string(),
                b"ssh-ed25519 AAAA user\n".to_vec(),
            ),
            (
                "duststack/ssh_host_ed25519_key".to_string(),
                b"-----BEGIN OPENSSH PRIVATE KEY-----\n".to_vec(),
            ),
            (
                "duststack/ssh_host_ed25519_key.pub".to_string(),
                b"ssh-ed25519 BBBB root@k8s-node-1\n".to_vec(),
            ),
            (
                "duststack/network/10-nic1.network".to_string(),
                b"[Match]\nMACAddress=52:54:00:00:00:01\n".to_vec(),
            ),
        ]
    }

    #[test]
    fn lab_seed_iso_roundtrip() {
        let files = seed_files();
        let image = build(&files).unwrap();
        assert_eq!(image.len() % SECTOR, 0);
        assert_eq!(label(&image).unwrap(), "CIDATA");
        for (path, content) in &files {
            assert_eq!(
                read(&image, path).unwrap().as_deref(),
                Some(&content[..]),
                "{path}"
            );
        }
        assert_eq!(read(&image, "duststack/missing").unwrap(), None);
        // Exact spelling: the uppercase 8.3 primary name is not how files are found.
        assert_eq!(read(&image, "META-DATA").unwrap(), None);
        // A directory is not a file.
        assert_eq!(read(&image, "duststack/network").unwrap(), None);
    }

    #[test]
    fn lab_seed_iso_last_write_wins_and_bad_paths() {
        let files = vec![
            ("duststack/hostname".to_string(), b"old\n".to_vec()),
            ("duststack/hostname".to_string(), b"new\n".to_vec()),
        ];
        let image = build(&files).unwrap();
        assert_eq!(
            read(&image, "duststack/hostname").unwrap().as_deref(),
            Some(&b"new\n"[..])
        );
        assert!(build(&[("/".to_string(), Vec::new())]).is_err());
        assert!(build(&[("a/../b".to_string(), Vec::new())]).is_err());
        let clash = vec![
            ("duststack".to_string(), b"x".to_vec()),
            ("duststack/hostname".to_string(), b"y".to_vec()),
        ];
        assert!(build(&clash).is_err());
    }

    #[test]
    fn lab_seed_iso_names_equal_in_8_3_stay_distinct() {
        // All of these shorten to SSH_HOST in the primary (8.3) tree.
        let files: Vec<(String, Vec<u8>)> = [
            "ssh_host_ed25519_key",
            "ssh_host_rsa_key",
            "ssh_host_ecdsa_key",
            "ssh_host_ed25519_key.pub",
            "ssh_host_rsa_key.pub",
        ]
        .iter()
        .map(|n| (format!("duststack/{n}"), n.as_bytes().to_vec()))
        .collect();
        let image = build(&files).unwrap();
        for (path, content) in &files {
            assert_eq!(
                read(&image, path).unwrap().as_deref(),
                Some(&content[..]),
                "{path}"
            );
        }
    }

    #[test]
    fn lab_seed_iso_rejects_other_images() {
        assert!(read(&[0u8; 4096], "meta-data").is_err());
        assert!(label(&vec![0u8; 40 * SECTOR]).is_err());
        let fat = super::super::seed_image::build(&seed_files()).unwrap();
        assert!(read(&fat, "meta-data").is_err());
    }
}
