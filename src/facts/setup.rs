//! The `setup` facts: distribution, os_family, versions, default IPv4, interfaces, memory,
//! vCPUs and swap, gathered with one shell command (no Python on the host).

use serde_json::{json, Map, Value};

/// Marks sections of the gathering command's output.
const SEP: &str = "@@DUSTSTACK@@";

/// The command run on the host; its output is read by [`parse`].
pub const COMMAND: &str = r#"S=@@DUSTSTACK@@
echo "$S os-release"; cat /etc/os-release 2>/dev/null
echo "$S hostname"; hostname 2>/dev/null || cat /etc/hostname
echo "$S fqdn"; hostname -f 2>/dev/null || hostname
echo "$S uname"; uname -s -r -m
echo "$S meminfo"; cat /proc/meminfo
echo "$S nproc"; grep -c ^processor /proc/cpuinfo
echo "$S route"; ip -4 route get 1.0.0.0 2>/dev/null || ip -4 route show default 2>/dev/null
echo "$S addr"; ip -o addr show 2>/dev/null
echo "$S link"; ip -o link show 2>/dev/null
echo "$S user"; id -un; id -u; id -g; echo "$HOME"
echo "$S machine-id"; cat /etc/machine-id 2>/dev/null
echo "$S pid1"; cat /proc/1/comm 2>/dev/null
echo "$S pkg"; for p in apt-get dnf yum zypper apk; do command -v $p >/dev/null 2>&1 && { echo $p; break; }; done
echo "$S end""#;

fn sections(output: &str) -> Map<String, Value> {
    let mut out = Map::new();
    let mut name: Option<String> = None;
    let mut buf = String::new();
    for line in output.lines() {
        if let Some(rest) = line.strip_prefix(SEP) {
            if let Some(n) = name.take() {
                out.insert(n, Value::String(std::mem::take(&mut buf)));
            }
            name = Some(rest.trim().to_owned());
            buf.clear();
        } else if name.is_some() {
            buf.push_str(line);
            buf.push('\n');
        }
    }
    out
}

fn os_release(text: &str) -> Map<String, Value> {
    let mut m = Map::new();
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            m.insert(
                k.trim().to_owned(),
                Value::String(v.trim().trim_matches('"').trim_matches('\'').to_owned()),
            );
        }
    }
    m
}

/// Distribution name as Ansible spells it, from os-release's ID.
fn distribution(id: &str, name: &str) -> String {
    match id {
        "debian" => "Debian",
        "ubuntu" => "Ubuntu",
        "rocky" => "Rocky",
        "almalinux" => "AlmaLinux",
        "centos" => "CentOS",
        "rhel" => "RedHat",
        "fedora" => "Fedora",
        "ol" => "OracleLinux",
        "opensuse-leap" | "opensuse-tumbleweed" | "sles" => "SUSE",
        "arch" => "Archlinux",
        "alpine" => "Alpine",
        _ => {
            return name
                .split_whitespace()
                .next()
                .unwrap_or("Unknown")
                .to_owned()
        }
    }
    .to_owned()
}

/// The Ansible `os_family` of a distribution.
pub fn os_family(distribution: &str) -> &'static str {
    match distribution {
        "Debian" | "Ubuntu" | "Linux Mint" | "Kali" | "Raspbian" => "Debian",
        "RedHat" | "Rocky" | "AlmaLinux" | "CentOS" | "Fedora" | "OracleLinux" | "Amazon" => {
            "RedHat"
        }
        "SUSE" => "Suse",
        "Archlinux" => "Archlinux",
        "Alpine" => "Alpine",
        _ => "Unknown",
    }
}

fn meminfo_mb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(&format!("{key}:")))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb / 1024)
}

