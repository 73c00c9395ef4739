//! SSH and local transports against a network-namespace test bed of real sshd hosts.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use duststack::connection::ssh::SshConnection;
use duststack::connection::{connect, ConnError, Connection, ConnectionSpec};
use support::{keygen, TestBed, TestHost};

/// Strict spec for `host` as root with the bed's client key.
fn spec(bed: &TestBed, host: &TestHost) -> ConnectionSpec {
    ConnectionSpec::ssh(
        &host.addr,
        22,
        "root",
        Some(&bed.client_key_path()),
        &bed.known_hosts_path(),
    )
}

async fn open(spec: &ConnectionSpec) -> Arc<dyn Connection> {
    connect(spec)
        .await
        .unwrap_or_else(|e| panic!("connect {}: {e}", spec.label()))
}

fn unreachable_msg(r: Result<Arc<dyn Connection>, ConnError>) -> String {
    match r {
        Err(ConnError::Unreachable(m)) => m,
        Err(e) => panic!("expected Unreachable, got {e:?}"),
        Ok(_) => panic!("expected Unreachable, got a connection"),
    }
}

#[test]
fn exec_reports_stdout_stderr_rc_and_feeds_stdin() {
    let bed = TestBed::start(3).unwrap();
    let s = spec(&bed, &bed.hosts()[1]);
    bed.block_on(async {
        let c = open(&s).await;
        let out = c
            .exec("echo out; echo err >&2; exit 3", None)
            .await
            .unwrap();
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr_str(), "err\n");
        assert_eq!(out.rc, 3);

        let out = c.exec("echo $SSH_CONNECTION", None).await.unwrap();
        assert!(
            out.stdout_str().starts_with("10.77.0.2 "),
            "{}",
            out.stdout_str()
        );
        assert!(
            out.stdout_str().contains(" 10.77.0.12 22"),
            "{}",
            out.stdout_str()
        );

        let out = c.exec("tr a-z A-Z", Some(b"hello stdin")).await.unwrap();
        assert_eq!((out.rc, out.stdout_str().as_str()), (0, "HELLO STDIN"));

        // Commands that read stdin get EOF when none is given.
        let out = c.exec("cat; echo done", None).await.unwrap();
        assert_eq!(out.stdout_str(), "done\n");

        // Large input and output cross many channel windows in both directions.
        let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let out = c.exec("cat", Some(&big)).await.unwrap();
        assert_eq!(out.rc, 0);
        assert!(
            out.stdout == big,
            "echoed {} of {} bytes",
            out.stdout.len(),
            big.len()
        );
        let out = c
            .exec("head -c 5000000 /dev/zero; echo tail >&2", None)
            .await
            .unwrap();
        assert_eq!(
            (out.stdout.len(), out.stderr_str().as_str()),
            (5_000_000, "tail\n")
        );

        // A command killed by a signal has no exit status.
        let out = c.exec("kill -9 $$", None).await.unwrap();
        assert_eq!(out.rc, -1);
        c.close().await;
        assert!(
            c.exec("true", None).await.is_err(),
            "exec after close must fail"
        );
    });
}

#[test]
fn sequential_execs_reuse_one_connection_and_are_fast() {
    let bed = TestBed::start(3).unwrap();
    let s = spec(&bed, &bed.hosts()[0]);
    bed.block_on(async {
        let c = open(&s).await;
        let t = Instant::now();
        for i in 0..200 {
            let out = c.exec(&format!("echo {i}"), None).await.unwrap();
            assert_eq!(out.stdout_str(), format!("{i}\n"));
        }
        let per = t.elapsed() / 200;
        println!("200 sequential execs: {:?} ({per:?} per exec)", t.elapsed());
        // A new connection per command costs well over 100 ms; a reused one a few ms.
        assert!(
            per < Duration::from_millis(60),
            "{per:?} per exec: connection not reused or Nagle on"
        );
        let out = c.exec("echo $SSH_CONNECTION", None).await.unwrap();
        let first = c.exec("echo $SSH_CONNECTION", None).await.unwrap();
        assert_eq!(
            out.stdout, first.stdout,
            "same TCP connection (same client port)"
        );
    });
}

