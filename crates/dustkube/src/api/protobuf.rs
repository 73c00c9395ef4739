//! Request bodies in Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), which
//! kubectl 1.33's typed clients send (`kubectl create deployment|service|namespace|configmap|
//! secret|serviceaccount|role|clusterrole|rolebinding|clusterrolebinding`, `auth can-i`,
//! `certificate approve`). A small schema-driven decoder turns the kinds listed in [`decode`] into
//! the JSON the same object would have: one table per message maps field numbers (from the types'
//! `generated.proto`) to JSON names and encodings; unknown fields are skipped; other kinds answer
//! 415.
//!
//! Go's protobuf encoding writes every non-pointer field, zero or not, and pointer fields only
//! when set, so zero numbers and `false` are dropped for plain fields (JSON `omitempty`) and kept
//! for pointer fields (`OptInt`, `OptBool`, e.g. `replicas: 0`); messages always appear (a present
//! empty message is `{}`, like `emptyDir: {}`), except the zero `Time`.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde_json::{json, Map, Value};

/// How one protobuf field maps to JSON.
enum F {
    /// A string, dropped when empty.
    Str(&'static str),
    /// A plain bool, dropped when false.
    Bool(&'static str),
    /// A pointer bool (`*bool`): kept when false.
    OptBool(&'static str),
    /// A plain integer (int32/int64), dropped when 0.
    Int(&'static str),
    /// A pointer integer: kept when 0.
    OptInt(&'static str),
    /// A nested message (`{}` when empty).
    Msg(&'static str, &'static [(u64, F)]),
    /// A message whose fields belong to the enclosing object (Go's embedded structs, such as
    /// `VolumeSource` in `Volume` or `LocalObjectReference` in key selectors).
    Inline(&'static [(u64, F)]),
    /// `map<string, string>`.
    MapStr(&'static str),
    /// `map<string, bytes>` (base64 in JSON).
    MapBytes(&'static str),
    /// `map<string, Quantity>` (resource lists).
    MapQty(&'static str),
    /// `repeated string`.
    RepStr(&'static str),
    /// `repeated int64` (unpacked).
    RepInt(&'static str),
    /// `repeated` message.
    RepMsg(&'static str, &'static [(u64, F)]),
    /// `bytes` (base64 in JSON).
    Bytes(&'static str),
    /// `IntOrString { type = 1; intVal = 2; strVal = 3 }`: a number or a string in JSON.
    IntStr(&'static str),
    /// `Quantity { string = 1 }`: a string in JSON.
    Qty(&'static str),
    /// `Time { seconds = 1; nanos = 2 }`: RFC 3339 in JSON; the zero time is dropped.
    Time(&'static str),
}

static OWNER_REFERENCE: &[(u64, F)] = &[
    (1, F::Str("kind")),
    (3, F::Str("name")),
    (4, F::Str("uid")),
    (5, F::Str("apiVersion")),
    (6, F::OptBool("controller")),
    (7, F::OptBool("blockOwnerDeletion")),
];

static OBJECT_META: &[(u64, F)] = &[
    (1, F::Str("name")),
    (2, F::Str("generateName")),
    (3, F::Str("namespace")),
    (5, F::Str("uid")),
    (6, F::Str("resourceVersion")),
    (7, F::Int("generation")),
    (8, F::Time("creationTimestamp")),
    (9, F::Time("deletionTimestamp")),
    (10, F::OptInt("deletionGracePeriodSeconds")),
    (11, F::MapStr("labels")),
    (12, F::MapStr("annotations")),
    (13, F::RepMsg("ownerReferences", OWNER_REFERENCE)),
    (14, F::RepStr("finalizers")),
];

static LABEL_SELECTOR: &[(u64, F)] = &[
    (1, F::MapStr("matchLabels")),
    (
        2,
        F::RepMsg(
            "matchExpressions",
            &[
                (1, F::Str("key")),
                (2, F::Str("operator")),
                (3, F::RepStr("values")),
            ],
        ),
    ),
];

static NAMESPACE: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", &[(1, F::RepStr("finalizers"))])),
];

static CONFIGMAP: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::MapStr("data")),
    (3, F::MapBytes("binaryData")),
    (4, F::OptBool("immutable")),
];

static SECRET: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::MapBytes("data")),
    (3, F::Str("type")),
    (4, F::MapStr("stringData")),
    (5, F::OptBool("immutable")),
];

static LOCAL_OBJECT_REFERENCE: &[(u64, F)] = &[(1, F::Str("name"))];

static KEY_SELECTOR: &[(u64, F)] = &[
    (1, F::Inline(LOCAL_OBJECT_REFERENCE)),
    (2, F::Str("key")),
    (3, F::OptBool("optional")),
];

static ENV_SOURCE_REF: &[(u64, F)] = &[
    (1, F::Inline(LOCAL_OBJECT_REFERENCE)),
    (2, F::OptBool("optional")),
];

static FIELD_REF: &[(u64, F)] = &[(1, F::Str("apiVersion")), (2, F::Str("fieldPath"))];

static RESOURCE_FIELD_REF: &[(u64, F)] = &[
    (1, F::Str("containerName")),
    (2, F::Str("resource")),
    (3, F::Qty("divisor")),
];

static ENV_VAR: &[(u64, F)] = &[
    (1, F::Str("name")),
    (2, F::Str("value")),
    (
        3,
        F::Msg(
            "valueFrom",
            &[
                (1, F::Msg("fieldRef", FIELD_REF)),
                (2, F::Msg("resourceFieldRef", RESOURCE_FIELD_REF)),
                (3, F::Msg("configMapKeyRef", KEY_SELECTOR)),
                (4, F::Msg("secretKeyRef", KEY_SELECTOR)),
            ],
        ),
    ),
];

static CONTAINER_PORT: &[(u64, F)] = &[
    (1, F::Str("name")),
    (2, F::Int("hostPort")),
    (3, F::Int("containerPort")),
    (4, F::Str("protocol")),
    (5, F::Str("hostIP")),
];

static EXEC_ACTION: &[(u64, F)] = &[(1, F::RepStr("command"))];

static HTTP_GET_ACTION: &[(u64, F)] = &[
    (1, F::Str("path")),
    (2, F::IntStr("port")),
    (3, F::Str("host")),
    (4, F::Str("scheme")),
    (
        5,
        F::RepMsg("httpHeaders", &[(1, F::Str("name")), (2, F::Str("value"))]),
    ),
];

static TCP_SOCKET_ACTION: &[(u64, F)] = &[(1, F::IntStr("port")), (2, F::Str("host"))];

static PROBE: &[(u64, F)] = &[
    (
        1,
        F::Inline(&[
            (1, F::Msg("exec", EXEC_ACTION)),
            (2, F::Msg("httpGet", HTTP_GET_ACTION)),
            (3, F::Msg("tcpSocket", TCP_SOCKET_ACTION)),
            (
                4,
                F::Msg("grpc", &[(1, F::Int("port")), (2, F::Str("service"))]),
            ),
        ]),
    ),
    (2, F::Int("initialDelaySeconds")),
    (3, F::Int("timeoutSeconds")),
    (4, F::Int("periodSeconds")),
    (5, F::Int("successThreshold")),
    (6, F::Int("failureThreshold")),
    (7, F::OptInt("terminationGracePeriodSeconds")),
];

static LIFECYCLE_HANDLER: &[(u64, F)] = &[
    (1, F::Msg("exec", EXEC_ACTION)),
    (2, F::Msg("httpGet", HTTP_GET_ACTION)),
    (3, F::Msg("tcpSocket", TCP_SOCKET_ACTION)),
    (4, F::Msg("sleep", &[(1, F::Int("seconds"))])),
];

static SECURITY_CONTEXT: &[(u64, F)] = &[
    (
        1,
        F::Msg(
            "capabilities",
            &[(1, F::RepStr("add")), (2, F::RepStr("drop"))],
        ),
    ),
    (2, F::OptBool("privileged")),
    (4, F::OptInt("runAsUser")),
    (5, F::OptBool("runAsNonRoot")),
    (6, F::OptBool("readOnlyRootFilesystem")),
    (7, F::OptBool("allowPrivilegeEscalation")),
    (8, F::OptInt("runAsGroup")),
];

static CONTAINER: &[(u64, F)] = &[
    (1, F::Str("name")),
    (2, F::Str("image")),
    (3, F::RepStr("command")),
    (4, F::RepStr("args")),
    (5, F::Str("workingDir")),
    (6, F::RepMsg("ports", CONTAINER_PORT)),
    (7, F::RepMsg("env", ENV_VAR)),
    (
        8,
        F::Msg(
            "resources",
            &[(1, F::MapQty("limits")), (2, F::MapQty("requests"))],
        ),
    ),
    (
        9,
        F::RepMsg(
            "volumeMounts",
            &[
                (1, F::Str("name")),
                (2, F::Bool("readOnly")),
                (3, F::Str("mountPath")),
                (4, F::Str("subPath")),
                (5, F::Str("mountPropagation")),
                (6, F::Str("subPathExpr")),
            ],
        ),
    ),
    (10, F::Msg("livenessProbe", PROBE)),
    (11, F::Msg("readinessProbe", PROBE)),
    (
        12,
        F::Msg(
            "lifecycle",
            &[
                (1, F::Msg("postStart", LIFECYCLE_HANDLER)),
                (2, F::Msg("preStop", LIFECYCLE_HANDLER)),
            ],
        ),
    ),
    (13, F::Str("terminationMessagePath")),
    (14, F::Str("imagePullPolicy")),
    (15, F::Msg("securityContext", SECURITY_CONTEXT)),
    (16, F::Bool("stdin")),
    (17, F::Bool("stdinOnce")),
    (18, F::Bool("tty")),
    (
        19,
        F::RepMsg(
            "envFrom",
            &[
                (1, F::Str("prefix")),
                (2, F::Msg("configMapRef", ENV_SOURCE_REF)),
                (3, F::Msg("secretRef", ENV_SOURCE_REF)),
            ],
        ),
    ),
    (20, F::Str("terminationMessagePolicy")),
    (22, F::Msg("startupProbe", PROBE)),
    (24, F::Str("restartPolicy")),
];

static KEY_TO_PATH: &[(u64, F)] = &[
    (1, F::Str("key")),
    (2, F::Str("path")),
    (3, F::OptInt("mode")),
];

static VOLUME: &[(u64, F)] = &[
    (1, F::Str("name")),
    (
        2,
        F::Inline(&[
            (
                1,
                F::Msg("hostPath", &[(1, F::Str("path")), (2, F::Str("type"))]),
            ),
            (
                2,
                F::Msg(
                    "emptyDir",
                    &[(1, F::Str("medium")), (2, F::Qty("sizeLimit"))],
                ),
            ),
            (
                6,
                F::Msg(
                    "secret",
                    &[
                        (1, F::Str("secretName")),
                        (2, F::RepMsg("items", KEY_TO_PATH)),
                        (3, F::OptInt("defaultMode")),
                        (4, F::OptBool("optional")),
                    ],
                ),
            ),
            (
                10,
                F::Msg(
                    "persistentVolumeClaim",
                    &[(1, F::Str("claimName")), (2, F::Bool("readOnly"))],
                ),
            ),
            (
                16,
                F::Msg(
                    "downwardAPI",
                    &[
                        (
                            1,
                            F::RepMsg(
                                "items",
                                &[
                                    (1, F::Str("path")),
                                    (2, F::Msg("fieldRef", FIELD_REF)),
                                    (3, F::Msg("resourceFieldRef", RESOURCE_FIELD_REF)),
                                    (4, F::OptInt("mode")),
                                ],
                            ),
                        ),
                        (2, F::OptInt("defaultMode")),
                    ],
                ),
            ),
            (
                19,
                F::Msg(
                    "configMap",
                    &[
                        (1, F::Inline(LOCAL_OBJECT_REFERENCE)),
                        (2, F::RepMsg("items", KEY_TO_PATH)),
                        (3, F::OptInt("defaultMode")),
                        (4, F::OptBool("optional")),
                    ],
                ),
            ),
        ]),
    ),
];

static POD_SPEC: &[(u64, F)] = &[
    (1, F::RepMsg("volumes", VOLUME)),
    (2, F::RepMsg("containers", CONTAINER)),
    (3, F::Str("restartPolicy")),
    (4, F::OptInt("terminationGracePeriodSeconds")),
    (5, F::OptInt("activeDeadlineSeconds")),
    (6, F::Str("dnsPolicy")),
    (7, F::MapStr("nodeSelector")),
    (8, F::Str("serviceAccountName")),
    (9, F::Str("serviceAccount")),
    (10, F::Str("nodeName")),
    (11, F::Bool("hostNetwork")),
    (12, F::Bool("hostPID")),
    (13, F::Bool("hostIPC")),
    (
        14,
        F::Msg(
            "securityContext",
            &[
                (2, F::OptInt("runAsUser")),
                (3, F::OptBool("runAsNonRoot")),
                (4, F::RepInt("supplementalGroups")),
                (5, F::OptInt("fsGroup")),
                (6, F::OptInt("runAsGroup")),
            ],
        ),
    ),
    (15, F::RepMsg("imagePullSecrets", LOCAL_OBJECT_REFERENCE)),
    (16, F::Str("hostname")),
    (17, F::Str("subdomain")),
    (19, F::Str("schedulerName")),
    (20, F::RepMsg("initContainers", CONTAINER)),
    (21, F::OptBool("automountServiceAccountToken")),
    (
        22,
        F::RepMsg(
            "tolerations",
            &[
                (1, F::Str("key")),
                (2, F::Str("operator")),
                (3, F::Str("value")),
                (4, F::Str("effect")),
                (5, F::OptInt("tolerationSeconds")),
            ],
        ),
    ),
    (
        23,
        F::RepMsg(
            "hostAliases",
            &[(1, F::Str("ip")), (2, F::RepStr("hostnames"))],
        ),
    ),
    (24, F::Str("priorityClassName")),
    (25, F::OptInt("priority")),
    (27, F::OptBool("shareProcessNamespace")),
    (29, F::Str("runtimeClassName")),
    (30, F::OptBool("enableServiceLinks")),
    (31, F::Str("preemptionPolicy")),
    (35, F::OptBool("setHostnameAsFQDN")),
    (37, F::OptBool("hostUsers")),
];

static POD_TEMPLATE_SPEC: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", POD_SPEC)),
];

static POD: &[(u64, F)] = POD_TEMPLATE_SPEC;

static DEPLOYMENT: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (1, F::OptInt("replicas")),
                (2, F::Msg("selector", LABEL_SELECTOR)),
                (3, F::Msg("template", POD_TEMPLATE_SPEC)),
                (
                    4,
                    F::Msg(
                        "strategy",
                        &[
                            (1, F::Str("type")),
                            (
                                2,
                                F::Msg(
                                    "rollingUpdate",
                                    &[(1, F::IntStr("maxUnavailable")), (2, F::IntStr("maxSurge"))],
                                ),
                            ),
                        ],
                    ),
                ),
                (5, F::Int("minReadySeconds")),
                (6, F::OptInt("revisionHistoryLimit")),
                (7, F::Bool("paused")),
                (9, F::OptInt("progressDeadlineSeconds")),
            ],
        ),
    ),
];

static REPLICA_SET: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (1, F::OptInt("replicas")),
                (2, F::Msg("selector", LABEL_SELECTOR)),
                (3, F::Msg("template", POD_TEMPLATE_SPEC)),
                (4, F::Int("minReadySeconds")),
            ],
        ),
    ),
];

static SERVICE: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (
                    1,
                    F::RepMsg(
                        "ports",
                        &[
                            (1, F::Str("name")),
                            (2, F::Str("protocol")),
                            (3, F::Int("port")),
                            (4, F::IntStr("targetPort")),
                            (5, F::Int("nodePort")),
                            (6, F::Str("appProtocol")),
                        ],
                    ),
                ),
                (2, F::MapStr("selector")),
                (3, F::Str("clusterIP")),
                (4, F::Str("type")),
                (5, F::RepStr("externalIPs")),
                (7, F::Str("sessionAffinity")),
                (8, F::Str("loadBalancerIP")),
                (9, F::RepStr("loadBalancerSourceRanges")),
                (10, F::Str("externalName")),
                (11, F::Str("externalTrafficPolicy")),
                (12, F::Int("healthCheckNodePort")),
                (13, F::Bool("publishNotReadyAddresses")),
                (17, F::Str("ipFamilyPolicy")),
                (18, F::RepStr("clusterIPs")),
                (19, F::RepStr("ipFamilies")),
                (20, F::OptBool("allocateLoadBalancerNodePorts")),
                (21, F::Str("loadBalancerClass")),
                (22, F::Str("internalTrafficPolicy")),
            ],
        ),
    ),
];