/// Parses the output of [`COMMAND`] into `ansible_facts` (keys without the `ansible_` prefix).
pub fn parse(output: &str) -> Map<String, Value> {
    let s = sections(output);
    let get = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("");
    let osr = os_release(get("os-release"));
    let osr_get = |k: &str| osr.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let dist = distribution(&osr_get("ID"), &osr_get("NAME"));
    let version = osr_get("VERSION_ID");
    let major = version.split('.').next().unwrap_or("").to_owned();
    let mut f = Map::new();
    f.insert("distribution".into(), json!(dist));
    f.insert("os_family".into(), json!(os_family(&dist)));
    f.insert("distribution_version".into(), json!(version));
    f.insert("distribution_major_version".into(), json!(major));
    f.insert(
        "distribution_release".into(),
        json!(osr_get("VERSION_CODENAME")),
    );
    let hostname = get("hostname").trim().to_owned();
    f.insert("nodename".into(), json!(hostname));
    f.insert(
        "hostname".into(),
        json!(hostname.split('.').next().unwrap_or("")),
    );
    f.insert("fqdn".into(), json!(get("fqdn").trim()));
    let mut uname = get("uname").split_whitespace();
    f.insert("system".into(), json!(uname.next().unwrap_or("")));
    f.insert("kernel".into(), json!(uname.next().unwrap_or("")));
    f.insert("architecture".into(), json!(uname.next().unwrap_or("")));
    let mem = get("meminfo");
    f.insert(
        "memtotal_mb".into(),
        json!(meminfo_mb(mem, "MemTotal").unwrap_or(0)),
    );
    f.insert(
        "memfree_mb".into(),
        json!(meminfo_mb(mem, "MemFree").unwrap_or(0)),
    );
    f.insert(
        "swaptotal_mb".into(),
        json!(meminfo_mb(mem, "SwapTotal").unwrap_or(0)),
    );
    f.insert(
        "swapfree_mb".into(),
        json!(meminfo_mb(mem, "SwapFree").unwrap_or(0)),
    );
    let vcpus = get("nproc").trim().parse::<u64>().unwrap_or(1);
    f.insert("processor_vcpus".into(), json!(vcpus));
    f.insert("processor_count".into(), json!(vcpus));
    let (interfaces, ifmap) = interfaces(get("link"), get("addr"));
    f.insert("interfaces".into(), json!(interfaces));
    f.insert("default_ipv4".into(), default_ipv4(get("route"), &ifmap));
    f.insert(
        "all_ipv4_addresses".into(),
        json!(ifmap
            .values()
            .filter_map(|v| v.pointer("/ipv4/address"))
            .filter(|a| a != &&json!("127.0.0.1"))
            .collect::<Vec<_>>()),
    );
    for (name, data) in &ifmap {
        f.insert(name.replace(['-', '.'], "_"), data.clone());
    }
    let mut user = get("user").lines();
    f.insert("user_id".into(), json!(user.next().unwrap_or("")));
    f.insert(
        "user_uid".into(),
        json!(user.next().and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)),
    );
    f.insert(
        "user_gid".into(),
        json!(user.next().and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)),
    );
    f.insert("user_dir".into(), json!(user.next().unwrap_or("")));
    f.insert("machine_id".into(), json!(get("machine-id").trim()));
    let pid1 = get("pid1").trim();
    f.insert(
        "service_mgr".into(),
        json!(if pid1 == "systemd" { "systemd" } else { pid1 }),
    );
    let pkg = match get("pkg").trim() {
        "apt-get" => "apt",
        "" => "unknown",
        p => p,
    };
    f.insert("pkg_mgr".into(), json!(pkg));
    f
}

/// Interface names (from `ip -o link`) and per-interface facts (from `ip -o addr`).
fn interfaces(link: &str, addr: &str) -> (Vec<String>, Map<String, Value>) {
    let mut names = Vec::new();
    let mut map = Map::new();
    for line in link.lines() {
        // "2: eth0@if5: <BROADCAST,...> mtu 1500 ... link/ether aa:bb:..."
        let mut parts = line.split_whitespace();
        let Some(name) = parts.nth(1) else { continue };
        let name = name
            .trim_end_matches(':')
            .split('@')
            .next()
            .unwrap_or("")
            .to_owned();
        let words: Vec<&str> = line.split_whitespace().collect();
        let mtu = words
            .iter()
            .position(|w| *w == "mtu")
            .and_then(|i| words.get(i + 1))
            .and_then(|m| m.parse::<u64>().ok());
        let mac = words
            .iter()
            .position(|w| w.starts_with("link/"))
            .and_then(|i| words.get(i + 1))
            .copied();
        let active = line.contains(",UP") || line.contains("<UP");
        names.push(name.clone());
        map.insert(
            name.clone(),
            json!({"device": name, "mtu": mtu, "macaddress": mac, "active": active}),
        );
    }
    for line in addr.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < 4 || words[2] != "inet" {
            continue;
        }
        let dev = words[1].to_owned();
        let Some((ip, prefix)) = words[3].split_once('/') else {
            continue;
        };
        let prefix: u32 = prefix.parse().unwrap_or(32);
        let entry = map
            .entry(dev.clone())
            .or_insert_with(|| json!({"device": dev}));
        if entry.get("ipv4").is_none() {
            entry["ipv4"] = json!({"address": ip, "prefix": prefix.to_string(), "netmask": netmask(prefix), "network": network(ip, prefix)});
        }
    }
    (names, map)
}