#[test]
fn raw_exec_floor_1000_true() {
    let bed = TestBed::start(1).unwrap();
    let s = spec(&bed, &bed.hosts()[0]);
    bed.block_on(async {
        let c = open(&s).await;
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(c.exec("true", None).await.unwrap().rc, 0);
        }
        let e = t.elapsed();
        println!(
            "raw-exec floor: 1000 x `true` on one connection: {e:?} ({:?} per exec)",
            e / 1000
        );
    });
}

#[test]
fn put_and_get_roundtrip_with_mode() {
    let bed = TestBed::start(3).unwrap();
    let h = bed.hosts()[2].clone();
    let s = spec(&bed, &h);
    let path = h.workdir.join("dir with space/file's name");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let p = path.to_str().unwrap().to_string();
    bed.block_on(async {
        let c = open(&s).await;
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 256) as u8).collect();
        c.put_file(&data, &p, Some(0o640)).await.unwrap();
        assert_eq!(c.get_file(&p).await.unwrap(), data);
        let mode = c
            .exec(&format!("stat -c %a '{}'", p.replace('\'', "'\\''")), None)
            .await
            .unwrap();
        assert_eq!(mode.stdout_str().trim(), "640");

        c.put_file(b"second", &p, Some(0o600)).await.unwrap();
        assert_eq!(c.get_file(&p).await.unwrap(), b"second");
        let ls = format!(
            "ls -A '{}' | wc -l",
            h.workdir.join("dir with space").display()
        );
        let left = c.exec(&ls, None).await.unwrap();
        assert_eq!(
            left.stdout_str().trim(),
            "1",
            "no temporary files left behind"
        );

        match c.get_file("/nonexistent/duststack").await {
            Err(ConnError::Other(m)) => assert!(m.contains("No such file"), "{m}"),
            other => panic!("expected Other error, got {other:?}"),
        }
        match c.put_file(b"x", "/nonexistent/dir/f", None).await {
            Err(ConnError::Other(m)) => assert!(m.contains("/nonexistent/dir/f"), "{m}"),
            other => panic!("expected Other error, got {other:?}"),
        }
    });
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b"second",
        "file really written on the host"
    );
}

#[test]
fn twenty_concurrent_execs_on_one_connection_all_succeed() {
    let bed = TestBed::start(3).unwrap();
    let s = spec(&bed, &bed.hosts()[0]);
    bed.block_on(async {
        let c = open(&s).await;
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for i in 0..20 {
            let c = c.clone();
            set.spawn(async move { (i, c.exec(&format!("sleep 0.3; echo {i}"), None).await) });
        }
        let mut seen = Vec::new();
        while let Some(r) = set.join_next().await {
            let (i, out) = r.unwrap();
            let out = out.unwrap_or_else(|e| panic!("exec {i}: {e}"));
            assert_eq!(out.stdout_str(), format!("{i}\n"));
            seen.push(i);
        }
        assert_eq!(seen.len(), 20);
        let e = t.elapsed();
        println!("20 concurrent `sleep 0.3` execs: {e:?}");
        // 8 channels at a time → 3 waves; sshd alone would refuse channels beyond MaxSessions=10.
        assert!(
            e >= Duration::from_millis(850),
            "{e:?}: channels were not bounded"
        );

        // Many short commands: finished channels are reused at once (sshd frees slots lazily).
        let mut set = tokio::task::JoinSet::new();
        for i in 0..200 {
            let c = c.clone();
            set.spawn(async move { (i, c.exec(&format!("echo {i}"), None).await) });
        }
        while let Some(r) = set.join_next().await {
            let (i, out) = r.unwrap();
            let out = out.unwrap_or_else(|e| panic!("short exec {i}: {e}"));
            assert_eq!(out.stdout_str(), format!("{i}\n"));
        }
    });
}