static POLICY_RULE: &[(u64, F)] = &[
    (1, F::RepStr("verbs")),
    (2, F::RepStr("apiGroups")),
    (3, F::RepStr("resources")),
    (4, F::RepStr("resourceNames")),
    (5, F::RepStr("nonResourceURLs")),
];

static ROLE: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::RepMsg("rules", POLICY_RULE)),
    (
        3,
        F::Msg(
            "aggregationRule",
            &[(1, F::RepMsg("clusterRoleSelectors", LABEL_SELECTOR))],
        ),
    ),
];

static BINDING: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::RepMsg(
            "subjects",
            &[
                (1, F::Str("kind")),
                (2, F::Str("apiGroup")),
                (3, F::Str("name")),
                (4, F::Str("namespace")),
            ],
        ),
    ),
    (
        3,
        F::Msg(
            "roleRef",
            &[
                (1, F::Str("apiGroup")),
                (2, F::Str("kind")),
                (3, F::Str("name")),
            ],
        ),
    ),
];

static ACCESS_REVIEW: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (
                    1,
                    F::Msg(
                        "resourceAttributes",
                        &[
                            (1, F::Str("namespace")),
                            (2, F::Str("verb")),
                            (3, F::Str("group")),
                            (4, F::Str("version")),
                            (5, F::Str("resource")),
                            (6, F::Str("subresource")),
                            (7, F::Str("name")),
                        ],
                    ),
                ),
                (
                    2,
                    F::Msg(
                        "nonResourceAttributes",
                        &[(1, F::Str("path")), (2, F::Str("verb"))],
                    ),
                ),
            ],
        ),
    ),
];

