//! Node ports of Services (the API server's NodePort allocator): Services of type NodePort
//! and LoadBalancer get a free port in 30000–32767 for every port without one; a requested
//! port must be in that range and not used by another Service; updates keep the ports already
//! allocated; other types may not carry node ports (those the type had are dropped when it
//! changes, like Kubernetes does).

use std::collections::HashSet;
use std::ops::RangeInclusive;

use serde_json::{json, Value};

use super::status::ApiError;
use super::AppState;
use crate::resources::{self, name_of, str_at, FieldError};
use crate::storage::ListOptions;

/// The node port range (kube-apiserver's `--service-node-port-range` default).
pub const RANGE: RangeInclusive<u16> = 30000..=32767;

fn wants_node_ports(svc: &Value) -> bool {
    matches!(str_at(svc, "/spec/type"), "NodePort" | "LoadBalancer")
}

fn node_port(p: &Value) -> Option<i64> {
    p.get("nodePort").and_then(Value::as_i64)
}

/// The node port `old` had for the port `p` (same name, or same port and protocol).
fn previous(old: Option<&Value>, p: &Value) -> Option<i64> {
    let proto = |v: &Value| match str_at(v, "/protocol") {
        "" => "TCP".to_string(),
        s => s.to_string(),
    };
    old?.pointer("/spec/ports")?
        .as_array()?
        .iter()
        .find(|o| {
            let named = str_at(p, "/name");
            if !named.is_empty() {
                str_at(o, "/name") == named
            } else {
                o.get("port") == p.get("port") && proto(o) == proto(p)
            }
        })
        .and_then(node_port)
}