fn netmask(prefix: u32) -> String {
    let m: u32 = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32))
    };
    std::net::Ipv4Addr::from(m).to_string()
}

fn network(ip: &str, prefix: u32) -> String {
    let addr: std::net::Ipv4Addr = ip.parse().unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
    let m: u32 = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix.min(32))
    };
    std::net::Ipv4Addr::from(u32::from(addr) & m).to_string()
}

/// `default_ipv4` from `ip -4 route get` ("1.0.0.0 via G dev D src A").
fn default_ipv4(route: &str, ifmap: &Map<String, Value>) -> Value {
    let words: Vec<&str> = route.split_whitespace().collect();
    let after = |k: &str| {
        words
            .iter()
            .position(|w| *w == k)
            .and_then(|i| words.get(i + 1))
            .map(|s| s.to_string())
    };
    let Some(dev) = after("dev") else {
        return json!({});
    };
    let iface = ifmap.get(&dev).cloned().unwrap_or_else(|| json!({}));
    let address = after("src").or_else(|| {
        iface
            .pointer("/ipv4/address")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let mut out = json!({
        "interface": dev,
        "alias": dev,
        "address": address,
        "gateway": after("via"),
        "macaddress": iface.get("macaddress"),
        "mtu": iface.get("mtu"),
    });
    if let Some(ipv4) = iface.get("ipv4") {
        for k in ["netmask", "network", "prefix"] {
            out[k] = ipv4[k].clone();
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "@@DUSTSTACK@@ os-release
PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"
NAME=\"Debian GNU/Linux\"
VERSION_ID=\"12\"
VERSION_CODENAME=bookworm
ID=debian
@@DUSTSTACK@@ hostname
node1
@@DUSTSTACK@@ fqdn
node1.lab
@@DUSTSTACK@@ uname
Linux 6.1.0-18-amd64 x86_64
@@DUSTSTACK@@ meminfo
MemTotal:        4028412 kB
MemFree:         3000000 kB
SwapTotal:       1048572 kB
SwapFree:        1048572 kB
@@DUSTSTACK@@ nproc
2
@@DUSTSTACK@@ route
1.0.0.0 via 10.77.0.1 dev eth0 src 10.77.0.11 uid 0
    cache
@@DUSTSTACK@@ addr
1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever
2: eth0    inet 10.77.0.11/24 scope global eth0\\       valid_lft forever preferred_lft forever
@@DUSTSTACK@@ link
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00
2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\\    link/ether 5a:11:22:33:44:55 brd ff:ff:ff:ff:ff:ff link-netns hub
@@DUSTSTACK@@ user
root
0
0
/root
@@DUSTSTACK@@ machine-id
abc
@@DUSTSTACK@@ pid1
systemd
@@DUSTSTACK@@ pkg
apt-get
@@DUSTSTACK@@ end
";

    #[test]
    fn parses_debian_host() {
        let f = parse(SAMPLE);
        assert_eq!(f["distribution"], "Debian");
        assert_eq!(f["os_family"], "Debian");
        assert_eq!(f["distribution_major_version"], "12");
        assert_eq!(f["memtotal_mb"], 3933);
        assert_eq!(f["swaptotal_mb"], 1023);
        assert_eq!(f["processor_vcpus"], 2);
        assert_eq!(f["default_ipv4"]["address"], "10.77.0.11");
        assert_eq!(f["default_ipv4"]["interface"], "eth0");
        assert_eq!(f["default_ipv4"]["gateway"], "10.77.0.1");
        assert_eq!(f["default_ipv4"]["netmask"], "255.255.255.0");
        assert_eq!(f["default_ipv4"]["macaddress"], "5a:11:22:33:44:55");
        assert_eq!(f["interfaces"], json!(["lo", "eth0"]));
        assert_eq!(f["eth0"]["ipv4"]["network"], "10.77.0.0");
        assert_eq!(f["pkg_mgr"], "apt");
        assert_eq!(f["service_mgr"], "systemd");
    }

    #[test]
    fn families() {
        assert_eq!(os_family("Rocky"), "RedHat");
        assert_eq!(os_family("Ubuntu"), "Debian");
    }
}
