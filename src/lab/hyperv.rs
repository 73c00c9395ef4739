//! The lab as PowerShell for Hyper-V: an `up` script (switches, differencing disks, Gen 2 VMs
//! with static MACs and a seed DVD), a `status` script (one poll of states and guest addresses),
//! a `down` script that removes only what duststack created (marked through `Notes`), and the
//! small `files`/`put` scripts that upload seeds. Every script ends by printing one JSON line
//! (`ConvertTo-Json -Compress`, key `duststack` = the script kind) and reports a failure as one
//! `duststack-error {json}` line on stderr with exit code 1.
//!
//! [`host`] runs the scripts (locally on Windows, or over SSH on `hyperv_host`), [`flow`] is
//! `up`/`status`/`down` on top of them, [`options`] reads the `hyperv_*` inventory variables.

pub mod flow;
pub mod host;
pub mod options;

pub use flow::{
    down, listing, status, up, DownReport, Item, Listing, NodeAddresses, UpReport, VmStatus,
};
pub use host::{HyperVError, HyperVHost};
pub use options::{HyperVOptions, NatSwitch};

use super::model::Lab;

/// A PowerShell single-quoted literal: `'` (and the typographic quotes PowerShell also
/// treats as single quotes) are doubled, so nothing inside is ever expanded or executed.
pub fn ps_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The `Notes` marker on VMs and switches duststack created for `lab`.
pub fn marker(lab: &Lab) -> String {
    format!("duststack-lab:{}", lab.name)
}

/// The prefix of the one stderr line a failing script writes (followed by
/// `{"command": ..., "message": ...}`).
pub const ERROR_PREFIX: &str = "duststack-error ";

/// A value for a `#` comment: control characters (a newline would end the comment) become
/// spaces, and it is quoted like a literal so the comment reads unambiguously.
fn comment_value(value: &str) -> String {
    ps_quote(&value.replace(|c: char| c.is_control(), " "))
}

/// `52:54:00:aa:bb:cc` → `525400AABBCC` (Hyper-V's form).
pub fn hyperv_mac(mac: &str) -> String {
    mac.replace([':', '-'], "").to_ascii_uppercase()
}

/// Finds a VM or switch by exact name (the `-Name` parameters take wildcards).
fn lookup(cmdlet: &str, name: &str) -> String {
    format!(
        "{cmdlet} | Where-Object {{ $_.Name -eq {} }} | Select-Object -First 1",
        ps_quote(name)
    )
}

/// `@('a', 'b')`.
fn ps_array(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| ps_quote(i)).collect();
    format!("@({})", quoted.join(", "))
}

/// The start every script shares: a title comment, stop on the first error, no progress
/// records (they would go to stderr as CLIXML), UTF-8 output, the error trap, and `Note`
/// collecting what was done into `$items`.
fn prelude(kind: &str, title: &str) -> String {
    let mut s = format!("# duststack {kind}: {}\n", comment_value(title));
    s.push_str("$ErrorActionPreference = 'Stop'\n");
    s.push_str("$ProgressPreference = 'SilentlyContinue'\n");
    s.push_str("try { [Console]::OutputEncoding = [Text.Encoding]::UTF8 } catch { }\n");
    s.push_str(&format!(
        "trap {{ [Console]::Error.WriteLine({} + ([ordered]@{{ command = [string]$_.InvocationInfo.MyCommand.Name; message = [string]$_.Exception.Message }} | ConvertTo-Json -Compress)); exit 1 }}\n",
        ps_quote(ERROR_PREFIX)
    ));
    s.push_str("$items = New-Object System.Collections.ArrayList\n");
    s.push_str("function Note([string]$Kind, [string]$Name, [string]$Change) { [void]$items.Add([ordered]@{ kind = $Kind; name = $Name; change = $Change }) }\n");
    s
}

