//! Local SSH hosts in network namespaces: the test bed of the integration tests and benchmarks,
//! and the local lab of `duststack testbed up` until VMs are provisioned.
//!
//! Layout (nothing is created in the root namespace): a hub namespace holding bridge `br0`;
//! one namespace per host, joined to the bridge by a veth pair, address `10.77.0.(10+i)/24`,
//! running its own `sshd`; a control namespace (`10.77.0.2`) from which tests connect
//! ([`TestBed::in_control`], [`TestBed::run_in_control`]). Names start with `dst<pid>x<n>-` so
//! parallel test binaries and beds never clash; a startup sweep removes namespaces left by dead
//! runs. [`Drop`] kills every process in the bed's namespaces and deletes them, even on panic.
//!
//! Each sshd sees private bind-mounted copies of `/etc/passwd` and `/etc/shadow` (inside its
//! own mount namespace): they add a password user ([`TestBed::password_user`]), so password
//! authentication is testable without touching the machine's real accounts, and give root a
//! per-host home directory (the real `/root/.bashrc` runs `pyenv init`, ~300 ms per command).

pub mod hypervisor;

use std::fs;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Address prefix of the bed's subnet.
pub const SUBNET: &str = "10.77.0";
/// Address of the control namespace.
pub const CONTROL_ADDR: &str = "10.77.0.2";
/// Password user present (only) in every bed host's sshd view of `/etc/passwd`.
pub const PASSWORD_USER: &str = "dstpw";
/// Unprivileged user (uid 1500) allowed to `sudo` with the bed's password, for `become` tests.
pub const SUDO_USER: &str = "dstsudo";

static BED_COUNTER: AtomicU32 = AtomicU32::new(0);

/// One SSH host of the bed.
#[derive(Debug, Clone)]
pub struct TestHost {
    /// Inventory name (`host01`, …).
    pub name: String,
    /// IPv4 address (`10.77.0.11`, …).
    pub addr: String,
    /// Network namespace name.
    pub ns: String,
    /// A directory private to this host for tests to write into (all hosts share the filesystem).
    pub workdir: PathBuf,
    /// The host's public key line (`ssh-ed25519 AAAA…`).
    pub host_key: String,
    dir: PathBuf,
}

/// A running bed of SSH hosts; torn down on drop unless [`TestBed::keep`] is set.
pub struct TestBed {
    prefix: String,
    dir: PathBuf,
    remove_dir: bool,
    /// Leave everything running when dropped (`duststack testbed up`).
    pub keep: bool,
    hub: String,
    control: String,
    hosts: Vec<TestHost>,
    sshd: Mutex<Vec<Option<Child>>>,
    namespaces: Vec<String>,
    password: String,
}

/// Runs a command, failing with its stderr when it exits non-zero.
fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out)
}

/// `ip <args>`.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    run(Command::new("ip").args(args)).map(|_| ())
}

