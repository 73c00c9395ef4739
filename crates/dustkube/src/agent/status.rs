//! Pod status from what the runtime reports: phase, the four conditions, host and pod IPs,
//! start time, QoS class and one containerStatus per container (state running / waiting /
//! terminated, lastState, ready, started, restartCount, image, imageID, containerID).

use k8s_cri::v1 as cri;
use serde_json::{json, Map, Value};

/// What the agent knows about one container of a pod.
#[derive(Debug, Clone, Default)]
pub struct ContainerView {
    /// The container's name in the spec.
    pub name: String,
    /// The image the spec asks for.
    pub image: String,
    /// The latest runtime container.
    pub current: Option<cri::ContainerStatus>,
    /// The one before it (shown as lastState).
    pub previous: Option<cri::ContainerStatus>,
    /// Why it is not running (reason, message), e.g. CrashLoopBackOff or ErrImagePull.
    pub waiting: Option<(String, String)>,
    /// Readiness (probes passed, or running without a readiness probe).
    pub ready: bool,
    /// Startup probe passed (or none).
    pub started: bool,
    /// An exited current container will be started again.
    pub will_restart: bool,
    /// Restarts so far.
    pub restart_count: u32,
}

/// What the agent knows about a pod.
#[derive(Debug, Clone, Default)]
pub struct PodView {
    /// The pod's IPs (sandbox network status), first is the primary.
    pub pod_ips: Vec<String>,
    /// The containers in spec order.
    pub containers: Vec<ContainerView>,
}

/// Nanoseconds since the epoch → RFC 3339 (seconds).
pub fn time_of(ns: i64) -> Value {
    if ns <= 0 {
        return Value::Null;
    }
    let secs = ns / 1_000_000_000;
    match chrono::DateTime::from_timestamp(secs, 0) {
        Some(t) => json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        None => Value::Null,
    }
}

fn running(s: &cri::ContainerStatus) -> bool {
    s.state == cri::ContainerState::ContainerRunning as i32
}

fn exited(s: &cri::ContainerStatus) -> bool {
    s.state == cri::ContainerState::ContainerExited as i32
}

fn terminated(s: &cri::ContainerStatus) -> Value {
    let reason = if s.reason.is_empty() {
        if s.exit_code == 0 {
            "Completed".to_string()
        } else {
            "Error".to_string()
        }
    } else {
        s.reason.clone()
    };
    let mut t = json!({
        "exitCode": s.exit_code,
        "reason": reason,
        "startedAt": time_of(s.started_at),
        "finishedAt": time_of(s.finished_at),
        "containerID": format!("containerd://{}", s.id),
    });
    if !s.message.is_empty() {
        t["message"] = json!(s.message);
    }
    json!({"terminated": t})
}

fn waiting(reason: &str, message: &str) -> Value {
    let mut w = json!({"reason": reason});
    if !message.is_empty() {
        w["message"] = json!(message);
    }
    json!({"waiting": w})
}

/// One containerStatus.
pub fn container_status(c: &ContainerView) -> Value {
    let (state, last) = match &c.current {
        None => {
            let (r, m) = c
                .waiting
                .clone()
                .unwrap_or(("ContainerCreating".into(), String::new()));
            (
                waiting(&r, &m),
                c.previous.as_ref().filter(|p| exited(p)).map(terminated),
            )
        }
        Some(s) if running(s) => (
            json!({"running": {"startedAt": time_of(s.started_at)}}),
            c.previous.as_ref().filter(|p| exited(p)).map(terminated),
        ),
        Some(s) if exited(s) => match &c.waiting {
            Some((r, m)) => (waiting(r, m), Some(terminated(s))),
            None => (
                terminated(s),
                c.previous.as_ref().filter(|p| exited(p)).map(terminated),
            ),
        },
        Some(_) => {
            let (r, m) = c
                .waiting
                .clone()
                .unwrap_or(("ContainerCreating".into(), String::new()));
            (
                waiting(&r, &m),
                c.previous.as_ref().filter(|p| exited(p)).map(terminated),
            )
        }
    };
    let mut out = Map::new();
    out.insert("name".into(), json!(c.name));
    out.insert("state".into(), state);
    out.insert("lastState".into(), last.unwrap_or_else(|| json!({})));
    let is_running = c.current.as_ref().is_some_and(running);
    out.insert("ready".into(), json!(c.ready && is_running));
    out.insert("restartCount".into(), json!(c.restart_count));
    let image = c
        .current
        .as_ref()
        .and_then(|s| s.image.as_ref())
        .map(|i| i.image.clone())
        .filter(|i| !i.is_empty() && !i.starts_with("sha256:"))
        .unwrap_or_else(|| c.image.clone());
    out.insert("image".into(), json!(image));
    out.insert(
        "imageID".into(),
        json!(c
            .current
            .as_ref()
            .map(|s| s.image_ref.clone())
            .unwrap_or_default()),
    );
    if let Some(s) = &c.current {
        out.insert(
            "containerID".into(),
            json!(format!("containerd://{}", s.id)),
        );
    }
    out.insert("started".into(), json!(is_running && c.started));
    Value::Object(out)
}

/// Phase from the container views (the kubelet's rules).
pub fn phase(view: &PodView) -> &'static str {
    let cs = &view.containers;
    if cs.is_empty() {
        return "Pending";
    }
    let any_running = cs.iter().any(|c| c.current.as_ref().is_some_and(running));
    let done: Vec<&cri::ContainerStatus> = cs
        .iter()
        .filter(|c| !c.will_restart)
        .filter_map(|c| c.current.as_ref().filter(|s| exited(s)))
        .collect();
    if done.len() == cs.len() {
        return if done.iter().all(|s| s.exit_code == 0) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    let restarting = cs
        .iter()
        .any(|c| c.will_restart && c.current.as_ref().is_some_and(exited));
    if any_running || restarting {
        "Running"
    } else {
        "Pending"
    }
}