static RULES_REVIEW: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (2, F::Msg("spec", &[(1, F::Str("namespace"))])),
];

static SERVICE_ACCOUNT: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::RepMsg(
            "secrets",
            &[
                (1, F::Str("kind")),
                (2, F::Str("namespace")),
                (3, F::Str("name")),
                (4, F::Str("uid")),
                (5, F::Str("apiVersion")),
            ],
        ),
    ),
    (3, F::RepMsg("imagePullSecrets", LOCAL_OBJECT_REFERENCE)),
    (4, F::OptBool("automountServiceAccountToken")),
];

static CSR_CONDITION: &[(u64, F)] = &[
    (1, F::Str("type")),
    (2, F::Str("reason")),
    (3, F::Str("message")),
    (4, F::Time("lastUpdateTime")),
    (5, F::Time("lastTransitionTime")),
    (6, F::Str("status")),
];

static CSR: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (1, F::Bytes("request")),
                (2, F::Str("username")),
                (3, F::Str("uid")),
                (4, F::RepStr("groups")),
                (5, F::RepStr("usages")),
                (7, F::Str("signerName")),
                (8, F::OptInt("expirationSeconds")),
            ],
        ),
    ),
    (
        3,
        F::Msg(
            "status",
            &[
                (1, F::RepMsg("conditions", CSR_CONDITION)),
                (2, F::Bytes("certificate")),
            ],
        ),
    ),
];