#[test]
fn unknown_host_key_is_refused_and_accept_new_records_it() {
    let bed = TestBed::start(2).unwrap();
    let h = bed.hosts()[0].clone();
    let kh = bed.dir().join("empty_known_hosts");
    std::fs::write(&kh, "# nothing yet\n").unwrap();
    let mut s = spec(&bed, &h);
    s.known_hosts = kh.clone();
    bed.block_on(async {
        let m = unreachable_msg(connect(&s).await);
        assert!(
            m.contains("host key verification failed") && m.contains(&h.addr),
            "{m}"
        );
        assert!(m.contains(kh.to_str().unwrap()), "{m}");

        s.accept_new_host_keys = true;
        open(&s).await.exec("true", None).await.unwrap();
        let text = std::fs::read_to_string(&kh).unwrap();
        assert!(
            text.contains(&format!("{} {}", h.addr, h.host_key)),
            "{text}"
        );

        s.accept_new_host_keys = false;
        assert_eq!(
            open(&s)
                .await
                .exec("echo ok", None)
                .await
                .unwrap()
                .stdout_str(),
            "ok\n"
        );
    });
}

#[test]
fn mismatching_host_key_is_refused_even_with_accept_new() {
    let bed = TestBed::start(2).unwrap();
    let (h1, h2) = (bed.hosts()[0].clone(), bed.hosts()[1].clone());
    let kh = bed.dir().join("wrong_known_hosts");
    // host01's address recorded with host02's key, on line 2.
    std::fs::write(&kh, format!("# c\n{} {}\n", h1.addr, h2.host_key)).unwrap();
    let mut s = spec(&bed, &h1);
    s.known_hosts = kh.clone();
    bed.block_on(async {
        let m = unreachable_msg(connect(&s).await);
        assert!(m.contains("MISMATCH"), "{m}");
        assert!(m.contains(&format!("{}:2", kh.display())), "{m}");
        s.accept_new_host_keys = true;
        let m = unreachable_msg(connect(&s).await);
        assert!(m.contains("MISMATCH"), "{m}");
    });
    assert_eq!(
        std::fs::read_to_string(&kh).unwrap().lines().count(),
        2,
        "known_hosts untouched"
    );
}

#[test]
fn hashed_known_hosts_entries_are_accepted() {
    let bed = TestBed::start(1).unwrap();
    let h = bed.hosts()[0].clone();
    let kh = bed.dir().join("hashed_known_hosts");
    std::fs::copy(bed.known_hosts_path(), &kh).unwrap();
    let out = std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&kh)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = std::fs::read_to_string(&kh).unwrap();
    assert!(text.starts_with("|1|") && !text.contains(&h.addr), "{text}");
    let mut s = spec(&bed, &h);
    s.known_hosts = kh;
    bed.block_on(async { open(&s).await.exec("true", None).await.unwrap() });
}

#[test]
fn auth_with_rsa_key_password_and_failures() {
    let bed = TestBed::start(1).unwrap();
    let h = bed.hosts()[0].clone();
    let rsa = bed.dir().join("client_rsa");
    bed.authorize_key(&keygen(&rsa, "rsa", "rsa-client").unwrap())
        .unwrap();
    let stranger = bed.dir().join("stranger_ed25519");
    keygen(&stranger, "ed25519", "not authorized").unwrap();
    let (pw_user, pw) = bed.password_user();
    let (pw_user, pw) = (pw_user.to_string(), pw.to_string());
    bed.block_on(async {
        let mut s = spec(&bed, &h);
        s.private_key_files = vec![rsa.clone()];
        let c = open(&s).await;
        assert_eq!(c.exec("whoami", None).await.unwrap().stdout_str(), "root\n");

        // Keys are tried in order: an unauthorized one first does not prevent the next.
        s.private_key_files = vec![stranger.clone(), bed.client_key_path()];
        open(&s).await.exec("true", None).await.unwrap();

        s.private_key_files = vec![stranger.clone()];
        let m = unreachable_msg(connect(&s).await);
        assert!(
            m.contains("authentication failed") && m.contains("stranger_ed25519"),
            "{m}"
        );

        let mut p = ConnectionSpec::ssh(&h.addr, 22, &pw_user, None, &bed.known_hosts_path());
        p.password = Some(pw.clone());
        let c = open(&p).await;
        assert_eq!(
            c.exec("echo $USER", None).await.unwrap().stdout_str(),
            format!("{pw_user}\n")
        );
        p.password = Some("wrong".into());
        let m = unreachable_msg(connect(&p).await);
        assert!(
            m.contains("authentication failed") && m.contains("password"),
            "{m}"
        );
    });
}

