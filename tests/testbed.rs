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
