//! Container probes: startup, liveness and readiness, each exec (CRI ExecSync), httpGet or
//! tcpSocket, run on their own schedule (initialDelaySeconds, periodSeconds, timeoutSeconds,
//! successThreshold, failureThreshold). Results live in a shared table keyed by container id;
//! the reconcile loop reads readiness and kills containers whose liveness failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::cri::Cri;

/// The three probe kinds, in the order they gate each other.
pub const KINDS: [&str; 3] = ["startupProbe", "livenessProbe", "readinessProbe"];

/// Probe results of one container.
#[derive(Debug, Default, Clone)]
pub struct State {
    /// Readiness (true when there is no readiness probe).
    pub ready: bool,
    /// The startup probe succeeded (true when there is none).
    pub started: bool,
    /// Liveness or startup failed enough: the container is to be killed.
    pub kill: bool,
    successes: HashMap<&'static str, u32>,
    failures: HashMap<&'static str, u32>,
    last: HashMap<&'static str, Instant>,
    running: HashMap<&'static str, bool>,
}

/// The table of probe results.
pub type Table = Arc<Mutex<HashMap<String, State>>>;

fn secs(probe: &Value, key: &str, default: u64) -> u64 {
    probe[key].as_u64().unwrap_or(default)
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

/// A named or numeric port of the container.
fn port_of(container: &Value, port: &Value) -> Option<u16> {
    match port {
        Value::Number(n) => n.as_u64().map(|p| p as u16),
        Value::String(s) => s.parse().ok().or_else(|| {
            container["ports"]
                .as_array()?
                .iter()
                .find(|p| p["name"] == s.as_str())
                .and_then(|p| p["containerPort"].as_u64())
                .map(|p| p as u16)
        }),
        _ => None,
    }
}

/// Runs one probe once: true on success.
pub async fn check(cri: &Cri, probe: &Value, container: &Value, id: &str, pod_ip: &str) -> bool {
    let timeout = Duration::from_secs(secs(probe, "timeoutSeconds", 1).max(1));
    if let Some(exec) = probe.get("exec") {
        let cmd: Vec<String> = exec["command"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        return matches!(cri.exec_sync(id, cmd, timeout).await, Ok((0, _, _)));
    }
    let (section, is_http) = match (probe.get("httpGet"), probe.get("tcpSocket")) {
        (Some(h), _) => (h, true),
        (_, Some(t)) => (t, false),
        _ => return false,
    };
    let Some(port) = port_of(container, &section["port"]) else {
        return false;
    };
    let host = section["host"]
        .as_str()
        .filter(|h| !h.is_empty())
        .unwrap_or(pod_ip)
        .to_string();
    let attempt = async {
        let mut tcp = TcpStream::connect((host.as_str(), port)).await.ok()?;
        if !is_http {
            return Some(true);
        }
        let path = section["path"].as_str().unwrap_or("/");
        let mut req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.30\r\nAccept: */*\r\nConnection: close\r\n"
        );
        for h in section["httpHeaders"].as_array().into_iter().flatten() {
            req.push_str(&format!(
                "{}: {}\r\n",
                h["name"].as_str().unwrap_or(""),
                h["value"].as_str().unwrap_or("")
            ));
        }
        req.push_str("\r\n");
        tcp.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 64];
        let n = tcp.read(&mut head).await.ok()?;
        let line = String::from_utf8_lossy(&head[..n]).to_string();
        let code: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((200..400).contains(&code))
    };
    matches!(tokio::time::timeout(timeout, attempt).await, Ok(Some(true)))
}

/// Starts the probes of a running container that are due; results go to `table` and wake the
/// reconcile loop through `notify` when readiness, startup or kill changes.
#[allow(clippy::too_many_arguments)]
pub fn tick(
    table: &Table,
    cri: &Cri,
    notify: &Arc<Notify>,
    container: &Value,
    id: &str,
    started_at_ns: i64,
    pod_ip: &str,
) {
    let Ok(mut t) = table.lock() else { return };
    let state = t.entry(id.to_string()).or_insert_with(|| State {
        ready: container.get("readinessProbe").is_none(),
        started: container.get("startupProbe").is_none(),
        ..Default::default()
    });
    let age = Duration::from_nanos((now_ns() - started_at_ns).max(0) as u64);
    for kind in KINDS {
        let Some(probe) = container.get(kind) else {
            continue;
        };
        if kind != "startupProbe" && !state.started {
            continue;
        }
        if age < Duration::from_secs(secs(probe, "initialDelaySeconds", 0)) {
            continue;
        }
        let period = Duration::from_secs(secs(probe, "periodSeconds", 10).max(1));
        if state.running.get(kind) == Some(&true)
            || state.last.get(kind).is_some_and(|l| l.elapsed() < period)
        {
            continue;
        }
        state.last.insert(kind, Instant::now());
        state.running.insert(kind, true);
        let (table, cri, notify) = (table.clone(), cri.clone(), notify.clone());
        let (probe, container, id, ip) = (
            probe.clone(),
            container.clone(),
            id.to_string(),
            pod_ip.to_string(),
        );
        tokio::spawn(async move {
            let ok = check(&cri, &probe, &container, &id, &ip).await;
            let changed = match table.lock() {
                Ok(mut t) => t
                    .get_mut(&id)
                    .map(|s| record(s, kind, &probe, ok))
                    .unwrap_or(false),
                Err(_) => false,
            };
            if changed {
                notify.notify_one();
            }
        });
    }
}

/// Applies one result; returns whether ready/started/kill changed.
fn record(s: &mut State, kind: &'static str, probe: &Value, ok: bool) -> bool {
    s.running.insert(kind, false);
    let before = (s.ready, s.started, s.kill);
    if ok {
        *s.successes.entry(kind).or_default() += 1;
        s.failures.insert(kind, 0);
    } else {
        *s.failures.entry(kind).or_default() += 1;
        s.successes.insert(kind, 0);
    }
    let successes = s.successes.get(kind).copied().unwrap_or(0) as u64;
    let failures = s.failures.get(kind).copied().unwrap_or(0) as u64;
    let enough_ok = successes >= secs(probe, "successThreshold", 1).max(1);
    let enough_bad = failures >= secs(probe, "failureThreshold", 3).max(1);
    match kind {
        "startupProbe" => {
            if enough_ok {
                s.started = true;
            } else if enough_bad {
                s.kill = true;
            }
        }
        "livenessProbe" => {
            if enough_bad {
                s.kill = true;
            }
        }
        _ => {
            if enough_ok {
                s.ready = true;
            } else if enough_bad {
                s.ready = false;
            }
        }
    }
    before != (s.ready, s.started, s.kill)
}

/// The probe results of a container (defaults when it was never probed).
pub fn get(table: &Table, id: &str, container: &Value) -> State {
    table
        .lock()
        .ok()
        .and_then(|t| t.get(id).cloned())
        .unwrap_or_else(|| State {
            ready: container.get("readinessProbe").is_none(),
            started: container.get("startupProbe").is_none(),
            ..Default::default()
        })
}

/// Forgets containers that are gone.
pub fn retain(table: &Table, alive: &std::collections::HashSet<String>) {
    if let Ok(mut t) = table.lock() {
        t.retain(|id, _| alive.contains(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn thresholds() {
        let mut s = State::default();
        let p = json!({"failureThreshold": 2});
        assert!(!record(&mut s, "livenessProbe", &p, false));
        assert!(record(&mut s, "livenessProbe", &p, false));
        assert!(s.kill);
        let mut s = State::default();
        assert!(record(&mut s, "readinessProbe", &json!({}), true));
        assert!(s.ready);
        record(
            &mut s,
            "readinessProbe",
            &json!({"failureThreshold": 1}),
            false,
        );
        assert!(!s.ready);
    }

    #[test]
    fn named_ports() {
        let c = json!({"ports": [{"name": "http", "containerPort": 8080}]});
        assert_eq!(port_of(&c, &json!("http")), Some(8080));
        assert_eq!(port_of(&c, &json!(81)), Some(81));
        assert_eq!(port_of(&c, &json!("nope")), None);
    }
}
