//! The arithmetic of Deployment rollouts, as Kubernetes' deployment controller does it:
//! maxSurge/maxUnavailable (int or percent; surge rounds up, unavailable down), how far the
//! new ReplicaSet may grow, how far old ones may shrink, and proportional scaling of several
//! active ReplicaSets when the Deployment is resized mid-rollout.

use std::cmp::Ordering;

use serde_json::Value;

/// What the rollout math needs to know about one ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsView {
    /// Its name.
    pub name: String,
    /// creationTimestamp (RFC 3339 sorts as text).
    pub created: String,
    /// spec.replicas.
    pub replicas: i64,
    /// status.availableReplicas.
    pub available: i64,
    /// The `deployment.kubernetes.io/desired-replicas` annotation.
    pub desired: Option<i64>,
    /// The `deployment.kubernetes.io/max-replicas` annotation.
    pub max_replicas: Option<i64>,
}

/// An IntOrString: an integer, or a percentage of `total` rounded up or down.
pub fn scaled_value(v: Option<&Value>, total: i64, round_up: bool) -> Result<i64, String> {
    match v {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .ok_or_else(|| format!("invalid value {n}: must be an integer")),
        Some(Value::String(s)) => {
            if let Ok(i) = s.parse::<i64>() {
                return Ok(i);
            }
            let pct: i64 = s
                .strip_suffix('%')
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("invalid value for IntOrString: invalid value {s:?}"))?;
            let scaled = pct * total;
            Ok(if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            })
        }
        Some(other) => Err(format!("invalid value {other}")),
    }
}

/// The resolved maxSurge and maxUnavailable of a RollingUpdate strategy for `desired`
/// replicas; both zero becomes unavailable 1 (Kubernetes' ResolveFenceposts).
pub fn fenceposts(rolling: Option<&Value>, desired: i64) -> Result<(i64, i64), String> {
    let default = Value::String("25%".into());
    let surge_v = rolling.and_then(|r| r.get("maxSurge")).unwrap_or(&default);
    let unavail_v = rolling
        .and_then(|r| r.get("maxUnavailable"))
        .unwrap_or(&default);
    let surge = scaled_value(Some(surge_v), desired, true)?;
    let mut unavailable = scaled_value(Some(unavail_v), desired, false)?;
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    Ok((surge.max(0), unavailable.max(0)))
}

/// Replica counts of the ReplicaSets that differ from the input: `(name, new replicas)`.
pub type Scales = Vec<(String, i64)>;

/// The new ReplicaSet's replicas in a rolling update step (reconcileNewReplicaSet and
/// NewRSNewReplicas): down to `desired` if above it, else up as far as the surge allows.
/// `others` is the total spec.replicas of every other ReplicaSet.
pub fn rolling_new_replicas(desired: i64, surge: i64, new_replicas: i64, others: i64) -> i64 {
    if new_replicas >= desired {
        return desired;
    }
    let current = others + new_replicas;
    let max_total = desired + surge;
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(desired - new_replicas);
    new_replicas + up
}

fn by_creation(a: &RsView, b: &RsView) -> Ordering {
    a.created.cmp(&b.created).then_with(|| a.name.cmp(&b.name))
}