static TYPE_META: &[(u64, F)] = &[(1, F::Str("apiVersion")), (2, F::Str("kind"))];

/// One raw field: number and payload.
enum Raw<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Raw<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let (num, wire) = (tag >> 3, tag & 7);
        match wire {
            0 => out.push((num, Raw::Varint(varint(buf, &mut pos)?))),
            1 => pos += 8,
            5 => pos += 4,
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated field")?;
                out.push((num, Raw::Bytes(&buf[pos..end])));
                pos = end;
            }
            w => return Err(format!("unsupported wire type {w}")),
        }
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_string())
}

/// The entries of a `map<string, V>` field: (key, raw value bytes).
fn map_entry(b: &[u8]) -> Result<(String, &[u8]), String> {
    let mut key = String::new();
    let mut value: &[u8] = &[];
    for (n, r) in fields(b)? {
        match (n, r) {
            (1, Raw::Bytes(x)) => key = text(x)?,
            (2, Raw::Bytes(x)) => value = x,
            _ => {}
        }
    }
    Ok((key, value))
}

/// `Quantity { string = 1 }` → its string.
fn quantity(b: &[u8]) -> Result<String, String> {
    let mut s = String::new();
    for (n, r) in fields(b)? {
        if let (1, Raw::Bytes(x)) = (n, r) {
            s = text(x)?;
        }
    }
    Ok(s)
}

