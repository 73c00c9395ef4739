//! `duststack image build`: an offline-capable Debian base image for lab VMs (qcow2 + kernel +
//! initrd for direct kernel boot), built without chroot tricks, mounts or loop devices.
//!
//! Steps of [`build`]:
//!
//! 1. **cache check** ([`cache`]): output, `<stem>.vmlinuz`, `<stem>.initrd` and `<stem>.json`
//!    exist and the manifest matches the request → "up to date", nothing else happens.
//! 2. **debootstrap** ([`debootstrap`]) `--variant=minbase` with [`BASE_PACKAGES`] plus extras into
//!    a work directory beside the output; the downloaded `.deb`s stay in a cache directory.
//! 3. **verify** that every requested package is installed (`/var/lib/dpkg/status`).
//! 4. **configure** the tree by writing files ([`rootfs`], [`units`]): empty machine-id, no host
//!    keys, fstab, networkd + DHCP fallback, sshd, apt sources, the seed applier.
//! 5. **boot files** ([`boot`]): kernel and initrd copied out of `/boot`.
//! 6. **disk** ([`disk`]): `mke2fs -d` into a sparse raw file, `qemu-img convert -O qcow2`.
//! 7. **install**: everything renamed into place, the manifest last (the commit mark).
//!
//! The seed contract (what the VM reads at boot) is documented in
//! `src/image/files/duststack-seed.sh`, the script [`rootfs`] installs.

pub mod boot;
pub mod cache;
pub mod debootstrap;
pub mod disk;
pub mod progress;
pub mod rootfs;
pub mod units;
pub mod workdir;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub use cache::Manifest;
pub use progress::ProgressMode;

/// Where `duststack image build` writes the image unless told otherwise.
pub const DEFAULT_OUTPUT: &str = "/var/lib/duststack/images/debian-12.qcow2";
/// Debian mirror used unless told otherwise.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// Debian suite used unless told otherwise.
pub const DEFAULT_SUITE: &str = "bookworm";
/// Size of the root filesystem (and virtual disk) unless told otherwise.
pub const DEFAULT_SIZE: &str = "4G";
/// Where debootstrap keeps the downloaded `.deb`s between builds (one subdirectory per suite).
pub const DEFAULT_CACHE_DIR: &str = "/var/cache/duststack/debootstrap";
/// Filesystem label of the root filesystem.
pub const ROOT_LABEL: &str = "duststack-root";

/// Packages every image gets: a bootable systemd system with SSH, plus what the cluster roles
/// configure later (container runtime, etcd, firewalling tools).
pub const BASE_PACKAGES: &[&str] = &[
    "linux-image-amd64",
    "systemd-sysv",
    "udev",
    "kmod",
    "procps",
    "iproute2",
    "openssh-server",
    "sudo",
    "e2fsprogs",
    "ca-certificates",
    "dbus",
    "systemd-timesyncd",
    "systemd-resolved",
    "containerd",
    "runc",
    "containernetworking-plugins",
    "etcd-server",
    "nftables",
    "busybox-static",
    "conntrack",
    "socat",
    "iptables",
    // k8s-prepare's tools (the lab network is offline: nothing can be installed later).
    "ethtool",
    // A CRI call over containerd's socket (gRPC over HTTP/2 prior knowledge) in the checks.
    "curl",
];

/// What to build and where.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The qcow2 to write; kernel, initrd and manifest go beside it (`<stem>.vmlinuz`, ...).
    pub output: PathBuf,
    /// Debian mirror (also written to the image's apt sources).
    pub mirror: String,
    /// Debian suite (`bookworm`).
    pub suite: String,
    /// Size of the virtual disk and its root filesystem, in bytes.
    pub size: u64,
    /// Packages installed on top of [`BASE_PACKAGES`].
    pub extra_packages: Vec<String>,
    /// Rebuild even when the existing image matches.
    pub force: bool,
    /// debootstrap's package cache (`--cache-dir`); `<cache_dir>/<suite>` is used.
    pub cache_dir: PathBuf,
    /// How progress is shown (stderr).
    pub progress: ProgressMode,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            output: PathBuf::from(DEFAULT_OUTPUT),
            mirror: DEFAULT_MIRROR.into(),
            suite: DEFAULT_SUITE.into(),
            size: 4 << 30,
            extra_packages: Vec::new(),
            force: false,
            cache_dir: PathBuf::from(DEFAULT_CACHE_DIR),
            progress: ProgressMode::Auto,
        }
    }
}

