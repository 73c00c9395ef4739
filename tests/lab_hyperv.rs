//! The Hyper-V provider of `duststack lab`: the rendered PowerShell for the classroom lab, and
//! the command/response flow against a stand-in `powershell` (tests/fixtures/hyperv/powershell.py:
//! decodes the encoded command or reads the uploaded file, records it, keeps a fake Hyper-V
//! state, answers with the JSON result line). Hyper-V itself never runs here.
//!
//! The SSH flow runs on a test-bed host (network namespace, its own sshd, needs root): the
//! stand-in is put on root's PATH through the host's private home (`~/.bashrc`, which bash
//! reads for commands sshd runs). Error paths use the local transport (no shell, no root).

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use duststack::connection::{connect, ConnectionSpec};
use duststack::inventory::Inventory;
use duststack::lab::hyperv::{
    self, render_down, render_status, render_up, HyperVError, HyperVHost, HyperVOptions, NatSwitch,
};
use duststack::lab::model::Lab;
use serde_json::{json, Map, Value};
use support::{TestBed, TestHost};

const HOSTS: &str = "[k8s_master]\nk8s-master-1\n\n[k8s_node]\nk8s-node-1\nk8s-node-2\n";

/// A three-node lab whose seeds live in `dir/images`, with `extra` appended to group_vars/all.
fn lab_in(dir: &Path, extra: &str) -> (Lab, Map<String, Value>) {
    let images = dir.join("images");
    fs::create_dir_all(dir.join("inv/group_vars")).unwrap();
    fs::create_dir_all(&images).unwrap();
    fs::write(dir.join("inv/hosts"), HOSTS).unwrap();
    fs::write(
        dir.join("inv/group_vars/all.yml"),
        format!(
            "lab_name: classroom\nvcpu: 2\nvmem: 2048\nvirt_disk_size: 10G\nvirt_disk_image_path: {}\n\
             base_image: /var/lib/duststack/images/debian-12.qcow2\nssh_key: ssh-ed25519 AAAAC3Nz test\n\
             hyperv_parent_vhdx: 'C:\\ProgramData\\duststack\\base.vhdx'\nhyperv_poll_interval: 0.05\n\
             hyperv_wait_timeout: 20\n{extra}",
            images.display()
        ),
    )
    .unwrap();
    let inv = Inventory::load(&[dir.join("inv")]).unwrap();
    let lab = Lab::from_inventory(&inv).unwrap();
    let all = inv.group_vars("all").unwrap();
    (lab, all)
}

/// Writes a seed per node whose network-config carries the node's internal address (what the
/// stand-in reports as the guest's address once it has "booted").
fn write_seeds(lab: &Lab) {
    for n in &lab.nodes {
        let ip = n.internal_nic().ip;
        fs::write(
            lab.seed_path(n),
            format!(
                "CD001 cidata\nnetwork-config:\n  addresses: [{ip}/24]\nhostname: {}\n",
                n.hostname
            ),
        )
        .unwrap();
    }
}

/// The stand-in `powershell` in `dir/bin`, keeping its state in `dir/state` (created, with the
/// parent VHDX already on the fake `C:` drive).
fn stand_in(dir: &Path) -> (PathBuf, PathBuf) {
    let state = dir.join("state");
    let bin = dir.join("bin");
    fs::create_dir_all(state.join("fs/C/ProgramData/duststack")).unwrap();
    fs::create_dir_all(&bin).unwrap();
    fs::write(state.join("fs/C/ProgramData/duststack/base.vhdx"), "parent").unwrap();
    let src = fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hyperv/powershell.py"),
    )
    .unwrap();
    let exe = bin.join("powershell");
    fs::write(&exe, src.replace("@STATE@", &state.display().to_string())).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    (exe, state)
}

/// [`stand_in`] in `dir` on a test-bed host, first on root's PATH there (root's home on a bed
/// host is private; bash reads its `~/.bashrc` for the commands sshd runs). Returns the state dir.
fn stand_in_on_path(h: &TestHost, dir: &Path) -> PathBuf {
    let (_exe, state) = stand_in(dir);
    let home = h.workdir.parent().unwrap().join("home");
    fs::write(
        home.join(".bashrc"),
        format!("export PATH={}:$PATH\n", dir.join("bin").display()),
    )
    .unwrap();
    state
}

