//! `duststack lab` end to end on real VMs: libvirtd and virtlogd run inside a network namespace
//! this test creates (nothing touches the machine's own network), the base image comes from
//! `duststack image build`, and three TCG VMs (1 vCPU, 1 GiB) are brought up, checked over SSH
//! with the host keys duststack generated, snapshotted and restored, and removed again.
//!
//! Needs root, qemu-system-x86, libvirt-daemon-system, dnsmasq-base, debootstrap (see
//! scripts/install-deps.sh); it fails loudly when one is missing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use duststack::testbed::hypervisor::Hypervisor;

const DUSTSTACK: &str = env!("CARGO_BIN_EXE_duststack");
const LAB: &str = "dstlab";
const NODES: [&str; 3] = ["k8s-master-1", "k8s-node-1", "k8s-node-2"];

/// The base image, built once per machine and reused by later runs (and by tests/image_build.rs).
fn image_dir() -> PathBuf {
    std::env::var_os("DUSTSTACK_TEST_IMAGE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/duststack-test-images"))
}

fn text(out: &Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Lab {
    hv: Hypervisor,
    dir: PathBuf,
}

impl Drop for Lab {
    /// A failed test still removes its domains, volumes and networks (their definitions outlive
    /// the hypervisor namespace) before the namespace goes.
    fn drop(&mut self) {
        if self.dir.join("inventory").exists() {
            let _ = self.lab("down", &[]);
        }
    }
}

impl Lab {
    fn duststack(&self, args: &[&str]) -> Output {
        let mut c = self.hv.command(DUSTSTACK);
        c.args(args).env("NO_COLOR", "1");
        c.output().unwrap()
    }

    fn lab(&self, action: &str, extra: &[&str]) -> Output {
        let inv = self.dir.join("inventory");
        let mut args = vec!["lab", action, "-i", inv.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.duststack(&args)
    }

    fn virsh(&self, args: &[&str]) -> String {
        let mut c = self.hv.command("virsh");
        c.args(["-c", "qemu:///system"]).args(args);
        ok(c.output().unwrap())
    }

    fn known_hosts(&self) -> PathBuf {
        self.dir.join(format!("generated/{LAB}.known_hosts"))
    }

    /// Runs `command` on `address` as root with the system ssh client, strict host keys from
    /// the generated known_hosts file only.
    fn ssh(&self, address: &str, command: &str) -> Output {
        let kh = format!("UserKnownHostsFile={}", self.known_hosts().display());
        let mut c = self.hv.command("ssh");
        c.args([
            "-F",
            "/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            &kh,
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-i",
        ])
        .arg(self.dir.join("id_ed25519"))
        .arg(format!("root@{address}"))
        .arg(command);
        c.output().unwrap()
    }
}

fn write_inventory(dir: &Path, base: &Path, vmem: &str) {
    let inv = dir.join("inventory");
    std::fs::create_dir_all(inv.join("group_vars")).unwrap();
    std::fs::write(
        inv.join("hosts"),
        "[k8s_master]\nk8s-master-1\n\n[k8s_node]\nk8s-node-1\nk8s-node-2\n",
    )
    .unwrap();
    let stem = base.with_extension("");
    std::fs::write(
        inv.join("group_vars/all.yml"),
        format!(
            "lab_name: {LAB}\n\
             k8s_master_nodes: [k8s-master-1]\n\
             k8s_nodes: [k8s-node-1, k8s-node-2]\n\
             vcpu: 1\n\
             vmem: {vmem}\n\
             lab_allow_small_nodes: true\n\
             virt_disk_size: 8G\n\
             virt_type: kvm\n\
             nic1: default\n\
             nic2: dstinternal\n\
             nic2_cidr: 192.168.77.0/24\n\
             virt_disk_image_path: {images}\n\
             virt_log_path: {logs}\n\
             base_image: {base}\n\
             base_kernel: {stem}.vmlinuz\n\
             base_initrd: {stem}.initrd\n\
             ssh_key: {key}.pub\n\
             k8s_runtime_environment: containerd\n\
             k8s_network: flannel\n\
             k8s_pod_cidr: 10.244.0.0/16\n\
             k8s_svc_node_port_range: 30000-32767\n\
             use_firewalld: true\n\
             firewall_backend: auto\n",
            images = dir.join("images").display(),
            logs = dir.join("logs").display(),
            base = base.display(),
            stem = stem.display(),
            key = dir.join("id_ed25519").display(),
        ),
    )
    .unwrap();
}

#[test]
fn lab_vm_up_ssh_snapshot_down() {
    // Base image (built once, cached by `image build` itself).
    let started = Instant::now();
    std::fs::create_dir_all(image_dir()).unwrap();
    let base = image_dir().join("debian-12.qcow2");
    let out = Command::new(DUSTSTACK)
        .args(["image", "build", "--output"])
        .arg(&base)
        .output()
        .unwrap();
    ok(out);
    println!(
        "timing: base image ready in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let tmp = tempfile::Builder::new()
        .prefix("duststack-labvm-")
        .tempdir_in("/var/tmp")
        .unwrap();
    let dir = tmp.path().to_path_buf();
    // qemu runs as libvirt-qemu: the lab's directories must be reachable.
    for sub in ["images", "logs"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let _ = Command::new("chmod").args(["755"]).arg(&dir).status();
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "student@lab", "-f"])
        .arg(dir.join("id_ed25519"))
        .status()
        .unwrap();
    assert!(status.success());

    let hv = Hypervisor::start(&format!("dstvirt{}", std::process::id())).unwrap();
    let lab = Lab {
        hv,
        dir: dir.clone(),
    };

    // Bad input first: too much memory → clear error, nothing created.
    write_inventory(&dir, &base, "200G");
    let out = lab.lab("up", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("need") && err.contains("available"), "{err}");
    assert!(err.contains("nothing was created"), "{err}");
    assert_eq!(lab.virsh(&["list", "--all", "--name"]).trim(), "");
    // A missing base image → clear error, nothing created.
    write_inventory(&dir, &dir.join("no-such-image.qcow2"), "1024");
    let out = lab.lab("up", &[]);
    assert!(!out.status.success(), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not exist") && err.contains("image build"),
        "{err}"
    );
    assert_eq!(lab.virsh(&["list", "--all", "--name"]).trim(), "");
    assert!(!lab
        .virsh(&["net-list", "--all", "--name"])
        .contains("dstinternal"));

    // up: three VMs from the base image to SSH-ready.
    write_inventory(&dir, &base, "1024");
    let t = Instant::now();
    let out = lab.lab("up", &[]);
    let up_secs = t.elapsed().as_secs_f64();
    let stdout = ok(out);
    println!("{stdout}");
    println!("timing: lab up (3 VMs, TCG) from base image to all SSH-ready in {up_secs:.1}s");
    assert!(stdout.contains(&format!("lab {LAB}: up")), "{stdout}");

    // The generated inventory: groups, addresses, connection variables.
    let inv_path = dir.join(format!("generated/{LAB}.yml"));
    let inv = duststack::inventory::Inventory::load(std::slice::from_ref(&inv_path)).unwrap();
    assert_eq!(inv.group_hosts("k8s_master"), ["k8s-master-1"]);
    assert_eq!(inv.group_hosts("k8s_node"), ["k8s-node-1", "k8s-node-2"]);
    let mut machine_ids = Vec::new();
    for node in NODES {
        let vars = inv.vars_for_host(node, None).unwrap();
        let nat = vars["ansible_host"].as_str().unwrap().to_string();
        let internal = vars["internal_ip"].as_str().unwrap().to_string();
        assert!(nat.starts_with("192.168.122."), "{nat}");
        assert!(internal.starts_with("192.168.77."), "{internal}");
        assert_eq!(vars["k8s_runtime_environment"], "containerd");
        // SSH answers with the host key duststack generated (strict check against the
        // generated known_hosts only), with the node's own name, id and both addresses.
        let out = lab.ssh(&nat, "hostname; cat /etc/machine-id; ip -4 -o addr show");
        let answer = ok(out);
        let mut lines = answer.lines();
        assert_eq!(lines.next(), Some(node), "{answer}");
        let mid = lines.next().unwrap_or_default().trim().to_string();
        assert_eq!(mid.len(), 32, "{answer}");
        machine_ids.push(mid);
        assert!(answer.contains(&format!("inet {nat}/24")), "{answer}");
        assert!(answer.contains(&format!("inet {internal}/24")), "{answer}");
        // The internal network works between VMs (from this VM to the master's address).
        let master_internal = inv.vars_for_host("k8s-master-1", None).unwrap()["internal_ip"]
            .as_str()
            .unwrap()
            .to_string();
        ok(lab.ssh(&nat, &format!("busybox ping -c1 -W5 {master_internal}")));
    }
    machine_ids.sort();
    machine_ids.dedup();
    assert_eq!(machine_ids.len(), 3, "machine ids must differ");

    // The engine uses the generated inventory as is (strict host keys, key auth).
    let play = dir.join("touch.yml");
    std::fs::write(
        &play,
        "- hosts: k8s_virt\n  gather_facts: false\n  tasks:\n    - copy:\n        dest: /root/from-duststack\n        content: \"{{ inventory_hostname }}\\n\"\n",
    )
    .unwrap();
    let out = lab.duststack(&[
        "play",
        play.to_str().unwrap(),
        "-i",
        inv_path.to_str().unwrap(),
    ]);
    let played = ok(out);
    assert!(played.contains("changed=1"), "{played}");
    let first_nat = inv.vars_for_host("k8s-node-2", None).unwrap()["ansible_host"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        ok(lab.ssh(&first_nat, "cat /root/from-duststack")),
        "k8s-node-2\n"
    );

    // playbooks/prepare.yml (issue 4) on the lab: twice, the second run changes nothing.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prepare = repo.join("playbooks/prepare.yml");
    let pki_var = format!("pki_local_dir={}", dir.join("pki").display());
    let prepare_run = |which: &str| {
        let t = Instant::now();
        let out = ok(lab.duststack(&[
            "play",
            prepare.to_str().unwrap(),
            "-i",
            inv_path.to_str().unwrap(),
            "-e",
            &pki_var,
        ]));
        println!(
            "timing: prepare.yml {which} run {:.1}s",
            t.elapsed().as_secs_f64()
        );
        out
    };
    let first = prepare_run("first");
    assert!(first.contains("failed=0"), "{first}");
    let second = prepare_run("second");
    let recap_lines: Vec<&str> = second.lines().filter(|l| l.contains(" : ok=")).collect();
    assert_eq!(recap_lines.len(), 3, "{second}");
    for l in &recap_lines {
        assert!(
            l.contains("changed=0") && l.contains("failed=0"),
            "{second}"
        );
    }
    for node in NODES {
        let nat = inv.vars_for_host(node, None).unwrap()["ansible_host"]
            .as_str()
            .unwrap()
            .to_string();
        check_prepared(&lab, node, &nat);
    }
    // Modules, sysctl and firewall survive a reboot.
    ok(lab.ssh(&first_nat, "systemctl reboot"));
    std::thread::sleep(std::time::Duration::from_secs(5));
    let t = Instant::now();
    loop {
        let out = lab.ssh(
            &first_nat,
            "systemctl is-system-running --wait >/dev/null; hostname",
        );
        if out.status.success() {
            break;
        }
        assert!(
            t.elapsed().as_secs() < 240,
            "k8s-node-2 did not come back: {}",
            text(&out)
        );
        std::thread::sleep(std::time::Duration::from_secs(3));
    }
    println!("timing: reboot to SSH {:.1}s", t.elapsed().as_secs_f64());
    check_prepared(&lab, "k8s-node-2", &first_nat);

    // A second up changes nothing.
    let t = Instant::now();
    let again = ok(lab.lab("up", &[]));
    println!("timing: second lab up {:.1}s", t.elapsed().as_secs_f64());
    assert!(again.contains(&format!("lab {LAB}: no change")), "{again}");
    assert!(!again.contains(": created"), "{again}");

    // status table.
    let table = ok(lab.lab("status", &[]));
    for node in NODES {
        let row = table
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(row.contains("running") && row.contains("1024MiB"), "{row}");
    }

    // snapshot → change → restore: the change is gone, SSH still answers.
    let t = Instant::now();
    ok(lab.lab("snapshot", &["class-start"]));
    println!("timing: snapshot {:.1}s", t.elapsed().as_secs_f64());
    ok(lab.ssh(&first_nat, "rm /root/from-duststack && sync"));
    let t = Instant::now();
    ok(lab.lab("restore", &["class-start"]));
    println!("timing: restore {:.1}s", t.elapsed().as_secs_f64());
    assert_eq!(
        ok(lab.ssh(&first_nat, "cat /root/from-duststack")),
        "k8s-node-2\n"
    );

    // down removes everything duststack created, and nothing else.
    let t = Instant::now();
    let down = ok(lab.lab("down", &[]));
    println!("timing: lab down {:.1}s", t.elapsed().as_secs_f64());
    println!("{down}");
    assert_eq!(lab.virsh(&["list", "--all", "--name"]).trim(), "");
    let nets = lab.virsh(&["net-list", "--all", "--name"]);
    assert!(!nets.contains("dstinternal"), "{nets}");
    let default_net = lab.virsh(&["net-dumpxml", "default"]);
    assert!(
        !default_net.contains("52:54:00") || !default_net.contains("<host "),
        "{default_net}"
    );
    let pools = lab.virsh(&["pool-list", "--all", "--name"]);
    assert!(!pools.contains(&format!("duststack-{LAB}")), "{pools}");
    let left: Vec<_> = std::fs::read_dir(dir.join("images"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!dir.join(format!("generated/{LAB}.yml")).exists());
    assert!(!lab.known_hosts().exists());
    let logs: Vec<_> = std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(logs.is_empty(), "{logs:?}");
}

/// What prepare.yml must leave on a node (issue 4's acceptance): no swap, the modules loaded,
/// the three sysctl values 1, the nftables table with exactly the role's ports, containerd
/// running with SystemdCgroup and answering `ctr version` and a CRI Version call.
fn check_prepared(lab: &Lab, node: &str, address: &str) {
    let out = ok(lab.ssh(
        address,
        "swapon --show --noheadings | wc -l; \
         awk '$1 !~ /^#/ && $3 == \"swap\"' /etc/fstab | wc -l; \
         lsmod | awk '{print $1}' | grep -xE 'br_netfilter|overlay' | sort | tr '\\n' ' '; echo; \
         sysctl -n net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.ip_forward | tr '\\n' ' '; echo",
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0].trim(), "0", "{node}: swap is on: {out}");
    assert_eq!(
        lines[1].trim(),
        "0",
        "{node}: fstab has an active swap line: {out}"
    );
    assert_eq!(lines[2].trim(), "br_netfilter overlay", "{node}: {out}");
    assert_eq!(lines[3].trim(), "1 1 1", "{node}: {out}");

    let ruleset = ok(lab.ssh(address, "nft list table inet duststack"));
    let set = |name: &str| -> Vec<String> {
        let start = ruleset
            .find(&format!("set {name} "))
            .unwrap_or_else(|| panic!("{node}: no set {name}:\n{ruleset}"));
        let rest = &ruleset[start..];
        let open = rest.find("elements = {").map(|i| i + "elements = {".len());
        let Some(open) = open else { return Vec::new() };
        let close = rest[open..].find('}').unwrap() + open;
        rest[open..close]
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    };
    let tcp = set("tcp_ports");
    let udp = set("udp_ports");
    if node == "k8s-master-1" {
        assert_eq!(
            tcp,
            ["22", "2379-2380", "6443", "10250", "10257", "10259"],
            "{ruleset}"
        );
    } else {
        assert_eq!(tcp, ["22", "10250", "30000-32767"], "{ruleset}");
    }
    assert_eq!(udp, ["8472"], "{ruleset}");
    assert!(ruleset.contains("policy drop"), "{ruleset}");

    let out = ok(lab.ssh(
        address,
        "systemctl is-active containerd; \
         grep -c 'SystemdCgroup = true' /etc/containerd/config.toml; \
         ctr version >/dev/null && echo ctr-ok; \
         printf '\\0\\0\\0\\0\\0' | curl -s --http2-prior-knowledge \
           --unix-socket /run/containerd/containerd.sock -H 'content-type: application/grpc' \
           -H 'te: trailers' --data-binary @- http://localhost/runtime.v1.RuntimeService/Version \
           | tr -c '[:print:]' ' '; echo",
    ));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "active", "{node}: {out}");
    assert_eq!(lines[1], "1", "{node}: {out}");
    assert_eq!(lines[2], "ctr-ok", "{node}: {out}");
    // The CRI VersionResponse: runtime name and API version.
    assert!(
        lines[3].contains("containerd") && lines[3].contains("v1"),
        "{node}: CRI: {out}"
    );

    // The PKI role: CA keys only on the control plane, the node's own kubelet kubeconfig.
    let out = ok(lab.ssh(
        address,
        "cd /etc/kubernetes && find . -type f | sort | tr '\\n' ' '; echo; \
         stat -c '%a' kubelet.conf; grep -c client-certificate-data kubelet.conf",
    ));
    let lines: Vec<&str> = out.lines().collect();
    let files: Vec<&str> = lines[0].split_whitespace().collect();
    if node == "k8s-master-1" {
        for f in [
            "./pki/ca.key",
            "./pki/etcd/ca.key",
            "./pki/sa.key",
            "./pki/apiserver.crt",
            "./admin.conf",
            "./super-admin.conf",
            "./kubelet.conf",
        ] {
            assert!(files.contains(&f), "{node}: {f} missing: {out}");
        }
        let verify = ok(lab.ssh(
            address,
            "stat -c '%a' /etc/kubernetes/pki/ca.key; \
             openssl verify -CAfile /etc/kubernetes/pki/ca.crt /etc/kubernetes/pki/apiserver.crt",
        ));
        assert!(verify.starts_with("600\n"), "{verify}");
        assert!(verify.contains("apiserver.crt: OK"), "{verify}");
    } else {
        assert_eq!(files, ["./kubelet.conf", "./pki/ca.crt"], "{node}: {out}");
    }
    assert_eq!(lines[1], "600", "{node}: {out}");
    assert_eq!(lines[2], "1", "{node}: {out}");
}
