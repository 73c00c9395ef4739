//! The node-preparation roles (roles/os-prepare, k8s-prepare, runtime-containerd, runtime-crio)
//! and playbooks/prepare.yml, without touching this machine: both engines syntax-check the
//! playbook; tests/fixtures/roles/render.yml renders every role template for one local host per
//! branch (Debian/Ubuntu/Rocky/Alma × containerd/crio × nftables/firewalld/ufw × control plane /
//! worker / utility) and the files are checked, compared with ansible-playbook's rendering, loaded
//! into nftables inside a network namespace, and parsed by containerd.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const DUSTSTACK: &str = env!("CARGO_BIN_EXE_duststack");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> String {
    root()
        .join("tests/fixtures/roles")
        .join(name)
        .display()
        .to_string()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs render.yml with `program` into `out_dir`, with extra arguments.
fn render_with(program: &str, out_dir: &Path, extra: &[&str]) -> Output {
    let mut c = Command::new(program);
    if program == DUSTSTACK {
        c.arg("play");
    }
    c.arg(fixture("render.yml"))
        .arg("-i")
        .arg(fixture("inventory.ini"))
        .arg("-e")
        .arg(format!("out_dir={}", out_dir.display()))
        .args(extra)
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .expect("run the render playbook")
}

/// Renders every scenario with duststack; the temp dir holds `<host>/<file>`.
fn render(extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = render_with(DUSTSTACK, dir.path(), extra);
    assert!(out.status.success(), "render failed:\n{}", text(&out));
    dir
}

fn read(dir: &Path, host: &str, file: &str) -> String {
    std::fs::read_to_string(dir.join(host).join(file))
        .unwrap_or_else(|e| panic!("{host}/{file}: {e}"))
}

