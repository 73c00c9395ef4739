//! Waiting for a lab VM to answer SSH as itself: the host key must be the one duststack put in
//! its seed (strict known_hosts check), and `hostname` must print the node's host name.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::connection::{connect, ConnError, ConnectionSpec};

/// Polls `address:22` as root until SSH answers with the expected host key and host name,
/// or `timeout` passes. A host-key mismatch fails at once (the seed was not applied, or another
/// machine holds the address). Returns how long it took.
pub async fn wait_ready(
    address: &str,
    hostname: &str,
    key: Option<&Path>,
    known_hosts: &Path,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let mut spec = ConnectionSpec::ssh(address, 22, "root", key, known_hosts);
    spec.connect_timeout = Duration::from_secs(5);
    spec.command_timeout = Some(Duration::from_secs(20));
    let mut last = String::from("no answer yet");
    while start.elapsed() < timeout {
        match connect(&spec).await {
            Ok(conn) => {
                let out = conn.exec("hostname", None).await;
                conn.close().await;
                match out {
                    Ok(o) if o.rc == 0 && o.stdout_str().trim() == hostname => {
                        return Ok(start.elapsed())
                    }
                    Ok(o) => anyhow::bail!(
                        "{address} answers SSH but calls itself {:?}, not {hostname:?} (rc {})",
                        o.stdout_str().trim(),
                        o.rc
                    ),
                    Err(e) => last = e.to_string(),
                }
            }
            Err(ConnError::Unreachable(msg)) if msg.contains("HOST KEY MISMATCH") => {
                anyhow::bail!(
                    "{msg}\n(the VM did not take the host key from its seed, or another machine answers at {address})"
                )
            }
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    anyhow::bail!(
        "{address} did not answer SSH as {hostname} within {}s (last: {last})",
        timeout.as_secs()
    )
}