/// How far old ReplicaSets shrink in a rolling update step (reconcileOldReplicaSets): first
/// their unhealthy replicas, then healthy ones while `desired - max_unavailable` stay
/// available; oldest first.
pub fn rolling_old_scales(
    desired: i64,
    max_unavailable: i64,
    new: &RsView,
    old: &[RsView],
) -> Scales {
    let old_count: i64 = old.iter().map(|r| r.replicas).sum();
    if old_count == 0 {
        return Vec::new();
    }
    let all_count = old_count + new.replicas;
    let min_available = desired - max_unavailable;
    let new_unavailable = (new.replicas - new.available).max(0);
    let max_scaled_down = all_count - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut sorted: Vec<RsView> = old.to_vec();
    sorted.sort_by(by_creation);
    let original: Vec<i64> = sorted.iter().map(|r| r.replicas).collect();
    // Unhealthy replicas first.
    let mut cleaned = 0;
    for rs in sorted.iter_mut() {
        if cleaned >= max_scaled_down {
            break;
        }
        if rs.replicas == 0 || rs.available >= rs.replicas {
            continue;
        }
        let n = (max_scaled_down - cleaned).min(rs.replicas - rs.available);
        rs.replicas -= n;
        cleaned += n;
    }
    // Then healthy ones, keeping the minimum available.
    let available: i64 = new.available + sorted.iter().map(|r| r.available).sum::<i64>();
    if available > min_available {
        let total = available - min_available;
        let mut done = 0;
        for rs in sorted.iter_mut() {
            if done >= total {
                break;
            }
            if rs.replicas == 0 {
                continue;
            }
            let n = rs.replicas.min(total - done);
            rs.replicas -= n;
            done += n;
        }
    }
    sorted
        .iter()
        .zip(original)
        .filter(|(rs, before)| rs.replicas != *before)
        .map(|(rs, _)| (rs.name.clone(), rs.replicas))
        .collect()
}

/// The single active ReplicaSet (or the newest when none is active) that a resize goes to
/// directly; `None` when several are active (FindActiveOrLatest).
pub fn active_or_latest<'a>(new: Option<&'a RsView>, old: &'a [RsView]) -> Option<&'a RsView> {
    let mut sorted: Vec<&RsView> = old.iter().collect();
    sorted.sort_by(|a, b| by_creation(b, a));
    let mut all: Vec<&RsView> = new.into_iter().collect();
    all.extend(sorted.iter().copied());
    let active: Vec<&RsView> = all.iter().copied().filter(|r| r.replicas > 0).collect();
    match active.len() {
        0 => new.or_else(|| sorted.first().copied()),
        1 => Some(active[0]),
        _ => None,
    }
}

fn fraction(rs: &RsView, desired: i64, surge: i64, status_replicas: i64) -> i64 {
    if desired == 0 {
        return -rs.replicas;
    }
    let target = desired + surge;
    let annotated = rs.max_replicas.unwrap_or(status_replicas);
    if annotated <= 0 {
        return 0;
    }
    let size = (rs.replicas * target) as f64 / annotated as f64;
    size.round() as i64 - rs.replicas
}