fn config(state: &Path, cfg: Value) {
    fs::write(state.join("config.json"), cfg.to_string()).unwrap();
}

fn calls(state: &Path) -> Vec<Value> {
    fs::read_to_string(state.join("calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn fake(state: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(state.join("state.json")).unwrap()).unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn index_of(text: &str, what: &str) -> usize {
    text.find(what)
        .unwrap_or_else(|| panic!("missing {what:?} in:\n{text}"))
}

#[test]
fn lab_hyperv_classroom_scripts_have_the_cmdlets_in_order() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/classroom");
    let inv = Inventory::load(&[dir]).unwrap();
    let lab = Lab::from_inventory(&inv).unwrap();
    let mut vars = inv.group_vars("all").unwrap();
    vars.insert("hyperv_external_adapter".into(), json!("Ethernet 2"));
    vars.insert("hyperv_vm_dir".into(), json!("D:\\Labs\\classroom"));
    let opts = HyperVOptions::from_vars(&lab, &vars).unwrap();
    assert_eq!(
        opts.nat_switch,
        NatSwitch::External {
            name: "classroom-external".into(),
            net_adapter: "Ethernet 2".into()
        }
    );
    assert_eq!(opts.parent_vhdx, "D:\\Labs\\classroom\\base.vhdx");

    let up = render_up(&lab, &opts);
    let util = lab.node("k8s-utility-1").unwrap();
    let mac = |m: &str| m.replace(':', "").to_uppercase();
    for want in [
        "New-VMSwitch -Name 'classroom-external' -NetAdapterName 'Ethernet 2' -AllowManagementOS $true -Notes 'duststack-lab:classroom'",
        "New-VMSwitch -Name 'internal' -SwitchType Internal -Notes 'duststack-lab:classroom'",
        "New-VHD -Path 'D:\\Labs\\classroom\\classroom-k8s-utility-1.vhdx' -ParentPath 'D:\\Labs\\classroom\\base.vhdx' -Differencing",
        "$vm = New-VM -Name 'classroom-k8s-utility-1' -Generation 2 -MemoryStartupBytes 4294967296 -VHDPath 'D:\\Labs\\classroom\\classroom-k8s-utility-1.vhdx' -SwitchName 'classroom-external'",
        "Add-VMDvdDrive -VM $vm -Path 'D:\\Labs\\classroom\\classroom-k8s-utility-1-seed.iso'",
        &format!("Set-VMNetworkAdapter -StaticMacAddress '{}'", mac(&util.nat_nic().mac)),
        &format!(
            "Add-VMNetworkAdapter -VM $vm -Name 'internal' -SwitchName 'internal' -StaticMacAddress '{}'",
            mac(&util.internal_nic().mac)
        ),
        "if ($vm -and $vm.Notes -ne 'duststack-lab:classroom') { throw 'VM classroom-k8s-utility-1 exists but was not created by duststack; rename or remove it' }",
        "if (-not (Test-Path -LiteralPath 'D:\\Labs\\classroom\\base.vhdx')) { throw",
        "trap { [Console]::Error.WriteLine('duststack-error ' +",
        "[ordered]@{ duststack = 'up'; items = $items } | ConvertTo-Json -Compress -Depth 6",
    ] {
        index_of(&up, want);
    }
    assert_eq!(up.matches("Set-VMProcessor -VM $vm -Count 2\n").count(), 4);
    assert_eq!(
        up.matches("Set-VMMemory -VM $vm -DynamicMemoryEnabled $false")
            .count(),
        4
    );
    assert_eq!(up.matches("Start-VM -VM $vm").count(), 4);
    // Per VM: disk before VM, VM before its settings, DVD before start; switches first.
    let block = &up[index_of(&up, "# 'k8s-node-2'")..index_of(&up, "# 'k8s-utility-1'")];
    let order = [
        "$vm = Get-VM",
        "New-VHD ",
        "Resize-VHD ",
        "$vm = New-VM ",
        "Set-VM -VM $vm -Notes",
        "Set-VMProcessor",
        "Set-VMMemory",
        "Add-VMNetworkAdapter",
        "Add-VMDvdDrive",
        "Start-VM",
    ];
    let pos: Vec<usize> = order.iter().map(|w| index_of(block, w)).collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "{order:?} out of order:\n{block}"
    );
    assert!(index_of(&up, "-SwitchType Internal") < index_of(&up, "$vm = New-VM"));
    assert!(index_of(&up, "base.vhdx')) { throw") < index_of(&up, "New-VHD"));

    let status = render_status(&lab, &opts);
    index_of(
        &status,
        "$ips = @(Get-VMNetworkAdapter -VM $vm | ForEach-Object { $_.IPAddresses }",
    );
    index_of(
        &status,
        "'D:\\Labs\\classroom\\classroom-k8s-utility-1-seed.iso'",
    );

    // Teardown: stop, remove VM, then its files; switches after every VM; scripts last.
    let down = render_down(&lab, &opts);
    let order = [
        "Stop-VM -VM $vm -TurnOff -Force",
        "Remove-VM -VM $vm -Force",
        "Remove-Item -LiteralPath 'D:\\Labs\\classroom\\classroom-k8s-master-1.vhdx'",
        "Remove-Item -LiteralPath 'D:\\Labs\\classroom\\classroom-k8s-master-1-seed.iso'",
        "$sw = Get-VMSwitch | Where-Object { $_.Name -eq 'internal' }",
        "$sw = Get-VMSwitch | Where-Object { $_.Name -eq 'classroom-external' }",
        "-Filter '.duststack-*.ps1'",
    ];
    let pos: Vec<usize> = order.iter().map(|w| index_of(&down, w)).collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "{order:?} out of order:\n{down}"
    );
    assert!(down.rfind("Remove-VM ").unwrap() < index_of(&down, "Remove-VMSwitch"));
}

