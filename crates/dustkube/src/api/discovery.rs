//! Discovery documents: `/version`, `/api`, `/api/v1`, `/apis`, `/apis/<group>/<version>`, all
//! generated from [`crate::resources::ALL`].

use serde_json::{json, Value};

use crate::resources::{self, ALL};

/// The Kubernetes version this server reports (kubectl checks skew against it).
pub const KUBE_VERSION: (&str, &str) = ("1", "30");

/// `/version`.
pub fn version() -> Value {
    let (major, minor) = KUBE_VERSION;
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("v{major}.{minor}.0-dustkube.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

/// `/api`: the core group's versions.
pub fn api_versions() -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": ""}],
    })
}

/// `/apis`: every non-core group.
pub fn api_groups() -> Value {
    let groups: Vec<Value> = resources::groups()
        .into_iter()
        .map(|(g, v)| {
            let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
            json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
        })
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/api/v1` or `/apis/<g>/<v>`; `None` for an unknown group-version.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let list: Vec<Value> = ALL
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(|r| {
            let mut entries = vec![r.discovery()];
            for sub in r.subresources() {
                entries.push(r.subresource_discovery(sub));
            }
            entries
        })
        .collect();
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_lists_kinds_with_short_names() {
        let core = resource_list("", "v1").unwrap();
        let pods = core["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods")
            .unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["namespaced"], true);
        assert!(pods["verbs"].as_array().unwrap().contains(&json!("watch")));
        let apps = resource_list("apps", "v1").unwrap();
        assert!(apps["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "Deployment"));
        assert!(resource_list("batch", "v1").is_none());
        assert_eq!(api_groups()["groups"][0]["name"], "apps");
    }
}
