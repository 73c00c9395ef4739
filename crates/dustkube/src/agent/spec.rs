//! A pod spec turned into CRI configs: the sandbox (metadata, hostname, DNS, host ports,
//! labels, namespaces, log directory) and each container (image, command and args with
//! `$(VAR)` expansion, env incl. fieldRef/configMapKeyRef/secretKeyRef/envFrom, working dir,
//! volume mounts, resources, security context, log path).

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use base64::Engine;
use k8s_cri::v1 as cri;
use serde_json::Value;

use super::client::ApiClient;
use super::cri::{
    normalize_image, LABEL_CONTAINER, LABEL_MANAGED, LABEL_NAME, LABEL_NAMESPACE, LABEL_UID,
};

/// Annotation on containers: the pod's spec hash of the container (restart if it changes).
pub const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";

/// Name, namespace and uid of a pod.
pub fn pod_ids(pod: &Value) -> (String, String, String) {
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (
        s("/metadata/namespace"),
        s("/metadata/name"),
        s("/metadata/uid"),
    )
}

/// The value of a downward-API field path.
pub fn field_ref(pod: &Value, path: &str, pod_ip: &str, host_ip: &str) -> Result<String> {
    let s = |p: &str| {
        pod.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let map_entry = |field: &str, key: &str| {
        pod.pointer(&format!("/metadata/{field}"))
            .and_then(|m| m.get(key))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let map_lines = |field: &str| {
        let mut lines: Vec<String> = pod
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        lines.sort();
        lines.join("\n")
    };
    for field in ["labels", "annotations"] {
        if let Some(rest) = path.strip_prefix(&format!("metadata.{field}['")) {
            if let Some(key) = rest.strip_suffix("']") {
                return Ok(map_entry(field, key));
            }
        }
    }
    Ok(match path {
        "metadata.name" => s("/metadata/name"),
        "metadata.namespace" => s("/metadata/namespace"),
        "metadata.uid" => s("/metadata/uid"),
        "metadata.labels" => map_lines("labels"),
        "metadata.annotations" => map_lines("annotations"),
        "spec.nodeName" => s("/spec/nodeName"),
        "spec.serviceAccountName" => s("/spec/serviceAccountName"),
        "status.podIP" | "status.podIPs" => pod_ip.to_string(),
        "status.hostIP" | "status.hostIPs" => host_ip.to_string(),
        other => bail!("unsupported fieldRef {other:?}"),
    })
}

/// Expands `$(NAME)` from `env` (`$$(X)` escapes to `$(X)`; unknown names stay as written).
pub fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(a) = after.strip_prefix('$') {
            out.push('$');
            rest = a;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match env.iter().rev().find(|(k, _)| k == name) {
                        Some((_, v)) => out.push_str(v),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push('$');
                    rest = after;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

async fn key_ref(api: &ApiClient, ns: &str, kind: &str, sel: &Value) -> Result<Option<String>> {
    let name = sel["name"].as_str().unwrap_or("");
    let key = sel["key"].as_str().unwrap_or("");
    let optional = sel["optional"].as_bool() == Some(true);
    let obj = api
        .get(&format!("/api/v1/namespaces/{ns}/{kind}/{name}"))
        .await?;
    let raw = obj
        .as_ref()
        .and_then(|o| {
            o.pointer(&format!(
                "/data/{}",
                key.replace('~', "~0").replace('/', "~1")
            ))
        })
        .and_then(Value::as_str)
        .map(String::from);
    match raw {
        Some(v) if kind == "secrets" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(v)
                .map_err(|e| anyhow!("secret {name} key {key}: {e}"))?;
            Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
        }
        Some(v) => Ok(Some(v)),
        None if optional => Ok(None),
        None => bail!("couldn't find key {key} in {kind} {ns}/{name}"),
    }
}

/// The container's environment, in order, with references resolved.
pub async fn env(
    api: &ApiClient,
    pod: &Value,
    container: &Value,
    pod_ip: &str,
    host_ip: &str,
) -> Result<Vec<(String, String)>> {
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut out: Vec<(String, String)> = Vec::new();
    for src in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = src["prefix"].as_str().unwrap_or("");
        let (kind, sel) = match (src.get("configMapRef"), src.get("secretRef")) {
            (Some(c), _) => ("configmaps", c),
            (_, Some(s)) => ("secrets", s),
            _ => continue,
        };
        let name = sel["name"].as_str().unwrap_or("");
        let obj = api
            .get(&format!("/api/v1/namespaces/{ns}/{kind}/{name}"))
            .await?;
        let Some(obj) = obj else {
            if sel["optional"].as_bool() == Some(true) {
                continue;
            }
            bail!("{kind} {ns}/{name} not found");
        };
        for (k, v) in obj["data"].as_object().into_iter().flatten() {
            let s = v.as_str().unwrap_or("");
            let value = if kind == "secrets" {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(|e| anyhow!("secret {name} key {k}: {e}"))?;
                String::from_utf8_lossy(&b).into_owned()
            } else {
                s.to_string()
            };
            out.push((format!("{prefix}{k}"), value));
        }
    }
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or("").to_string();
        let value = if let Some(v) = e.get("value").and_then(Value::as_str) {
            Some(expand(v, &out))
        } else if let Some(from) = e.get("valueFrom") {
            if let Some(fp) = from.pointer("/fieldRef/fieldPath").and_then(Value::as_str) {
                Some(field_ref(pod, fp, pod_ip, host_ip)?)
            } else if let Some(sel) = from.get("configMapKeyRef") {
                key_ref(api, ns, "configmaps", sel).await?
            } else if let Some(sel) = from.get("secretKeyRef") {
                key_ref(api, ns, "secrets", sel).await?
            } else {
                // resourceFieldRef: not resolved yet.
                Some(String::new())
            }
        } else {
            Some(String::new())
        };
        if let Some(v) = value {
            out.retain(|(k, _)| *k != name);
            out.push((name, v));
        }
    }
    Ok(out)
}

/// Parses a resource quantity (`500m`, `2`, `128Mi`, `1G`) as a number of units (cores, bytes).
pub fn quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    let suffixes: [(&str, f64); 13] = [
        ("Ki", 1024.0),
        ("Mi", 1024f64.powi(2)),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
        ("Pi", 1024f64.powi(5)),
        ("Ei", 1024f64.powi(6)),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (s, f) in suffixes {
        if let Some(n) = q.strip_suffix(s) {
            return n.parse::<f64>().ok().map(|n| n * f);
        }
    }
    q.parse().ok()
}

fn quantity_of(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) => quantity(s),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// cgroup limits from `resources` (CPU shares from requests, quota from limits, memory limit).
fn resources(container: &Value) -> cri::LinuxContainerResources {
    let mut r = cri::LinuxContainerResources::default();
    let req_cpu = container
        .pointer("/resources/requests/cpu")
        .and_then(quantity_of);
    let lim_cpu = container
        .pointer("/resources/limits/cpu")
        .and_then(quantity_of);
    if let Some(c) = req_cpu.or(lim_cpu) {
        r.cpu_shares = ((c * 1024.0) as i64).max(2);
    } else {
        r.cpu_shares = 2;
    }
    if let Some(c) = lim_cpu {
        r.cpu_period = 100_000;
        r.cpu_quota = ((c * 100_000.0) as i64).max(1000);
    }
    if let Some(m) = container
        .pointer("/resources/limits/memory")
        .and_then(quantity_of)
    {
        r.memory_limit_in_bytes = m as i64;
    }
    r
}

fn namespace_options(pod: &Value) -> cri::NamespaceOption {
    let flag = |p: &str| pod.pointer(p).and_then(Value::as_bool) == Some(true);
    let mode = |host: bool, pod_mode: cri::NamespaceMode| {
        if host {
            cri::NamespaceMode::Node as i32
        } else {
            pod_mode as i32
        }
    };
    cri::NamespaceOption {
        network: mode(flag("/spec/hostNetwork"), cri::NamespaceMode::Pod),
        pid: mode(
            flag("/spec/hostPID"),
            if flag("/spec/shareProcessNamespace") {
                cri::NamespaceMode::Pod
            } else {
                cri::NamespaceMode::Container
            },
        ),
        ipc: mode(flag("/spec/hostIPC"), cri::NamespaceMode::Pod),
        ..Default::default()
    }
}

fn containers(pod: &Value) -> Vec<Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn privileged(c: &Value) -> bool {
    c.pointer("/securityContext/privileged")
        .and_then(Value::as_bool)
        == Some(true)
}

fn pod_labels(pod: &Value) -> HashMap<String, String> {
    let (ns, name, uid) = pod_ids(pod);
    let mut labels: HashMap<String, String> = pod
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    labels.insert(LABEL_NAME.into(), name);
    labels.insert(LABEL_NAMESPACE.into(), ns);
    labels.insert(LABEL_UID.into(), uid);
    labels.insert(LABEL_MANAGED.into(), "true".into());
    labels
}

/// DNS for the sandbox: ClusterFirst with a cluster DNS → that server and the cluster search
/// path; `None` → only spec.dnsConfig; otherwise the runtime copies the host's resolv.conf.
fn dns(pod: &Value, cluster_dns: &[IpAddr], domain: &str) -> Option<cri::DnsConfig> {
    let policy = pod
        .pointer("/spec/dnsPolicy")
        .and_then(Value::as_str)
        .unwrap_or("ClusterFirst");
    let host_net = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
    let ns = pod
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default");
    let mut cfg = match policy {
        "ClusterFirstWithHostNet" | "ClusterFirst"
            if !cluster_dns.is_empty() && (policy != "ClusterFirst" || !host_net) =>
        {
            cri::DnsConfig {
                servers: cluster_dns.iter().map(|i| i.to_string()).collect(),
                searches: vec![
                    format!("{ns}.svc.{domain}"),
                    format!("svc.{domain}"),
                    domain.to_string(),
                ],
                options: vec!["ndots:5".into()],
            }
        }
        "None" => cri::DnsConfig::default(),
        // Default (and ClusterFirst without a cluster DNS): the runtime copies the host's.
        _ => return None,
    };
    if let Some(extra) = pod.pointer("/spec/dnsConfig") {
        let strs = |k: &str| -> Vec<String> {
            extra[k]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        };
        cfg.servers.extend(strs("nameservers"));
        cfg.searches.extend(strs("searches"));
        for o in extra["options"].as_array().into_iter().flatten() {
            let name = o["name"].as_str().unwrap_or("");
            match o["value"].as_str() {
                Some(v) => cfg.options.push(format!("{name}:{v}")),
                None => cfg.options.push(name.to_string()),
            }
        }
    }
    Some(cfg)
}

/// `<root>/logs/pods/<ns>_<name>_<uid>`: where the runtime writes the pod's container logs.
pub fn log_dir(root: &Path, pod: &Value) -> PathBuf {
    let (ns, name, uid) = pod_ids(pod);
    root.join("logs/pods").join(format!("{ns}_{name}_{uid}"))
}

/// The sandbox config of `pod` (attempt = how many sandboxes it had before).
pub fn sandbox_config(
    pod: &Value,
    attempt: u32,
    root: &Path,
    node_name: &str,
    cluster_dns: &[IpAddr],
    domain: &str,
) -> cri::PodSandboxConfig {
    let (ns, name, uid) = pod_ids(pod);
    let host_net = pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true);
    let hostname = if host_net {
        node_name.to_string()
    } else {
        let h = pod
            .pointer("/spec/hostname")
            .and_then(Value::as_str)
            .unwrap_or(&name);
        h.chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string()
    };
    let mut ports = Vec::new();
    for c in containers(pod) {
        for p in c["ports"].as_array().into_iter().flatten() {
            let host_port = p["hostPort"].as_i64().unwrap_or(0);
            if host_port <= 0 {
                continue;
            }
            let protocol = match p["protocol"].as_str().unwrap_or("TCP") {
                "UDP" => cri::Protocol::Udp,
                "SCTP" => cri::Protocol::Sctp,
                _ => cri::Protocol::Tcp,
            };
            ports.push(cri::PortMapping {
                protocol: protocol as i32,
                container_port: p["containerPort"].as_i64().unwrap_or(0) as i32,
                host_port: host_port as i32,
                host_ip: p["hostIP"].as_str().unwrap_or("").to_string(),
            });
        }
    }
    let annotations: HashMap<String, String> = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let privileged = containers(pod).iter().any(privileged);
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name,
            uid,
            namespace: ns,
            attempt,
        }),
        hostname,
        log_directory: log_dir(root, pod).to_string_lossy().into_owned(),
        dns_config: dns(pod, cluster_dns, domain),
        port_mappings: ports,
        labels: pod_labels(pod),
        annotations,
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(namespace_options(pod)),
                privileged,
                ..Default::default()
            }),
            ..Default::default()
        }),
        windows: None,
    }
}

