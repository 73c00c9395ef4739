//! Post-configuration of the debootstrapped tree, by writing files (no chroot): identity left
//! blank for the seed, fstab, networkd with a DHCP fallback, sshd, apt sources, quiet services,
//! the seed applier, and a cleaned apt cache.

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

use super::units;

/// The seed applier script (installed as `/usr/local/sbin/duststack-seed`).
pub const SEED_SCRIPT: &str = include_str!("files/duststack-seed.sh");
/// Its oneshot unit (installed as `/etc/systemd/system/duststack-seed.service`).
pub const SEED_UNIT: &str = include_str!("files/duststack-seed.service");
/// The DHCP fallback for every Ethernet NIC (`/etc/systemd/network/99-duststack-dhcp.network`).
pub const DHCP_NETWORK: &str = include_str!("files/99-duststack-dhcp.network");
/// sshd drop-in (`/etc/ssh/sshd_config.d/duststack.conf`).
pub const SSHD_CONFIG: &str = include_str!("files/sshd-duststack.conf");

/// Name of the seed unit.
pub const SEED_UNIT_NAME: &str = "duststack-seed.service";

/// Units enabled in every image (when installed).
const ENABLE: &[&str] = &[
    SEED_UNIT_NAME,
    "systemd-networkd.service",
    "systemd-resolved.service",
    "ssh.service",
];

/// Units left installed but disabled: the cluster roles configure and enable them later, and
/// timers that would make an idle lab VM busy.
pub const DISABLE: &[&str] = &[
    "containerd.service",
    "etcd.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
];

/// What the configuration depends on.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    /// Mirror for apt sources.
    pub mirror: &'a str,
    /// Suite for apt sources.
    pub suite: &'a str,
}

/// Writes `text` to `root/rel` with `mode`, creating parent directories.
fn write(root: &Path, rel: &str, text: &str, mode: u32) -> anyhow::Result<()> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    // Replace rather than write through: the tree may hold a symlink here (resolv.conf).
    remove(root, rel)?;
    fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot chmod {}", path.display()))
}

/// Removes `root/rel` (a file or symlink) if present.
fn remove(root: &Path, rel: &str) -> anyhow::Result<()> {
    let path = root.join(rel);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
}

/// Removes the files directly inside `root/rel` whose names satisfy `pick`.
fn remove_matching(root: &Path, rel: &str, pick: impl Fn(&str) -> bool) -> anyhow::Result<usize> {
    let dir = root.join(rel);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut n = 0;
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_file() && pick(&name) {
            fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
            n += 1;
        }
    }
    Ok(n)
}

/// `/etc/apt/sources.list` for `mirror`/`suite`: main, updates and (for mirrors laid out like
/// deb.debian.org, `.../debian`) the security archive beside it.
pub fn apt_sources(mirror: &str, suite: &str) -> String {
    let mirror = mirror.trim_end_matches('/');
    let mut s = format!("deb {mirror} {suite} main\ndeb {mirror} {suite}-updates main\n");
    if let Some(base) = mirror.strip_suffix("/debian") {
        s.push_str(&format!(
            "deb {base}/debian-security {suite}-security main\n"
        ));
    }
    s
}