#[test]
fn stopped_or_killed_sshd_makes_the_host_unreachable() {
    let bed = TestBed::start(2).unwrap();
    let (h1, h2) = (bed.hosts()[0].clone(), bed.hosts()[1].clone());
    let s2 = spec(&bed, &h2);
    let c2 = bed.block_on(async { open(&s2).await });

    bed.stop_sshd(&h1.name).unwrap();
    let s1 = spec(&bed, &h1);
    bed.block_on(async {
        let m = unreachable_msg(connect(&s1).await);
        assert!(m.contains(&h1.addr) && m.contains("refused"), "{m}");
    });

    bed.kill_host(&h2.name).unwrap();
    bed.block_on(async {
        match c2.exec("true", None).await {
            Err(ConnError::Unreachable(m)) => assert!(m.contains("connection lost"), "{m}"),
            other => panic!("expected Unreachable after the host died, got {other:?}"),
        }
    });
    bed.start_sshd(&h1.name).unwrap();
    bed.block_on(async { open(&s1).await.exec("true", None).await.unwrap() });
}

#[test]
fn proxy_jump_tunnels_through_a_bastion() {
    let bed = TestBed::start(3).unwrap();
    let (b, t) = (bed.hosts()[0].clone(), bed.hosts()[2].clone());
    let vars = serde_json::json!({
        "ansible_host": t.addr, "ansible_user": "root",
        "ansible_ssh_private_key_file": bed.client_key_path(),
        "ansible_ssh_common_args": format!("-o ProxyJump=root@{}:22 -o UserKnownHostsFile={} -o StrictHostKeyChecking=yes",
            b.addr, bed.known_hosts_path().display()),
    });
    let s = ConnectionSpec::from_vars(&t.name, vars.as_object().unwrap()).unwrap();
    assert_eq!(s.proxy_jump.as_ref().unwrap().host, b.addr);
    bed.block_on(async {
        let c = open(&s).await;
        let out = c.exec("echo $SSH_CONNECTION", None).await.unwrap();
        // The target sees the bastion as the client.
        assert!(
            out.stdout_str().starts_with(&format!("{} ", b.addr)),
            "{}",
            out.stdout_str()
        );
        assert!(
            out.stdout_str().contains(&format!(" {} 22", t.addr)),
            "{}",
            out.stdout_str()
        );
        for i in 0..50 {
            assert_eq!(
                c.exec(&format!("echo {i}"), None)
                    .await
                    .unwrap()
                    .stdout_str(),
                format!("{i}\n")
            );
        }
    });
}

#[test]
fn spec_from_inventory_vars_connects() {
    let bed = TestBed::start(1).unwrap();
    let inv = std::fs::read_to_string(bed.inventory_path()).unwrap();
    let h = &bed.hosts()[0];
    assert!(
        inv.contains(&format!("{} ansible_host={}", h.name, h.addr)),
        "{inv}"
    );
    let vars = serde_json::json!({
        "ansible_host": h.addr, "ansible_user": "root",
        "ansible_ssh_private_key_file": bed.client_key_path(),
        "ansible_ssh_common_args": format!("-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes", bed.known_hosts_path().display()),
    });
    let s = ConnectionSpec::from_vars(&h.name, vars.as_object().unwrap()).unwrap();
    bed.block_on(async {
        let c = SshConnection::connect(&s).await.unwrap();
        assert_eq!(c.label(), format!("root@{}:22", h.addr));
        assert_eq!(c.exec("echo hi", None).await.unwrap().stdout_str(), "hi\n");
    });
}

