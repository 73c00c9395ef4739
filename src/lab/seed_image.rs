//! The seed volume of a lab VM: a small FAT image labelled `CIDATA` (what cloud-init's NoCloud
//! source and the duststack image's `duststack-seed` service both look for), written in process
//! with the `fatfs` crate (no mkfs/mtools/genisoimage on the hypervisor host), and read back
//! (a re-run of `lab up` reuses the host keys already in it).

use std::io::{Cursor, Read, Write};

use anyhow::{anyhow, Context};

/// Volume label of every seed (the NoCloud convention; cloud-init accepts it in either case).
pub const LABEL: &[u8; 11] = b"CIDATA     ";

/// Size of a seed image: plenty for keys and a few config files, small enough to upload.
pub const SIZE: usize = 2 * 1024 * 1024;

/// Builds the FAT image holding `files` (`dir/name` paths, directories created as needed).
pub fn build(files: &[(String, Vec<u8>)]) -> anyhow::Result<Vec<u8>> {
    let mut disk = Cursor::new(vec![0u8; SIZE]);
    fatfs::format_volume(
        &mut disk,
        fatfs::FormatVolumeOptions::new().volume_label(*LABEL),
    )
    .context("formatting the seed image")?;
    {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())
            .context("opening the new seed image")?;
        for (path, content) in files {
            let mut dir = fs.root_dir();
            let mut parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            let name = parts
                .pop()
                .ok_or_else(|| anyhow!("seed file with an empty path"))?;
            for part in parts {
                dir = match dir.open_dir(part) {
                    Ok(d) => d,
                    Err(_) => dir
                        .create_dir(part)
                        .with_context(|| format!("seed image: creating directory {part}"))?,
                };
            }
            let mut file = dir
                .create_file(name)
                .with_context(|| format!("seed image: creating {path}"))?;
            file.truncate()
                .with_context(|| format!("seed image: {path}"))?;
            file.write_all(content)
                .with_context(|| format!("seed image: writing {path}"))?;
            file.flush()
                .with_context(|| format!("seed image: writing {path}"))?;
        }
        fs.unmount().context("closing the seed image")?;
    }
    Ok(disk.into_inner())
}

/// Reads one file (`dir/name`) back from a seed image; `None` if it is not there.
pub fn read(image: &[u8], path: &str) -> anyhow::Result<Option<Vec<u8>>> {
    let fs = fatfs::FileSystem::new(Cursor::new(image.to_vec()), fatfs::FsOptions::new())
        .context("the seed image is not a FAT filesystem")?;
    let mut file = match fs.root_dir().open_file(path) {
        Ok(f) => f,
        Err(_) => return Ok(None),
    };
    let mut out = Vec::new();
    file.read_to_end(&mut out)
        .with_context(|| format!("seed image: reading {path}"))?;
    Ok(Some(out))
}

/// The volume label stored in the image (trailing spaces removed).
pub fn label(image: &[u8]) -> anyhow::Result<String> {
    let fs = fatfs::FileSystem::new(Cursor::new(image.to_vec()), fatfs::FsOptions::new())
        .context("the seed image is not a FAT filesystem")?;
    Ok(fs.volume_label().trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lab_seed_image_roundtrip() {
        let files = vec![
            ("meta-data".to_string(), b"instance-id: x\n".to_vec()),
            ("network-config".to_string(), b"version: 2\n".to_vec()),
            ("duststack/hostname".to_string(), b"k8s-node-1\n".to_vec()),
            (
                "duststack/network/10-nic1.network".to_string(),
                b"[Match]\n".to_vec(),
            ),
        ];
        let image = build(&files).unwrap();
        assert_eq!(image.len(), SIZE);
        assert_eq!(label(&image).unwrap(), "CIDATA");
        for (path, content) in &files {
            assert_eq!(read(&image, path).unwrap().as_deref(), Some(&content[..]));
        }
        assert_eq!(read(&image, "duststack/missing").unwrap(), None);
    }
}