fn qos_class(pod: &Value) -> &'static str {
    let containers = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let has = |c: &Value, k: &str| {
        c.pointer(&format!("/resources/{k}"))
            .and_then(Value::as_object)
            .is_some_and(|m| !m.is_empty())
    };
    if containers
        .iter()
        .all(|c| !has(c, "requests") && !has(c, "limits"))
    {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        ["cpu", "memory"].iter().all(|r| {
            let lim = c.pointer(&format!("/resources/limits/{r}"));
            let req = c.pointer(&format!("/resources/requests/{r}")).or(lim);
            lim.is_some() && lim == req
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// The full status of `pod` (old conditions keep their transition times when unchanged).
pub fn pod_status(pod: &Value, view: &PodView, host_ip: &str, now: &str) -> Value {
    let old = pod.get("status").cloned().unwrap_or(Value::Null);
    let statuses: Vec<Value> = view.containers.iter().map(container_status).collect();
    let unready: Vec<&str> = view
        .containers
        .iter()
        .filter(|c| !(c.ready && c.current.as_ref().is_some_and(running)))
        .map(|c| c.name.as_str())
        .collect();
    let phase = phase(view);
    let cond = |ty: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let previous = old
            .get("conditions")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().find(|c| c["type"] == ty));
        let transition = match previous {
            Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
            _ => json!(now),
        };
        let mut c = json!({"type": ty, "status": status, "lastProbeTime": null, "lastTransitionTime": transition});
        if !ok {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        c
    };
    let all_ready = unready.is_empty();
    let why = |done: bool| {
        if done {
            "PodCompleted"
        } else {
            "ContainersNotReady"
        }
    };
    let finished = phase == "Succeeded" || phase == "Failed";
    let msg = format!("containers with unready status: [{}]", unready.join(" "));
    let conditions = vec![
        cond("Initialized", true, "", String::new()),
        cond("Ready", all_ready, why(finished), msg.clone()),
        cond("ContainersReady", all_ready, why(finished), msg),
        cond("PodScheduled", true, "", String::new()),
    ];
    let mut s = json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
    });
    if let Some(ip) = view.pod_ips.first() {
        s["podIP"] = json!(ip);
        s["podIPs"] = json!(view
            .pod_ips
            .iter()
            .map(|i| json!({"ip": i}))
            .collect::<Vec<_>>());
    }
    s["startTime"] = old
        .get("startTime")
        .filter(|v| v.is_string())
        .cloned()
        .unwrap_or_else(|| json!(now));
    s["containerStatuses"] = json!(statuses);
    s["qosClass"] = json!(qos_class(pod));
    s
}

/// The parts of a status that matter for "did it change" (times of conditions left out).
pub fn fingerprint(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(cs) = s.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in cs {
            if let Some(m) = c.as_object_mut() {
                m.remove("lastTransitionTime");
            }
        }
    }
    if let Some(m) = s.as_object_mut() {
        m.remove("startTime");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(state: cri::ContainerState, exit: i32) -> cri::ContainerStatus {
        cri::ContainerStatus {
            id: "abc".into(),
            state: state as i32,
            exit_code: exit,
            started_at: 1_700_000_000_000_000_000,
            ..Default::default()
        }
    }

    fn view(current: Option<cri::ContainerStatus>, will_restart: bool, ready: bool) -> PodView {
        PodView {
            pod_ips: vec!["10.244.1.5".into()],
            containers: vec![ContainerView {
                name: "c".into(),
                image: "busybox".into(),
                current,
                ready,
                started: true,
                will_restart,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn phases() {
        assert_eq!(phase(&view(None, true, false)), "Pending");
        assert_eq!(
            phase(&view(
                Some(st(cri::ContainerState::ContainerRunning, 0)),
                true,
                true
            )),
            "Running"
        );
        assert_eq!(
            phase(&view(
                Some(st(cri::ContainerState::ContainerExited, 0)),
                false,
                false
            )),
            "Succeeded"
        );
        assert_eq!(
            phase(&view(
                Some(st(cri::ContainerState::ContainerExited, 1)),
                false,
                false
            )),
            "Failed"
        );
        assert_eq!(
            phase(&view(
                Some(st(cri::ContainerState::ContainerExited, 1)),
                true,
                false
            )),
            "Running"
        );
    }

    #[test]
    fn running_pod_status() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let s = pod_status(
            &pod,
            &view(
                Some(st(cri::ContainerState::ContainerRunning, 0)),
                true,
                true,
            ),
            "10.0.0.1",
            "2024-01-01T00:00:00Z",
        );
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.244.1.5");
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert_eq!(s["containerStatuses"][0]["containerID"], "containerd://abc");
        assert_eq!(
            s["containerStatuses"][0]["state"]["running"]["startedAt"],
            "2023-11-14T22:13:20Z"
        );
        assert_eq!(s["conditions"][1]["status"], "True");
        assert_eq!(s["qosClass"], "BestEffort");
    }

    #[test]
    fn crash_loop_shows_waiting_and_last_state() {
        let mut v = view(
            Some(st(cri::ContainerState::ContainerExited, 3)),
            true,
            false,
        );
        v.containers[0].waiting = Some(("CrashLoopBackOff".into(), "back-off 10s".into()));
        v.containers[0].restart_count = 2;
        let c = container_status(&v.containers[0]);
        assert_eq!(c["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(c["lastState"]["terminated"]["exitCode"], 3);
        assert_eq!(c["restartCount"], 2);
    }
}