#[test]
fn many_hosts_connect_in_parallel_under_the_handshake_bound() {
    let bed = TestBed::start(12).unwrap();
    let specs: Vec<ConnectionSpec> = bed.hosts().iter().map(|h| spec(&bed, h)).collect();
    bed.block_on(async {
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for s in specs {
            set.spawn(async move {
                let c = connect(&s).await?;
                c.exec("echo $SSH_CONNECTION", None).await
            });
        }
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            assert_eq!(r.unwrap().unwrap().rc, 0);
            n += 1;
        }
        assert_eq!(n, 12);
        println!("12 hosts connected + exec in parallel: {:?}", t.elapsed());
    });
}

#[test]
fn local_connection_exec_put_get() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.txt");
    let p = path.to_str().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let c = connect(&ConnectionSpec::local()).await.unwrap();
        let out = c
            .exec(
                "read x; echo \"got $x\"; echo e >&2; exit 4",
                Some(b"line\n"),
            )
            .await
            .unwrap();
        assert_eq!(
            (out.rc, out.stdout_str().as_str(), out.stderr_str().as_str()),
            (4, "got line\n", "e\n")
        );
        c.put_file(b"content", p, Some(0o604)).await.unwrap();
        assert_eq!(c.get_file(p).await.unwrap(), b"content");
        let mode = c.exec(&format!("stat -c %a {p}"), None).await.unwrap();
        assert_eq!(mode.stdout_str().trim(), "604");
        assert!(matches!(
            c.get_file("/nonexistent/x").await,
            Err(ConnError::Other(_))
        ));
        c.close().await;
        assert!(matches!(
            c.exec("true", None).await,
            Err(ConnError::Unreachable(_))
        ));
    });
    assert!(Path::new(&path).exists());
}

#[test]
fn command_timeout_is_enforced() {
    let bed = TestBed::start(1).unwrap();
    let mut s = spec(&bed, &bed.hosts()[0]);
    s.command_timeout = Some(Duration::from_millis(500));
    bed.block_on(async {
        let c = open(&s).await;
        let t = Instant::now();
        assert!(matches!(
            c.exec("sleep 5", None).await,
            Err(ConnError::Timeout(_))
        ));
        assert!(t.elapsed() < Duration::from_secs(3));
        assert_eq!(
            c.exec("echo still", None).await.unwrap().stdout_str(),
            "still\n"
        );
    });
}

#[test]
fn hosts_behind_one_bastion_share_its_connection() {
    let bed = TestBed::start(3).unwrap();
    let b = bed.hosts()[0].clone();
    let specs: Vec<ConnectionSpec> = bed.hosts()[1..]
        .iter()
        .map(|t| {
            let mut s = spec(&bed, t);
            s.proxy_jump = Some(Box::new(spec(&bed, &b)));
            s
        })
        .collect();
    bed.block_on(async {
        let mut conns = Vec::new();
        for s in &specs {
            conns.push(open(s).await);
        }
        let mut ports = Vec::new();
        for c in &conns {
            let out = c
                .exec("echo $SSH_CONNECTION", None)
                .await
                .unwrap()
                .stdout_str();
            assert!(out.starts_with(&format!("{} ", b.addr)), "{out}");
            ports.push(out.split_whitespace().nth(1).unwrap().to_string());
        }
        // Both tunnels leave the bastion through one SSH connection (one post-auth sshd process).
        let pids = std::process::Command::new("ip")
            .args(["netns", "pids", &b.ns])
            .output()
            .unwrap();
        let sessions = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .filter(|pid| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmd).starts_with("sshd: root")
            })
            .count();
        let all: Vec<String> = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .map(|p| {
                String::from_utf8_lossy(
                    &std::fs::read(format!("/proc/{p}/cmdline")).unwrap_or_default(),
                )
                .into_owned()
            })
            .collect();
        assert_eq!(
            sessions, 1,
            "one bastion session for two jumped hosts: {all:?}"
        );
    });
}