/// Pids of the processes in namespace `ns`.
fn ns_pids(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Kills every process in namespace `ns` (all of them were started by a test bed) and deletes it.
fn destroy_ns(ns: &str) {
    for pid in ns_pids(ns) {
        // SAFETY: plain kill(2) on a pid living in a namespace this test bed created.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = Command::new("ip")
        .args(["netns", "del", ns])
        .stderr(Stdio::null())
        .status();
}

/// Whether `name` is `dst<pid>x…` of a process that no longer exists.
fn is_stale(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("dst") else {
        return false;
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let Ok(pid) = digits.parse::<u32>() else {
        return false;
    };
    rest[digits.len()..].starts_with('x') && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes `dst<pid>x…` namespaces and temporary directories whose creating process no longer exists.
fn sweep_stale() {
    for entry in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_stale(&name) {
            destroy_ns(&name);
        }
    }
    for entry in fs::read_dir(std::env::temp_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_stale(&name) && entry.path().is_dir() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Generates an ssh key pair at `path` (no passphrase); returns the public key line.
pub fn keygen(path: &Path, kind: &str, comment: &str) -> anyhow::Result<String> {
    let mut cmd = Command::new("ssh-keygen");
    cmd.args(["-q", "-t", kind, "-N", "", "-C", comment, "-f"])
        .arg(path);
    if kind == "rsa" {
        cmd.args(["-b", "2048"]);
    }
    run(&mut cmd)?;
    Ok(fs::read_to_string(path.with_extension("pub"))?
        .trim()
        .to_string())
}

impl TestBed {
    /// Starts `n_hosts` hosts with files in a temporary directory (removed on drop).
    pub fn start(n_hosts: usize) -> anyhow::Result<TestBed> {
        let prefix = format!(
            "dst{}x{}-",
            std::process::id(),
            BED_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(prefix.trim_end_matches('-'));
        let mut bed = Self::start_in(n_hosts, &dir, &prefix)?;
        bed.remove_dir = true;
        Ok(bed)
    }

    /// Creates the namespaces (named `<prefix>…`) and starts one sshd per host, with keys,
    /// known_hosts and inventory in `dir`; fails (never skips) without root, `ip` or `sshd`.
    pub fn start_in(n_hosts: usize, dir: &Path, prefix: &str) -> anyhow::Result<TestBed> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            bail!("the SSH test bed needs root (network namespaces)");
        }
        if !(1..=200).contains(&n_hosts) {
            bail!("1..=200 hosts, not {n_hosts}");
        }
        for tool in ["/usr/sbin/sshd", "/usr/bin/ssh-keygen", "/usr/bin/openssl"] {
            if !Path::new(tool).exists() {
                bail!("{tool} is missing (apt-get install openssh-server)");
            }
        }
        run(Command::new("ip").arg("-V")).context("`ip` (iproute2) is missing")?;
        sweep_stale();
        fs::create_dir_all("/run/sshd")?;

        fs::create_dir_all(dir)?;
        let mut bed = TestBed {
            hub: format!("{prefix}hub"),
            control: format!("{prefix}ctl"),
            prefix: prefix.to_owned(),
            dir: dir.to_path_buf(),
            remove_dir: false,
            keep: false,
            hosts: Vec::new(),
            sshd: Mutex::new(Vec::new()),
            namespaces: Vec::new(),
            password: format!("dst-pw-{}", std::process::id()),
        };
        bed.build(n_hosts)?;
        Ok(bed)
    }

    /// Creates a namespace (recorded for teardown) with `lo` up.
    fn add_ns(&mut self, ns: &str) -> anyhow::Result<()> {
        ip(&["netns", "add", ns])?;
        self.namespaces.push(ns.to_string());
        ip(&["-n", ns, "link", "set", "lo", "up"])
    }

    /// Joins `ns` to the hub bridge through veth `hub_end` and gives it `addr`.
    fn attach(&self, ns: &str, hub_end: &str, addr: &str) -> anyhow::Result<()> {
        ip(&[
            "-n", &self.hub, "link", "add", hub_end, "type", "veth", "peer", "name", "eth0",
            "netns", ns,
        ])?;
        ip(&[
            "-n", &self.hub, "link", "set", hub_end, "master", "br0", "up",
        ])?;
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", ns, "link", "set", "eth0", "up"])?;
        // A default route (through an address nobody holds) gives hosts a `default_ipv4` fact.
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &format!("{SUBNET}.1"),
        ])
    }

    fn build(&mut self, n_hosts: usize) -> anyhow::Result<()> {
        let dir = self.dir.clone();
        let hub = self.hub.clone();
        let control = self.control.clone();
        self.add_ns(&hub)?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        self.add_ns(&control)?;
        self.attach(&control, "vctl", CONTROL_ADDR)?;

        let client_pub = keygen(&dir.join("client_ed25519"), "ed25519", "duststack-testbed")?;
        fs::write(dir.join("authorized_keys"), format!("{client_pub}\n"))?;
        self.write_shadow()?;

        for i in 1..=n_hosts {
            let name = format!("host{i:02}");
            let ns = format!("{}{name}", self.prefix);
            let addr = format!("{SUBNET}.{}", 10 + i);
            self.add_ns(&ns)?;
            self.attach(&ns, &format!("v{i}"), &addr)?;
            let hdir = dir.join(&name);
            let workdir = hdir.join("work");
            fs::create_dir_all(&workdir)?;
            let host_key = keygen(&hdir.join("ssh_host_ed25519_key"), "ed25519", &name)?;
            let host_key = host_key
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            let host = TestHost {
                name,
                addr,
                ns,
                workdir,
                host_key,
                dir: hdir,
            };
            self.write_passwd(&host)?;
            self.hosts.push(host);
        }
        for i in 0..self.hosts.len() {
            let child = self.spawn_sshd(i)?;
            self.sshd.lock().unwrap().push(Some(child));
        }
        for i in 0..self.hosts.len() {
            self.wait_listening(i)?;
        }
        self.write_client_files()
    }

    /// Private `/etc/shadow` copy with the password user added (shared by all hosts).
    fn write_shadow(&self) -> anyhow::Result<()> {
        let dir = self.dir.as_path();
        let hash = run(Command::new("openssl").args([
            "passwd",
            "-6",
            "-salt",
            "duststack",
            &self.password,
        ]))?;
        let hash = String::from_utf8_lossy(&hash.stdout).trim().to_string();
        let mut shadow = fs::read_to_string("/etc/shadow")?;
        shadow.push_str(&format!("{PASSWORD_USER}:{hash}:19000:0:99999:7:::\n"));
        shadow.push_str(&format!("{SUDO_USER}:{hash}:19000:0:99999:7:::\n"));
        fs::write(dir.join("shadow"), shadow)?;
        fs::set_permissions(dir.join("shadow"), fs::Permissions::from_mode(0o600))?;
        // The sudo user's group, and a sudoers that lets it escalate with its password.
        let mut group = fs::read_to_string("/etc/group")?;
        group.push_str(&format!("{SUDO_USER}:x:1500:\n"));
        fs::write(dir.join("group"), group)?;
        let mut sudoers = fs::read_to_string("/etc/sudoers").unwrap_or_default();
        sudoers.push_str(&format!("\n{SUDO_USER} ALL=(ALL:ALL) ALL\n"));
        fs::write(dir.join("sudoers"), sudoers)?;
        fs::set_permissions(dir.join("sudoers"), fs::Permissions::from_mode(0o440))?;
        Ok(())
    }

    /// Host `i`'s private `/etc/passwd`: root's home is the host's own `home` directory (so each
    /// host has a distinct, clean `~` without the control machine's shell start-up files), plus
    /// the password user.
    fn write_passwd(&self, h: &TestHost) -> anyhow::Result<()> {
        let home = h.dir.join("home");
        fs::create_dir_all(&home)?;
        let mut passwd = String::new();
        for line in fs::read_to_string("/etc/passwd")?.lines() {
            let mut f: Vec<&str> = line.split(':').collect();
            let home_str = home.display().to_string();
            if f.first() == Some(&"root") && f.len() == 7 {
                f[5] = &home_str;
                passwd.push_str(&f.join(":"));
            } else {
                passwd.push_str(line);
            }
            passwd.push('\n');
        }
        passwd.push_str(&format!(
            "{PASSWORD_USER}:x:0:0:duststack test:{}:/bin/sh\n",
            home.display()
        ));
        let sudo_home = h.dir.join("sudo-home");
        fs::create_dir_all(&sudo_home)?;
        std::os::unix::fs::chown(&sudo_home, Some(1500), Some(1500))?;
        passwd.push_str(&format!(
            "{SUDO_USER}:x:1500:1500:duststack sudo test:{}:/bin/sh\n",
            sudo_home.display()
        ));
        fs::write(h.dir.join("passwd"), passwd)?;
        Ok(())
    }

    /// Writes host `i`'s sshd_config and starts its sshd inside the host namespace.
    fn spawn_sshd(&self, i: usize) -> anyhow::Result<Child> {
        let h = &self.hosts[i];
        let dir = self.dir.as_path();
        let config = format!(
            "ListenAddress {addr}\nPort 22\nHostKey {hk}\nPidFile {pid}\nAuthorizedKeysFile {ak}\n\
             PermitRootLogin yes\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n\
             UsePAM no\nStrictModes no\nMaxSessions 10\nMaxStartups 10:30:100\nPrintMotd no\n\
             UseDNS no\nLogLevel INFO\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
            addr = h.addr,
            hk = h.dir.join("ssh_host_ed25519_key").display(),
            pid = h.dir.join("sshd.pid").display(),
            ak = dir.join("authorized_keys").display(),
        );
        let cfg = h.dir.join("sshd_config");
        fs::write(&cfg, config)?;
        let log = fs::File::create(h.dir.join("sshd.log"))?;
        // `ip netns exec` runs the shell in a private mount namespace: the bind mounts stay there.
        let script = format!(
            "mount --bind {hdir}/passwd /etc/passwd && mount --bind {dir}/shadow /etc/shadow && mount --bind {dir}/group /etc/group && {{ [ ! -e /etc/sudoers ] || mount --bind {dir}/sudoers /etc/sudoers; }} && exec /usr/sbin/sshd -D -e -f {cfg}",
            hdir = h.dir.display(),
            dir = dir.display(),
            cfg = cfg.display()
        );
        Command::new("ip")
            .args(["netns", "exec", &h.ns, "/bin/sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start sshd for {}", h.name))
    }

    /// Waits until host `i`'s sshd logs that it listens.
    fn wait_listening(&self, i: usize) -> anyhow::Result<()> {
        let h = &self.hosts[i];
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = fs::read_to_string(h.dir.join("sshd.log")).unwrap_or_default();
            if log.contains("Server listening on") {
                return Ok(());
            }
            if let Some(Some(child)) = self.sshd.lock().unwrap().get_mut(i) {
                if let Ok(Some(status)) = child.try_wait() {
                    bail!("sshd for {} exited ({status}): {}", h.name, log.trim());
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "sshd for {} did not start listening: {}",
                    h.name,
                    log.trim()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// known_hosts, INI inventory and ansible.cfg for the bed.
    fn write_client_files(&self) -> anyhow::Result<()> {
        let dir = self.dir.as_path();
        let mut kh = String::new();
        for h in &self.hosts {
            kh.push_str(&format!("{} {}\n", h.addr, h.host_key));
        }
        fs::write(self.known_hosts_path(), kh)?;
        let mut inv = String::from("[testbed]\n");
        for h in &self.hosts {
            inv.push_str(&format!(
                "{} ansible_host={} ansible_user=root ansible_ssh_private_key_file={} workdir={}\n",
                h.name,
                h.addr,
                self.client_key_path().display(),
                h.workdir.display()
            ));
        }
        inv.push_str(&format!(
            "\n[testbed:vars]\nansible_python_interpreter=/usr/bin/python3\n\
             ansible_ssh_common_args='-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes'\n",
            self.known_hosts_path().display()
        ));
        fs::write(self.inventory_path(), inv)?;
        let cp = dir.join("cp");
        fs::create_dir_all(&cp)?;
        let cfg = format!(
            "[defaults]\ninventory = {}\nhost_key_checking = True\nlocal_tmp = {}\nforks = 50\n\n\
             [ssh_connection]\npipelining = True\ncontrol_path_dir = {}\n",
            self.inventory_path().display(),
            dir.join("ansible-tmp").display(),
            cp.display()
        );
        fs::write(self.ansible_cfg_path(), cfg)?;
        Ok(())
    }

    /// The hosts, in inventory order.
    pub fn hosts(&self) -> &[TestHost] {
        &self.hosts
    }

    /// The bed's directory (keys, configs, inventory, host workdirs).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// INI inventory listing every host in group `testbed`.
    pub fn inventory_path(&self) -> PathBuf {
        self.dir.as_path().join("inventory.ini")
    }

    /// `ansible.cfg` pointing at the inventory (use with [`TestBed::ansible_env`]).
    pub fn ansible_cfg_path(&self) -> PathBuf {
        self.dir.as_path().join("ansible.cfg")
    }

    /// Environment for a real `ansible-playbook` run against the bed.
    pub fn ansible_env(&self) -> Vec<(String, String)> {
        vec![
            (
                "ANSIBLE_CONFIG".into(),
                self.ansible_cfg_path().display().to_string(),
            ),
            ("ANSIBLE_NOCOLOR".into(), "1".into()),
        ]
    }

    /// known_hosts with exactly each host's key at its address.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir.as_path().join("known_hosts")
    }

    /// Private ed25519 key authorized for root (and every user) on all hosts.
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.as_path().join("client_ed25519")
    }

    /// The shared authorized_keys file (append keys with [`TestBed::authorize_key`]).
    pub fn authorized_keys_path(&self) -> PathBuf {
        self.dir.as_path().join("authorized_keys")
    }

    /// Authorizes one more public key line on every host.
    pub fn authorize_key(&self, pubkey_line: &str) -> anyhow::Result<()> {
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(self.authorized_keys_path())?;
        writeln!(f, "{}", pubkey_line.trim())?;
        Ok(())
    }

    /// The unprivileged user that may `sudo` with [`TestBed::password_user`]'s password.
    pub fn sudo_user(&self) -> &str {
        SUDO_USER
    }

    /// User and password accepted by every host's sshd (uid 0, exists only in the sshd's view).
    pub fn password_user(&self) -> (&str, &str) {
        (PASSWORD_USER, &self.password)
    }

    /// Name of the control namespace.
    pub fn control_ns(&self) -> &str {
        &self.control
    }

    /// `cmd` re-built to run inside the control namespace (`ip netns exec <control> …`).
    pub fn control_command(&self, cmd: &Command) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.control])
            .arg(cmd.get_program())
            .args(cmd.get_args());
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        if let Some(d) = cmd.get_current_dir() {
            c.current_dir(d);
        }
        c
    }

    /// Runs `cmd` inside the control namespace and returns its output (whatever the status).
    pub fn run_in_control(&self, cmd: &mut Command) -> std::io::Result<Output> {
        self.control_command(cmd).output()
    }

    /// Runs `f` on a new thread that has entered the control namespace (for in-process SSH clients).
    pub fn in_control<F, R>(&self, f: F) -> R
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let path = format!("/run/netns/{}", self.control);
        std::thread::scope(|s| {
            s.spawn(|| {
                let ns = fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
                // SAFETY: setns on a valid fd of a network namespace; affects only this new thread.
                let rc = unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }

    /// Runs a future to completion on a tokio runtime whose threads live in the control namespace.
    pub fn block_on<Fut>(&self, fut: Fut) -> Fut::Output
    where
        Fut: std::future::Future + Send,
        Fut::Output: Send,
    {
        self.in_control(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(fut)
        })
    }

    /// Stops host `name`'s listening sshd (new connections are refused; open sessions survive).
    pub fn stop_sshd(&self, name: &str) -> anyhow::Result<()> {
        let i = self.index(name)?;
        if let Some(mut child) = self.sshd.lock().unwrap()[i].take() {
            // SAFETY: kill(2) on the sshd this bed started.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait()?;
        }
        Ok(())
    }

    /// Kills every process in host `name`'s namespace, open sessions included (the link goes dead).
    pub fn kill_host(&self, name: &str) -> anyhow::Result<()> {
        let i = self.index(name)?;
        for pid in ns_pids(&self.hosts[i].ns) {
            // SAFETY: kill(2) on processes in a namespace this bed created.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(mut child) = self.sshd.lock().unwrap()[i].take() {
            let _ = child.wait();
        }
        Ok(())
    }

    /// Starts host `name`'s sshd again after [`TestBed::stop_sshd`].
    pub fn start_sshd(&self, name: &str) -> anyhow::Result<()> {
        let i = self.index(name)?;
        self.stop_sshd(name)?;
        let _ = fs::remove_file(self.hosts[i].dir.join("sshd.log"));
        let child = self.spawn_sshd(i)?;
        self.sshd.lock().unwrap()[i] = Some(child);
        self.wait_listening(i)
    }

    fn index(&self, name: &str) -> anyhow::Result<usize> {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .with_context(|| format!("no host {name}"))
    }
}

impl TestBed {
    /// A command run inside the control namespace.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.control]).arg(program);
        c
    }

    /// Writes an inventory whose workdirs are `<host workdir>/<sub>` (created), for independent runs.
    pub fn inventory_with_workdirs(&self, sub: &str) -> anyhow::Result<PathBuf> {
        let text = fs::read_to_string(self.inventory_path())?;
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

/// Removes a bed left running by `duststack testbed up`: kills every process in the namespaces
/// named `<prefix>…` and deletes them; returns their names.
pub fn destroy(prefix: &str) -> Vec<String> {
    let mut removed = Vec::new();
    for entry in fs::read_dir("/run/netns").into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(prefix) {
            destroy_ns(&name);
            removed.push(name);
        }
    }
    removed
}

impl Drop for TestBed {
    fn drop(&mut self) {
        if self.keep {
            return;
        }
        if let Ok(mut children) = self.sshd.lock() {
            for child in children.iter_mut().flatten() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        for ns in self.namespaces.iter().rev() {
            destroy_ns(ns);
        }
        if self.remove_dir {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