impl BuildOptions {
    /// The full package list: [`BASE_PACKAGES`] then the extras, without duplicates.
    pub fn packages(&self) -> Vec<String> {
        let mut all: Vec<String> = BASE_PACKAGES.iter().map(|p| p.to_string()).collect();
        for p in &self.extra_packages {
            let p = p.trim();
            if !p.is_empty() && !all.iter().any(|q| q == p) {
                all.push(p.to_string());
            }
        }
        all
    }
}

/// The four files of an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImagePaths {
    /// The qcow2 disk.
    pub image: PathBuf,
    /// `<stem>.vmlinuz`.
    pub kernel: PathBuf,
    /// `<stem>.initrd`.
    pub initrd: PathBuf,
    /// `<stem>.json`, the build manifest.
    pub manifest: PathBuf,
}

impl ImagePaths {
    /// Paths beside `image`: its file name up to the last `.` plus `.vmlinuz`, `.initrd`,
    /// `.json` (the rule `lab` uses to find the kernel and initrd of `base_image`).
    pub fn for_image(image: &Path) -> ImagePaths {
        let name = image
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let stem_name = match name.rsplit_once('.') {
            Some((stem, _)) if !stem.is_empty() => stem.to_string(),
            _ => name,
        };
        let stem = image
            .with_file_name(stem_name)
            .to_string_lossy()
            .into_owned();
        ImagePaths {
            image: image.to_path_buf(),
            kernel: PathBuf::from(format!("{stem}.vmlinuz")),
            initrd: PathBuf::from(format!("{stem}.initrd")),
            manifest: PathBuf::from(format!("{stem}.json")),
        }
    }
}

/// Whether [`build`] built something.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A new image was written.
    Built,
    /// The existing image matched the request; nothing was touched.
    UpToDate,
}

/// How long one step took.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepTiming {
    /// Step name (`debootstrap`, `mke2fs`, ...).
    pub name: String,
    /// Wall time.
    pub elapsed: Duration,
}

/// What [`build`] did.
#[derive(Debug, Clone)]
pub struct BuildReport {
    /// Built or up to date.
    pub outcome: Outcome,
    /// The image's files.
    pub paths: ImagePaths,
    /// The manifest of the image now at `paths.image`.
    pub manifest: Manifest,
    /// Step timings (empty when up to date).
    pub steps: Vec<StepTiming>,
    /// Why the image was (re)built: "no image yet", "suite changed", "--force", ...
    pub reason: Option<String>,
}

/// Builds the image described by `opts`, or reports that the existing one is up to date.
///
/// Needs root (debootstrap, file ownership in the tree) except for the up-to-date case.
/// Never leaves a half-written file at the output paths; the work directory is removed on
/// success and failure.
pub fn build(opts: &BuildOptions) -> anyhow::Result<BuildReport> {
    let paths = ImagePaths::for_image(&opts.output);
    let request = cache::Request::from_options(opts);
    if opts.size < disk::MIN_SIZE {
        bail!(
            "image size {} is too small (at least {})",
            disk::format_size(opts.size),
            disk::format_size(disk::MIN_SIZE)
        );
    }
    let reason = match cache::check(&paths, &request) {
        Ok(manifest) if !opts.force => {
            return Ok(BuildReport {
                outcome: Outcome::UpToDate,
                paths,
                manifest,
                steps: Vec::new(),
                reason: None,
            })
        }
        Ok(_) => "--force".to_string(),
        Err(why) => why,
    };

    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "building an image needs root (debootstrap installs packages into a tree owned by root); run it with sudo"
        );
    }
    let tools = Tools::find()?;
    let out_dir = match opts.output.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&out_dir)
        .with_context(|| format!("cannot create the output directory {}", out_dir.display()))?;
    let file_name = opts
        .output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .with_context(|| format!("{} is not a file path", opts.output.display()))?;
    let _lock = workdir::Lock::acquire(&out_dir.join(format!(".{file_name}.lock")))?;
    // Another build may have finished while we waited for the lock.
    if !opts.force {
        if let Ok(manifest) = cache::check(&paths, &request) {
            return Ok(BuildReport {
                outcome: Outcome::UpToDate,
                paths,
                manifest,
                steps: Vec::new(),
                reason: None,
            });
        }
    }
    workdir::remove_stale(&out_dir, &format!(".{file_name}.build-"));
    let work = workdir::WorkDir::create(
        &out_dir.join(format!(".{file_name}.build-{}", std::process::id())),
    )?;

    let mut progress = progress::Progress::new(opts.progress);
    let result = build_in(opts, &tools, &paths, &request, &work, &mut progress);
    let steps = progress.finish(result.is_ok());
    let manifest = result?;
    Ok(BuildReport {
        outcome: Outcome::Built,
        paths,
        manifest,
        steps,
        reason: Some(reason),
    })
}