/// Proportional scaling of several active ReplicaSets to a new Deployment size (Kubernetes'
/// `scale` for RollingUpdate): each gets its share of the change, leftovers go to the
/// largest. `status_replicas` is the Deployment's status.replicas.
pub fn proportional_scales(
    desired: i64,
    surge: i64,
    status_replicas: i64,
    active: &[RsView],
) -> Scales {
    let current: i64 = active.iter().map(|r| r.replicas).sum();
    let allowed = if desired > 0 { desired + surge } else { 0 };
    let to_add = allowed - current;
    if to_add == 0 || active.is_empty() {
        return Vec::new();
    }
    let mut sorted: Vec<RsView> = active.to_vec();
    // Largest first; on ties newer first when growing, older first when shrinking.
    sorted.sort_by(|a, b| {
        b.replicas.cmp(&a.replicas).then_with(|| {
            if to_add > 0 {
                by_creation(b, a)
            } else {
                by_creation(a, b)
            }
        })
    });
    let mut added = 0;
    let mut sizes: Vec<i64> = Vec::new();
    for rs in &sorted {
        let mut proportion = 0;
        if rs.replicas != 0 && to_add != added {
            let f = fraction(rs, desired, surge, status_replicas);
            let left = to_add - added;
            proportion = if to_add > 0 { f.min(left) } else { f.max(left) };
        }
        sizes.push(rs.replicas + proportion);
        added += proportion;
    }
    sizes[0] = (sizes[0] + to_add - added).max(0);
    sorted
        .iter()
        .zip(sizes)
        .filter(|(rs, size)| rs.replicas != *size)
        .map(|(rs, size)| (rs.name.clone(), size.max(0)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rs(name: &str, created: &str, replicas: i64, available: i64) -> RsView {
        RsView {
            name: name.into(),
            created: created.into(),
            replicas,
            available,
            desired: None,
            max_replicas: None,
        }
    }

    #[test]
    fn percentages_round_like_kubernetes() {
        assert_eq!(scaled_value(Some(&json!("25%")), 3, true), Ok(1));
        assert_eq!(scaled_value(Some(&json!("25%")), 3, false), Ok(0));
        assert_eq!(scaled_value(Some(&json!("25%")), 10, true), Ok(3));
        assert_eq!(scaled_value(Some(&json!("25%")), 10, false), Ok(2));
        assert_eq!(scaled_value(Some(&json!(2)), 10, false), Ok(2));
        assert_eq!(scaled_value(Some(&json!("3")), 10, false), Ok(3));
        assert!(scaled_value(Some(&json!("x%")), 10, false).is_err());
        // Defaults 25%/25%; 0/0 becomes unavailable 1.
        assert_eq!(fenceposts(None, 4), Ok((1, 1)));
        assert_eq!(fenceposts(None, 3), Ok((1, 0)));
        assert_eq!(
            fenceposts(Some(&json!({"maxSurge": 0, "maxUnavailable": "0%"})), 5),
            Ok((0, 1))
        );
        assert_eq!(
            fenceposts(Some(&json!({"maxSurge": "50%", "maxUnavailable": 2})), 5),
            Ok((3, 2))
        );
    }

    #[test]
    fn new_replica_set_grows_within_the_surge() {
        // 3 desired, surge 1: old has 3 → new may have 1.
        assert_eq!(rolling_new_replicas(3, 1, 0, 3), 1);
        // Old already down to 2, new at 1 → new to 2.
        assert_eq!(rolling_new_replicas(3, 1, 1, 2), 2);
        // At the cap: no change.
        assert_eq!(rolling_new_replicas(3, 1, 1, 3), 1);
        // Above desired: down to desired.
        assert_eq!(rolling_new_replicas(3, 1, 5, 0), 3);
        // Fresh deployment.
        assert_eq!(rolling_new_replicas(3, 1, 0, 0), 3);
    }

    #[test]
    fn old_replica_sets_shrink_keeping_availability() {
        // desired 3, maxUnavailable 0: new has 1 available → old may lose 1.
        let new = rs("new", "2", 1, 1);
        let old = [rs("old", "1", 3, 3)];
        assert_eq!(
            rolling_old_scales(3, 0, &new, &old),
            vec![("old".into(), 2)]
        );
        // New not available yet: nothing.
        let new = rs("new", "2", 1, 0);
        assert!(rolling_old_scales(3, 0, &new, &old).is_empty());
        // Unhealthy old replicas go first even when nothing new is available.
        let old = [rs("a", "1", 2, 0), rs("b", "2", 2, 2)];
        let new = rs("new", "3", 0, 0);
        assert_eq!(rolling_old_scales(3, 1, &new, &old), vec![("a".into(), 0)]);
    }

    #[test]
    fn resizing_goes_to_the_one_active_set_or_proportionally() {
        let old = [rs("a", "1", 0, 0), rs("b", "2", 3, 3)];
        assert_eq!(active_or_latest(None, &old).unwrap().name, "b");
        let none_active = [rs("a", "1", 0, 0), rs("b", "2", 0, 0)];
        assert_eq!(active_or_latest(None, &none_active).unwrap().name, "b");
        let two = [rs("a", "1", 2, 2), rs("b", "2", 2, 0)];
        assert!(active_or_latest(None, &two).is_none());
        // 10 → 20 with two sets of 5 (annotated max 11 each... use status replicas 10).
        let mut a = rs("a", "1", 5, 5);
        let mut b = rs("b", "2", 5, 0);
        a.max_replicas = Some(10);
        b.max_replicas = Some(10);
        let scales = proportional_scales(20, 0, 10, &[a, b]);
        assert_eq!(scales, vec![("b".into(), 10), ("a".into(), 10)]);
        // Down to zero.
        let scales = proportional_scales(0, 0, 4, &[rs("a", "1", 2, 2), rs("b", "2", 2, 2)]);
        assert_eq!(scales.len(), 2);
        assert!(scales.iter().all(|(_, n)| *n == 0));
    }
}
