//! Shared by the integration tests: child processes that die with the test, free ports, and a
//! real etcd with client-certificate auth from a duststack PKI.

#![allow(dead_code)]

use std::fs;
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use duststack::pki::{ClusterSpec, KeyAlgorithm, Store};

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
