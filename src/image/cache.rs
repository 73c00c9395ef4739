//! The image manifest `<stem>.json` (what was built, from what, when, and the qcow2's SHA-256)
//! and the up-to-date check that lets a repeated `image build` do nothing.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{disk, rootfs, BuildOptions, ImagePaths};

/// Manifest format version; bump when the meaning of a field changes.
pub const FORMAT: u32 = 1;

/// Bump when the image recipe changes in a way the embedded files do not show
/// (e.g. a different post-configuration step), so old images are rebuilt.
const RECIPE_VERSION: &str = "duststack-image-recipe-1";

/// What a build request asks for (the fields an existing image must match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Suite.
    pub suite: String,
    /// Mirror, without a trailing `/`.
    pub mirror: String,
    /// Full package list (base + extras).
    pub packages: Vec<String>,
    /// Disk size in bytes.
    pub size_bytes: u64,
    /// Fingerprint of the recipe ([`recipe_fingerprint`]).
    pub recipe: String,
}

impl Request {
    /// The request `opts` describes.
    pub fn from_options(opts: &BuildOptions) -> Request {
        Request {
            suite: opts.suite.clone(),
            mirror: opts.mirror.trim_end_matches('/').to_string(),
            packages: opts.packages(),
            size_bytes: opts.size,
            recipe: recipe_fingerprint(),
        }
    }
}

