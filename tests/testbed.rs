//! The network-namespace test bed itself: OpenSSH and ansible reach its hosts; teardown is complete.

mod support;

use std::process::Command;
use std::time::Duration;

use support::TestBed;

/// Keeps a bed up for manual experiments: `DST_HOLD_SECS=300 cargo test --test testbed hold -- --ignored --nocapture`.
#[test]
#[ignore]
fn hold_bed_for_manual_use() {
    let secs: u64 = std::env::var("DST_HOLD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(120);
    let bed = TestBed::start(3).unwrap();
    println!("control ns: {}", bed.control_ns());
    println!("inventory:  {}", bed.inventory_path().display());
    println!("ANSIBLE_CONFIG={}", bed.ansible_cfg_path().display());
    println!(
        "key: {}  known_hosts: {}",
        bed.client_key_path().display(),
        bed.known_hosts_path().display()
    );
    std::thread::sleep(Duration::from_secs(secs));
}

fn netns_list() -> String {
    String::from_utf8(
        Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
}

#[test]
fn openssh_and_ansible_reach_every_host_with_strict_host_keys() {
    let bed = TestBed::start(3).unwrap();
    for h in bed.hosts() {
        let mut ssh = Command::new("ssh");
        ssh.arg("-i").arg(bed.client_key_path());
        ssh.args([
            "-o",
            &format!("UserKnownHostsFile={}", bed.known_hosts_path().display()),
        ]);
        ssh.args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            &format!("root@{}", h.addr),
        ]);
        ssh.arg("echo $SSH_CONNECTION; echo ~");
        let out = bed.run_in_control(&mut ssh).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}",
            h.name,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.starts_with("10.77.0.2 ") && text.contains(&format!(" {} 22", h.addr)),
            "{text}"
        );
        assert!(!text.contains("/root\n"), "root's home is per host: {text}");
        // The host is not reachable from the root namespace.
        assert!(!std::process::Command::new("ip")
            .args(["-o", "addr"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("10.77.0."))
            .unwrap());
    }
    let mut ansible = Command::new("ansible");
    ansible.args(["all", "-m", "ping", "-o"]);
    for (k, v) in bed.ansible_env() {
        ansible.env(k, v);
    }
    let out = bed.run_in_control(&mut ansible).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for h in bed.hosts() {
        assert!(text.contains(&format!("{} | SUCCESS", h.name)), "{text}");
    }
}

#[test]
fn teardown_removes_namespaces_and_processes_even_after_a_panic() {
    let bed = TestBed::start(2).unwrap();
    let prefix = bed.control_ns().trim_end_matches("ctl").to_string();
    assert_eq!(
        netns_list().matches(&prefix).count(),
        4,
        "hub + control + 2 hosts"
    );
    drop(bed);
    assert!(!netns_list().contains(&prefix), "{}", netns_list());

    let prefix = std::thread::spawn(|| {
        let bed = TestBed::start(1).unwrap();
        let prefix = bed.control_ns().trim_end_matches("ctl").to_string();
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _bed = bed;
            panic!("test failure inside a bed");
        }))
        .unwrap_err();
        prefix
    })
    .join()
    .unwrap();
    assert!(!netns_list().contains(&prefix), "{}", netns_list());
}

#[test]
fn startup_sweeps_namespaces_of_dead_runs() {
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let stale = format!("dst{dead}x0-ctl");
    assert!(Command::new("ip")
        .args(["netns", "add", &stale])
        .status()
        .unwrap()
        .success());
    let stale_dir = std::env::temp_dir().join(format!("dst{dead}x0-abc"));
    std::fs::create_dir_all(&stale_dir).unwrap();
    let _bed = TestBed::start(1).unwrap();
    assert!(!netns_list().contains(&stale), "{}", netns_list());
    assert!(!stale_dir.exists(), "stale temp dir removed");
}