/// The closing JSON line: `{"duststack":"<kind>", <fields>}`.
fn result_line(kind: &str, fields: &[(&str, &str)]) -> String {
    let mut parts = vec![format!("duststack = {}", ps_quote(kind))];
    parts.extend(fields.iter().map(|(k, v)| format!("{k} = {v}")));
    format!(
        "[ordered]@{{ {} }} | ConvertTo-Json -Compress -Depth 6\n",
        parts.join("; ")
    )
}

/// The `up` script: checks the NAT switch and the parent VHDX exist, creates the internal
/// (and an External) switch if missing, then per node a differencing disk (never overwritten)
/// and a Gen 2 VM (skipped when it exists; refused when a VM of that name is not duststack's),
/// and starts the VMs. Reports `switch`, `disk`, `vm` and `start` items.
pub fn render_up(lab: &Lab, opts: &HyperVOptions) -> String {
    let mark = ps_quote(&marker(lab));
    let mut s = prelude("lab up", &lab.name);
    s.push('\n');
    match &opts.nat_switch {
        NatSwitch::Existing(name) => {
            s.push_str(&format!(
                "if (-not ({})) {{ throw {} }}\n",
                lookup("Get-VMSwitch", name),
                ps_quote(&format!(
                    "Hyper-V switch {name} does not exist (set hyperv_switch to an existing switch, or hyperv_external_adapter)"
                ))
            ));
            s.push_str(&format!("Note 'switch' {} 'existing'\n", ps_quote(name)));
        }
        NatSwitch::External { name, net_adapter } => s.push_str(&format!(
            "if (-not ({})) {{\n    New-VMSwitch -Name {n} -NetAdapterName {} -AllowManagementOS $true -Notes {mark} | Out-Null\n    Note 'switch' {n} 'created'\n}} else {{ Note 'switch' {n} 'unchanged' }}\n",
            lookup("Get-VMSwitch", name),
            ps_quote(net_adapter),
            n = ps_quote(name),
        )),
    }
    s.push_str(&format!(
        "if (-not ({})) {{\n    New-VMSwitch -Name {n} -SwitchType Internal -Notes {mark} | Out-Null\n    Note 'switch' {n} 'created'\n}} else {{ Note 'switch' {n} 'unchanged' }}\n",
        lookup("Get-VMSwitch", &opts.internal_switch),
        n = ps_quote(&opts.internal_switch),
    ));
    s.push_str(&format!(
        "if (-not (Test-Path -LiteralPath {p})) {{ throw {} }}\n",
        ps_quote(&format!(
            "parent disk {} does not exist on the Hyper-V host (hyperv_parent_vhdx)",
            opts.parent_vhdx
        )),
        p = ps_quote(&opts.parent_vhdx),
    ));
    s.push_str(&format!(
        "New-Item -ItemType Directory -Force -Path {} | Out-Null\n",
        ps_quote(&opts.vm_dir)
    ));
    for node in &lab.nodes {
        let vm_name = lab.domain_name(node);
        let name = ps_quote(&vm_name);
        let vhd = ps_quote(&opts.vhd_path(lab, node));
        s.push_str(&format!(
            "\n# {} ({})\n",
            comment_value(&node.name),
            node.role
        ));
        s.push_str(&format!("$vm = {}\n", lookup("Get-VM", &vm_name)));
        s.push_str(&format!(
            "if ($vm -and $vm.Notes -ne {mark}) {{ throw {} }}\n",
            ps_quote(&format!(
                "VM {vm_name} exists but was not created by duststack; rename or remove it"
            ))
        ));
        s.push_str("if (-not $vm) {\n");
        s.push_str(&format!(
            "    if (-not (Test-Path -LiteralPath {vhd})) {{\n        New-VHD -Path {vhd} -ParentPath {} -Differencing | Out-Null\n        Resize-VHD -Path {vhd} -SizeBytes {}\n        Note 'disk' {vhd} 'created'\n    }} else {{ Note 'disk' {vhd} 'unchanged' }}\n",
            ps_quote(&opts.parent_vhdx),
            node.disk_gib * 1024 * 1024 * 1024
        ));
        s.push_str(&format!(
            "    $vm = New-VM -Name {name} -Generation 2 -MemoryStartupBytes {} -VHDPath {vhd} -SwitchName {}\n",
            node.memory_mib * 1024 * 1024,
            ps_quote(opts.nat_switch.name())
        ));
        s.push_str(&format!(
            "    Set-VM -VM $vm -Notes {mark} -AutomaticCheckpointsEnabled $false\n"
        ));
        s.push_str(&format!(
            "    Set-VMProcessor -VM $vm -Count {}\n",
            node.vcpu
        ));
        s.push_str("    Set-VMMemory -VM $vm -DynamicMemoryEnabled $false\n");
        s.push_str("    Set-VMFirmware -VM $vm -EnableSecureBoot Off\n");
        s.push_str(&format!(
            "    Get-VMNetworkAdapter -VM $vm | Set-VMNetworkAdapter -StaticMacAddress {}\n",
            ps_quote(&hyperv_mac(&node.nat_nic().mac))
        ));
        s.push_str(&format!(
            "    Add-VMNetworkAdapter -VM $vm -Name 'internal' -SwitchName {} -StaticMacAddress {}\n",
            ps_quote(&opts.internal_switch),
            ps_quote(&hyperv_mac(&node.internal_nic().mac))
        ));
        s.push_str(&format!(
            "    Add-VMDvdDrive -VM $vm -Path {}\n",
            ps_quote(&opts.seed_path(lab, node))
        ));
        s.push_str(&format!("    Note 'vm' {name} 'created'\n"));
        s.push_str(&format!("}} else {{ Note 'vm' {name} 'unchanged' }}\n"));
        s.push_str(&format!(
            "if ($vm.State -ne 'Running') {{ Start-VM -VM $vm; Note 'start' {name} 'started' }} else {{ Note 'start' {name} 'unchanged' }}\n"
        ));
    }
    s.push('\n');
    s.push_str(&result_line("up", &[("items", "$items")]));
    s
}