#[test]
fn lab_hyperv_options_from_vars_validate() {
    let dir = tempfile::tempdir().unwrap();
    let (lab, mut vars) = lab_in(dir.path(), "");
    let opts = HyperVOptions::from_vars(&lab, &vars).unwrap();
    assert_eq!(
        opts.nat_switch,
        NatSwitch::Existing("Default Switch".into())
    );
    assert_eq!(opts.vm_dir, "C:\\ProgramData\\duststack\\classroom");
    assert!(opts.ssh.is_none());
    assert!(!HyperVOptions::wanted(&vars));

    vars.insert("hyperv_host".into(), json!("win-lab.example"));
    assert!(HyperVOptions::wanted(&vars));
    let opts = HyperVOptions::from_vars(&lab, &vars).unwrap();
    let spec = opts.ssh.unwrap();
    assert_eq!(
        (spec.host.as_str(), spec.user.as_str(), spec.port),
        ("win-lab.example", "Administrator", 22)
    );
    vars.insert("hyperv_user".into(), json!("labadmin"));
    vars.insert("hyperv_port".into(), json!(2222));
    let spec = HyperVOptions::from_vars(&lab, &vars).unwrap().ssh.unwrap();
    assert_eq!((spec.user.as_str(), spec.port), ("labadmin", 2222));

    for (var, value, want) in [
        (
            "hyperv_vm_dir",
            json!("/var/lib/vms"),
            "hyperv_vm_dir=/var/lib/vms is not valid: an absolute Windows path",
        ),
        (
            "hyperv_vm_dir",
            json!("C:\\Labs\\%USERNAME%"),
            "without '%'",
        ),
        (
            "hyperv_parent_vhdx",
            json!("C:\\images\\debian.qcow2"),
            "a .vhdx (or .vhd) file",
        ),
        (
            "hyperv_internal_switch",
            json!("Default Switch"),
            "must differ from the NAT switch",
        ),
        (
            "hyperv_poll_interval",
            json!("soon"),
            "hyperv_poll_interval=soon is not valid",
        ),
        (
            "hyperv_host",
            json!("admin@win"),
            "put the user in hyperv_user",
        ),
    ] {
        let mut v = vars.clone();
        v.insert(var.into(), value);
        let err = HyperVOptions::from_vars(&lab, &v).unwrap_err().to_string();
        assert!(err.contains(want), "{var}: {err}");
    }
    let mut v = vars.clone();
    v.remove("hyperv_host");
    let err = HyperVOptions::from_vars(&lab, &v).unwrap_err().to_string();
    assert!(err.starts_with("hyperv_host is not set"), "{err}");
    assert!(!HyperVOptions::wanted(
        &json!({"lab_provider": "libvirt", "hyperv_host": "w"})
            .as_object()
            .unwrap()
            .clone()
    ));
    assert!(HyperVOptions::wanted(
        &json!({"lab_provider": "hyperv"})
            .as_object()
            .unwrap()
            .clone()
    ));
}

