//! End to end, kubectl 1.27 and 1.33 against a real etcd and `dustkube server`: `kubectl explain`
//! reads the schemas of the OpenAPI documents (1.27: `/openapi/v2` as protobuf, 1.33:
//! `/openapi/v3/<group-version>`), and the imperative create commands, which kubectl 1.33 sends as
//! protobuf bodies, store the objects they describe.

mod common;

use std::path::Path;

use common::{free_port, rows, Kubectl, KUBECTLS};

/// Whether `out` has a line that is exactly `line` once whitespace is collapsed.
fn has_line(out: &str, line: &str) -> bool {
    rows(out).iter().any(|r| r == line)
}

/// The explain output's prose, whitespace collapsed (descriptions are wrapped at 80 columns).
fn prose(out: &str) -> String {
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn explain(k: &Kubectl) {
    let out = k.ok(&["explain", "pod.spec.containers"]);
    assert!(has_line(&out, "KIND: Pod"), "{out}");
    assert!(has_line(&out, "FIELD: containers <[]Container>"), "{out}");
    assert!(has_line(&out, "FIELDS:"), "{out}");
    assert!(has_line(&out, "image <string>"), "{out}");
    assert!(has_line(&out, "name <string> -required-"), "{out}");
    assert!(has_line(&out, "ports <[]ContainerPort>"), "{out}");
    assert!(has_line(&out, "env <[]EnvVar>"), "{out}");
    assert!(
        prose(&out).contains("Container image name. More info: https://kubernetes.io/docs/concepts/containers/images"),
        "{out}"
    );

    let out = k.ok(&["explain", "deployment.spec.strategy"]);
    assert!(has_line(&out, "GROUP: apps"), "{out}");
    assert!(has_line(&out, "KIND: Deployment"), "{out}");
    assert!(
        has_line(&out, "FIELD: strategy <DeploymentStrategy>"),
        "{out}"
    );
    assert!(
        has_line(&out, "rollingUpdate <RollingUpdateDeployment>"),
        "{out}"
    );
    assert!(has_line(&out, "type <string>"), "{out}");
    assert!(
        prose(&out).contains("Type of deployment. Can be \"Recreate\" or \"RollingUpdate\"."),
        "{out}"
    );

    let out = k.ok(&["explain", "svc.spec.ports", "--recursive"]);
    assert!(has_line(&out, "FIELD: ports <[]ServicePort>"), "{out}");
    for field in [
        "appProtocol <string>",
        "name <string>",
        "nodePort <integer>",
        "port <integer> -required-",
        "protocol <string>",
        "targetPort <IntOrString>",
    ] {
        assert!(has_line(&out, field), "{field}:\n{out}");
    }

    // The top of a kind, in other groups too.
    let out = k.ok(&["explain", "clusterrolebinding"]);
    assert!(has_line(&out, "GROUP: rbac.authorization.k8s.io"), "{out}");
    assert!(has_line(&out, "roleRef <RoleRef> -required-"), "{out}");
    assert!(has_line(&out, "subjects <[]Subject>"), "{out}");
    let out = k.ok(&["explain", "configmap.data"]);
    assert!(has_line(&out, "FIELD: data <map[string]string>"), "{out}");
    let out = k.ok(&["explain", "lease.spec.holderIdentity"]);
    assert!(has_line(&out, "FIELD: holderIdentity <string>"), "{out}");

    let err = k.fails(&["explain", "pod.spec.nosuchfield"]);
    assert!(
        err.contains("field \"nosuchfield\" does not exist"),
        "{err}"
    );
}

/// `kubectl get ... -o jsonpath=...` output.
fn jsonpath(k: &Kubectl, ns: &str, what: &[&str], path: &str) -> String {
    let mut args = vec!["-n", ns, "get"];
    args.extend_from_slice(what);
    let expr = format!("jsonpath={path}");
    args.extend_from_slice(&["-o", &expr]);
    k.ok(&args)
}

fn create(k: &Kubectl, ns: &str) {
    k.ok(&["create", "namespace", ns]);
    let n = |args: &[&str]| {
        let mut all = vec!["-n", ns];
        all.extend_from_slice(args);
        k.ok(&all)
    };

    let out = n(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:stable",
        "--replicas=2",
        "--",
        "httpd",
        "-f",
    ]);
    assert_eq!(out.trim(), "deployment.apps/web created");
    assert_eq!(
        jsonpath(
            k,
            ns,
            &["deployment", "web"],
            "{.spec.replicas} {.spec.selector.matchLabels.app} {.spec.template.metadata.labels.app} {.spec.template.spec.containers[0].name} {.spec.template.spec.containers[0].image} {.spec.template.spec.containers[0].command}"
        ),
        "2 web web busybox busybox:stable [\"httpd\",\"-f\"]"
    );
    n(&[
        "create",
        "deployment",
        "api",
        "--image=busybox:stable",
        "--port=8080",
    ]);
    assert_eq!(
        jsonpath(
            k,
            ns,
            &["deployment", "api"],
            "{.spec.replicas} {.spec.template.spec.containers[0].ports[0].containerPort} {.spec.template.spec.containers[0].ports[0].protocol}"
        ),
        "1 8080 TCP"
    );

    assert_eq!(
        n(&["create", "service", "clusterip", "s", "--tcp=80:8080"]).trim(),
        "service/s created"
    );
    assert_eq!(
        jsonpath(
            k,
            ns,
            &["service", "s"],
            "{.spec.type} {.spec.selector.app} {.spec.ports[0].name} {.spec.ports[0].port} {.spec.ports[0].targetPort} {.spec.ports[0].protocol}"
        ),
        "ClusterIP s 80-8080 80 8080 TCP"
    );
    n(&["create", "service", "nodeport", "np", "--tcp=8443:https"]);
    assert_eq!(
        jsonpath(
            k,
            ns,
            &["service", "np"],
            "{.spec.type} {.spec.ports[0].port} {.spec.ports[0].targetPort}"
        ),
        "NodePort 8443 https"
    );
    assert_eq!(
        n(&[
            "expose",
            "deployment",
            "web",
            "--port",
            "80",
            "--target-port",
            "8080"
        ])
        .trim(),
        "service/web exposed"
    );
    assert_eq!(
        jsonpath(
            k,
            ns,
            &["service", "web"],
            "{.spec.selector.app} {.spec.ports[0].port} {.spec.ports[0].targetPort}"
        ),
        "web 80 8080"
    );

    assert_eq!(
        n(&[
            "run",
            "p",
            "--image=busybox:stable",
            "--labels=a=b",
            "--env=X=1",
            "--",
            "sleep",
            "3600"
        ])
        .trim(),
        "pod/p created"
    );
    assert_eq!(
        jsonpath(
            k,
            ns,
            &["pod", "p"],
            "{.metadata.labels.a} {.spec.containers[0].image} {.spec.containers[0].env[0].name}={.spec.containers[0].env[0].value} {.spec.containers[0].args}"
        ),
        "b busybox:stable X=1 [\"sleep\",\"3600\"]"
    );

    assert_eq!(
        n(&["create", "serviceaccount", "robot"]).trim(),
        "serviceaccount/robot created"
    );
    assert_eq!(
        jsonpath(k, ns, &["serviceaccount", "robot"], "{.metadata.name}"),
        "robot"
    );
    n(&[
        "create",
        "role",
        "reader",
        "--verb=get,list",
        "--resource=pods,deployments.apps",
    ]);
    assert_eq!(
        jsonpath(
            k,
            ns,
            &["role", "reader"],
            "{.rules[0].verbs} {.rules[0].apiGroups} {.rules[0].resources} {.rules[1].apiGroups} {.rules[1].resources}"
        ),
        "[\"get\",\"list\"] [\"\"] [\"pods\"] [\"apps\"] [\"deployments\"]"
    );
    n(&[
        "create",
        "rolebinding",
        "reader",
        "--role=reader",
        "--user=jane",
        &format!("--serviceaccount={ns}:robot"),
    ]);
    assert_eq!(
        jsonpath(
            k,
            ns,
            &["rolebinding", "reader"],
            "{.roleRef.kind}/{.roleRef.name} {.subjects[0].kind}/{.subjects[0].name} {.subjects[1].kind}/{.subjects[1].namespace}/{.subjects[1].name}"
        ),
        format!("Role/reader User/jane ServiceAccount/{ns}/robot")
    );
    let cluster_role = format!("{ns}-nodes");
    k.ok(&[
        "create",
        "clusterrole",
        &cluster_role,
        "--verb=get",
        "--resource=nodes",
    ]);
    assert_eq!(
        jsonpath(
            k,
            ns,
            &["clusterrole", &cluster_role],
            "{.rules[0].verbs} {.rules[0].resources}"
        ),
        "[\"get\"] [\"nodes\"]"
    );
    k.ok(&[
        "create",
        "clusterrolebinding",
        &cluster_role,
        &format!("--clusterrole={cluster_role}"),
        "--group=ops",
    ]);
    assert_eq!(
        jsonpath(
            k,
            ns,
            &["clusterrolebinding", &cluster_role],
            "{.roleRef.kind}/{.roleRef.name} {.subjects[0].kind}/{.subjects[0].name}"
        ),
        format!("ClusterRole/{cluster_role} Group/ops")
    );
}

#[test]
fn kubectl_explain_and_create_commands_on_dustkube() {
    for bin in KUBECTLS.iter().chain(["/usr/bin/etcd"].iter()) {
        assert!(
            Path::new(bin).exists(),
            "{bin} is required (scripts/install-deps.sh)"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (etcd_port, peer_port, api_port) = (free_port(), free_port(), free_port());
    let pki = common::make_pki(dir, api_port);
    let _etcd = common::start_etcd(dir, &pki, etcd_port, peer_port);
    let _api = common::start_server(dir, &pki, etcd_port, api_port, &[], "server.log");

    for (i, bin) in KUBECTLS.iter().enumerate() {
        let k = Kubectl {
            bin,
            cache: dir.join(format!("cache-{i}")),
            kubeconfig: dir.join("super-admin.conf"),
        };
        explain(&k);
        let version = bin.rsplit('.').next().unwrap_or("x");
        create(&k, &format!("schema{version}"));
    }

    // Every body kubectl 1.33 sent as protobuf was understood.
    let log = std::fs::read_to_string(dir.join("server.log")).unwrap_or_default();
    assert!(!log.contains("protobuf body refused"), "{log}");
}