/// One poll of the lab (the `status` script): per node VM whether it exists, its state,
/// vCPUs, startup memory, whether it is duststack's, and the IPv4 addresses its adapters report
/// (`Get-VMNetworkAdapter`); plus every VM and switch carrying the lab's marker, and which of
/// the lab's disk and seed files exist. Used by `status`, by `up` to wait for addresses, and
/// by `down` to verify that nothing remains.
pub fn render_status(lab: &Lab, opts: &HyperVOptions) -> String {
    let names: Vec<String> = lab.nodes.iter().map(|n| lab.domain_name(n)).collect();
    let files: Vec<String> = lab
        .nodes
        .iter()
        .flat_map(|n| [opts.vhd_path(lab, n), opts.seed_path(lab, n)])
        .collect();
    let mut s = prelude("lab status", &lab.name);
    s.push_str(&format!("$mark = {}\n", ps_quote(&marker(lab))));
    s.push_str("$vms = New-Object System.Collections.ArrayList\n");
    s.push_str(&format!("foreach ($name in {}) {{\n", ps_array(&names)));
    s.push_str("    $vm = Get-VM | Where-Object { $_.Name -eq $name } | Select-Object -First 1\n");
    s.push_str("    if (-not $vm) { [void]$vms.Add([ordered]@{ name = $name; exists = $false }); continue }\n");
    s.push_str("    $ips = @(Get-VMNetworkAdapter -VM $vm | ForEach-Object { $_.IPAddresses } | Where-Object { $_ -match '^\\d+\\.\\d+\\.\\d+\\.\\d+$' })\n");
    s.push_str("    [void]$vms.Add([ordered]@{ name = $name; exists = $true; state = [string]$vm.State; vcpu = [int]$vm.ProcessorCount; memory_mib = [int64]($vm.MemoryStartup / 1MB); owned = ($vm.Notes -eq $mark); addresses = $ips })\n");
    s.push_str("}\n");
    s.push_str(
        "$marked = @(Get-VM | Where-Object { $_.Notes -eq $mark } | ForEach-Object { $_.Name })\n",
    );
    s.push_str("$switches = @(Get-VMSwitch | Where-Object { $_.Notes -eq $mark } | ForEach-Object { $_.Name })\n");
    s.push_str(&format!(
        "$files = @({} | Where-Object {{ Test-Path -LiteralPath $_ }})\n",
        ps_array(&files)
    ));
    s.push_str(&result_line(
        "status",
        &[
            ("vms", "$vms"),
            ("marked_vms", "$marked"),
            ("marked_switches", "$switches"),
            ("files", "$files"),
        ],
    ));
    s
}