fn vars(dir: &Path, host: &str) -> Value {
    serde_json::from_str(&read(dir, host, "vars.json")).unwrap()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

/// The scenario hosts of tests/fixtures/roles/inventory.ini.
const HOSTS: &[&str] = &[
    "deb-cp", "rocky-cp", "ubu-cp", "deb-w", "rocky-w", "alma-w", "ubu-w", "util-1",
];

/// The ports each scenario must open, from kubeadm's port table, the CNI's and SSH.
fn expected_ports() -> BTreeMap<&'static str, Vec<&'static str>> {
    let cp = [
        "22/tcp",
        "6443/tcp",
        "2379-2380/tcp",
        "10250/tcp",
        "10257/tcp",
        "10259/tcp",
    ];
    let worker = ["22/tcp", "10250/tcp", "30000-32767/tcp"];
    let with = |base: &[&'static str], cni: &[&'static str]| [base, cni].concat();
    BTreeMap::from([
        ("deb-cp", with(&cp, &["8472/udp"])),
        ("rocky-cp", with(&cp, &["179/tcp", "4789/udp", "5473/tcp"])),
        ("ubu-cp", with(&cp, &["8472/udp", "4240/tcp", "4244/tcp"])),
        ("deb-w", with(&worker, &["8472/udp"])),
        ("rocky-w", with(&worker, &["8472/udp"])),
        (
            "alma-w",
            vec![
                "22/tcp",
                "10250/tcp",
                "31000-31999/tcp",
                "179/tcp",
                "4789/udp",
                "5473/tcp",
            ],
        ),
        ("ubu-w", with(&worker, &["6783/tcp", "6783-6784/udp"])),
        ("util-1", vec!["22/tcp"]),
    ])
}

fn ports_of(ports: &[&str], proto: &str) -> Vec<String> {
    ports
        .iter()
        .filter_map(|p| p.strip_suffix(&format!("/{proto}")))
        .map(str::to_owned)
        .collect()
}

#[test]
fn prepare_playbook_passes_both_syntax_checks() {
    let book = root().join("playbooks/prepare.yml");
    let inv = root().join("inventory/classroom");
    let ours = Command::new(DUSTSTACK)
        .arg("play")
        .arg(&book)
        .arg("-i")
        .arg(&inv)
        .arg("--syntax-check")
        .output()
        .unwrap();
    assert!(ours.status.success(), "duststack:\n{}", text(&ours));
    let theirs = Command::new("ansible-playbook")
        .arg(&book)
        .arg("-i")
        .arg(&inv)
        .arg("--syntax-check")
        .env("ANSIBLE_NOCOLOR", "1")
        .output()
        .unwrap();
    assert!(
        theirs.status.success(),
        "ansible-playbook:\n{}",
        text(&theirs)
    );
}

#[test]
fn node_roles_ports_and_family_per_scenario() {
    let dir = render(&[]);
    let d = dir.path();
    for (host, ports) in expected_ports() {
        let v = vars(d, host);
        assert_eq!(
            strings(&v["firewall_ports"]),
            ports,
            "{host}: firewall ports"
        );
        assert_eq!(
            strings(&v["firewall_tcp_ports"]),
            ports_of(&ports, "tcp"),
            "{host}"
        );
        assert_eq!(
            strings(&v["firewall_udp_ports"]),
            ports_of(&ports, "udp"),
            "{host}"
        );
        // ufw writes port ranges with a colon.
        assert!(strings(&v["ufw_ports"]).iter().all(|p| !p.contains('-')));
        assert_eq!(strings(&v["node_lab_hosts"]), HOSTS, "{host}: lab nodes");
    }
    let role = |h: &str| vars(d, h)["node_role"].as_str().unwrap().to_owned();
    assert_eq!(role("deb-cp"), "control-plane");
    assert_eq!(role("alma-w"), "worker");
    assert_eq!(role("util-1"), "utility");

    // Distro branches: tools, firewall package, containerd packages and CNI plugin dirs.
    let deb = vars(d, "deb-cp");
    assert_eq!(deb["node_family"], "debian");
    assert_eq!(
        strings(&deb["tools"]),
        [
            "conntrack",
            "iproute2",
            "socat",
            "iptables",
            "ethtool",
            "nftables"
        ]
    );
    assert_eq!(
        strings(&deb["containerd_packages"]),
        ["containerd", "runc", "containernetworking-plugins"]
    );
    assert_eq!(deb["containerd_cni_plugin_dir"], "/usr/lib/cni");
    assert_eq!(deb["hostname"], "deb-cp.lab.example");
    let rocky = vars(d, "rocky-cp");
    assert_eq!(rocky["node_family"], "redhat");
    assert_eq!(
        strings(&rocky["tools"]),
        [
            "conntrack-tools",
            "iproute",
            "iproute-tc",
            "socat",
            "ethtool",
            "iptables-nft",
            "firewalld"
        ]
    );
    assert_eq!(
        strings(&rocky["crio_packages"]),
        ["container-selinux", "cri-o"]
    );
    assert_eq!(rocky["containerd_cni_plugin_dir"], "/usr/libexec/cni");
    // RHEL 8's iptables is still called iptables.
    assert!(strings(&vars(d, "alma-w")["tools"]).contains(&"iptables".to_owned()));
    assert!(strings(&vars(d, "ubu-w")["tools"]).contains(&"ufw".to_owned()));

    // /etc/hosts block: internal_ip, else ansible_host; FQDN nodenames get their short alias.
    assert_eq!(
        read(d, "deb-w", "lab-hosts"),
        "192.168.90.11 deb-cp.lab.example deb-cp\n192.168.90.12 rocky-cp\n192.168.90.13 ubu-cp\n\
         192.168.90.21 deb-w\n192.168.90.22 rocky-w\n192.168.90.23 alma-w\n192.168.90.24 ubu-w\n\
         192.168.90.31 util-1\n"
    );
    assert_eq!(
        read(d, "deb-cp", "modules-load.conf")
            .lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>(),
        ["overlay", "br_netfilter"]
    );
    let sysctl = &deb["sysctl"];
    for key in [
        "net.bridge.bridge-nf-call-iptables",
        "net.bridge.bridge-nf-call-ip6tables",
        "net.ipv4.ip_forward",
    ] {
        assert_eq!(sysctl[key], 1, "{key}");
    }
}

#[test]
fn runtime_files_per_family() {
    let dir = render(&[]);
    let d = dir.path();
    // CRI-O: systemd cgroups and the pause image, repositories per family, versioned.
    for host in ["deb-w", "rocky-cp", "alma-w"] {
        let conf = read(d, host, "crio.conf");
        assert!(
            conf.contains("[crio.runtime]\ncgroup_manager = \"systemd\"\n"),
            "{conf}"
        );
        assert!(conf.contains("[crio.image]\npause_image = \"registry.k8s.io/pause:3.6\"\n"));
        assert!(conf.contains("plugin_dirs = [\"/opt/cni/bin/\"]"));
    }
    let base = "https://download.opensuse.org/repositories/isv:/cri-o:/stable:/v1.32";
    assert!(read(d, "deb-w", "cri-o.list").contains(&format!(
        "deb [signed-by=/etc/apt/keyrings/cri-o-apt-keyring.asc] {base}/deb/ /\n"
    )));
    assert_eq!(
        vars(d, "deb-w")["crio_key_url"],
        format!("{base}/deb/Release.key")
    );
    let repo = read(d, "rocky-cp", "cri-o.repo");
    assert!(repo.contains(&format!("baseurl={base}/rpm/\n")), "{repo}");
    assert!(repo.contains(&format!("gpgkey={base}/rpm/repodata/repomd.xml.key\n")));
    assert!(read(d, "rocky-w", "docker-ce.repo").contains(
        "baseurl=https://download.docker.com/linux/centos/$releasever/$basearch/stable\n"
    ));

    // crio_version moves every URL; a templated `hosts:` picks the play's hosts from extra vars.
    let dir2 = render(&[
        "-e",
        "render_hosts=rocky-cp,deb-w",
        "-e",
        "crio_version=v1.30",
    ]);
    assert!(read(dir2.path(), "rocky-cp", "cri-o.repo").contains("isv:/cri-o:/stable:/v1.30/rpm/"));
    let mut rendered: Vec<String> = std::fs::read_dir(dir2.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    rendered.sort();
    assert_eq!(rendered, ["deb-w", "rocky-cp"]);
}

/// containerd itself parses the rendered config.toml and puts every value where the CRI plugin
/// reads it (`containerd config dump` loads the file; no daemon is started).
#[test]
fn containerd_parses_the_rendered_config() {
    let dump = |dir: &Path, host: &str| -> String {
        let path = dir.join(host).join("containerd-config.toml");
        let out = Command::new("containerd")
            .arg("--config")
            .arg(&path)
            .arg("config")
            .arg("dump")
            .output()
            .expect("containerd is installed (make test installs it)");
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let section = |dump: &str, header: &str| -> String {
        let start = dump
            .find(&format!("[{header}]\n"))
            .unwrap_or_else(|| panic!("no [{header}] in\n{dump}"));
        let body = &dump[start + header.len() + 3..];
        body[..body.find("\n[").unwrap_or(body.len())].to_owned()
    };
    let dir = render(&[]);
    for host in ["deb-cp", "rocky-w", "ubu-w"] {
        let d = dump(dir.path(), host);
        let runc = section(
            &d,
            "plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options",
        );
        assert!(runc.contains("SystemdCgroup = true"), "{runc}");
        let cri = section(&d, "plugins.\"io.containerd.grpc.v1.cri\"");
        assert!(
            cri.contains("sandbox_image = \"registry.k8s.io/pause:3.6\""),
            "{cri}"
        );
        assert!(cri.contains("restrict_oom_score_adj = false"), "{cri}");
        let cni = section(&d, "plugins.\"io.containerd.grpc.v1.cri\".cni");
        assert!(cni.contains("bin_dir = \"/opt/cni/bin\""), "{cni}");
        assert!(cni.contains("conf_dir = \"/etc/cni/net.d\""), "{cni}");
    }
    let sandbox = render(&[
        "-l",
        "deb-cp",
        "-e",
        "containerd_restrict_oom_score_adj=true",
        "-e",
        "k8s_pause_image=registry.k8s.io/pause:3.9",
    ]);
    let cri = section(
        &dump(sandbox.path(), "deb-cp"),
        "plugins.\"io.containerd.grpc.v1.cri\"",
    );
    assert!(cri.contains("restrict_oom_score_adj = true"), "{cri}");
    assert!(
        cri.contains("sandbox_image = \"registry.k8s.io/pause:3.9\""),
        "{cri}"
    );
}

/// A network namespace made for one test, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("dsroles-{tag}-{}", std::process::id());
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip netns add: {}", text(&out));
        Netns(name)
    }

    fn nft(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "nft"])
            .args(args)
            .output()
            .unwrap()
    }

    fn nft_ok(&self, args: &[&str]) -> String {
        let out = self.nft(args);
        assert!(out.status.success(), "nft {args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// The elements of a named set as "port" / "from-to" strings, from `nft -j`.
fn set_elements(ns: &Netns, set: &str) -> Vec<String> {
    let json: Value =
        serde_json::from_str(&ns.nft_ok(&["-j", "list", "set", "inet", "duststack", set])).unwrap();
    let items = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|i| i.get("set"))
        .and_then(|s| s.get("elem"))
        .cloned()
        .unwrap_or(Value::Array(vec![]));
    let mut out: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e.get("range") {
            Some(r) => format!("{}-{}", r[0], r[1]),
            None => e.to_string(),
        })
        .collect();
    out.sort();
    out
}

