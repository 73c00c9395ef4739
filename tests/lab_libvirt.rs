//! The libvirt provider of `duststack lab` against libvirt's built-in `test:///default` driver:
//! every connection to it is a fresh private in-memory hypervisor (one `default` NAT network,
//! one `test` domain, one `default-pool` storage pool), so each test starts from the same state.

use std::path::Path;
use std::process::Command;

use duststack::inventory::Inventory;
use duststack::lab::libvirt::{read_mark, Change, DomainOutcome, Libvirt, NodeState};
use duststack::lab::model::Lab;

const DUSTSTACK: &str = env!("CARGO_BIN_EXE_duststack");
const TEST_URI: &str = "test:///default";
const POOL: &str = "default-pool";

/// libvirt shares `test:///default` between the connections of one process: one test at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn classroom() -> Lab {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/classroom");
    let inv = Inventory::load(&[dir]).unwrap();
    Lab::from_inventory(&inv).unwrap()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// A domain that duststack did not create (no metadata), named `name`.
fn foreign_xml(name: &str) -> String {
    format!(
        "<domain type='test'><name>{name}</name><memory unit='MiB'>512</memory><vcpu>1</vcpu>\
         <os><type arch='x86_64'>hvm</type></os></domain>"
    )
}

const NODE_DOMAINS: [&str; 4] = [
    "classroom-k8s-master-1",
    "classroom-k8s-node-1",
    "classroom-k8s-node-2",
    "classroom-k8s-utility-1",
];

#[test]
fn lab_libvirt_up_creates_networks_volumes_and_running_domains() {
    let lab = classroom();
    let _serial = serial();
    let lv = Libvirt::connect(TEST_URI).unwrap();
    let before_nets = lv.network_names().unwrap();
    assert_eq!(
        before_nets,
        ["default"],
        "test driver starts with its own default network"
    );

    let report = lv.up(&mut lab.clone(), Some(POOL), &[]).unwrap();
    assert!(
        report
            .steps
            .contains(&"network default: unchanged (not duststack's, reused)".to_string()),
        "{:?}",
        report.steps
    );
    assert!(
        report
            .steps
            .contains(&"network internal: created (duststack)".to_string()),
        "{:?}",
        report.steps
    );
    assert!(report.drift.is_empty());

    assert_eq!(sorted(lv.network_names().unwrap()), ["default", "internal"]);
    let mut want_domains: Vec<String> = NODE_DOMAINS.iter().map(|s| s.to_string()).collect();
    want_domains.push("test".into());
    assert_eq!(sorted(lv.domain_names().unwrap()), sorted(want_domains));
    let vols = lv.volume_names(POOL).unwrap();
    for d in NODE_DOMAINS {
        assert!(vols.contains(&format!("{d}.qcow2")), "{vols:?}");
    }

    let status = lv.status(&lab).unwrap();
    assert_eq!(status.len(), 4);
    for (s, node) in status.iter().zip(&lab.nodes) {
        assert_eq!(s.name, node.name);
        assert_eq!(s.state, NodeState::Running, "{s:?}");
        assert_eq!(s.vcpu, Some(2));
        assert_eq!(s.memory_mib, Some(4096));
        assert!(s.owned);
    }
    // The defined domain carries the lab's metadata and the model's MACs.
    let xml = lv.domain_xml("classroom-k8s-node-2").unwrap().unwrap();
    let mark = read_mark(&xml).unwrap().unwrap();
    assert_eq!(mark.lab, "classroom");
    assert_eq!(mark.node.as_deref(), Some("k8s-node-2"));
    assert!(xml.contains(&lab.nodes[2].nics[1].mac));
}

#[test]
fn lab_libvirt_second_up_is_unchanged() {
    let lab = classroom();
    let _serial = serial();
    let lv = Libvirt::connect(TEST_URI).unwrap();
    lv.up(&mut lab.clone(), Some(POOL), &[]).unwrap();
    let again = lv.up(&mut lab.clone(), Some(POOL), &[]).unwrap();
    assert!(again.drift.is_empty());
    assert_eq!(again.steps.len(), 2 + 1 + 4 + 4 + 4, "{:?}", again.steps);
    assert!(!again.changed);
    for step in &again.steps {
        assert!(step.contains("unchanged"), "{step}");
    }
    assert!(matches!(
        lv.ensure_network(&lab, &lab.networks[1]).unwrap().change,
        Change::Unchanged
    ));
}

#[test]
fn lab_libvirt_changed_vcpu_is_drift() {
    let mut lab = classroom();
    let _serial = serial();
    let lv = Libvirt::connect(TEST_URI).unwrap();
    lv.up(&mut lab.clone(), Some(POOL), &[]).unwrap();
    lab.nodes[1].vcpu = 4;
    lab.nodes[1].memory_mib = 8192;
    assert_eq!(
        lv.ensure_domain(&lab, &lab.nodes[0]).unwrap(),
        DomainOutcome::Unchanged
    );
    // vCPUs and memory only: the definition is updated (effective on the next start);
    // the running domain keeps its shape until then.
    let report = lv.up(&mut lab.clone(), Some(POOL), &[]).unwrap();
    assert!(report.drift.is_empty(), "{report:?}");
    assert!(report.changed);
    assert!(
        report.steps.iter().any(|s| s.starts_with(
            "domain classroom-k8s-node-1: redefined (vcpu: domain has 2, model wants 4"
        )),
        "{:?}",
        report.steps
    );
    let status = lv.status(&lab).unwrap();
    assert_eq!(status[1].vcpu, Some(2));
    let xml = lv.domain_xml("classroom-k8s-node-1").unwrap().unwrap();
    assert!(xml.contains(">4</vcpu>"), "{xml}");
    assert_eq!(
        lv.ensure_domain(&lab, &lab.nodes[1]).unwrap(),
        DomainOutcome::Unchanged
    );
    // Another NIC is drift: reported, never applied.
    lab.nodes[2].nics[0].mac = "52:54:00:00:00:99".into();
    match lv.ensure_domain(&lab, &lab.nodes[2]).unwrap() {
        DomainOutcome::Drift(diff) => assert!(diff[0].starts_with("nics:"), "{diff:?}"),
        other => panic!("expected NIC drift, got {other:?}"),
    }
    let xml = lv.domain_xml("classroom-k8s-node-2").unwrap().unwrap();
    assert!(!xml.contains("52:54:00:00:00:99"));
}