/// The `down` script: turns off and removes the lab's VMs (only those marked as duststack's;
/// others are reported as `kept`), deletes their disks and seeds, removes switches only if
/// duststack created them, and the uploaded scripts. Reports `vm`, `file`, `switch` items.
pub fn render_down(lab: &Lab, opts: &HyperVOptions) -> String {
    let mark = ps_quote(&marker(lab));
    let mut s = prelude("lab down", &lab.name);
    for node in &lab.nodes {
        let vm_name = lab.domain_name(node);
        let name = ps_quote(&vm_name);
        s.push_str(&format!("\n$vm = {}\n", lookup("Get-VM", &vm_name)));
        s.push_str(&format!(
            "if ($vm -and $vm.Notes -ne {mark}) {{\n    Write-Warning {}\n    Note 'vm' {name} 'kept'\n}} else {{\n",
            ps_quote(&format!(
                "VM {vm_name} was not created by duststack; left alone"
            ))
        ));
        s.push_str(&format!("    if ($vm) {{\n        Stop-VM -VM $vm -TurnOff -Force\n        Remove-VM -VM $vm -Force\n        Note 'vm' {name} 'removed'\n    }}\n"));
        for path in [opts.vhd_path(lab, node), opts.seed_path(lab, node)] {
            let p = ps_quote(&path);
            s.push_str(&format!(
                "    if (Test-Path -LiteralPath {p}) {{ Remove-Item -LiteralPath {p} -Force; Note 'file' {p} 'removed' }}\n"
            ));
        }
        s.push_str("}\n");
    }
    let mut switches = vec![opts.internal_switch.clone()];
    if let NatSwitch::External { name, .. } = &opts.nat_switch {
        switches.push(name.clone());
    }
    for sw in switches {
        let n = ps_quote(&sw);
        s.push_str(&format!("\n$sw = {}\n", lookup("Get-VMSwitch", &sw)));
        s.push_str(&format!(
            "if ($sw -and $sw.Notes -eq {mark}) {{ $sw | Remove-VMSwitch -Force; Note 'switch' {n} 'removed' }}\n"
        ));
    }
    let dir = ps_quote(&opts.vm_dir);
    s.push_str(&format!(
        "\nif (Test-Path -LiteralPath {dir}) {{\n    Get-ChildItem -LiteralPath {dir} -Force -Filter '.duststack-*.ps1' | ForEach-Object {{ Remove-Item -LiteralPath $_.FullName -Force; Note 'file' $_.FullName 'removed' }}\n}}\n"
    ));
    s.push_str(&result_line("down", &[("items", "$items")]));
    s
}

/// A script reporting the SHA-256 of each of `paths` that exists (`files`), so only missing or
/// changed seeds are uploaded.
pub fn render_file_hashes(paths: &[String]) -> String {
    let mut s = prelude("files", "sha256");
    s.push_str("$files = New-Object System.Collections.ArrayList\n");
    s.push_str(&format!(
        "foreach ($p in {}) {{\n    if (Test-Path -LiteralPath $p) {{ [void]$files.Add([ordered]@{{ path = $p; sha256 = (Get-FileHash -LiteralPath $p -Algorithm SHA256).Hash }}) }}\n}}\n",
        ps_array(paths)
    ));
    s.push_str(&result_line("files", &[("files", "$files")]));
    s
}

