//! Shared by the integration tests: child processes that die with the test, free ports, and a
//! real etcd with client-certificate auth from a duststack PKI.

#![allow(dead_code)]

pub mod node;

use std::fs;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use duststack::pki::issue::{generate_key, issue, parse_key};
use duststack::pki::kubeconfig::Kubeconfig;
use duststack::pki::spec::Usage;
use duststack::pki::{CertSpec, ClusterSpec, KeyAlgorithm, Store};

/// A child process killed (by its pid) when dropped, so nothing outlives the test.
pub struct Proc {
    name: &'static str,
    child: Child,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command, log: &Path) -> Proc {
        let out = fs::File::create(log).unwrap();
        let err = out.try_clone().unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc { name, child }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits up to 10 s; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            eprintln!("stopping {}", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16, what: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} did not listen on {port}; log:\n{}",
        fs::read_to_string(log).unwrap_or_default()
    );
}

/// Generates a PKI (ECDSA, node cp1 on 127.0.0.1) under `dir/pki`, kubeconfigs in `dir`.
pub fn make_pki(dir: &Path, api_port: u16) -> std::path::PathBuf {
    let pki = dir.join("pki");
    let mut spec = ClusterSpec::new("cp1", IpAddr::V4(Ipv4Addr::LOCALHOST));
    spec.key_algorithm = KeyAlgorithm::EcdsaP256;
    spec.control_plane_endpoint = Some(duststack::pki::spec::Endpoint {
        host: "127.0.0.1".into(),
        port: api_port,
    });
    duststack::pki::init(&Store::new(&pki), dir, &spec).unwrap();
    pki
}

/// Starts Debian's etcd on loopback with TLS and client-certificate auth; waits until it listens.
pub fn start_etcd(dir: &Path, pki: &Path, client_port: u16, peer_port: u16) -> Proc {
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
    let log = dir.join("etcd.log");
    let etcd = Proc::spawn(
        "etcd",
        Command::new("/usr/bin/etcd")
            .args(["--name", "cp1", "--data-dir"])
            .arg(dir.join("etcd-data"))
            .args([
                "--listen-client-urls",
                &format!("https://127.0.0.1:{client_port}"),
            ])
            .args([
                "--advertise-client-urls",
                &format!("https://127.0.0.1:{client_port}"),
            ])
            .args([
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--initial-cluster",
                &format!("cp1=http://127.0.0.1:{peer_port}"),
            ])
            .args([
                "--cert-file",
                &p("etcd/server.crt"),
                "--key-file",
                &p("etcd/server.key"),
            ])
            .args(["--trusted-ca-file", &p("etcd/ca.crt"), "--client-cert-auth"]),
        &log,
    );
    wait_for_port(client_port, "etcd", &log);
    etcd
}

/// Starts `dustkube server` against the etcd on `etcd_port` with the PKI in `pki`; `extra` flags
/// are appended; output goes to `dir/<log>`. Waits until it listens.
pub fn start_server(
    dir: &Path,
    pki: &Path,
    etcd_port: u16,
    api_port: u16,
    extra: &[&str],
    log: &str,
) -> Proc {
    let p = |f: &str| pki.join(f).to_str().unwrap().to_string();
    let log = dir.join(log);
    let api = Proc::spawn(
        "dustkube server",
        Command::new(env!("CARGO_BIN_EXE_dustkube"))
            .arg("server")
            .args(["--etcd-servers", &format!("https://127.0.0.1:{etcd_port}")])
            .args(["--etcd-cafile", &p("etcd/ca.crt")])
            .args(["--etcd-certfile", &p("apiserver-etcd-client.crt")])
            .args(["--etcd-keyfile", &p("apiserver-etcd-client.key")])
            .args(["--tls-cert-file", &p("apiserver.crt")])
            .args(["--tls-private-key-file", &p("apiserver.key")])
            .args(["--client-ca-file", &p("ca.crt")])
            .args(["--secure-port", &api_port.to_string()])
            .args(if extra.contains(&"--bind-address") {
                &[][..]
            } else {
                &["--bind-address", "127.0.0.1"][..]
            })
            .args(extra),
        &log,
    );
    wait_for_port(api_port, "dustkube server", &log);
    api
}