#[test]
fn lab_hyperv_up_status_down_over_ssh_against_a_stand_in() {
    let bed = TestBed::start(1).unwrap();
    let h = &bed.hosts()[0];
    let dir = h.workdir.join("hyperv");
    let state = stand_in_on_path(h, &dir);
    let (lab, vars) = lab_in(&dir, "hyperv_host: win-lab\n");
    write_seeds(&lab);
    let opts = HyperVOptions::from_vars(&lab, &vars).unwrap();
    assert_eq!(opts.ssh.as_ref().unwrap().user, "Administrator");
    let spec = ConnectionSpec::ssh(
        &h.addr,
        22,
        "root",
        Some(&bed.client_key_path()),
        &bed.known_hosts_path(),
    );

    bed.block_on(async {
        let conn = connect(&spec).await.unwrap();
        let which = conn.exec("command -v powershell", None).await.unwrap();
        assert_eq!(
            which.stdout_str().trim(),
            dir.join("bin/powershell").display().to_string()
        );
        let host = HyperVHost::over_ssh(Arc::clone(&conn), spec.label());

        // First up: seeds uploaded, everything created, addresses on the 3rd poll.
        let report = hyperv::up(&lab, &opts, &host).await.unwrap();
        assert_eq!(report.polls, 3, "{report:?}");
        for n in &lab.nodes {
            let a = report.addresses.iter().find(|a| a.node == n.name).unwrap();
            assert!(a.addresses.contains(&n.internal_nic().ip), "{a:?}");
            assert_eq!(a.addresses.len(), 2, "{a:?}");
        }
        for want in [
            "seed classroom-k8s-master-1: uploaded",
            "switch Default Switch: existing",
            "switch internal: created",
            "disk C:\\ProgramData\\duststack\\classroom\\classroom-k8s-node-2.vhdx: created",
            "vm classroom-k8s-node-2: created",
            "start classroom-k8s-node-2: started",
        ] {
            assert!(
                report.steps.iter().any(|s| s == want),
                "{want}: {:?}",
                report.steps
            );
        }
        assert_eq!(report.created.len(), 3 + 1 + 3 * 3, "{:?}", report.created);
        assert!(report.drift.is_empty());

        let c = calls(&state);
        let kinds: Vec<(&str, &str)> = c
            .iter()
            .map(|c| (c["kind"].as_str().unwrap(), c["mode"].as_str().unwrap()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("files", "encoded"),
                ("put", "encoded"),
                ("put", "encoded"),
                ("put", "encoded"),
                ("put", "encoded"), // the up script itself: too long for cmd.exe
                ("lab up", "file"),
                ("lab status", "encoded"),
                ("lab status", "encoded"),
                ("lab status", "encoded"),
            ]
        );
        let seed0 = fs::metadata(lab.seed_path(&lab.nodes[0])).unwrap().len();
        assert_eq!(c[1]["stdin"].as_u64().unwrap(), seed0);
        assert!(
            c.iter()
                .all(|c| c["command_line"].as_u64().unwrap() <= 8191),
            "{c:?}"
        );
        assert!(c.iter().all(|c| c["args"].as_array().unwrap()[..4]
            == *json!([
                "-NoProfile",
                "-NonInteractive",
                "-ExecutionPolicy",
                "Bypass"
            ])
            .as_array()
            .unwrap()));
        // The uploaded script is exactly what was rendered (with a UTF-8 BOM).
        let uploaded =
            fs::read(state.join("fs/C/ProgramData/duststack/classroom/.duststack-up.ps1")).unwrap();
        assert_eq!(&uploaded[..3], b"\xEF\xBB\xBF");
        assert_eq!(&uploaded[3..], hyperv::render_up(&lab, &opts).as_bytes());

        let f = fake(&state);
        let vm = &f["vms"]["classroom-k8s-master-1"];
        assert_eq!(vm["cpu"], 2);
        assert_eq!(vm["memory"], 2048u64 * 1024 * 1024);
        assert_eq!(vm["state"], "Running");
        assert_eq!(vm["notes"], "duststack-lab:classroom");
        assert_eq!(vm["dynamic_memory"], false);
        assert_eq!(
            vm["dvd"],
            "C:\\ProgramData\\duststack\\classroom\\classroom-k8s-master-1-seed.iso"
        );
        assert_eq!(vm["adapters"][1]["switch"], "internal");
        assert_eq!(
            vm["adapters"][1]["mac"],
            lab.nodes[0]
                .internal_nic()
                .mac
                .replace(':', "")
                .to_uppercase()
        );
        assert_eq!(
            f["switches"]["internal"]["notes"],
            "duststack-lab:classroom"
        );

        // Second up: nothing uploaded or created; the addresses are there at once.
        let again = hyperv::up(&lab, &opts, &host).await.unwrap();
        assert!(again.created.is_empty(), "{:?}", again.created);
        assert_eq!(again.polls, 1);
        assert!(again
            .steps
            .contains(&"vm classroom-k8s-node-1: unchanged".to_string()));
        assert!(again
            .steps
            .contains(&"seed classroom-k8s-node-1: unchanged".to_string()));
        let c2 = calls(&state);
        assert!(
            c2[c.len()..]
                .iter()
                .all(|c| c["kind"] != "put" || c["stdin"].as_u64().unwrap() > seed0 * 10),
            "seeds re-uploaded: {c2:?}"
        );

        // status: one row per node with state, size and addresses.
        let rows = hyperv::status(&lab, &opts, &host).await.unwrap();
        assert_eq!(rows.len(), 3);
        let r = &rows[1];
        assert_eq!(
            (
                r.vm.as_str(),
                r.state.as_str(),
                r.vcpu,
                r.memory_mib,
                r.owned
            ),
            ("classroom-k8s-node-1", "Running", Some(2), Some(2048), true)
        );
        assert!(r
            .addresses
            .contains(&lab.nodes[1].internal_nic().ip.to_string()));

        // down: everything duststack made is gone, the Default Switch stays.
        let down = hyperv::down(&lab, &opts, &host).await.unwrap();
        assert!(
            down.removed
                .contains(&"vm classroom-k8s-node-2: removed".to_string()),
            "{:?}",
            down.removed
        );
        assert!(down
            .removed
            .contains(&"switch internal: removed".to_string()));
        assert!(
            down.removed
                .iter()
                .any(|s| s.ends_with(".duststack-up.ps1: removed")),
            "{:?}",
            down.removed
        );
        assert!(down.kept.is_empty());
        let f = fake(&state);
        assert_eq!(f["vms"], json!({}));
        assert_eq!(
            f["switches"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["Default Switch"]
        );
        let left: Vec<_> = fs::read_dir(state.join("fs/C/ProgramData/duststack/classroom"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "{left:?}");
        let rows = hyperv::status(&lab, &opts, &host).await.unwrap();
        assert!(rows.iter().all(|r| !r.exists && r.state == "absent"));
        host.close().await;
    });
}

#[test]
fn lab_hyperv_errors_name_the_host_and_the_cmdlet() {
    let dir = tempfile::tempdir().unwrap();
    let (exe, state) = stand_in(dir.path());
    let (lab, vars) = lab_in(dir.path(), "hyperv_wait_timeout: 0.4\n");
    write_seeds(&lab);
    let opts = HyperVOptions::from_vars(&lab, &vars).unwrap();
    let host = HyperVHost::local_program(&exe);
    let rt = rt();

    // A cmdlet failing inside the script: the trap's message, with host and cmdlet.
    config(
        &state,
        json!({"fail": {"cmdlet": "New-VM", "message": "Failed to create a new virtual machine.\nNot enough memory in the system to start the virtual machine."}}),
    );
    let err = rt.block_on(hyperv::up(&lab, &opts, &host)).unwrap_err();
    assert!(
        matches!(&err, HyperVError::Failed { command, .. } if command == "New-VM"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "Hyper-V host localhost: New-VM failed: Failed to create a new virtual machine.\nNot enough memory in the system to start the virtual machine."
    );

    // PowerShell's own CLIXML error output (as before a trap is set) is decoded.
    config(
        &state,
        json!({"fail": {"cmdlet": "Add-VMDvdDrive", "message": "The file 'x' <is> in use", "style": "clixml"}}),
    );
    let err = rt
        .block_on(hyperv::up(&lab, &opts, &host))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "Hyper-V host localhost: lab up failed: Add-VMDvdDrive : The file 'x' <is> in use\n"
        ),
        "{err}"
    );
    assert!(!err.contains("CLIXML") && !err.contains("_x000D_"), "{err}");

    // A missing NAT switch stops the script before anything is created.
    config(&state, json!({}));
    let mut gone = opts.clone();
    gone.nat_switch = NatSwitch::Existing("Lab NAT".into());
    fs::remove_file(state.join("state.json")).unwrap();
    let err = rt
        .block_on(hyperv::up(&lab, &gone, &host))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("lab up failed: Hyper-V switch Lab NAT does not exist"),
        "{err}"
    );
    assert_eq!(fake(&state)["vms"], json!({}));

    // VMs that never report their address: a timeout naming each of them.
    config(&state, json!({"address_after_polls": 1000}));
    let err = rt.block_on(hyperv::up(&lab, &opts, &host)).unwrap_err();
    match &err {
        HyperVError::Timeout { missing, .. } => assert_eq!(missing.len(), 3, "{err}"),
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string()
            .contains("classroom-k8s-master-1 is Running, expected 192.168.90.10, reports []"),
        "{err}"
    );

    // A VM of the lab's name that duststack did not create: up refuses, down keeps it.
    config(&state, json!({}));
    rt.block_on(hyperv::down(&lab, &opts, &host)).unwrap();
    let mut f = fake(&state);
    f["vms"]["classroom-k8s-node-1"] = json!({"state": "Running", "memory": 1u64 << 30, "cpu": 1, "notes": "someone else's", "nat_ip": "172.30.0.99", "polls": 0, "adapters": []});
    fs::write(state.join("state.json"), f.to_string()).unwrap();
    let err = rt
        .block_on(hyperv::up(&lab, &opts, &host))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("VM classroom-k8s-node-1 exists but was not created by duststack"),
        "{err}"
    );
    let down = rt.block_on(hyperv::down(&lab, &opts, &host)).unwrap();
    assert_eq!(down.kept, ["classroom-k8s-node-1"]);
    assert!(fake(&state)["vms"]["classroom-k8s-node-1"].is_object());

    // A seed that was never made: clear error before anything runs on the host.
    fs::remove_file(lab.seed_path(&lab.nodes[2])).unwrap();
    let before = calls(&state).len();
    let err = rt
        .block_on(hyperv::up(&lab, &opts, &host))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("seed image of k8s-node-2 is missing at "),
        "{err}"
    );
    assert_eq!(calls(&state).len(), before);

    // No hyperv_host off Windows: told what to set.
    let err = rt
        .block_on(HyperVHost::connect(&opts))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("set hyperv_host"), "{err}");
}

