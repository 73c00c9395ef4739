//! `duststack image build` for real: debootstrap from the Debian mirror (once per machine: the
//! image is cached in DUSTSTACK_TEST_IMAGE_DIR, default /var/tmp/duststack-test-images), the
//! filesystem inspected with debugfs (no mounting), and a TCG boot under plain qemu with a
//! vfat CIDATA seed, checked over SSH with the seeded host key.
//!
//! Needs root, debootstrap, e2fsprogs, qemu-utils, qemu-system-x86, mtools, dosfstools
//! (scripts/install-deps.sh installs them).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_duststack");

fn image_dir() -> PathBuf {
    std::env::var_os("DUSTSTACK_TEST_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/duststack-test-images"))
}

fn image_path() -> PathBuf {
    image_dir().join("debian-12.qcow2")
}

fn sh(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn have(program: &str) -> bool {
    ["/usr/bin", "/usr/sbin", "/bin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(program).exists())
}

fn build_cmd() -> Command {
    let mut c = Command::new(BIN);
    c.args(["image", "build", "--plain", "--output"])
        .arg(image_path());
    c
}

/// Builds the image once per test binary (a no-op when a matching image is cached).
fn built_image() -> &'static PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        std::fs::create_dir_all(image_dir()).unwrap();
        let t = Instant::now();
        let out = build_cmd().stderr(Stdio::inherit()).output().unwrap();
        let text = stdout(&out);
        assert!(
            out.status.success(),
            "image build failed: {}\n{text}",
            out.status
        );
        println!(
            "image build: {:.1}s ({})",
            t.elapsed().as_secs_f64(),
            if text.contains("is up to date") {
                "cached"
            } else {
                "built"
            }
        );
        print!("{text}");
        image_path()
    })
}

