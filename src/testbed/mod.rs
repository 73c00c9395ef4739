//! Local SSH hosts as network namespaces: the test bed of the engine's tests and benchmarks,
//! and the local lab of `duststack testbed up` until VMs are provisioned.
//!
//! Layout: a "hub" namespace holds a bridge; each host namespace and one "control" namespace
//! connect to it with a veth pair (10.77.0.0/24). Every host runs its own sshd with host keys
//! generated for this run; a known_hosts file lists exactly those keys. Nothing is created in
//! the machine's own namespace. A [`TestBed`] tears everything down on drop (unless kept).

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One SSH host of the test bed.
pub struct TestHost {
    /// Inventory name (host01…).
    pub name: String,
    /// Address inside the test network.
    pub addr: String,
    /// Its network namespace.
    pub ns: String,
    /// A directory that belongs to this host (hosts share the filesystem).
    pub workdir: PathBuf,
    sshd: Option<Child>,
}

/// N hosts, a control namespace, keys, known_hosts and an inventory.
pub struct TestBed {
    prefix: String,
    /// Directory holding keys, configs and workdirs.
    pub dir: PathBuf,
    /// The hosts.
    pub hosts: Vec<TestHost>,
    /// Leave everything running when dropped (`duststack testbed up`).
    pub keep: bool,
    /// Remove `dir` when dropped.
    remove_dir: bool,
}

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out)
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

fn in_ns(ns: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["netns", "exec", ns];
    full.extend_from_slice(args);
    ip(&full)
}

impl TestBed {
    /// Starts `n` hosts in a new temporary directory (removed on drop).
    pub fn start(n: usize) -> anyhow::Result<TestBed> {
        let dir = std::env::temp_dir().join(format!(
            "duststack-testbed-{}-{}",
            std::process::id(),
            next_id()
        ));
        let mut bed = Self::start_in(n, &dir, &format!("dst{}x{}", std::process::id(), next_id()))?;
        bed.remove_dir = true;
        Ok(bed)
    }

