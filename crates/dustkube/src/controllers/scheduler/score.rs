//! Scoring the nodes that passed the filters: least allocated (the average free fraction of
//! cpu and memory after placing the pod, 0–100), ties broken by fewer pods, then name.

use super::filters::{nonzero_requests, NodeInfo};
use serde_json::Value;

fn free_fraction(alloc: i128, requested: i128) -> i128 {
    if alloc <= 0 || requested > alloc {
        return 0;
    }
    (alloc - requested) * 100 / alloc
}

/// kube-scheduler's NodeResourcesFit LeastAllocated score of `node` for `pod`.
pub fn least_allocated(pod: &Value, node: &NodeInfo) -> i64 {
    let want = nonzero_requests(pod);
    let cpu = free_fraction(node.allocatable.cpu, node.nonzero_requested.cpu + want.cpu);
    let mem = free_fraction(
        node.allocatable.memory,
        node.nonzero_requested.memory + want.memory,
    );
    ((cpu + mem) / 2) as i64
}

/// The index of the best of `feasible` (indices into `nodes`) for `pod`.
pub fn pick(pod: &Value, nodes: &[NodeInfo], feasible: &[usize]) -> Option<usize> {
    feasible.iter().copied().min_by(|a, b| {
        let (x, y) = (&nodes[*a], &nodes[*b]);
        least_allocated(pod, y)
            .cmp(&least_allocated(pod, x))
            .then_with(|| x.requested.pods.cmp(&y.requested.pods))
            .then_with(|| x.name().cmp(y.name()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cpu: &str, mem: &str) -> NodeInfo {
        NodeInfo::new(&json!({"metadata": {"name": name},
            "status": {"allocatable": {"cpu": cpu, "memory": mem, "pods": "110"}}}))
    }

    fn pod(cpu: &str, mem: &str) -> serde_json::Value {
        json!({"spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem}}}]}})
    }

    #[test]
    fn least_allocated_spreads() {
        let p = pod("1", "1Gi");
        let n = node("a", "4", "4Gi");
        // cpu free 3/4 = 75, memory free 3/4 = 75.
        assert_eq!(least_allocated(&p, &n), 75);
        let mut busy = node("a", "4", "4Gi");
        busy.add_pod(&pod("2", "2Gi"));
        let idle = node("b", "4", "4Gi");
        let nodes = vec![busy, idle];
        assert_eq!(pick(&p, &nodes, &[0, 1]), Some(1));
        // Pods without requests count 100m/200Mi, so they spread too.
        let empty = json!({"spec": {"containers": [{"name": "c"}]}});
        let mut a = node("a", "2", "4Gi");
        a.add_pod(&empty);
        let b = node("b", "2", "4Gi");
        assert_eq!(pick(&empty, &[a, b], &[0, 1]), Some(1));
        // Ties: fewer pods, then name.
        let nodes = vec![node("b", "2", "4Gi"), node("a", "2", "4Gi")];
        assert_eq!(pick(&empty, &nodes, &[0, 1]), Some(1));
        assert_eq!(pick(&empty, &nodes, &[]), None);
    }
}