/// `duststack lab up|status|down` with `hyperv_host` in the inventory: the CLI makes real seeds
/// (host keys generated here), drives the stand-in over SSH and writes the generated inventory.
#[test]
fn lab_hyperv_cli_up_status_down() {
    const DUSTSTACK: &str = env!("CARGO_BIN_EXE_duststack");
    let bed = TestBed::start(1).unwrap();
    let h = &bed.hosts()[0];
    let dir = h.workdir.join("hyperv-cli");
    let state = stand_in_on_path(h, &dir);
    let key = dir.join("id_ed25519");
    let ok = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(ok.success());
    let inv = dir.join("inv");
    fs::create_dir_all(inv.join("group_vars")).unwrap();
    fs::write(inv.join("hosts"), HOSTS).unwrap();
    fs::write(
        inv.join("group_vars/all.yml"),
        format!(
            "lab_name: classroom\nvcpu: 2\nvmem: 2048\nvirt_disk_size: 10G\n\
             base_image: /var/lib/duststack/images/debian-12.qcow2\nssh_key: {key}.pub\n\
             hyperv_parent_vhdx: 'C:\\ProgramData\\duststack\\base.vhdx'\nhyperv_poll_interval: 0.05\n\
             hyperv_wait_timeout: 20\nhyperv_host: {addr}\nhyperv_user: root\n\
             hyperv_ssh_private_key_file: {client}\n\
             hyperv_ssh_common_args: '-o UserKnownHostsFile={kh}'\n",
            key = key.display(),
            addr = h.addr,
            client = bed.client_key_path().display(),
            kh = bed.known_hosts_path().display(),
        ),
    )
    .unwrap();
    let generated = dir.join("generated");
    let lab = |action: &str| {
        let mut c = std::process::Command::new(DUSTSTACK);
        c.args(["lab", action, "-i"])
            .arg(&inv)
            .arg("--generated-dir")
            .arg(&generated);
        let out = bed.control_command(&c).output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        text
    };

    let up = lab("up");
    for want in [
        "seed classroom-k8s-master-1: uploaded",
        "vm classroom-k8s-node-2: created",
        "lab classroom: up",
    ] {
        assert!(up.contains(want), "{want}: {up}");
    }
    // The seeds are real: an ISO 9660 volume labelled CIDATA with the node's host key.
    let seed = fs::read(generated.join("classroom-seeds/classroom-k8s-node-1-seed.img")).unwrap();
    assert_eq!(duststack::lab::seed_iso::label(&seed).unwrap(), "CIDATA");
    let host_pub = duststack::lab::seed_iso::read(&seed, "duststack/ssh_host_ed25519_key.pub")
        .unwrap()
        .unwrap();
    let b64 = String::from_utf8(host_pub)
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let kh = fs::read_to_string(generated.join("classroom.known_hosts")).unwrap();
    assert!(
        kh.lines()
            .any(|l| l.starts_with("k8s-node-1,") && l.contains(&b64)),
        "{kh}"
    );
    // The generated inventory reaches the VMs on their internal addresses.
    let gen = Inventory::load(&[generated.join("classroom.yml")]).unwrap();
    let vars = gen.vars_for_host("k8s-node-1", None).unwrap();
    assert_eq!(vars["ansible_host"], "192.168.90.11");
    assert_eq!(gen.group_hosts("k8s_node"), ["k8s-node-1", "k8s-node-2"]);

    let again = lab("up");
    assert!(again.contains("lab classroom: no change"), "{again}");
    let status = lab("status");
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("k8s-master-1") && l.contains("Running")),
        "{status}"
    );
    let down = lab("down");
    assert!(down.contains("removed"), "{down}");
    assert!(!generated.join("classroom.yml").exists());
    assert!(!generated.join("classroom-seeds").exists());
    let vms = fake(&state)["vms"]
        .as_object()
        .map(|m| m.len())
        .unwrap_or(0);
    assert_eq!(vms, 0, "{}", fake(&state));
}