    /// Starts `n` hosts with their files in `dir` and namespaces named `<prefix>-…`.
    /// Fails loudly (never skips) when not root or tools are missing.
    pub fn start_in(n: usize, dir: &Path, prefix: &str) -> anyhow::Result<TestBed> {
        // SAFETY: geteuid has no preconditions and cannot fail.
        let euid = unsafe { libc::geteuid() };
        anyhow::ensure!(euid == 0, "the test bed needs root (ip netns, sshd)");
        for tool in ["ip", "/usr/sbin/sshd", "ssh-keygen"] {
            anyhow::ensure!(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("command -v {tool}"))
                    .output()?
                    .status
                    .success(),
                "the test bed needs {tool}: run scripts/install-deps.sh"
            );
        }
        fs::create_dir_all("/run/sshd")?;
        sweep_stale();
        fs::create_dir_all(dir)?;
        let mut bed = TestBed {
            prefix: prefix.to_owned(),
            dir: dir.to_path_buf(),
            hosts: Vec::new(),
            keep: false,
            remove_dir: false,
        };
        let hub = bed.ns("hub");
        ip(&["netns", "add", &hub])?;
        in_ns(&hub, &["ip", "link", "set", "lo", "up"])?;
        in_ns(&hub, &["ip", "link", "add", "br0", "type", "bridge"])?;
        in_ns(&hub, &["ip", "link", "set", "br0", "up"])?;
        bed.attach("ctl", "10.77.0.2")?;
        let d = bed.dir.clone();
        run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(d.join("client_key")))?;
        let pubkey = fs::read_to_string(d.join("client_key.pub"))?;
        fs::write(d.join("authorized_keys"), &pubkey)?;
        fs::write(d.join("empty"), "")?;
        let mut known = String::new();
        let mut inventory = String::from("[testbed]\n");
        for i in 0..n {
            let name = format!("host{:02}", i + 1);
            let addr = format!("10.77.0.{}", 11 + i);
            let ns = bed.attach(&name, &addr)?;
            let hdir = d.join(&name);
            fs::create_dir_all(hdir.join("work"))?;
            run(Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(hdir.join("host_key")))?;
            let hostpub = fs::read_to_string(hdir.join("host_key.pub"))?;
            let mut parts = hostpub.split_whitespace();
            known.push_str(&format!(
                "{addr} {} {}\n",
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("")
            ));
            let cfg = format!(
                "ListenAddress {addr}\nPort 22\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
                 PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\nStrictModes no\n\
                 MaxSessions 10\nMaxStartups 100:30:200\nSubsystem sftp internal-sftp\nLogLevel ERROR\n",
                hk = hdir.join("host_key").display(),
                pid = hdir.join("sshd.pid").display(),
                ak = d.join("authorized_keys").display(),
            );
            fs::write(hdir.join("sshd_config"), cfg)?;
            // Each host sees empty shell start-up files for root (its own mount namespace), so
            // the control machine's ~/.bashrc (pyenv init: ~80 ms) does not run on every command
            // as it would not on a fresh server.
            let script = format!(
                "for f in .bashrc .profile .bash_profile; do [ -e /root/$f ] && mount --bind {empty} /root/$f; done; exec /usr/sbin/sshd -D -e -f {cfg}",
                empty = d.join("empty").display(),
                cfg = hdir.join("sshd_config").display()
            );
            let child = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &ns,
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    &script,
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(0)
                .spawn()?;
            inventory.push_str(&format!(
                "{name} ansible_host={addr} workdir={}\n",
                hdir.join("work").display()
            ));
            bed.hosts.push(TestHost {
                name,
                addr,
                ns,
                workdir: hdir.join("work"),
                sshd: Some(child),
            });
        }
        fs::write(d.join("known_hosts"), known)?;
        inventory.push_str(&format!(
            "\n[testbed:vars]\nansible_user=root\nansible_ssh_private_key_file={}\n\
             ansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes'\n\
             ansible_python_interpreter=/usr/bin/python3\n",
            d.join("client_key").display(),
            d.join("known_hosts").display()
        ));
        fs::write(d.join("inventory.ini"), inventory)?;
        bed.wait_ready()?;
        Ok(bed)
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// Makes namespace `name` with `addr` on the hub bridge; returns the namespace name.
    fn attach(&self, name: &str, addr: &str) -> anyhow::Result<String> {
        let ns = self.ns(name);
        let hub = self.ns("hub");
        ip(&["netns", "add", &ns])?;
        in_ns(&ns, &["ip", "link", "set", "lo", "up"])?;
        // Create the pair inside the hub, then move one end: nothing touches the root namespace.
        let idx = addr.rsplit('.').next().unwrap_or("0");
        let (a, b) = (format!("h{idx}"), format!("v{idx}"));
        in_ns(
            &hub,
            &["ip", "link", "add", &a, "type", "veth", "peer", "name", &b],
        )?;
        in_ns(&hub, &["ip", "link", "set", &b, "netns", &ns])?;
        in_ns(&hub, &["ip", "link", "set", &a, "master", "br0"])?;
        in_ns(&hub, &["ip", "link", "set", &a, "up"])?;
        in_ns(&ns, &["ip", "link", "set", &b, "name", "eth0"])?;
        in_ns(
            &ns,
            &["ip", "addr", "add", &format!("{addr}/24"), "dev", "eth0"],
        )?;
        in_ns(&ns, &["ip", "link", "set", "eth0", "up"])?;
        in_ns(&ns, &["ip", "route", "add", "default", "via", "10.77.0.1"])
            .or_else(|_| Ok::<(), anyhow::Error>(()))?;
        Ok(ns)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        for h in &self.hosts {
            loop {
                let ok = Command::new("ip")
                    .args(["netns", "exec", &self.control_ns(), "bash", "-c"])
                    .arg(format!("exec 3<>/dev/tcp/{}/22", h.addr))
                    .output()
                    .map(|o| o.status.success())
                    .unwrap_or(false);
                if ok {
                    break;
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "sshd on {} did not start",
                    h.name
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The namespace all SSH traffic comes from.
    pub fn control_ns(&self) -> String {
        self.ns("ctl")
    }

    /// The generated INI inventory (group `testbed`, per-host `workdir`).
    pub fn inventory(&self) -> PathBuf {
        self.dir.join("inventory.ini")
    }

    /// known_hosts with exactly the hosts' keys.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The client's private key.
    pub fn client_key(&self) -> PathBuf {
        self.dir.join("client_key")
    }

    /// A command run inside the control namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.control_ns()]).arg(program);
        c
    }

    /// Stops one host's sshd (to make it unreachable).
    pub fn stop_sshd(&mut self, name: &str) {
        if let Some(h) = self.hosts.iter_mut().find(|h| h.name == name) {
            if let Some(mut c) = h.sshd.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
            // Also end established sessions: kill every process left in the namespace.
            kill_all_in(&h.ns);
        }
    }

    /// Writes an inventory whose workdirs are `<host workdir>/<sub>`, for independent runs.
    pub fn inventory_with_workdirs(&self, sub: &str) -> anyhow::Result<PathBuf> {
        let text = fs::read_to_string(self.inventory())?;
        let mut out = String::new();
        for line in text.lines() {
            match line.split_once(" workdir=") {
                Some((head, wd)) => {
                    let p = Path::new(wd).join(sub);
                    fs::create_dir_all(&p)?;
                    out.push_str(&format!("{head} workdir={}\n", p.display()));
                }
                None => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        let path = self.dir.join(format!("inventory-{sub}.ini"));
        fs::write(&path, out)?;
        Ok(path)
    }
}

impl TestBed {
    /// Stops the sshds and removes the namespaces (and the directory if it was temporary).
    pub fn teardown(&mut self) {
        for h in &mut self.hosts {
            if let Some(mut c) = h.sshd.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        for h in &self.hosts {
            kill_all_in(&h.ns);
            let _ = ip(&["netns", "del", &h.ns]);
        }
        let _ = ip(&["netns", "del", &self.control_ns()]);
        let _ = ip(&["netns", "del", &self.ns("hub")]);
        if self.remove_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

impl Drop for TestBed {
    fn drop(&mut self) {
        if !self.keep {
            self.teardown();
        }
    }
}

/// Removes a test bed left running by `duststack testbed up`: kills every process in its
/// namespaces (the sshds) and deletes them.
pub fn destroy(prefix: &str) -> anyhow::Result<Vec<String>> {
    let out = run(Command::new("ip").args(["netns", "list"]))?;
    let mut removed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        if !name.starts_with(&format!("{prefix}-")) {
            continue;
        }
        kill_all_in(name);
        ip(&["netns", "del", name])?;
        removed.push(name.to_owned());
    }
    Ok(removed)
}

fn kill_all_in(ns: &str) {
    if let Ok(out) = Command::new("ip").args(["netns", "pids", ns]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
    }
}

fn next_id() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// Removes namespaces left by test processes that no longer exist.
fn sweep_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix("dst") else {
            continue;
        };
        let pid: u32 = rest
            .split('x')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if pid != 0 && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}