fn build_in(
    opts: &BuildOptions,
    tools: &Tools,
    paths: &ImagePaths,
    request: &cache::Request,
    work: &workdir::WorkDir,
    progress: &mut progress::Progress,
) -> anyhow::Result<Manifest> {
    let rootfs = work.path().join("rootfs");
    let packages = opts.packages();

    progress.step("debootstrap");
    let cache_dir = opts.cache_dir.join(&opts.suite);
    fs::create_dir_all(&cache_dir)
        .with_context(|| format!("cannot create the package cache {}", cache_dir.display()))?;
    debootstrap::run(
        &debootstrap::Debootstrap {
            program: &tools.debootstrap,
            suite: &opts.suite,
            mirror: &opts.mirror,
            target: &rootfs,
            packages: &packages,
            cache_dir: &cache_dir,
            log: &work.path().join("debootstrap.log"),
        },
        progress,
    )?;

    progress.step("verify packages");
    let status = fs::read_to_string(rootfs.join("var/lib/dpkg/status"))
        .context("debootstrap left no /var/lib/dpkg/status")?;
    let installed = debootstrap::installed_packages(&status);
    let missing: Vec<&String> = packages
        .iter()
        .filter(|p| !installed.contains(p.split(':').next().unwrap_or(p)))
        .collect();
    if !missing.is_empty() {
        bail!(
            "debootstrap finished but these packages are not installed in the tree: {}",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    progress.detail(&format!("{} packages installed", installed.len()));

    progress.step("configure");
    rootfs::configure(
        &rootfs,
        &rootfs::Settings {
            mirror: &opts.mirror,
            suite: &opts.suite,
        },
    )?;

    progress.step("kernel + initrd");
    let boot_files = boot::extract(&rootfs, work.path())?;

    progress.step("mke2fs");
    let raw = work.path().join("disk.raw");
    disk::make_ext4(&tools.mke2fs, &rootfs, &raw, opts.size, ROOT_LABEL)?;
    // The tree is in the filesystem now; free its space before the qcow2 copy.
    work.remove_tree(&rootfs)?;

    progress.step("qemu-img convert");
    let qcow2 = work.path().join("image.qcow2");
    disk::convert_qcow2(&tools.qemu_img, &raw, &qcow2)?;
    fs::remove_file(&raw).ok();

    progress.step("checksum");
    let image_sha256 = disk::sha256_file(&qcow2)?;
    let image_bytes = fs::metadata(&qcow2)?.len();

    progress.step("install");
    let manifest = Manifest::new(
        request,
        &boot_files.kernel_version,
        image_sha256,
        image_bytes,
        paths,
    );
    install(paths, &boot_files, &qcow2, &manifest, work.path())?;
    Ok(manifest)
}

/// Renames the finished files into place: the old manifest goes first, the new one comes last,
/// so a crash in between leaves no manifest and the next run rebuilds.
fn install(
    paths: &ImagePaths,
    boot_files: &boot::BootFiles,
    qcow2: &Path,
    manifest: &Manifest,
    work: &Path,
) -> anyhow::Result<()> {
    match fs::remove_file(&paths.manifest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(e).with_context(|| format!("cannot remove {}", paths.manifest.display()))
        }
    }
    for (from, to) in [
        (&boot_files.kernel, &paths.kernel),
        (&boot_files.initrd, &paths.initrd),
        (&qcow2.to_path_buf(), &paths.image),
    ] {
        fs::rename(from, to)
            .with_context(|| format!("cannot move {} to {}", from.display(), to.display()))?;
    }
    let tmp = work.join("manifest.json");
    fs::write(&tmp, manifest.to_json()?)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, &paths.manifest)
        .with_context(|| format!("cannot write {}", paths.manifest.display()))?;
    Ok(())
}

