//! A multi-node lab for the node-agent tests, all in network namespaces the test creates:
//! a "lab" namespace holding a bridge (the lab network, 10.99.0.1/24) where etcd, the server and
//! kubectl run (the test thread enters it), and one namespace per node, joined to the bridge by
//! a veth (10.99.0.<10+n>), each with its own containerd (own root, state, socket, CNI conf dir)
//! with the offline images imported, and optionally `dustkube agent`. Nothing is created in the
//! machine's root namespace; everything is removed on drop.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use super::Proc;

/// The lab bridge's address (where the server listens for the nodes).
pub const LAB_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);

/// Runs `ip` with `args`; panics on failure.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip (iproute2) is required");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn netns_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

/// Deletes a namespace this test family created earlier (a crashed run's leftover).
fn del_netns(name: &str) {
    if netns_exists(name) {
        let _ = Command::new("ip").args(["netns", "del", name]).status();
    }
}

/// Unmounts everything mounted under `dir` (deepest first): overlay rootfs, pod netns, shm.
pub fn unmount_under(dir: &Path) {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.to_string_lossy().to_string();
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| p.starts_with(&prefix))
        .map(String::from)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(&p).status();
    }
}

/// The lab network namespace with its bridge.
pub struct Lab {
    /// Namespace name (`dk-<tag>-lab`).
    pub ns: String,
    /// Tag of the test (names of every namespace it makes).
    pub tag: String,
}

impl Lab {
    /// Creates `dk-<tag>-lab` with loopback up and the bridge `dkbr0` at [`LAB_IP`]/24.
    pub fn new(tag: &str) -> Lab {
        let ns = format!("dk-{tag}-lab");
        del_netns(&ns);
        for n in 1..10 {
            del_netns(&format!("dk-{tag}-{n}"));
        }
        ip(&["netns", "add", &ns]);
        let lab = Lab {
            ns: ns.clone(),
            tag: tag.to_string(),
        };
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&["-n", &ns, "link", "add", "dkbr0", "type", "bridge"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{LAB_IP}/24"),
            "dev",
            "dkbr0",
        ]);
        ip(&["-n", &ns, "link", "set", "dkbr0", "up"]);
        lab
    }

    /// Runs `f` on a thread inside the lab namespace (so etcd, the server and kubectl started
    /// from it live there); a panic in `f` is re-raised here.
    pub fn run<F: FnOnce() + Send>(&self, f: F) {
        let path = format!("/run/netns/{}", self.ns);
        let result = std::thread::scope(|s| {
            s.spawn(|| {
                let file = fs::File::open(&path).unwrap();
                // SAFETY: setns on this thread only, with a valid netns fd.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns into {path} failed");
                f()
            })
            .join()
        });
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        del_netns(&self.ns);
    }
}

/// One node: namespace, veth into the lab bridge, containerd, maybe an agent.
pub struct Node {
    /// Node name (`node-<n>`).
    pub name: String,
    /// Its namespace (`dk-<tag>-<n>`).
    pub ns: String,
    /// Its address on the lab network.
    pub ip: Ipv4Addr,
    /// Its directory (containerd root/state, CNI conf, agent root, logs).
    pub dir: PathBuf,
    /// containerd's socket.
    pub sock: PathBuf,
    run_dir: PathBuf,
    containerd: Option<Proc>,
    agent: Option<Proc>,
    agent_starts: u32,
}

impl Node {
    /// Creates the namespace and link, starts containerd and imports every `*.tar` of `images`.
    pub fn new(lab: &Lab, n: u8, base: &Path, images: &Path) -> Node {
        let ns = format!("dk-{}-{n}", lab.tag);
        let name = format!("node-{n}");
        let ip_addr = Ipv4Addr::new(10, 99, 0, 10 + n);
        let dir = base.join(&name);
        let run_dir = PathBuf::from(format!("/run/dk-{}-{n}", lab.tag));
        let _ = fs::remove_dir_all(&run_dir);
        fs::create_dir_all(dir.join("cni")).unwrap();
        fs::create_dir_all(&run_dir).unwrap();
        ip(&["netns", "add", &ns]);
        let mut node = Node {
            name,
            ns: ns.clone(),
            ip: ip_addr,
            sock: run_dir.join("containerd.sock"),
            run_dir,
            dir,
            containerd: None,
            agent: None,
            agent_starts: 0,
        };
        let veth = format!("veth-{}-{n}", lab.tag.chars().take(6).collect::<String>());
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n", &lab.ns, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ]);
        ip(&["-n", &lab.ns, "link", "set", &veth, "master", "dkbr0", "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip_addr}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&[
            "-n",
            &ns,
            "route",
            "add",
            "default",
            "via",
            &LAB_IP.to_string(),
        ]);
        node.start_containerd();
        for entry in fs::read_dir(images).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "tar") {
                let out = node.ctr(&["images", "import", p.to_str().unwrap()]);
                assert!(
                    out.status.success(),
                    "import {}: {}",
                    p.display(),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        node
    }

    fn start_containerd(&mut self) {
        let d = self.dir.display();
        let config = format!(
            r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:3.6"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{d}/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
"#,
            sock = self.sock.display()
        );
        let cfg = self.dir.join("containerd.toml");
        fs::write(&cfg, config).unwrap();
        // nsenter --net only (not `ip netns exec`, which remounts /sys and hides the cgroup
        // mounts runc needs).
        let proc = Proc::spawn(
            "containerd",
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.ns))
                .arg("containerd")
                .arg("--config")
                .arg(&cfg),
            &self.dir.join("containerd.log"),
        );
        self.containerd = Some(proc);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if self.ctr(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!(
            "containerd of {} did not start:\n{}",
            self.name,
            fs::read_to_string(self.dir.join("containerd.log")).unwrap_or_default()
        );
    }