/// Configures the tree at `root` (see the module doc).
pub fn configure(root: &Path, settings: &Settings<'_>) -> anyhow::Result<()> {
    // Identity: blank, so every clone gets its own (systemd.machine_id= or first-boot generation).
    write(root, "etc/machine-id", "", 0o444)?;
    remove(root, "var/lib/dbus/machine-id")?;
    remove(root, "var/lib/systemd/random-seed")?;
    remove(root, "var/lib/systemd/credential.secret")?;
    remove_matching(root, "etc/ssh", |n| n.starts_with("ssh_host_"))?;
    write(root, "etc/hostname", "localhost\n", 0o644)?;
    write(
        root,
        "etc/hosts",
        "127.0.0.1\tlocalhost\n127.0.1.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n\
         ff02::1\t\tip6-allnodes\nff02::2\t\tip6-allrouters\n",
        0o644,
    )?;
    write(
        root,
        "etc/fstab",
        "# duststack base image: the root filesystem is the first virtio disk.\n/dev/vda / ext4 defaults 0 1\n",
        0o644,
    )?;

    // Network: systemd-networkd, a DHCP fallback, resolved for DNS from DHCP.
    write(
        root,
        "etc/systemd/network/99-duststack-dhcp.network",
        DHCP_NETWORK,
        0o644,
    )?;
    if root
        .join("lib/systemd/system/systemd-resolved.service")
        .is_file()
    {
        remove(root, "etc/resolv.conf")?;
        std::os::unix::fs::symlink(
            "../run/systemd/resolve/stub-resolv.conf",
            root.join("etc/resolv.conf"),
        )
        .context("cannot link /etc/resolv.conf")?;
    } else {
        // debootstrap copied the build host's resolv.conf; it means nothing in a VM.
        write(
            root,
            "etc/resolv.conf",
            "# filled by the seed or the cluster roles\n",
            0o644,
        )?;
    }

    // SSH: root by key only.
    write(
        root,
        "etc/ssh/sshd_config.d/duststack.conf",
        SSHD_CONFIG,
        0o644,
    )?;

    write(
        root,
        "etc/apt/sources.list",
        &apt_sources(settings.mirror, settings.suite),
        0o644,
    )?;

    // The seed applier.
    write(root, "usr/local/sbin/duststack-seed", SEED_SCRIPT, 0o755)?;
    write(
        root,
        &format!("etc/systemd/system/{SEED_UNIT_NAME}"),
        SEED_UNIT,
        0o644,
    )?;

    for unit in ENABLE {
        let installed =
            unit == &SEED_UNIT_NAME || root.join("lib/systemd/system").join(unit).is_file();
        if installed {
            units::enable(root, unit)?;
        }
    }
    for unit in DISABLE {
        units::disable(root, unit)?;
    }

    // Small image: no downloaded packages or package lists (roles run apt-get update).
    remove_matching(root, "var/cache/apt/archives", |n| n.ends_with(".deb"))?;
    remove_matching(root, "var/cache/apt/archives/partial", |_| true)?;
    remove_matching(root, "var/cache/apt", |n| n.ends_with(".bin"))?;
    remove_matching(root, "var/lib/apt/lists", |n| n != "lock")?;
    remove_matching(root, "var/lib/apt/lists/partial", |_| true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_for_deb_debian_org_and_others() {
        assert_eq!(
            apt_sources("http://deb.debian.org/debian/", "bookworm"),
            "deb http://deb.debian.org/debian bookworm main\n\
             deb http://deb.debian.org/debian bookworm-updates main\n\
             deb http://deb.debian.org/debian-security bookworm-security main\n"
        );
        assert_eq!(
            apt_sources("http://10.0.0.1:3142/mirror", "bookworm"),
            "deb http://10.0.0.1:3142/mirror bookworm main\n\
             deb http://10.0.0.1:3142/mirror bookworm-updates main\n"
        );
    }

    #[test]
    fn configure_a_fake_tree() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let lib = r.join("usr/lib/systemd/system");
        fs::create_dir_all(&lib).unwrap();
        std::os::unix::fs::symlink("usr/lib", r.join("lib")).unwrap();
        fs::write(
            lib.join("systemd-networkd.service"),
            "[Install]\nWantedBy=multi-user.target\n",
        )
        .unwrap();
        fs::write(
            lib.join("ssh.service"),
            "[Install]\nWantedBy=multi-user.target\n",
        )
        .unwrap();
        fs::write(
            lib.join("containerd.service"),
            "[Install]\nWantedBy=multi-user.target\n",
        )
        .unwrap();
        let wants = r.join("etc/systemd/system/multi-user.target.wants");
        fs::create_dir_all(&wants).unwrap();
        std::os::unix::fs::symlink(
            "/lib/systemd/system/containerd.service",
            wants.join("containerd.service"),
        )
        .unwrap();
        fs::create_dir_all(r.join("etc/ssh")).unwrap();
        fs::write(r.join("etc/ssh/ssh_host_ed25519_key"), "k").unwrap();
        fs::write(r.join("etc/ssh/sshd_config"), "x").unwrap();
        fs::create_dir_all(r.join("var/lib/dbus")).unwrap();
        fs::write(r.join("var/lib/dbus/machine-id"), "abc\n").unwrap();
        fs::write(r.join("etc/machine-id"), "abc\n").unwrap();
        fs::create_dir_all(r.join("var/cache/apt/archives/partial")).unwrap();
        fs::write(r.join("var/cache/apt/archives/a_1_amd64.deb"), "x").unwrap();
        fs::write(r.join("etc/resolv.conf"), "nameserver 1.1.1.1\n").unwrap();

        configure(
            r,
            &Settings {
                mirror: "http://deb.debian.org/debian",
                suite: "bookworm",
            },
        )
        .unwrap();

        assert_eq!(fs::read_to_string(r.join("etc/machine-id")).unwrap(), "");
        assert!(!r.join("var/lib/dbus/machine-id").exists());
        assert!(!r.join("etc/ssh/ssh_host_ed25519_key").exists());
        assert!(r.join("etc/ssh/sshd_config").exists());
        assert!(fs::read_to_string(r.join("etc/fstab"))
            .unwrap()
            .contains("/dev/vda / ext4 defaults 0 1"));
        assert!(!r.join("var/cache/apt/archives/a_1_amd64.deb").exists());
        assert!(fs::symlink_metadata(wants.join("containerd.service")).is_err());
        assert!(fs::symlink_metadata(wants.join("systemd-networkd.service")).is_ok());
        assert!(fs::symlink_metadata(wants.join("ssh.service")).is_ok());
        assert_eq!(
            fs::read_link(r.join("etc/systemd/system/sysinit.target.wants/duststack-seed.service"))
                .unwrap(),
            Path::new("/etc/systemd/system/duststack-seed.service")
        );
        let script = r.join("usr/local/sbin/duststack-seed");
        assert_eq!(
            fs::metadata(&script).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert!(
            fs::read_to_string(r.join("etc/systemd/network/99-duststack-dhcp.network"))
                .unwrap()
                .contains("Name=en* eth*")
        );
        // No resolved in this tree: the build host's resolv.conf is replaced.
        assert!(!fs::read_to_string(r.join("etc/resolv.conf"))
            .unwrap()
            .contains("1.1.1.1"));
    }
}