#[test]
fn lab_libvirt_foreign_domain_is_a_clash_and_stays_untouched() {
    let lab = classroom();
    let _serial = serial();
    let lv = Libvirt::connect(TEST_URI).unwrap();
    let foreign = foreign_xml("classroom-k8s-node-1");
    lv.define_domain_xml(&foreign).unwrap();
    let before = lv.domain_xml("classroom-k8s-node-1").unwrap().unwrap();

    let err = lv.ensure_domain(&lab, &lab.nodes[1]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("name clash with a domain duststack did not create"),
        "{msg}"
    );

    // up fails on it and rolls back everything it had created before.
    let err = lv.up(&mut lab.clone(), Some(POOL), &[]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("name clash"), "{msg}");
    assert!(msg.contains("rolled back"), "{msg}");
    assert_eq!(lv.network_names().unwrap(), ["default"]);
    assert_eq!(
        sorted(lv.domain_names().unwrap()),
        ["classroom-k8s-node-1", "test"]
    );
    let after = lv.domain_xml("classroom-k8s-node-1").unwrap().unwrap();
    assert_eq!(before, after);
    assert!(read_mark(&after).unwrap().is_none());

    // down keeps it too.
    let report = lv.destroy_lab(&lab, Some(POOL)).unwrap();
    assert!(report.domains_removed.is_empty());
    assert!(
        report
            .kept
            .iter()
            .any(|k| k.starts_with("domain classroom-k8s-node-1")),
        "{report:?}"
    );
    assert_eq!(
        lv.domain_xml("classroom-k8s-node-1").unwrap().as_deref(),
        Some(after.as_str())
    );
}

#[test]
fn lab_libvirt_destroy_removes_exactly_what_was_created() {
    let lab = classroom();
    let _serial = serial();
    let lv = Libvirt::connect(TEST_URI).unwrap();
    lv.define_domain_xml(&foreign_xml("someone-elses-vm"))
        .unwrap();
    let vols_before = lv.volume_names(POOL).unwrap();
    lv.up(&mut lab.clone(), Some(POOL), &[]).unwrap();

    let report = lv.destroy_lab(&lab, Some(POOL)).unwrap();
    assert_eq!(sorted(report.domains_removed.clone()), NODE_DOMAINS);
    assert_eq!(report.networks_removed, ["internal"]);
    assert_eq!(report.volumes_removed.len(), 4, "{report:?}");
    assert!(report
        .kept
        .contains(&"network default: not created by duststack, kept".to_string()));

    assert_eq!(
        sorted(lv.domain_names().unwrap()),
        ["someone-elses-vm", "test"]
    );
    assert_eq!(lv.network_names().unwrap(), ["default"]);
    assert_eq!(sorted(lv.volume_names(POOL).unwrap()), sorted(vols_before));
    // A second down has nothing left to do.
    let again = lv.destroy_lab(&lab, Some(POOL)).unwrap();
    assert!(again.domains_removed.is_empty() && again.networks_removed.is_empty());
}

#[test]
fn lab_libvirt_failed_last_step_rolls_everything_back() {
    let mut lab = classroom();
    // The last node's domain XML is invalid (libvirt refuses the MAC); the networks use their
    // own copy of the reservations, so only the last domain definition fails.
    lab.nodes[3].nics[1].mac = "not-a-mac".into();
    let _serial = serial();
    let lv = Libvirt::connect(TEST_URI).unwrap();
    let vols_before = lv.volume_names(POOL).unwrap();
    let err = lv.up(&mut lab.clone(), Some(POOL), &[]).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("classroom-k8s-utility-1"), "{msg}");
    assert!(msg.contains("rolled back the 12 change(s)"), "{msg}");
    assert_eq!(lv.domain_names().unwrap(), ["test"]);
    assert_eq!(lv.network_names().unwrap(), ["default"]);
    assert_eq!(sorted(lv.volume_names(POOL).unwrap()), sorted(vols_before));
}

#[test]
fn lab_libvirt_cli_unreachable_uri_fails_clearly() {
    let inv = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/classroom");
    for uri in ["test:///nonexistent", "qemu+tcp://127.0.0.1:1/system"] {
        let out = Command::new(DUSTSTACK)
            .args(["lab", "status", "-i"])
            .arg(&inv)
            .args(["--uri", uri])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{uri}: {stderr}");
        assert!(
            stderr.contains(&format!("cannot connect to libvirt at {uri}")),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("is libvirtd running? ({uri})")),
            "{stderr}"
        );
        assert!(out.stdout.is_empty());
    }
}