/// A script writing its standard input (raw bytes) to `path` through a temporary file beside
/// it (creating the directory), and reporting the written file's size and SHA-256 (`put`).
pub fn render_put(path: &str) -> String {
    let p = ps_quote(path);
    let mut s = prelude("put", path);
    s.push_str(&format!("$path = {p}\n"));
    s.push_str("New-Item -ItemType Directory -Force -Path (Split-Path -Parent $path) | Out-Null\n");
    s.push_str("$tmp = $path + '.duststack-upload'\n");
    s.push_str("$in = [Console]::OpenStandardInput()\n");
    s.push_str("$out = [IO.File]::Create($tmp)\n");
    s.push_str("try { $in.CopyTo($out) } finally { $out.Close() }\n");
    s.push_str("[IO.File]::Copy($tmp, $path, $true)\n");
    s.push_str("[IO.File]::Delete($tmp)\n");
    s.push_str(&result_line(
        "put",
        &[
            ("path", "$path"),
            ("bytes", "(Get-Item -LiteralPath $path).Length"),
            (
                "sha256",
                "(Get-FileHash -LiteralPath $path -Algorithm SHA256).Hash",
            ),
        ],
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::model::tests::sample_lab;

    /// The script with every single-quoted literal removed (what PowerShell would interpret).
    fn code_outside_literals(script: &str) -> String {
        let quotes = ['\'', '\u{2018}', '\u{2019}', '\u{201A}', '\u{201B}'];
        let mut out = String::new();
        let mut chars = script.chars().peekable();
        let mut inside = false;
        while let Some(c) = chars.next() {
            if inside {
                if quotes.contains(&c) {
                    if chars.peek().is_some_and(|n| quotes.contains(n)) {
                        chars.next();
                    } else {
                        inside = false;
                        out.push_str("''");
                    }
                }
            } else if quotes.contains(&c) {
                inside = true;
            } else {
                out.push(c);
            }
        }
        assert!(!inside, "unterminated literal in:\n{script}");
        out
    }

    #[test]
    fn lab_ps_quote_escapes() {
        assert_eq!(ps_quote("plain"), "'plain'");
        assert_eq!(ps_quote("it's"), "'it''s'");
        assert_eq!(ps_quote("a\u{2019}b"), "'a\u{2019}\u{2019}b'");
        assert_eq!(ps_quote("$(calc); x"), "'$(calc); x'");
    }

    #[test]
    fn lab_hyperv_up_has_commands_and_values() {
        let lab = sample_lab();
        let opts = HyperVOptions::defaults(&lab);
        let up = render_up(&lab, &opts);
        let node = &lab.nodes[0];
        let mac1 = hyperv_mac(&node.nat_nic().mac);
        assert_eq!(mac1.len(), 12);
        assert!(mac1.starts_with("525400"));
        for want in [
            "New-VMSwitch -Name 'internal' -SwitchType Internal -Notes 'duststack-lab:classroom'",
            "Where-Object { $_.Name -eq 'Default Switch' }",
            "New-VHD -Path 'C:\\ProgramData\\duststack\\classroom\\classroom-k8s-master-1.vhdx' -ParentPath 'C:\\ProgramData\\duststack\\classroom\\base.vhdx' -Differencing",
            "Resize-VHD -Path 'C:\\ProgramData\\duststack\\classroom\\classroom-k8s-master-1.vhdx' -SizeBytes 21474836480",
            "$vm = New-VM -Name 'classroom-k8s-master-1' -Generation 2 -MemoryStartupBytes 4294967296 -VHDPath 'C:\\ProgramData\\duststack\\classroom\\classroom-k8s-master-1.vhdx' -SwitchName 'Default Switch'",
            "Set-VMProcessor -VM $vm -Count 2",
            "Set-VMMemory -VM $vm -DynamicMemoryEnabled $false",
            "Set-VMFirmware -VM $vm -EnableSecureBoot Off",
            &format!("Set-VMNetworkAdapter -StaticMacAddress '{mac1}'"),
            &format!(
                "Add-VMNetworkAdapter -VM $vm -Name 'internal' -SwitchName 'internal' -StaticMacAddress '{}'",
                hyperv_mac(&node.internal_nic().mac)
            ),
            "Add-VMDvdDrive -VM $vm -Path 'C:\\ProgramData\\duststack\\classroom\\classroom-k8s-master-1-seed.iso'",
            "Start-VM -VM $vm",
        ] {
            assert!(up.contains(want), "missing {want:?} in:\n{up}");
        }
        assert_eq!(up.matches("$vm = New-VM ").count(), lab.nodes.len());
        // The default switch exists already: never created.
        assert!(!up.contains("New-VMSwitch -Name 'Default Switch'"));

        let ext = HyperVOptions {
            nat_switch: NatSwitch::External {
                name: "lab-nat".into(),
                net_adapter: "Ethernet".into(),
            },
            ..opts.clone()
        };
        let up = render_up(&lab, &ext);
        assert!(up.contains("New-VMSwitch -Name 'lab-nat' -NetAdapterName 'Ethernet' -AllowManagementOS $true -Notes 'duststack-lab:classroom'"), "{up}");
        assert!(up.contains("-SwitchName 'lab-nat'"));
    }

    #[test]
    fn lab_hyperv_wait_and_down_scripts() {
        let lab = sample_lab();
        let opts = HyperVOptions::defaults(&lab);
        let wait = render_status(&lab, &opts);
        assert!(wait.contains("foreach ($name in @('classroom-k8s-master-1', 'classroom-k8s-node-1', 'classroom-k8s-node-2'))"), "{wait}");
        assert!(wait.contains("Get-VMNetworkAdapter -VM $vm | ForEach-Object { $_.IPAddresses }"));
        assert!(wait.contains("$mark = 'duststack-lab:classroom'"));
        // One poll: the waiting loop is on the caller's side.
        assert!(!wait.contains("while"), "{wait}");

        let down = render_down(&lab, &opts);
        for want in [
            "Stop-VM -VM $vm -TurnOff -Force",
            "Remove-VM -VM $vm -Force",
            "if ($vm -and $vm.Notes -ne 'duststack-lab:classroom')",
            "Remove-Item -LiteralPath 'C:\\ProgramData\\duststack\\classroom\\classroom-k8s-node-2.vhdx' -Force",
            "Remove-Item -LiteralPath 'C:\\ProgramData\\duststack\\classroom\\classroom-k8s-node-2-seed.iso' -Force",
            "if ($sw -and $sw.Notes -eq 'duststack-lab:classroom') { $sw | Remove-VMSwitch -Force; Note 'switch' 'internal' 'removed' }",
        ] {
            assert!(down.contains(want), "missing {want:?} in:\n{down}");
        }
        assert_eq!(down.matches("Remove-VM -VM").count(), 3);
        // The pre-existing Default Switch is never a removal candidate.
        assert!(!down.contains("'Default Switch'"));
    }

    #[test]
    fn lab_hyperv_hostile_names_stay_inside_literals() {
        let mut lab = sample_lab();
        let hostile = "evil'; Remove-Item C:\\ -Recurse; $(calc) \u{2019}; `whoami`\nwhoami";
        lab.name = hostile.into();
        lab.nodes[0].name = format!("n{hostile}");
        let opts = HyperVOptions {
            nat_switch: NatSwitch::External {
                name: format!("sw{hostile}"),
                net_adapter: format!("ad{hostile}"),
            },
            internal_switch: format!("in{hostile}"),
            vm_dir: format!("C:\\d{hostile}"),
            parent_vhdx: format!("C:\\p{hostile}.vhdx"),
            ..HyperVOptions::defaults(&lab)
        };
        for script in [
            render_up(&lab, &opts),
            render_status(&lab, &opts),
            render_down(&lab, &opts),
            render_file_hashes(&[opts.seed_path(&lab, &lab.nodes[0])]),
            render_put(&opts.seed_path(&lab, &lab.nodes[0])),
        ] {
            let code = code_outside_literals(&script);
            for bad in ["evil", "calc", "Remove-Item C:", "whoami"] {
                assert!(
                    !code.contains(bad),
                    "{bad:?} escaped its literal:\n{script}"
                );
            }
            assert!(script.contains("evil''; Remove-Item"), "{script}");
        }
    }
}