/// `IntOrString { type = 1; intVal = 2; strVal = 3 }` → a JSON number or string.
fn int_or_string(b: &[u8]) -> Result<Value, String> {
    let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
    for (n, r) in fields(b)? {
        match (n, r) {
            (1, Raw::Varint(v)) => is_string = v == 1,
            (2, Raw::Varint(v)) => int = v as i64,
            (3, Raw::Bytes(x)) => string = text(x)?,
            _ => {}
        }
    }
    Ok(if is_string { json!(string) } else { json!(int) })
}

/// `Time { seconds = 1; nanos = 2 }` → RFC 3339 (seconds precision, as metav1.Time), or `None`
/// for the zero time.
fn time(b: &[u8]) -> Result<Option<Value>, String> {
    let (mut secs, mut nanos) = (0i64, 0u32);
    for (n, r) in fields(b)? {
        match (n, r) {
            (1, Raw::Varint(v)) => secs = v as i64,
            (2, Raw::Varint(v)) => nanos = v as u32,
            _ => {}
        }
    }
    if secs == 0 && nanos == 0 {
        return Ok(None);
    }
    let t = chrono::DateTime::from_timestamp(secs, 0).ok_or("time out of range")?;
    Ok(Some(json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string())))
}

/// Appends `v` to the array at `obj[name]`.
fn push(obj: &mut Map<String, Value>, name: &str, v: Value) {
    if let Some(l) = obj.entry(name).or_insert_with(|| json!([])).as_array_mut() {
        l.push(v);
    }
}