/// Writes the client certificate and key of a kubeconfig to `dir/<stem>.crt|.key` (for curl).
pub fn client_cert_files(kubeconfig: &Path, dir: &Path, stem: &str) -> (String, String) {
    let text = fs::read_to_string(kubeconfig).unwrap();
    let kc = duststack::pki::kubeconfig::Kubeconfig::parse(&text, kubeconfig).unwrap();
    let (crt, key) = (
        dir.join(format!("{stem}.crt")),
        dir.join(format!("{stem}.key")),
    );
    fs::write(&crt, kc.cert_pem).unwrap();
    fs::write(&key, kc.key_pem).unwrap();
    (
        crt.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

/// Runs kubectl 1.33 with `kubeconfig`; returns (success, stdout, stderr).
pub fn kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new("/usr/lib/google-cloud-sdk/bin/kubectl.1.33")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .output()
        .expect("kubectl 1.33 is required (scripts/install-deps.sh)");
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("$ kubectl {}\n{o}{e}", args.join(" "));
    (out.status.success(), o, e)
}

/// kubectl that must succeed; returns stdout.
pub fn kubectl_ok(kubeconfig: &Path, cache: &Path, args: &[&str]) -> String {
    let (ok, out, err) = kubectl(kubeconfig, cache, args);
    assert!(ok, "kubectl {args:?} failed: {err}");
    out
}

/// The kubectl binaries every API test runs (oldest and newest supported).
pub const KUBECTLS: [&str; 2] = [
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.27",
    "/usr/lib/google-cloud-sdk/bin/kubectl.1.33",
];

/// A client kubeconfig for a user the cluster CA signs (CN = user, O = groups).
pub fn user_kubeconfig(pki: &Path, server: &str, user: &str, groups: &[&str]) -> String {
    let ca_pem = fs::read_to_string(pki.join("ca.crt")).unwrap();
    let ca_key = parse_key(&fs::read_to_string(pki.join("ca.key")).unwrap()).unwrap();
    let key = generate_key(KeyAlgorithm::EcdsaP256).unwrap();
    let spec = CertSpec {
        name: user.into(),
        issuer: Some("ca".into()),
        common_name: user.into(),
        organizations: groups.iter().map(|g| g.to_string()).collect(),
        dns_names: Vec::new(),
        ips: Vec::new(),
        usage: Some(Usage::Client),
    };
    let cert = issue(
        &spec,
        &key,
        Some((&ca_pem, &ca_key)),
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    Kubeconfig {
        server: server.into(),
        ca_pem,
        user: user.into(),
        cert_pem: cert,
        key_pem: key.serialize_pem(),
    }
    .render()
}

pub struct Kubectl {
    /// The kubectl binary.
    pub bin: &'static str,
    /// Its discovery cache (fresh per test).
    pub cache: PathBuf,
    /// The kubeconfig it uses.
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// Runs kubectl and echoes the command and its output (shown when a test fails).
    pub fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin));
        eprintln!(
            "$ {} {}\n{}{}",
            self.bin.rsplit('/').next().unwrap_or(""),
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{} {:?} failed: {}",
            self.bin,
            args,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "{} {:?} should have failed",
            self.bin,
            args
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `kubectl auth can-i ...`: the printed answer (it exits 1 for "no").
    pub fn can_i(&self, args: &[&str]) -> String {
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        String::from_utf8_lossy(&self.run(&all).stdout)
            .trim()
            .to_string()
    }
}

/// The lines of a kubectl table with runs of spaces collapsed (`NAME READY STATUS ...`).
pub fn rows(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// Whether a row of the table `text` starts with `prefix` (spaces collapsed).
pub fn has_row(text: &str, prefix: &str) -> bool {
    rows(text).iter().any(|r| r.starts_with(prefix))
}

/// Owned copies of command-line arguments.
pub fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A command's standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Waits up to `secs` seconds for `needle` to appear in the file `log`; returns its text.
pub fn wait_for_text(log: &Path, needle: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.contains(needle) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "'{needle}' did not appear in {}:\n{text}",
            log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