/// External programs the build runs, resolved up front so a missing one fails before the
/// two-minute debootstrap.
#[derive(Debug, Clone)]
pub struct Tools {
    /// `debootstrap`.
    pub debootstrap: PathBuf,
    /// `mke2fs`.
    pub mke2fs: PathBuf,
    /// `qemu-img`.
    pub qemu_img: PathBuf,
}

impl Tools {
    /// Finds every tool or names the Debian packages to install.
    pub fn find() -> anyhow::Result<Tools> {
        let wanted = [
            ("debootstrap", "debootstrap"),
            ("mke2fs", "e2fsprogs"),
            ("qemu-img", "qemu-utils"),
        ];
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for (program, package) in wanted {
            match find_program(program) {
                Some(p) => found.push(p),
                None => missing.push(format!("{program} (Debian package {package})")),
            }
        }
        if !missing.is_empty() {
            bail!(
                "missing tools: {}; install them with: apt-get install {}",
                missing.join(", "),
                wanted
                    .iter()
                    .filter(|(p, _)| find_program(p).is_none())
                    .map(|(_, pkg)| *pkg)
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        let mut it = found.into_iter();
        match (it.next(), it.next(), it.next()) {
            (Some(debootstrap), Some(mke2fs), Some(qemu_img)) => Ok(Tools {
                debootstrap,
                mke2fs,
                qemu_img,
            }),
            _ => bail!("internal error: tool lookup"),
        }
    }
}

/// `program` on `$PATH`, or in the sbin directories root's PATH sometimes lacks.
pub fn find_program(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|p| {
            use std::os::unix::fs::PermissionsExt;
            fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Runs `cmd` to completion; a non-zero exit becomes an error naming `what` with the command's
/// stderr (last lines).
pub fn run_tool(cmd: &mut Command, what: &str) -> anyhow::Result<Output> {
    let started = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {what} ({:?})", cmd.get_program()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let text = if stderr.trim().is_empty() {
            stdout
        } else {
            stderr
        };
        bail!(
            "{what} failed ({}, after {:.1}s):\n{}",
            out.status,
            started.elapsed().as_secs_f64(),
            tail_lines(&text, 20)
        );
    }
    Ok(out)
}

/// The last `n` lines of `text`.
pub fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_beside_the_image() {
        let p = ImagePaths::for_image(Path::new("/var/lib/duststack/images/debian-12.qcow2"));
        assert_eq!(
            p.kernel,
            PathBuf::from("/var/lib/duststack/images/debian-12.vmlinuz")
        );
        assert_eq!(
            p.initrd,
            PathBuf::from("/var/lib/duststack/images/debian-12.initrd")
        );
        assert_eq!(
            p.manifest,
            PathBuf::from("/var/lib/duststack/images/debian-12.json")
        );
        let p = ImagePaths::for_image(Path::new("/img/base"));
        assert_eq!(p.kernel, PathBuf::from("/img/base.vmlinuz"));
        let p = ImagePaths::for_image(Path::new("/img.d/base"));
        assert_eq!(p.kernel, PathBuf::from("/img.d/base.vmlinuz"));
    }

    #[test]
    fn package_list_dedups_extras() {
        let opts = BuildOptions {
            extra_packages: vec!["vim".into(), "sudo".into(), " ".into(), "vim".into()],
            ..BuildOptions::default()
        };
        let all = opts.packages();
        assert_eq!(all.len(), BASE_PACKAGES.len() + 1);
        assert_eq!(all.last().map(String::as_str), Some("vim"));
        assert!(all.iter().any(|p| p == "etcd-server"));
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a", 5), "a");
    }
}