/// Sets `obj[name][key] = v`.
fn put(obj: &mut Map<String, Value>, name: &str, key: String, v: Value) {
    if let Some(m) = obj.entry(name).or_insert_with(|| json!({})).as_object_mut() {
        m.insert(key, v);
    }
}

fn message(buf: &[u8], schema: &[(u64, F)]) -> Result<Value, String> {
    let mut obj = Map::new();
    fill(&mut obj, buf, schema)?;
    Ok(Value::Object(obj))
}

/// Decodes the fields of `buf` into `obj` following `schema`.
fn fill(obj: &mut Map<String, Value>, buf: &[u8], schema: &[(u64, F)]) -> Result<(), String> {
    for (num, raw) in fields(buf)? {
        let Some((_, f)) = schema.iter().find(|(n, _)| *n == num) else {
            continue;
        };
        match (f, raw) {
            (F::Str(name), Raw::Bytes(b)) if !b.is_empty() => {
                obj.insert((*name).into(), json!(text(b)?));
            }
            (F::Bool(name), Raw::Varint(v)) if v != 0 => {
                obj.insert((*name).into(), json!(true));
            }
            (F::OptBool(name), Raw::Varint(v)) => {
                obj.insert((*name).into(), json!(v != 0));
            }
            (F::Int(name), Raw::Varint(v)) if v != 0 => {
                obj.insert((*name).into(), json!(v as i64));
            }
            (F::OptInt(name), Raw::Varint(v)) => {
                obj.insert((*name).into(), json!(v as i64));
            }
            (F::Msg(name, sub), Raw::Bytes(b)) => {
                obj.insert((*name).into(), message(b, sub)?);
            }
            (F::Inline(sub), Raw::Bytes(b)) => fill(obj, b, sub)?,
            (F::MapStr(name), Raw::Bytes(b)) => {
                let (key, value) = map_entry(b)?;
                put(obj, name, key, json!(text(value)?));
            }
            (F::MapBytes(name), Raw::Bytes(b)) => {
                let (key, value) = map_entry(b)?;
                put(obj, name, key, json!(B64.encode(value)));
            }
            (F::MapQty(name), Raw::Bytes(b)) => {
                let (key, value) = map_entry(b)?;
                put(obj, name, key, json!(quantity(value)?));
            }
            (F::RepMsg(name, sub), Raw::Bytes(b)) => push(obj, name, message(b, sub)?),
            (F::RepStr(name), Raw::Bytes(b)) => push(obj, name, json!(text(b)?)),
            (F::RepInt(name), Raw::Varint(v)) => push(obj, name, json!(v as i64)),
            (F::Bytes(name), Raw::Bytes(b)) if !b.is_empty() => {
                obj.insert((*name).into(), json!(B64.encode(b)));
            }
            (F::IntStr(name), Raw::Bytes(b)) => {
                obj.insert((*name).into(), int_or_string(b)?);
            }
            (F::Qty(name), Raw::Bytes(b)) => {
                obj.insert((*name).into(), json!(quantity(b)?));
            }
            (F::Time(name), Raw::Bytes(b)) => {
                if let Some(t) = time(b)? {
                    obj.insert((*name).into(), t);
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// authentication/v1 TokenRequest (`kubectl create token`).
static TOKEN_REQUEST: &[(u64, F)] = &[
    (1, F::Msg("metadata", OBJECT_META)),
    (
        2,
        F::Msg(
            "spec",
            &[
                (1, F::RepStr("audiences")),
                (
                    3,
                    F::Msg(
                        "boundObjectRef",
                        &[
                            (1, F::Str("kind")),
                            (2, F::Str("apiVersion")),
                            (3, F::Str("name")),
                            (4, F::Str("uid")),
                        ],
                    ),
                ),
                (4, F::OptInt("expirationSeconds")),
            ],
        ),
    ),
];

/// Decodes a protobuf-encoded object (`k8s\0` + runtime.Unknown) into JSON; `Err` for malformed
/// bodies or kinds this decoder does not know.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    let rest = body
        .strip_prefix(b"k8s\0")
        .ok_or("missing the k8s protobuf magic number")?;
    let mut type_meta = Value::Null;
    let mut raw: &[u8] = &[];
    for (num, r) in fields(rest)? {
        match (num, r) {
            (1, Raw::Bytes(b)) => type_meta = message(b, TYPE_META)?,
            (2, Raw::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let kind = type_meta.get("kind").and_then(Value::as_str).unwrap_or("");
    let schema = match kind {
        "Namespace" => NAMESPACE,
        "Pod" => POD,
        "Service" => SERVICE,
        "Deployment" => DEPLOYMENT,
        "ReplicaSet" => REPLICA_SET,
        "ConfigMap" => CONFIGMAP,
        "Secret" => SECRET,
        "Role" | "ClusterRole" => ROLE,
        "RoleBinding" | "ClusterRoleBinding" => BINDING,
        "SelfSubjectAccessReview" => ACCESS_REVIEW,
        "SelfSubjectRulesReview" => RULES_REVIEW,
        "ServiceAccount" => SERVICE_ACCOUNT,
        "CertificateSigningRequest" => CSR,
        "TokenRequest" => TOKEN_REQUEST,
        other => {
            return Err(format!(
                "protobuf bodies of kind {other:?} are not supported yet"
            ))
        }
    };
    let mut obj = message(raw, schema)?;
    if let Some(m) = obj.as_object_mut() {
        m.insert("kind".into(), json!(kind));
        if let Some(v) = type_meta.get("apiVersion") {
            m.insert("apiVersion".into(), v.clone());
        }
    }
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    static SERVICE_SPEC_PORT_FOR_TEST: &[(u64, F)] =
        &[(3, F::Int("port")), (4, F::IntStr("targetPort"))];

    fn field(num: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn decodes_a_namespace_like_kubectl_sends_it() {
        // The exact bytes kubectl 1.33 sends for `kubectl create namespace demo2`.
        let body: &[u8] = b"k8s\x00\x0a\x0f\x0a\x02v1\x12\x09Namespace\x12\x1d\x0a\x15\x0a\x05demo2\x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x12\x00\x1a\x00\x1a\x00\x22\x00";
        let v = decode(body).unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "demo2"}, "spec": {}, "kind": "Namespace", "apiVersion": "v1"})
        );
    }

    #[test]
    fn decodes_configmap_data_and_labels() {
        let entry = [field(1, b"color"), field(2, b"blue")].concat();
        let label = [field(1, b"app"), field(2, b"web")].concat();
        let meta = [field(1, b"cfg"), field(3, b"demo"), field(11, &label)].concat();
        let cm = [field(1, &meta), field(2, &entry)].concat();
        let tm = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), field(1, &tm), field(2, &cm)].concat();
        let v = decode(&body).unwrap();
        assert_eq!(
            v["metadata"],
            json!({"name": "cfg", "namespace": "demo", "labels": {"app": "web"}})
        );
        assert_eq!(v["data"], json!({"color": "blue"}));
        let subject = [field(1, b"User"), field(3, b"jane")].concat();
        let role_ref = [field(2, b"ClusterRole"), field(3, b"view")].concat();
        let rb = [
            field(1, &field(1, b"jane-view")),
            field(2, &subject),
            field(3, &role_ref),
        ]
        .concat();
        let tm = [
            field(1, b"rbac.authorization.k8s.io/v1"),
            field(2, b"RoleBinding"),
        ]
        .concat();
        let v = decode(&[b"k8s\0".to_vec(), field(1, &tm), field(2, &rb)].concat()).unwrap();
        assert_eq!(v["subjects"], json!([{"kind": "User", "name": "jane"}]));
        assert_eq!(v["roleRef"], json!({"kind": "ClusterRole", "name": "view"}));
        let tm = [field(1, b"networking.k8s.io/v1"), field(2, b"Ingress")].concat();
        assert!(decode(&[b"k8s\0".to_vec(), field(1, &tm)].concat()).is_err());
    }

    #[test]
    fn decodes_a_deployment_like_kubectl_create_deployment_sends_it() {
        // kubectl 1.33: `create deployment web --image=busybox:stable --replicas=2 -- httpd -f`.
        let body: &[u8] = b"k8s\x00\x0a\x15\x0a\x07apps/v1\x12\x0aDeployment\x12\xc2\x01\x0a\x1f\x0a\x03web\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x0a\x0a\x03app\x12\x03web\x12\x90\x01\x08\x02\x12\x0c\x0a\x0a\x0a\x03app\x12\x03web\x1av\x0a\x1c\x0a\x00\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x0a\x0a\x03app\x12\x03web\x12V\x128\x0a\x07busybox\x12\x0ebusybox:stable\x1a\x05httpd\x1a\x02-f*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x002\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x22\x02\x0a\x00(\x008\x00\x1a\x0c\x08\x00\x10\x00\x18\x00 \x00(\x008\x00\x1a\x00\x22\x00";
        let v = decode(body).unwrap();
        assert_eq!(
            v,
            json!({
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {
                        "metadata": {"labels": {"app": "web"}},
                        "spec": {"containers": [{
                            "name": "busybox",
                            "image": "busybox:stable",
                            "command": ["httpd", "-f"],
                            "resources": {},
                        }]},
                    },
                    "strategy": {},
                },
                "kind": "Deployment",
                "apiVersion": "apps/v1",
            })
        );
    }

    #[test]
    fn decodes_a_service_with_an_int_or_string_target_port() {
        // kubectl 1.33: `create service nodeport np --tcp=80:8080`.
        let body: &[u8] = b"k8s\x00\x0a\x0d\x0a\x02v1\x12\x07Service\x12e\x0a\x1d\x0a\x02np\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00Z\x09\x0a\x03app\x12\x02np\x12@\x0a\x1b\x0a\x0780-8080\x12\x03TCP\x18P\x22\x07\x08\x00\x10\x90?\x1a\x00(\x00\x12\x09\x0a\x03app\x12\x02np\x1a\x00\x22\x08NodePort:\x00B\x00R\x00Z\x00`\x00h\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";
        let v = decode(body).unwrap();
        assert_eq!(
            v["spec"],
            json!({
                "ports": [{"name": "80-8080", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                "selector": {"app": "np"},
                "type": "NodePort",
            })
        );
        // A named target port, a quantity map, a pointer zero and an embedded volume source.
        let ios = [vec![0x08, 1], field(3, b"http")].concat();
        let port = [field(3, &[]), field(4, &ios)].concat();
        let v = message(&port, SERVICE_SPEC_PORT_FOR_TEST).unwrap();
        assert_eq!(v, json!({"targetPort": "http"}));
        let qty = [field(1, b"cpu"), field(2, &field(1, b"250m"))].concat();
        let container = [field(1, b"c"), field(8, &field(2, &qty))].concat();
        let empty_dir = [field(1, b"scratch"), field(2, &field(2, &[]))].concat();
        let spec = [
            field(2, &container),
            field(1, &empty_dir),
            vec![0x20, 0], // terminationGracePeriodSeconds = 0 (a pointer: kept)
            vec![0x58, 0], // hostNetwork = false (plain: dropped)
        ]
        .concat();
        let v = message(&spec, POD_SPEC).unwrap();
        assert_eq!(
            v,
            json!({
                "containers": [{"name": "c", "resources": {"requests": {"cpu": "250m"}}}],
                "volumes": [{"name": "scratch", "emptyDir": {}}],
                "terminationGracePeriodSeconds": 0,
            })
        );
    }

    #[test]
    fn decodes_time_as_rfc3339_and_drops_the_zero_time() {
        let meta = [
            field(1, b"x"),
            field(8, &[0x08, 0x80, 0x86, 0xb5, 0xaf, 0x06]),
            field(9, &[]),
        ]
        .concat();
        let v = message(&meta, OBJECT_META).unwrap();
        assert_eq!(
            v,
            json!({"name": "x", "creationTimestamp": "2024-03-10T05:20:00Z"})
        );
    }
}
