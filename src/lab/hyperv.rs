//! The lab as PowerShell for Hyper-V: an `up` script (switches, differencing disks, Gen 2 VMs
//! with static MACs and a seed DVD), a script that waits for guest addresses, and a `down`
//! script that removes only what duststack created (marked through `Notes`).

use super::model::{Lab, Node};

/// How VMs reach the outside world (nic1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatSwitch {
    /// Use a switch that already exists (e.g. Hyper-V's `Default Switch`); never removed.
    Existing(String),
    /// Create (if missing) an External switch bound to a host network adapter.
    External {
        /// Switch name.
        name: String,
        /// Host adapter name (`Get-NetAdapter`), e.g. `Ethernet`.
        net_adapter: String,
    },
}

impl NatSwitch {
    /// The switch name.
    pub fn name(&self) -> &str {
        match self {
            NatSwitch::Existing(name) => name,
            NatSwitch::External { name, .. } => name,
        }
    }
}

/// Hyper-V specifics that the inventory does not say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HyperVOptions {
    /// Switch for nic1.
    pub nat_switch: NatSwitch,
    /// Internal switch for nic2 (created if missing).
    pub internal_switch: String,
    /// Windows directory for the VMs' disks and seed ISOs.
    pub vm_dir: String,
    /// The base image as VHDX (parent of every differencing disk).
    pub parent_vhdx: String,
}

impl HyperVOptions {
    /// Defaults: `Default Switch` for NAT, the lab's nic2 name for the internal switch,
    /// `C:\ProgramData\duststack\<lab>` for disks, `base.vhdx` in it as parent.
    pub fn defaults(lab: &Lab) -> HyperVOptions {
        let vm_dir = format!("C:\\ProgramData\\duststack\\{}", lab.name);
        HyperVOptions {
            nat_switch: NatSwitch::Existing("Default Switch".into()),
            internal_switch: lab
                .networks
                .get(1)
                .map(|n| n.name.clone())
                .unwrap_or_else(|| "internal".into()),
            parent_vhdx: format!("{vm_dir}\\base.vhdx"),
            vm_dir,
        }
    }

    /// Path of a node's differencing disk.
    pub fn vhd_path(&self, lab: &Lab, node: &Node) -> String {
        format!(
            "{}\\{}.vhdx",
            self.vm_dir.trim_end_matches('\\'),
            lab.domain_name(node)
        )
    }

    /// Path of a node's seed ISO.
    pub fn seed_path(&self, lab: &Lab, node: &Node) -> String {
        format!(
            "{}\\{}-seed.iso",
            self.vm_dir.trim_end_matches('\\'),
            lab.domain_name(node)
        )
    }
}

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

/// A value for a `#` comment: control characters (a newline would end the comment) become
/// spaces, and it is quoted like a literal so the comment reads unambiguously.
fn comment_value(value: &str) -> String {
    ps_quote(&value.replace(|c: char| c.is_control(), " "))
}

/// `52:54:00:aa:bb:cc` → `525400AABBCC` (Hyper-V's form).
fn hyperv_mac(mac: &str) -> String {
    mac.replace([':', '-'], "").to_ascii_uppercase()
}

/// Finds a VM or switch by exact name (the `-Name` parameters take wildcards).
fn lookup(cmdlet: &str, name: &str) -> String {
    format!(
        "{cmdlet} | Where-Object {{ $_.Name -eq {} }} | Select-Object -First 1",
        ps_quote(name)
    )
}