#[test]
fn second_build_is_up_to_date_and_manifest_is_exact() {
    let image = built_image();
    let t = Instant::now();
    let out = sh(&mut build_cmd());
    let elapsed = t.elapsed();
    let text = stdout(&out);
    assert!(
        text.contains(&format!("image {} is up to date", image.display())),
        "{text}"
    );
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    println!("up-to-date check: {:.2}s", elapsed.as_secs_f64());

    let dir = image_dir();
    for f in ["debian-12.vmlinuz", "debian-12.initrd", "debian-12.json"] {
        assert!(dir.join(f).is_file(), "{f} missing");
    }
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("debian-12.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["suite"], "bookworm");
    assert_eq!(manifest["mirror"], "http://deb.debian.org/debian");
    assert_eq!(manifest["size"], "4G");
    let packages: Vec<&str> = manifest["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for p in [
        "containerd",
        "etcd-server",
        "openssh-server",
        "linux-image-amd64",
    ] {
        assert!(packages.contains(&p), "{p} not in the manifest");
    }
    // The recorded checksum is the file's.
    let sha = stdout(&sh(Command::new("sha256sum").arg(image)));
    assert_eq!(
        manifest["image_sha256"].as_str().unwrap(),
        sha.split_whitespace().next().unwrap()
    );
    assert_eq!(manifest["size_bytes"], 4u64 << 30);
    // Nothing left behind in the output directory.
    let leftovers: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".build-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// debugfs on a raw copy of the image (read-only, no mount).
struct RawImage {
    _dir: tempfile::TempDir,
    raw: PathBuf,
}

impl RawImage {
    fn new(image: &Path) -> RawImage {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let raw = dir.path().join("disk.raw");
        sh(Command::new("qemu-img")
            .args(["convert", "-O", "raw"])
            .arg(image)
            .arg(&raw));
        RawImage { _dir: dir, raw }
    }

    fn debugfs(&self, request: &str) -> String {
        let out = sh(Command::new("debugfs").args(["-R", request]).arg(&self.raw));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("File not found"), "debugfs {request}: {err}");
        stdout(&out)
    }
}

#[test]
fn filesystem_contents_without_mounting() {
    let image = built_image();
    let fs = RawImage::new(image);

    let dump = sh(Command::new("dumpe2fs").arg("-h").arg(&fs.raw));
    assert!(
        stdout(&dump).contains("Filesystem volume name:   duststack-root"),
        "{}",
        stdout(&dump)
    );

    assert_eq!(fs.debugfs("cat /etc/machine-id"), "");
    let ssh = fs.debugfs("ls -l /etc/ssh");
    assert!(ssh.contains("sshd_config"), "{ssh}");
    assert!(!ssh.contains("ssh_host_"), "host keys baked in: {ssh}");
    let dbus = fs.debugfs("ls /var/lib/dbus");
    assert!(!dbus.contains("machine-id"), "{dbus}");

    let sysinit = fs.debugfs("ls -l /etc/systemd/system/sysinit.target.wants");
    assert!(sysinit.contains("duststack-seed.service"), "{sysinit}");
    let unit = fs.debugfs("cat /etc/systemd/system/duststack-seed.service");
    assert!(unit.contains("Before=") && unit.contains("systemd-networkd.service"));
    let script = fs.debugfs("cat /usr/local/sbin/duststack-seed");
    assert!(script.starts_with("#!/bin/sh"), "{script}");
    assert!(fs
        .debugfs("stat /usr/local/sbin/duststack-seed")
        .contains("Mode:  0755"));

    let multi = fs.debugfs("ls -l /etc/systemd/system/multi-user.target.wants");
    assert!(multi.contains("ssh.service"), "{multi}");
    assert!(multi.contains("systemd-networkd.service"), "{multi}");
    assert!(!multi.contains("containerd.service"), "{multi}");
    assert!(!multi.contains("etcd.service"), "{multi}");

    assert!(fs
        .debugfs("cat /etc/fstab")
        .contains("/dev/vda / ext4 defaults 0 1"));
    assert_eq!(fs.debugfs("cat /etc/hostname"), "localhost\n");
    let net = fs.debugfs("cat /etc/systemd/network/99-duststack-dhcp.network");
    assert!(
        net.contains("Name=en* eth*") && net.contains("DHCP=ipv4"),
        "{net}"
    );
    let sshd = fs.debugfs("cat /etc/ssh/sshd_config.d/duststack.conf");
    assert!(sshd.contains("PermitRootLogin prohibit-password"));
    assert!(sshd.contains("UseDNS no"));
    assert!(fs
        .debugfs("cat /etc/apt/sources.list")
        .contains("deb http://deb.debian.org/debian bookworm main"));
    let archives = fs.debugfs("ls /var/cache/apt/archives");
    assert!(!archives.contains(".deb"), "{archives}");

    let status = fs.debugfs("cat /var/lib/dpkg/status");
    let installed: Vec<&str> = status
        .split("\n\n")
        .filter(|s| s.contains("Status: install ok installed"))
        .filter_map(|s| s.lines().find_map(|l| l.strip_prefix("Package: ")))
        .collect();
    for p in [
        "containerd",
        "runc",
        "containernetworking-plugins",
        "etcd-server",
        "nftables",
        "busybox-static",
        "conntrack",
        "socat",
        "iptables",
        "openssh-server",
        "systemd-sysv",
        "linux-image-amd64",
        "sudo",
        "dbus",
    ] {
        assert!(installed.contains(&p), "{p} is not installed in the image");
    }
    println!("{} packages installed", installed.len());
}

/// qemu, killed by pid when dropped (also when an assertion fails).
struct Vm {
    child: Child,
    console: PathBuf,
    port: u16,
    dir: PathBuf,
    started: Instant,
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Vm {
    fn console_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.console).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

fn host_pub(w: &Path) -> String {
    let line = std::fs::read_to_string(w.join("ssh_host_ed25519_key.pub")).unwrap();
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

impl Vm {
    /// Boots the image (an 8G overlay in `w`) under TCG with an optional seed disk
    /// `(path, format)`; SSH is forwarded from a free loopback port.
    fn start(
        image: &Path,
        w: &Path,
        seed: Option<(&Path, &str)>,
        mac: &str,
        machine_id: &str,
    ) -> Vm {
        assert!(have("qemu-system-x86_64"), "qemu-system-x86 is needed");
        let dir = image_dir();
        let overlay = w.join("overlay.qcow2");
        sh(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
            .arg(image)
            .arg(&overlay)
            .arg("8G"));
        let port = free_port();
        let console = w.join("console.log");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-accel", "tcg,thread=multi", "-m", "1024", "-smp", "2"])
            .args(["-nographic", "-monitor", "none"])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-kernel")
            .arg(dir.join("debian-12.vmlinuz"))
            .arg("-initrd")
            .arg(dir.join("debian-12.initrd"))
            .arg("-append")
            .arg(format!(
                "root=/dev/vda rw console=ttyS0 ds=nocloud systemd.machine_id={machine_id}"
            ))
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=qcow2", overlay.display()));
        if let Some((seed, format)) = seed {
            cmd.arg("-drive").arg(format!(
                "file={},if=virtio,format={format},readonly=on",
                seed.display()
            ));
        }
        let child = cmd
            .arg("-nic")
            .arg(format!(
                "user,model=virtio-net-pci,mac={mac},hostfwd=tcp:127.0.0.1:{port}-:22"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-system-x86_64");
        Vm {
            child,
            console,
            port,
            dir: w.to_path_buf(),
            started: Instant::now(),
        }
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// Runs `cmd` as root over SSH; `strict`: only the host key in known_hosts is accepted.
    fn ssh(&self, cmd: &str, strict: bool) -> Output {
        let mut c = Command::new("ssh");
        c.args(["-q", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"])
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ))
            .args(["-o", "GlobalKnownHostsFile=/dev/null"]);
        if strict {
            c.args(["-o", "StrictHostKeyChecking=yes"]);
        } else {
            c.args(["-o", "StrictHostKeyChecking=no"]);
        }
        c.arg("-i")
            .arg(self.dir.join("id"))
            .args(["-p", &self.port.to_string(), "root@127.0.0.1", cmd])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Waits (≤ 180 s from the start) until SSH answers; prints the time it took.
    fn wait_for_ssh(&mut self, strict: bool) {
        let deadline = self.started + Duration::from_secs(180);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("qemu exited early ({status}):\n{}", self.console_tail());
            }
            if self.ssh("true", strict).status.success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no SSH within 180 s; console:\n{}",
                self.console_tail()
            );
            std::thread::sleep(Duration::from_secs(2));
        }
        println!(
            "boot to SSH under TCG: {:.1}s",
            self.started.elapsed().as_secs_f64()
        );
    }

    /// Runs `cmd` and returns its stdout; fails the test when it fails.
    fn run(&self, cmd: &str, strict: bool) -> String {
        let out = self.ssh(cmd, strict);
        assert!(
            out.status.success(),
            "{cmd} failed in the VM: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ensure_mtools() {
    if !(have("mcopy") && have("mkfs.vfat")) {
        let _ = Command::new("apt-get")
            .args(["install", "-y", "-qq", "mtools", "dosfstools"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status();
    }
    assert!(
        have("mcopy") && have("mkfs.vfat"),
        "mtools and dosfstools are needed (scripts/install-deps.sh)"
    );
}

#[test]
fn boots_under_tcg_and_applies_the_seed() {
    let image = built_image();
    ensure_mtools();
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let w = t.path();

    // Keys: the client's, and the VM's host key (seeded, so known_hosts is exact).
    for (name, comment) in [
        ("id", "test-client"),
        ("ssh_host_ed25519_key", "root@seeded"),
    ] {
        sh(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
            .arg(w.join(name)));
    }
    let hostname = "seeded-node-1";
    let machine_id = "0123456789abcdef0123456789abcdef";
    let mac = "52:54:00:12:34:56";
    std::fs::write(w.join("hostname"), format!("{hostname}\n")).unwrap();
    std::fs::write(
        w.join("10-nic1.network"),
        format!("[Match]\nMACAddress={mac}\n\n[Network]\nDHCP=ipv4\n"),
    )
    .unwrap();
    std::fs::write(w.join("meta-data"), "instance-id: test\n").unwrap();

    let seed = w.join("seed.img");
    sh(Command::new("mkfs.vfat")
        .args(["-n", "CIDATA", "-C"])
        .arg(&seed)
        .arg("2048"));
    let mtool = |args: &[&str]| {
        sh(Command::new(args[0])
            .args(["-i"])
            .arg(&seed)
            .args(&args[1..]));
    };
    mtool(&["mmd", "::duststack", "::duststack/network"]);
    mtool(&[
        "mcopy",
        &w.join("meta-data").to_string_lossy(),
        "::meta-data",
    ]);
    mtool(&[
        "mcopy",
        &w.join("hostname").to_string_lossy(),
        "::duststack/hostname",
    ]);
    mtool(&[
        "mcopy",
        &w.join("id.pub").to_string_lossy(),
        "::duststack/authorized_keys",
    ]);
    for f in ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"] {
        mtool(&[
            "mcopy",
            &w.join(f).to_string_lossy(),
            &format!("::duststack/{f}"),
        ]);
    }
    mtool(&[
        "mcopy",
        &w.join("10-nic1.network").to_string_lossy(),
        "::duststack/network/10-nic1.network",
    ]);

    let mut vm = Vm::start(image, w, Some((&seed, "raw")), mac, machine_id);
    std::fs::write(
        vm.known_hosts(),
        format!("[127.0.0.1]:{} {}\n", vm.port, host_pub(w)),
    )
    .unwrap();
    vm.wait_for_ssh(true);
    let ssh = |cmd: &str| vm.ssh(cmd, true);
    let run = |cmd: &str| vm.run(cmd, true);
    assert_eq!(run("hostname").trim(), hostname);
    assert_eq!(run("cat /etc/hostname").trim(), hostname);
    assert!(run("cat /etc/hosts").contains(&format!("127.0.1.1\t{hostname}")));
    assert_eq!(run("cat /etc/machine-id").trim(), machine_id);
    assert_eq!(
        run("stat -c %a /root/.ssh /root/.ssh/authorized_keys")
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["700", "600"]
    );
    // Only the seeded host key, with the right modes.
    assert_eq!(
        run("ls /etc/ssh | grep ssh_host_ | sort | tr '\\n' ' '").trim(),
        "ssh_host_ed25519_key ssh_host_ed25519_key.pub"
    );
    assert_eq!(
        run("stat -c %a /etc/ssh/ssh_host_ed25519_key").trim(),
        "600"
    );
    // Seeded network file installed; the image's fallback kept.
    assert!(run("cat /etc/systemd/network/10-nic1.network").contains(mac));
    assert!(run("ls /etc/systemd/network").contains("99-duststack-dhcp.network"));
    let networkctl = run("networkctl list --no-legend");
    println!("networkctl: {networkctl}");
    assert!(networkctl.contains("routable"), "{networkctl}");

    // The root filesystem grew to the 8G overlay (the base is 4G).
    let size: u64 = run("df -B1 --output=size / | tail -n 1")
        .trim()
        .parse()
        .unwrap();
    assert!(size > 6 << 30, "root fs is {size} bytes, not grown");
    assert!(run("findmnt -n -o SOURCE /").trim() == "/dev/vda");

    run("modprobe br_netfilter");
    assert!(run("lsmod").contains("br_netfilter"));
    assert!(run("containerd --version").contains("containerd"));
    assert!(run("etcd --version").contains("etcd Version"));
    assert_eq!(
        run("systemctl is-active duststack-seed.service").trim(),
        "active"
    );
    // Installed but left for the cluster roles to enable.
    for unit in ["containerd.service", "etcd.service"] {
        let out = ssh(&format!("systemctl is-enabled {unit}"));
        assert_eq!(stdout(&out).trim(), "disabled", "{unit}");
        let out = ssh(&format!("systemctl is-active {unit}"));
        assert_eq!(stdout(&out).trim(), "inactive", "{unit}");
    }
    let state = stdout(&ssh(
        "systemctl is-system-running; systemctl --failed --no-legend",
    ));
    println!("system state: {state}");
    // The seed unit's ordering fits into systemd's boot without cycles being broken.
    let cycles = stdout(&ssh(
        "journalctl -b --no-pager -o cat | grep -i 'ordering cycle' || true",
    ));
    assert_eq!(cycles.trim(), "", "systemd reported ordering cycles");
    let seed_log = stdout(&ssh("journalctl -b -u duststack-seed --no-pager -o cat"));
    println!("seed log:\n{seed_log}");
    assert!(seed_log.contains("hostname seeded-node-1"), "{seed_log}");
    drop(vm);
}

/// The lead's NoCloud seed may be an ISO 9660 volume labelled `cidata` (lower case); a seed
/// without host keys makes the image generate its own (`ssh-keygen -A`) so sshd still starts.
#[test]
fn iso9660_seed_without_host_keys() {
    let image = built_image();
    assert!(
        have("genisoimage"),
        "genisoimage is needed (scripts/install-deps.sh)"
    );
    let t = tempfile::tempdir_in("/var/tmp").unwrap();
    let w = t.path();
    sh(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test-client", "-f"])
        .arg(w.join("id")));
    let tree = w.join("seed");
    std::fs::create_dir_all(tree.join("duststack")).unwrap();
    std::fs::write(tree.join("meta-data"), "instance-id: iso\n").unwrap();
    std::fs::write(tree.join("duststack/hostname"), "iso-node.lab.example\n").unwrap();
    std::fs::copy(w.join("id.pub"), tree.join("duststack/authorized_keys")).unwrap();
    let iso = w.join("seed.iso");
    sh(Command::new("genisoimage")
        .args(["-quiet", "-V", "cidata", "-r", "-J", "-o"])
        .arg(&iso)
        .arg(&tree));

    let machine_id = "fedcba9876543210fedcba9876543210";
    let mut vm = Vm::start(
        image,
        w,
        Some((&iso, "raw")),
        "52:54:00:65:43:21",
        machine_id,
    );
    // The host key is generated in the VM: trust on first use here.
    vm.wait_for_ssh(false);
    let run = |cmd: &str| vm.run(cmd, false);
    assert_eq!(run("hostname").trim(), "iso-node.lab.example");
    assert!(run("cat /etc/hosts").contains("127.0.1.1\tiso-node.lab.example iso-node"));
    assert_eq!(run("cat /etc/machine-id").trim(), machine_id);
    let keys = run("ls /etc/ssh | grep '^ssh_host_.*_key$' | sort | tr '\\n' ' '");
    assert_eq!(
        keys.trim(),
        "ssh_host_ecdsa_key ssh_host_ed25519_key ssh_host_rsa_key",
        "ssh-keygen -A did not run"
    );
    let seed_log = run("journalctl -b -u duststack-seed --no-pager -o cat");
    assert!(seed_log.contains("generating them"), "{seed_log}");
    assert!(seed_log.contains("applying the seed"), "{seed_log}");
    drop(vm);
}