/// Mounts of a container from its volumeMounts and the prepared volume paths.
fn mounts(container: &Value, volumes: &HashMap<String, PathBuf>) -> Result<Vec<cri::Mount>> {
    let mut out = Vec::new();
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let name = m["name"].as_str().unwrap_or("");
        let base = volumes
            .get(name)
            .ok_or_else(|| anyhow!("volumeMount {name}: no such volume"))?;
        let mut host = base.clone();
        if let Some(sub) = m["subPath"].as_str().filter(|s| !s.is_empty()) {
            if Path::new(sub)
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                bail!("volumeMount {name}: invalid subPath {sub:?}");
            }
            host = base.join(sub);
            if !host.exists() {
                std::fs::create_dir_all(&host)?;
            }
        }
        out.push(cri::Mount {
            container_path: m["mountPath"].as_str().unwrap_or("").to_string(),
            host_path: host.to_string_lossy().into_owned(),
            readonly: m["readOnly"].as_bool() == Some(true),
            ..Default::default()
        });
    }
    Ok(out)
}

/// The config of one container (attempt = its restart number).
pub fn container_config(
    pod: &Value,
    container: &Value,
    attempt: u32,
    env: &[(String, String)],
    volumes: &HashMap<String, PathBuf>,
) -> Result<cri::ContainerConfig> {
    let cname = container["name"].as_str().unwrap_or("").to_string();
    let image = container["image"].as_str().unwrap_or("");
    if image.is_empty() {
        bail!("container {cname} has no image");
    }
    let strs = |k: &str| -> Vec<String> {
        container[k]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| expand(s, env))
            .collect()
    };
    let mut labels = pod_labels(pod);
    labels.retain(|k, _| k.starts_with("io.kubernetes.") || k == LABEL_MANAGED);
    labels.insert(LABEL_CONTAINER.into(), cname.clone());
    let mut annotations = HashMap::new();
    annotations.insert(ANNOTATION_RESTART_COUNT.to_string(), attempt.to_string());
    let sc = &container["securityContext"];
    let int64 = |v: &Value| v.as_i64().map(|value| cri::Int64Value { value });
    let caps = |k: &str| -> Vec<String> {
        sc.pointer(&format!("/capabilities/{k}"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|s| s.to_uppercase())
            .collect()
    };
    let pod_sc = pod
        .pointer("/spec/securityContext")
        .cloned()
        .unwrap_or(Value::Null);
    let run_as_user = int64(&sc["runAsUser"]).or_else(|| int64(&pod_sc["runAsUser"]));
    let run_as_group = int64(&sc["runAsGroup"]).or_else(|| int64(&pod_sc["runAsGroup"]));
    Ok(cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata {
            name: cname.clone(),
            attempt,
        }),
        image: Some(super::cri::image_spec(&normalize_image(image))),
        command: strs("command"),
        args: strs("args"),
        working_dir: container["workingDir"].as_str().unwrap_or("").to_string(),
        envs: env
            .iter()
            .map(|(k, v)| cri::KeyValue {
                key: k.clone(),
                value: v.clone(),
            })
            .collect(),
        mounts: mounts(container, volumes)?,
        labels,
        annotations,
        log_path: format!("{cname}/{attempt}.log"),
        stdin: container["stdin"].as_bool() == Some(true),
        stdin_once: container["stdinOnce"].as_bool() == Some(true),
        tty: container["tty"].as_bool() == Some(true),
        linux: Some(cri::LinuxContainerConfig {
            resources: Some(resources(container)),
            security_context: Some(cri::LinuxContainerSecurityContext {
                capabilities: Some(cri::Capability {
                    add_capabilities: caps("add"),
                    drop_capabilities: caps("drop"),
                    ..Default::default()
                }),
                privileged: privileged(container),
                namespace_options: Some(namespace_options(pod)),
                run_as_user,
                run_as_group,
                readonly_rootfs: sc["readOnlyRootFilesystem"].as_bool() == Some(true),
                no_new_privs: sc["allowPrivilegeEscalation"].as_bool() == Some(false),
                ..Default::default()
            }),
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expansion() {
        let env = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y", &env), "x1y");
        assert_eq!(expand("$(B)", &env), "$(B)");
        assert_eq!(expand("$$(A)", &env), "$(A)");
        assert_eq!(expand("cost $5", &env), "cost $5");
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("500m"), Some(0.5));
        assert_eq!(quantity("128Mi"), Some(134217728.0));
        assert_eq!(quantity("2"), Some(2.0));
        assert_eq!(quantity("1G"), Some(1e9));
    }

    #[test]
    fn sandbox_from_pod() {
        let pod = json!({
            "metadata": {"name": "web", "namespace": "demo", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox", "ports": [
                {"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}]},
        });
        let c = sandbox_config(
            &pod,
            0,
            Path::new("/r"),
            "n1",
            &["10.96.0.10".parse().unwrap()],
            "cluster.local",
        );
        assert_eq!(c.hostname, "web");
        assert_eq!(c.port_mappings.len(), 1);
        assert_eq!(c.labels[LABEL_UID], "u1");
        assert_eq!(c.labels["app"], "web");
        assert_eq!(c.log_directory, "/r/logs/pods/demo_web_u1");
        let dns = c.dns_config.unwrap();
        assert_eq!(dns.servers, vec!["10.96.0.10"]);
        assert_eq!(dns.searches[0], "demo.svc.cluster.local");
    }

    #[test]
    fn container_from_spec() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "uid": "u"}, "spec": {}});
        let c = json!({"name": "main", "image": "busybox:stable", "command": ["sh", "-c"],
                       "args": ["echo $(GREETING)"], "volumeMounts": [{"name": "v", "mountPath": "/data"}]});
        let env = vec![("GREETING".to_string(), "hi".to_string())];
        let vols = HashMap::from([("v".to_string(), PathBuf::from("/host/v"))]);
        let cfg = container_config(&pod, &c, 2, &env, &vols).unwrap();
        assert_eq!(cfg.args, vec!["echo hi"]);
        assert_eq!(cfg.image.unwrap().image, "docker.io/library/busybox:stable");
        assert_eq!(cfg.log_path, "main/2.log");
        assert_eq!(cfg.mounts[0].host_path, "/host/v");
        assert!(container_config(&pod, &json!({"name": "x", "image": "i", "volumeMounts": [{"name": "nope", "mountPath": "/"}]}), 0, &[], &vols).is_err());
    }

    #[test]
    fn field_refs() {
        let pod = json!({"metadata": {"name": "p", "namespace": "n", "labels": {"a": "b"}}});
        assert_eq!(field_ref(&pod, "metadata.name", "", "").unwrap(), "p");
        assert_eq!(
            field_ref(&pod, "status.podIP", "10.1.2.3", "").unwrap(),
            "10.1.2.3"
        );
        assert_eq!(
            field_ref(&pod, "metadata.labels['a']", "", "").unwrap(),
            "b"
        );
        assert!(field_ref(&pod, "spec.bogus", "", "").is_err());
    }
}