/// Node ports used by every Service except `namespace/name`.
async fn used_elsewhere(
    state: &AppState,
    namespace: &str,
    name: &str,
) -> Result<HashSet<i64>, ApiError> {
    let rt = &resources::services::TYPE;
    let all = state
        .store
        .list(&rt.prefix(None), &ListOptions::default())
        .await
        .map_err(ApiError::internal)?;
    Ok(all
        .items
        .iter()
        .map(|s| &s.value)
        .filter(|v| !(str_at(v, "/metadata/namespace") == namespace && name_of(v) == name))
        .flat_map(|v| {
            v.pointer("/spec/ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(node_port)
                .collect::<Vec<_>>()
        })
        .collect())
}

/// A random free port of [`RANGE`] not in `used`.
fn pick(used: &HashSet<i64>) -> Option<i64> {
    let (lo, hi) = (i64::from(*RANGE.start()), i64::from(*RANGE.end()));
    let span = (hi - lo + 1) as u64;
    for _ in 0..64 {
        let b = uuid::Uuid::new_v4();
        let n = u64::from_le_bytes(b.as_bytes()[..8].try_into().unwrap_or([0; 8]));
        let candidate = lo + (n % span) as i64;
        if !used.contains(&candidate) {
            return Some(candidate);
        }
    }
    (lo..=hi).find(|p| !used.contains(p))
}

/// Allocates and checks the node ports of the Service `obj` about to be stored; `old` is the
/// stored Service on update (its ports are kept). Invalid (422) for a port out of range,
/// taken by another Service, or set on a type without node ports.
pub async fn allocate_node_ports(
    state: &AppState,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    let rt = &resources::services::TYPE;
    let name = name_of(obj).to_string();
    let namespace = str_at(obj, "/metadata/namespace").to_string();
    let wants = wants_node_ports(obj);
    let ty = str_at(obj, "/spec/type").to_string();
    let old_type_had = old.is_some_and(wants_node_ports);
    let Some(ports) = obj.pointer_mut("/spec/ports").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    let mut errs = Vec::new();
    if !wants {
        for (i, p) in ports.iter_mut().enumerate() {
            let Some(np) = node_port(p) else { continue };
            if old_type_had && previous(old, p) == Some(np) {
                // The type changed away from NodePort: the allocated port goes.
                if let Some(m) = p.as_object_mut() {
                    m.remove("nodePort");
                }
            } else {
                errs.push(FieldError {
                    field: format!("spec.ports[{i}].nodePort"),
                    reason: "FieldValueForbidden",
                    message: format!("Forbidden: may not be used when `type` is '{ty}'"),
                });
            }
        }
        return if errs.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(rt, &name, &errs))
        };
    }
    let mut used = used_elsewhere(state, &namespace, &name).await?;
    // Requested (or kept) ports first, so new allocations avoid them.
    for p in ports.iter_mut() {
        if node_port(p).is_none() {
            if let Some(np) = previous(old, p) {
                p["nodePort"] = json!(np);
            }
        }
    }
    let mut mine = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let Some(np) = node_port(p) else { continue };
        let field = format!("spec.ports[{i}].nodePort");
        if !(i64::from(*RANGE.start())..=i64::from(*RANGE.end())).contains(&np) {
            errs.push(FieldError::invalid(
                &field,
                &np.to_string(),
                &format!(
                    "provided port is not in the valid range. The range of valid ports is {}-{}",
                    RANGE.start(),
                    RANGE.end()
                ),
            ));
        } else if used.contains(&np) {
            errs.push(FieldError::invalid(
                &field,
                &np.to_string(),
                "provided port is already allocated",
            ));
        }
        mine.insert(np);
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid(rt, &name, &errs));
    }
    used.extend(mine);
    for p in ports.iter_mut().filter(|p| node_port(p).is_none()) {
        let np = pick(&used).ok_or_else(|| ApiError::internal("no free node port left"))?;
        used.insert(np);
        p["nodePort"] = json!(np);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::MastersOnly;
    use crate::storage::memory::MemoryStore;

    fn svc(name: &str, ty: &str, ports: Value) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": ty, "ports": ports},
        })
    }

    async fn state_with(existing: &[Value]) -> AppState {
        let store = Arc::new(MemoryStore::new());
        for s in existing {
            let key = resources::services::TYPE.key(Some("default"), name_of(s));
            crate::storage::Store::create(store.as_ref(), &key, s)
                .await
                .unwrap();
        }
        AppState::new(store, Arc::new(MastersOnly))
    }

    #[tokio::test]
    async fn allocates_free_ports_and_refuses_taken_ones() {
        let taken = svc("a", "NodePort", json!([{"port": 80, "nodePort": 30080}]));
        let state = state_with(&[taken]).await;

        let mut s = svc(
            "b",
            "NodePort",
            json!([{"port": 80}, {"port": 443, "nodePort": 30443}]),
        );
        allocate_node_ports(&state, &mut s, None).await.unwrap();
        let np = s["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
        assert!(
            (30000..=32767).contains(&np) && np != 30080 && np != 30443,
            "{np}"
        );
        assert_eq!(s["spec"]["ports"][1]["nodePort"], 30443);

        let mut clash = svc(
            "c",
            "LoadBalancer",
            json!([{"port": 80, "nodePort": 30080}]),
        );
        let e = allocate_node_ports(&state, &mut clash, None)
            .await
            .unwrap_err();
        assert_eq!(e.reason, "Invalid");
        assert!(
            e.message.contains("provided port is already allocated"),
            "{}",
            e.message
        );

        let mut out = svc("d", "NodePort", json!([{"port": 80, "nodePort": 8080}]));
        let e = allocate_node_ports(&state, &mut out, None)
            .await
            .unwrap_err();
        assert!(
            e.message.contains("not in the valid range"),
            "{}",
            e.message
        );

        // The Service itself may keep its own port on update; an apply without nodePort keeps it.
        let old = svc("a", "NodePort", json!([{"port": 80, "nodePort": 30080}]));
        let mut upd = svc("a", "NodePort", json!([{"port": 80}]));
        allocate_node_ports(&state, &mut upd, Some(&old))
            .await
            .unwrap();
        assert_eq!(upd["spec"]["ports"][0]["nodePort"], 30080);

        // Back to ClusterIP: the allocated port is dropped; a new one is refused.
        let mut cip = svc("a", "ClusterIP", json!([{"port": 80, "nodePort": 30080}]));
        allocate_node_ports(&state, &mut cip, Some(&old))
            .await
            .unwrap();
        assert!(cip["spec"]["ports"][0].get("nodePort").is_none());
        let mut bad = svc("e", "ClusterIP", json!([{"port": 80, "nodePort": 30001}]));
        let e = allocate_node_ports(&state, &mut bad, None)
            .await
            .unwrap_err();
        assert!(e.message.contains("may not be used"), "{}", e.message);

        // ClusterIP Services without node ports pass untouched.
        let mut plain = svc("f", "ClusterIP", json!([{"port": 80}]));
        let before = plain.clone();
        allocate_node_ports(&state, &mut plain, None).await.unwrap();
        assert_eq!(plain, before);
    }

    #[test]
    fn pick_finds_the_last_free_port() {
        let used: HashSet<i64> = (30000..=32767).filter(|p| *p != 31234).collect();
        assert_eq!(pick(&used), Some(31234));
        let all: HashSet<i64> = (30000..=32767).collect();
        assert_eq!(pick(&all), None);
    }
}