    /// `ctr -n k8s.io --address <sock> <args>`.
    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("--address")
            .arg(&self.sock)
            .args(["-n", "k8s.io"])
            .args(args)
            .output()
            .expect("ctr (containerd) is required")
    }

    /// Task id → status (RUNNING, STOPPED) of the node's runtime.
    pub fn tasks(&self) -> Vec<(String, String)> {
        let out = self.ctr(&["tasks", "ls"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.len() >= 3).then(|| (f[0].to_string(), f[2].to_string()))
            })
            .collect()
    }

    /// Runs a shell command inside the node's namespace.
    pub fn sh(&self, cmd: &str) -> Output {
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .args(["sh", "-c", cmd])
            .output()
            .unwrap();
        eprintln!(
            "[{}]$ {cmd}\n{}{}",
            self.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// The agent's root dir.
    pub fn agent_root(&self) -> PathBuf {
        self.dir.join("agent")
    }

    /// Starts `dustkube agent` in the node's namespace with `kubeconfig`.
    pub fn start_agent(&mut self, kubeconfig: &Path, extra: &[&str]) {
        self.agent_starts += 1;
        let log = self.dir.join(format!("agent-{}.log", self.agent_starts));
        let proc = Proc::spawn(
            "dustkube agent",
            Command::new("nsenter")
                .arg(format!("--net=/run/netns/{}", self.ns))
                .arg(env!("CARGO_BIN_EXE_dustkube"))
                .arg("agent")
                .arg("--kubeconfig")
                .arg(kubeconfig)
                .args(["--node-name", &self.name])
                .args(["--node-ip", &self.ip.to_string()])
                .arg("--container-runtime-endpoint")
                .arg(format!("unix://{}", self.sock.display()))
                .arg("--root-dir")
                .arg(self.agent_root())
                .arg("--cni-conf-dir")
                .arg(self.dir.join("cni"))
                .args(extra)
                .env("RUST_LOG", "info"),
            &log,
        );
        self.agent = Some(proc);
    }

    /// Stops the agent (SIGTERM); pods keep running.
    pub fn stop_agent(&mut self) {
        if let Some(mut a) = self.agent.take() {
            a.terminate();
        }
    }

    /// The agent's pid (nsenter execs it, so the child is the agent itself).
    pub fn agent_pid(&self) -> Option<u32> {
        self.agent.as_ref().map(|a| a.pid())
    }

    /// The current agent log.
    pub fn agent_log(&self) -> String {
        fs::read_to_string(self.dir.join(format!("agent-{}.log", self.agent_starts)))
            .unwrap_or_default()
    }

    /// Pids of containerd shims started for this node's containerd.
    fn shim_pids(&self) -> Vec<u32> {
        let needle = self.sock.to_string_lossy().to_string();
        let mut out = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmd) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("containerd-shim") && cmd.contains(&needle) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for log in [
                "containerd.log",
                &format!("agent-{}.log", self.agent_starts),
            ] {
                let text = fs::read_to_string(self.dir.join(log)).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(40)..].join("\n");
                eprintln!("--- {} {log} (last 40 lines) ---\n{tail}", self.name);
            }
        }
        self.stop_agent();
        // Kill every container (SIGKILL through containerd), then containerd, then its shims.
        for (id, _) in self.tasks() {
            let _ = self.ctr(&["tasks", "kill", "-a", "-s", "SIGKILL", &id]);
        }
        std::thread::sleep(Duration::from_millis(500));
        let shims = self.shim_pids();
        self.containerd.take();
        for pid in shims {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        std::thread::sleep(Duration::from_millis(200));
        unmount_under(&self.dir);
        del_netns(&self.ns);
        let _ = fs::remove_dir_all(&self.run_dir);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A PKI whose API server certificate is valid for [`LAB_IP`] (and 127.0.0.1), with the
/// admin kubeconfig pointing at `https://10.99.0.1:<api_port>`.
pub fn lab_pki(dir: &Path, api_port: u16) -> PathBuf {
    use duststack::pki::{ClusterSpec, KeyAlgorithm, Store};
    let pki = dir.join("pki");
    let mut spec = ClusterSpec::new("cp1", IpAddr::V4(LAB_IP));
    spec.key_algorithm = KeyAlgorithm::EcdsaP256;
    spec.cert_sans = vec!["127.0.0.1".into()];
    spec.control_plane_endpoint = Some(duststack::pki::spec::Endpoint {
        host: LAB_IP.to_string(),
        port: api_port,
    });
    duststack::pki::init(&Store::new(&pki), dir, &spec).unwrap();
    pki
}

/// Builds the offline image bundle into `dir` with `dustkube images build`.
pub fn build_images(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_dustkube"))
        .args(["images", "build", "--output"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "images build: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `f` every 500 ms until it returns `Some` or `secs` pass (then panics with `what`).
pub fn wait_for<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(500));
    }
}
