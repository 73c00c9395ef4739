//! SSH authentication through ssh-agent. A separate test binary: it sets `SSH_AUTH_SOCK`,
//! which is process-wide and would change what other transport tests try first.

mod support;

use std::process::Command;

use duststack::connection::{connect, ConnError, ConnectionSpec};
use support::{keygen, TestBed};

/// An ssh-agent started by this test, killed (by pid) on drop.
struct Agent {
    pid: i32,
}

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the agent this test started.
        unsafe { libc::kill(self.pid, libc::SIGTERM) };
    }
}

#[test]
fn agent_key_then_encrypted_key_file() {
    let bed = TestBed::start(1).unwrap();
    let h = bed.hosts()[0].clone();
    let sock = bed.dir().join("agent.sock");
    let out = Command::new("ssh-agent")
        .arg("-a")
        .arg(&sock)
        .arg("-s")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let pid: i32 = text
        .split("SSH_AGENT_PID=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let _agent = Agent { pid };

    // A key only the agent holds.
    let agent_key = bed.dir().join("agent_ecdsa");
    bed.authorize_key(&keygen(&agent_key, "ecdsa", "agent key").unwrap())
        .unwrap();
    let add = Command::new("ssh-add")
        .arg(&agent_key)
        .env("SSH_AUTH_SOCK", &sock)
        .output()
        .unwrap();
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    std::fs::remove_file(&agent_key).unwrap();

    // A passphrase-protected key file.
    let enc = bed.dir().join("enc_ed25519");
    bed.authorize_key(&keygen(&enc, "ed25519", "encrypted").unwrap())
        .unwrap();
    let pw = Command::new("ssh-keygen")
        .args(["-q", "-p", "-N", "s3cret", "-P", "", "-f"])
        .arg(&enc)
        .status()
        .unwrap();
    assert!(pw.success());

    std::env::remove_var("SSH_AUTH_SOCK");
    let base = ConnectionSpec::ssh(&h.addr, 22, "root", None, &bed.known_hosts_path());
    bed.block_on(async {
        // Without the agent and without keys: refused.
        let r = connect(&base).await;
        assert!(
            matches!(r, Err(ConnError::Unreachable(ref m)) if m.contains("authentication failed")),
            "{:?}",
            r.err()
        );

        std::env::set_var("SSH_AUTH_SOCK", &sock);
        let c = connect(&base).await.unwrap();
        assert_eq!(
            c.exec("echo agent", None).await.unwrap().stdout_str(),
            "agent\n"
        );
        std::env::remove_var("SSH_AUTH_SOCK");

        let mut s = base.clone();
        s.private_key_files = vec![enc.clone()];
        let m = match connect(&s).await {
            Err(ConnError::Unreachable(m)) => m,
            other => panic!("expected Unreachable, got {:?}", other.err()),
        };
        assert!(m.contains("encrypted") && m.contains("passphrase"), "{m}");
        s.key_passphrase = Some("s3cret".into());
        let c = connect(&s).await.unwrap();
        assert_eq!(
            c.exec("echo enc", None).await.unwrap().stdout_str(),
            "enc\n"
        );
    });
}