/// Every rendered ruleset passes `nft -c`; loaded into a fresh namespace it lists exactly the
/// role's ports, leaves other tables alone, and loading it again changes nothing.
#[test]
fn nftables_ruleset_lists_exactly_the_role_ports() {
    let dir = render(&[]);
    let ns = Netns::new("nft");
    for (host, ports) in expected_ports() {
        let file = dir.path().join(host).join("firewall.nft");
        let file = file.to_str().unwrap();
        ns.nft_ok(&["-c", "-f", file]);
        ns.nft_ok(&["flush", "ruleset"]);
        ns.nft_ok(&["add", "table", "inet", "other"]);
        ns.nft_ok(&[
            "add",
            "chain",
            "inet",
            "other",
            "input",
            "{ type filter hook input priority 0; }",
        ]);
        ns.nft_ok(&["-f", file]);
        let first = ns.nft_ok(&["list", "table", "inet", "duststack"]);
        ns.nft_ok(&["-f", file]);
        assert_eq!(
            ns.nft_ok(&["list", "table", "inet", "duststack"]),
            first,
            "{host}: loading twice differs"
        );
        assert!(
            ns.nft_ok(&["list", "tables"]).contains("table inet other"),
            "{host}: another table was removed"
        );
        for proto in ["tcp", "udp"] {
            let mut want = ports_of(&ports, proto);
            want.sort();
            assert_eq!(
                set_elements(&ns, &format!("{proto}_ports")),
                want,
                "{host}: {proto} ports"
            );
        }
        let input = ns.nft_ok(&["list", "chain", "inet", "duststack", "input"]);
        assert!(input.contains("policy drop;"), "{input}");
        assert!(input.contains("ip saddr 10.244.0.0/16 accept"), "{input}");
    }
}