/// The `up` script: creates switches (if missing), one differencing disk and Gen 2 VM per node
/// (skipped when the VM exists; disks are never overwritten), and starts the VMs.
pub fn render_up(lab: &Lab, opts: &HyperVOptions) -> String {
    let mark = ps_quote(&marker(lab));
    let mut s = String::new();
    s.push_str(&format!(
        "# duststack lab up: {}\n",
        comment_value(&lab.name)
    ));
    s.push_str("$ErrorActionPreference = 'Stop'\n\n");
    match &opts.nat_switch {
        NatSwitch::Existing(name) => s.push_str(&format!(
            "if (-not ({})) {{ throw {} }}\n",
            lookup("Get-VMSwitch", name),
            ps_quote(&format!("Hyper-V switch {name} does not exist"))
        )),
        NatSwitch::External { name, net_adapter } => s.push_str(&format!(
            "if (-not ({})) {{\n    New-VMSwitch -Name {} -NetAdapterName {} -AllowManagementOS $true -Notes {mark} | Out-Null\n}}\n",
            lookup("Get-VMSwitch", name),
            ps_quote(name),
            ps_quote(net_adapter)
        )),
    }
    s.push_str(&format!(
        "if (-not ({})) {{\n    New-VMSwitch -Name {} -SwitchType Internal -Notes {mark} | Out-Null\n}}\n",
        lookup("Get-VMSwitch", &opts.internal_switch),
        ps_quote(&opts.internal_switch)
    ));
    s.push_str(&format!(
        "New-Item -ItemType Directory -Force -Path {} | Out-Null\n",
        ps_quote(&opts.vm_dir)
    ));
    for node in &lab.nodes {
        let name = ps_quote(&lab.domain_name(node));
        let vhd = ps_quote(&opts.vhd_path(lab, node));
        s.push_str(&format!(
            "\n# {} ({})\n",
            comment_value(&node.name),
            node.role
        ));
        s.push_str(&format!(
            "$vm = {}\n",
            lookup("Get-VM", &lab.domain_name(node))
        ));
        s.push_str("if (-not $vm) {\n");
        s.push_str(&format!(
            "    if (-not (Test-Path -LiteralPath {vhd})) {{\n        New-VHD -Path {vhd} -ParentPath {} -Differencing | Out-Null\n        Resize-VHD -Path {vhd} -SizeBytes {}\n    }}\n",
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
        s.push_str("}\n");
        s.push_str("if ($vm.State -ne 'Running') { Start-VM -VM $vm }\n");
    }
    s
}

/// A script that polls every lab VM until its adapters report an IPv4 address and prints
/// `<vm> <ip>[,<ip>...]` per VM; fails after `-TimeoutSeconds` (default 600).
pub fn render_wait_addresses(lab: &Lab) -> String {
    let names: Vec<String> = lab
        .nodes
        .iter()
        .map(|n| ps_quote(&lab.domain_name(n)))
        .collect();
    let mut s = String::new();
    s.push_str("param([int]$TimeoutSeconds = 600)\n");
    s.push_str("$ErrorActionPreference = 'Stop'\n");
    s.push_str(&format!("$names = @({})\n", names.join(", ")));
    s.push_str("$found = @{}\n");
    s.push_str("$deadline = (Get-Date).AddSeconds($TimeoutSeconds)\n");
    s.push_str("while ($found.Count -lt $names.Count) {\n");
    s.push_str("    foreach ($name in $names) {\n");
    s.push_str("        if ($found.ContainsKey($name)) { continue }\n");
    s.push_str(
        "        $vm = Get-VM | Where-Object { $_.Name -eq $name } | Select-Object -First 1\n",
    );
    s.push_str("        if (-not $vm) { throw ('VM ' + $name + ' does not exist') }\n");
    s.push_str("        $ips = @(Get-VMNetworkAdapter -VM $vm | Select -ExpandProperty IPAddresses | Where-Object { $_ -match '^\\d+\\.\\d+\\.\\d+\\.\\d+$' })\n");
    s.push_str("        if ($ips.Count -gt 0) {\n");
    s.push_str("            $found[$name] = $ips -join ','\n");
    s.push_str("            Write-Output ($name + ' ' + $found[$name])\n");
    s.push_str("        }\n");
    s.push_str("    }\n");
    s.push_str("    if ($found.Count -lt $names.Count) {\n");
    s.push_str("        if ((Get-Date) -gt $deadline) {\n");
    s.push_str("            $missing = $names | Where-Object { -not $found.ContainsKey($_) }\n");
    s.push_str(
        "            throw ('timed out waiting for addresses of: ' + ($missing -join ', '))\n",
    );
    s.push_str("        }\n");
    s.push_str("        Start-Sleep -Seconds 5\n");
    s.push_str("    }\n");
    s.push_str("}\n");
    s
}

/// The `down` script: turns off and removes the lab's VMs (only those marked as duststack's),
/// deletes their disks and seeds, and removes switches only if duststack created them.
pub fn render_down(lab: &Lab, opts: &HyperVOptions) -> String {
    let mark = ps_quote(&marker(lab));
    let mut s = String::new();
    s.push_str(&format!(
        "# duststack lab down: {}\n",
        comment_value(&lab.name)
    ));
    s.push_str("$ErrorActionPreference = 'Stop'\n");
    for node in &lab.nodes {
        let name = lab.domain_name(node);
        s.push_str(&format!("\n$vm = {}\n", lookup("Get-VM", &name)));
        s.push_str(&format!(
            "if ($vm -and $vm.Notes -ne {mark}) {{\n    Write-Warning {}\n}} else {{\n",
            ps_quote(&format!(
                "VM {name} was not created by duststack; left alone"
            ))
        ));
        s.push_str("    if ($vm) {\n        Stop-VM -VM $vm -TurnOff -Force\n        Remove-VM -VM $vm -Force\n    }\n");
        for path in [opts.vhd_path(lab, node), opts.seed_path(lab, node)] {
            let p = ps_quote(&path);
            s.push_str(&format!(
                "    if (Test-Path -LiteralPath {p}) {{ Remove-Item -LiteralPath {p} -Force }}\n"
            ));
        }
        s.push_str("}\n");
    }
    let mut switches = vec![opts.internal_switch.clone()];
    if let NatSwitch::External { name, .. } = &opts.nat_switch {
        switches.push(name.clone());
    }
    for sw in switches {
        s.push_str(&format!("\n$sw = {}\n", lookup("Get-VMSwitch", &sw)));
        s.push_str(&format!(
            "if ($sw -and $sw.Notes -eq {mark}) {{ $sw | Remove-VMSwitch -Force }}\n"
        ));
    }
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
        let wait = render_wait_addresses(&lab);
        assert!(wait.contains("$names = @('classroom-k8s-master-1', 'classroom-k8s-node-1', 'classroom-k8s-node-2')"), "{wait}");
        assert!(wait.contains("Get-VMNetworkAdapter -VM $vm | Select -ExpandProperty IPAddresses"));
        assert!(wait.contains("$TimeoutSeconds"));

        let down = render_down(&lab, &opts);
        for want in [
            "Stop-VM -VM $vm -TurnOff -Force",
            "Remove-VM -VM $vm -Force",
            "if ($vm -and $vm.Notes -ne 'duststack-lab:classroom')",
            "Remove-Item -LiteralPath 'C:\\ProgramData\\duststack\\classroom\\classroom-k8s-node-2.vhdx' -Force",
            "Remove-Item -LiteralPath 'C:\\ProgramData\\duststack\\classroom\\classroom-k8s-node-2-seed.iso' -Force",
            "if ($sw -and $sw.Notes -eq 'duststack-lab:classroom') { $sw | Remove-VMSwitch -Force }",
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
        };
        for script in [
            render_up(&lab, &opts),
            render_wait_addresses(&lab),
            render_down(&lab, &opts),
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
