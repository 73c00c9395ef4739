//! Durability: 200 objects written through the API survive SIGKILL of etcd and the server.

mod common;

use std::fmt::Write;

use common::{free_port, kubectl_ok};

#[test]
fn objects_survive_sigkill_of_etcd_and_server() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let cache = dir.join("kcache");
    let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let pki = common::make_pki(dir, api_port);
    let conf = dir.join("super-admin.conf");
    let etcd = common::start_etcd(dir, &pki, etcd_port, peer_port);
    let api = common::start_server(dir, &pki, etcd_port, api_port, &[], "server1.log");

    kubectl_ok(&conf, &cache, &["create", "namespace", "dur"]);
    let mut manifest = String::new();
    for i in 0..200 {
        write!(
            manifest,
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\n  namespace: dur\ndata:\n  num: \"{i}\"\n"
        )
        .unwrap();
    }
    let file = dir.join("many.yaml");
    std::fs::write(&file, manifest).unwrap();
    let created = kubectl_ok(&conf, &cache, &["create", "-f", file.to_str().unwrap()]);
    assert_eq!(
        created.lines().filter(|l| l.ends_with(" created")).count(),
        200
    );

    // SIGKILL both (Proc's drop kills with SIGKILL and reaps).
    drop(api);
    drop(etcd);

    let _etcd = common::start_etcd(dir, &pki, etcd_port, peer_port);
    let _api = common::start_server(dir, &pki, etcd_port, api_port, &[], "server2.log");
    let listed = kubectl_ok(&conf, &cache, &["get", "cm", "-n", "dur", "--no-headers"]);
    let names: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("cm-"))
        .collect();
    assert_eq!(names.len(), 200, "{listed}");
    let expected: Vec<String> = (0..200).map(|i| format!("cm-{i:03}")).collect();
    assert_eq!(names, expected);
    let v = kubectl_ok(
        &conf,
        &cache,
        &[
            "get",
            "cm",
            "cm-137",
            "-n",
            "dur",
            "-o",
            "jsonpath={.data.num}",
        ],
    );
    assert_eq!(v, "137");
}