/// Both engines render the same bytes for every branch, so the roles are valid Ansible too.
#[test]
fn ansible_playbook_renders_the_same_files() {
    let ours = render(&[]);
    let theirs = tempfile::tempdir().unwrap();
    let out = render_with("ansible-playbook", theirs.path(), &[]);
    assert!(out.status.success(), "ansible-playbook:\n{}", text(&out));
    let mut compared = 0;
    for host in HOSTS {
        for entry in std::fs::read_dir(ours.path().join(host)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            let (a, b) = (
                read(ours.path(), host, &name),
                read(theirs.path(), host, &name),
            );
            if name == "vars.json" {
                let (a, b): (Value, Value) = (
                    serde_json::from_str(&a).unwrap(),
                    serde_json::from_str(&b).unwrap(),
                );
                assert_eq!(a, b, "{host}/{name}");
            } else {
                assert_eq!(a, b, "{host}/{name} differs from ansible-playbook's");
            }
            compared += 1;
        }
    }
    assert_eq!(compared, HOSTS.len() * 10);
}

#[test]
fn unsupported_distribution_fails_at_the_start() {
    for (dist, version) in [("Fedora", "40"), ("CentOS", "8"), ("Debian", "10")] {
        let dir = tempfile::tempdir().unwrap();
        let out = render_with(
            DUSTSTACK,
            dir.path(),
            &[
                "-l",
                "deb-cp",
                "-e",
                &format!("ansible_distribution={dist}"),
                "-e",
                &format!("ansible_distribution_major_version={version}"),
                "-e",
                &format!("ansible_distribution_version={version}"),
            ],
        );
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{dist}: {t}");
        assert!(
            t.contains(&format!(
                "{dist} {version} is not supported by the duststack node roles"
            )),
            "{dist}: {t}"
        );
        assert!(
            !dir.path().join("deb-cp").exists(),
            "{dist}: went on after the check"
        );
    }
}
