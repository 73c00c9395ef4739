//! The Hyper-V seed ISO checked with the tools Linux itself uses on it: `isoinfo` (genisoimage)
//! for the volume id, the Rock Ridge and Joliet names and a file's content; `blkid -p` (what
//! cloud-init's NoCloud source uses to find the `cidata` label); and, where loop devices work,
//! the kernel's own iso9660 driver (loop mount in a private mount namespace).

use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use duststack::lab::seed_iso;

/// The files of a real seed (paths as `lab::seed` writes them), with distinct contents.
fn seed_files() -> Vec<(String, Vec<u8>)> {
    [
        ("meta-data", "instance-id: classroom-k8s-node-1\n"),
        ("user-data", "#cloud-config\n"),
        ("network-config", "version: 2\n"),
        ("duststack/hostname", "k8s-node-1\n"),
        (
            "duststack/authorized_keys",
            "ssh-ed25519 AAAAC3Nz user@lab\n",
        ),
        (
            "duststack/ssh_host_ed25519_key",
            "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----\n",
        ),
        (
            "duststack/ssh_host_ed25519_key.pub",
            "ssh-ed25519 AAAAC3Nzhost root@k8s-node-1\n",
        ),
        (
            "duststack/network/10-nic1.network",
            "[Match]\nMACAddress=52:54:00:12:34:56\n",
        ),
    ]
    .iter()
    .map(|(p, c)| (p.to_string(), c.as_bytes().to_vec()))
    .collect()
}

/// Runs a tool and returns its stdout; panics with stderr when it fails.
fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| {
        panic!("{cmd} not runnable ({e}); scripts/install-deps.sh installs it")
    });
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Full paths of the regular files in an `isoinfo -l` listing (`Directory listing of /x/` headers
/// followed by `ls -l`-like lines whose last field is the name, `;1` versions removed).
fn listed_files(listing: &str) -> Vec<String> {
    let mut dir = String::new();
    let mut files = Vec::new();
    for line in listing.lines() {
        if let Some(d) = line.strip_prefix("Directory listing of ") {
            dir = d.trim().to_string();
            continue;
        }
        let line = line.trim();
        if !line.starts_with('-') {
            continue; // directories (d...), blank lines
        }
        let name = line.rsplit(' ').next().unwrap();
        let name = name.split(';').next().unwrap();
        files.push(format!("{dir}{name}"));
    }
    files.sort();
    files
}

fn expected_paths() -> Vec<String> {
    let mut v: Vec<String> = seed_files().iter().map(|(p, _)| format!("/{p}")).collect();
    v.sort();
    v
}

fn write_seed(dir: &Path) -> std::path::PathBuf {
    let image = seed_iso::build(&seed_files()).unwrap();
    let path = dir.join("seed.iso");
    std::fs::write(&path, image).unwrap();
    path
}

#[test]
fn lab_seed_iso_isoinfo_sees_cidata_rock_ridge_joliet_and_exact_names() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = write_seed(tmp.path());
    let iso = iso.to_str().unwrap();

    let d = run("isoinfo", &["-d", "-i", iso]);
    assert!(d.contains("Volume id: CIDATA\n"), "{d}");
    assert!(d.contains("Rock Ridge signatures version 1 found"), "{d}");
    assert!(d.contains("Joliet with UCS level 3 found"), "{d}");

    let rr = run("isoinfo", &["-R", "-l", "-i", iso]);
    assert_eq!(
        listed_files(&rr),
        expected_paths(),
        "Rock Ridge listing:\n{rr}"
    );
    let joliet = run("isoinfo", &["-J", "-l", "-i", iso]);
    assert_eq!(
        listed_files(&joliet),
        expected_paths(),
        "Joliet listing:\n{joliet}"
    );
    // The primary tree alone has only restricted names: the extensions are what make it work.
    let plain = run("isoinfo", &["-l", "-i", iso]);
    assert_ne!(listed_files(&plain), expected_paths(), "{plain}");

    for (path, content) in seed_files() {
        let rr = run("isoinfo", &["-R", "-x", &format!("/{path}"), "-i", iso]);
        assert_eq!(rr.as_bytes(), &content[..], "isoinfo -R -x /{path}");
        let j = run("isoinfo", &["-J", "-x", &format!("/{path}"), "-i", iso]);
        assert_eq!(j.as_bytes(), &content[..], "isoinfo -J -x /{path}");
    }
}

#[test]
fn lab_seed_iso_blkid_reports_iso9660_labelled_cidata() {
    let tmp = tempfile::tempdir().unwrap();
    let iso = write_seed(tmp.path());
    let iso = iso.to_str().unwrap();
    assert_eq!(
        run("blkid", &["-p", "-o", "value", "-s", "LABEL", iso]).trim(),
        "CIDATA"
    );
    assert_eq!(
        run("blkid", &["-p", "-o", "value", "-s", "TYPE", iso]).trim(),
        "iso9660"
    );
}

#[test]
fn lab_seed_iso_kernel_mount_shows_exact_names() {
    // Skip only when the kernel cannot do it at all; any failure past these checks is real.
    let filesystems = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let release = run("uname", &["-r"]);
    let module = Path::new("/lib/modules")
        .join(release.trim())
        .join("kernel/fs/isofs");
    if !filesystems
        .lines()
        .any(|l| l.trim_end().ends_with("iso9660"))
        && !module.exists()
    {
        println!(
            "SKIP kernel mount check: this kernel has no iso9660 driver (not in /proc/filesystems, no {})",
            module.display()
        );
        return;
    }
    if !Path::new("/dev/loop-control").exists() {
        println!("SKIP kernel mount check: no loop devices (/dev/loop-control missing)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let iso = write_seed(tmp.path());
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // In a private mount namespace: mount, list every file with its content, and the mount
    // disappears with the namespace (the loop device is released on unmount).
    let script = r#"set -e
mount -o loop,ro -t iso9660 "$1" "$2"
cd "$2"
find . -type f | sort | while read -r f; do printf '%s\t' "$f"; base64 -w0 "$f"; echo; done
cd /
umount "$2"
"#;
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script, "sh"])
        .arg(&iso)
        .arg(&mnt)
        .output()
        .expect("unshare");
    assert!(
        out.status.success(),
        "loop-mounting the seed ISO failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut seen: Vec<(String, Vec<u8>)> = stdout
        .lines()
        .map(|l| {
            let (p, b64) = l.split_once('\t').unwrap();
            let content = STANDARD.decode(b64).unwrap();
            (p.trim_start_matches('.').to_string(), content)
        })
        .collect();
    seen.sort();
    let mut want: Vec<(String, Vec<u8>)> = seed_files()
        .into_iter()
        .map(|(p, c)| (format!("/{p}"), c))
        .collect();
    want.sort();
    assert_eq!(
        seen, want,
        "files as the kernel's iso9660 driver shows them"
    );
}