/// SHA-256 (first 16 hex digits) over the recipe version and every file the build writes
/// into the tree: changing the seed script makes existing images out of date.
pub fn recipe_fingerprint() -> String {
    let mut h = Sha256::new();
    for part in [
        RECIPE_VERSION,
        rootfs::SEED_SCRIPT,
        rootfs::SEED_UNIT,
        rootfs::DHCP_NETWORK,
        rootfs::SSHD_CONFIG,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    for unit in rootfs::DISABLE {
        h.update(unit.as_bytes());
    }
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The build manifest, stored as `<stem>.json` beside the image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// Debian suite.
    pub suite: String,
    /// Mirror the packages came from.
    pub mirror: String,
    /// Requested packages (base + extras).
    pub packages: Vec<String>,
    /// Disk size, e.g. `4G`.
    pub size: String,
    /// Disk size in bytes.
    pub size_bytes: u64,
    /// Recipe fingerprint.
    pub recipe: String,
    /// Kernel version in the image (`6.1.0-50-amd64`).
    pub kernel_version: String,
    /// Kernel file name (beside the image).
    pub kernel: String,
    /// Initrd file name (beside the image).
    pub initrd: String,
    /// Build time, UTC, RFC 3339.
    pub built_at: String,
    /// Build time, seconds since the epoch.
    pub built_at_unix: u64,
    /// SHA-256 of the qcow2.
    pub image_sha256: String,
    /// Size of the qcow2 file in bytes.
    pub image_bytes: u64,
    /// duststack version that built it.
    pub duststack_version: String,
}

impl Manifest {
    /// A manifest for a build of `request` finished now.
    pub fn new(
        request: &Request,
        kernel_version: &str,
        image_sha256: String,
        image_bytes: u64,
        paths: &ImagePaths,
    ) -> Manifest {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let file_name = |p: &std::path::Path| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        Manifest {
            format: FORMAT,
            suite: request.suite.clone(),
            mirror: request.mirror.clone(),
            packages: request.packages.clone(),
            size: disk::format_size(request.size_bytes),
            size_bytes: request.size_bytes,
            recipe: request.recipe.clone(),
            kernel_version: kernel_version.to_string(),
            kernel: file_name(&paths.kernel),
            initrd: file_name(&paths.initrd),
            built_at: rfc3339_utc(now),
            built_at_unix: now,
            image_sha256,
            image_bytes,
            duststack_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }

    /// Pretty JSON with a trailing newline.
    pub fn to_json(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string_pretty(self)? + "\n")
    }

    /// Why this manifest does not satisfy `request` (`None`: it does).
    pub fn mismatch(&self, request: &Request) -> Option<String> {
        if self.format != FORMAT {
            return Some(format!("manifest format {} (now {FORMAT})", self.format));
        }
        if self.suite != request.suite {
            return Some(format!("suite {} → {}", self.suite, request.suite));
        }
        if self.mirror != request.mirror {
            return Some(format!("mirror {} → {}", self.mirror, request.mirror));
        }
        if self.packages != request.packages {
            return Some("package list changed".into());
        }
        if self.size_bytes != request.size_bytes {
            return Some(format!(
                "size {} → {}",
                self.size,
                disk::format_size(request.size_bytes)
            ));
        }
        if self.recipe != request.recipe {
            return Some("image recipe changed (newer duststack)".into());
        }
        None
    }
}

/// Checks the image at `paths` against `request`: `Ok(manifest)` when all four files exist and
/// match, `Err(reason)` (human readable) otherwise.
pub fn check(paths: &ImagePaths, request: &Request) -> Result<Manifest, String> {
    for p in [&paths.image, &paths.kernel, &paths.initrd, &paths.manifest] {
        if !p.is_file() {
            return Err(format!("{} does not exist", p.display()));
        }
    }
    let text = fs::read_to_string(&paths.manifest)
        .with_context(|| format!("cannot read {}", paths.manifest.display()))
        .map_err(|e| format!("{e:#}"))?;
    let manifest: Manifest = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a valid manifest: {e}", paths.manifest.display()))?;
    if let Some(why) = manifest.mismatch(request) {
        return Err(why);
    }
    let len = fs::metadata(&paths.image).map(|m| m.len()).unwrap_or(0);
    if len != manifest.image_bytes {
        return Err(format!(
            "{} changed since it was built ({} bytes, manifest says {})",
            paths.image.display(),
            len,
            manifest.image_bytes
        ));
    }
    Ok(manifest)
}

/// `2025-11-24T11:37:05Z` for seconds since the epoch.
pub fn rfc3339_utc(secs: u64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs as i64) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => secs.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request::from_options(&BuildOptions::default())
    }

    #[test]
    fn date_format() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(1_700_000_000), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn up_to_date_only_when_everything_matches() {
        let t = tempfile::tempdir().unwrap();
        let paths = ImagePaths::for_image(&t.path().join("debian-12.qcow2"));
        let req = request();
        assert!(check(&paths, &req).unwrap_err().contains("does not exist"));

        fs::write(&paths.image, "qcow2 bytes").unwrap();
        fs::write(&paths.kernel, "k").unwrap();
        fs::write(&paths.initrd, "i").unwrap();
        let m = Manifest::new(&req, "6.1.0-50-amd64", "ab".repeat(32), 11, &paths);
        assert_eq!(m.kernel, "debian-12.vmlinuz");
        fs::write(&paths.manifest, m.to_json().unwrap()).unwrap();
        assert_eq!(check(&paths, &req).unwrap(), m);

        let mut other = req.clone();
        other.suite = "trixie".into();
        assert!(check(&paths, &other).unwrap_err().contains("suite"));
        let mut other = req.clone();
        other.size_bytes = 8 << 30;
        assert!(check(&paths, &other).unwrap_err().contains("size 4G → 8G"));
        let mut other = req.clone();
        other.packages.push("vim".into());
        assert!(check(&paths, &other).unwrap_err().contains("package"));
        let mut other = req.clone();
        other.recipe = "0000".into();
        assert!(check(&paths, &other).unwrap_err().contains("recipe"));

        // A replaced image file is noticed.
        fs::write(&paths.image, "something else entirely").unwrap();
        assert!(check(&paths, &req).unwrap_err().contains("changed"));
        fs::write(&paths.image, "qcow2 bytes").unwrap();
        fs::remove_file(&paths.initrd).unwrap();
        assert!(check(&paths, &req).is_err());
    }

    #[test]
    fn mirror_trailing_slash_is_the_same_mirror() {
        let a = Request::from_options(&BuildOptions {
            mirror: "http://deb.debian.org/debian/".into(),
            ..BuildOptions::default()
        });
        assert_eq!(a, request());
    }
}
