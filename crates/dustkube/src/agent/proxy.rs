//! The Service data path (kube-proxy's job, nftables mode): from Services and Endpoints,
//! [`ruleset`] writes one `table inet dustkube` — ClusterIP, external IP and NodePort
//! (30000–32767, on every local address) DNAT to the ready endpoints, picked with
//! `numgen random`; masquerade for traffic from outside the pod network and for hairpin
//! (a pod reaching itself through its Service); reject for Services without endpoints.
//! [`apply`] loads it with `nft -f -`, which replaces the table in one transaction.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::IpAddr;
use std::process::{Command, Stdio};

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

/// The nftables table the proxy owns.
pub const TABLE: &str = "dustkube";
/// Packet mark bit asking the postrouting chain to masquerade (kube-proxy's 0x4000).
pub const MASQ_MARK: u32 = 0x4000;

/// What the rules need to know about the node they run on.
#[derive(Debug, Clone, Default)]
pub struct NodeContext {
    /// This node's name.
    pub node_name: String,
    /// The pod network(s) (`10.244.0.0/16`): connections to Services from other sources are
    /// masqueraded so replies come back through this node. Empty: masquerade everything.
    pub cluster_cidrs: Vec<String>,
}

/// One Service port with the endpoints it balances over.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Port {
    /// `<namespace>/<service>/<port name or number>` (chain names).
    id: String,
    protocol: &'static str,
    /// ClusterIP, external IPs and load-balancer IPs.
    addresses: Vec<IpAddr>,
    port: u16,
    node_port: Option<u16>,
    /// (address, target port), sorted.
    endpoints: Vec<(IpAddr, u16)>,
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or("")
}

fn protocol(p: &str) -> Option<&'static str> {
    match p {
        "" | "TCP" => Some("tcp"),
        "UDP" => Some("udp"),
        "SCTP" => Some("sctp"),
        _ => None,
    }
}

fn port_number(v: Option<&Value>) -> Option<u16> {
    v.and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
        .filter(|n| *n > 0)
}

/// The ready endpoints of `endpoints` for the Service port named `name` with `proto`.
fn endpoints_for(endpoints: Option<&Value>, name: &str, proto: &str) -> Vec<(IpAddr, u16)> {
    let mut out = Vec::new();
    for subset in endpoints
        .and_then(|e| e.get("subsets"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(port) = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| {
                str_at(p, "/name") == name && protocol(str_at(p, "/protocol")) == protocol(proto)
            })
            .and_then(|p| port_number(p.get("port")))
        else {
            continue;
        };
        for addr in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Ok(ip) = str_at(addr, "/ip").parse::<IpAddr>() {
                out.push((ip, port));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// The Service ports with addresses to serve (headless and ExternalName Services have none).
fn ports(services: &[Value], endpoints: &[Value]) -> Vec<Port> {
    let mut out = Vec::new();
    for svc in services {
        let ns = str_at(svc, "/metadata/namespace");
        let name = str_at(svc, "/metadata/name");
        let ty = str_at(svc, "/spec/type");
        if ty == "ExternalName" {
            continue;
        }
        let mut addresses: Vec<IpAddr> = Vec::new();
        if let Ok(ip) = str_at(svc, "/spec/clusterIP").parse::<IpAddr>() {
            addresses.push(ip);
        }
        let texts = |path: &str, field: Option<&str>| -> Vec<IpAddr> {
            svc.pointer(path)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| match field {
                    Some(f) => v.get(f).and_then(Value::as_str),
                    None => v.as_str(),
                })
                .filter_map(|s| s.parse().ok())
                .collect()
        };
        addresses.extend(texts("/spec/externalIPs", None));
        addresses.extend(texts("/status/loadBalancer/ingress", Some("ip")));
        let eps = endpoints.iter().find(|e| {
            str_at(e, "/metadata/namespace") == ns && str_at(e, "/metadata/name") == name
        });
        for p in svc
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (Some(proto), Some(port)) =
                (protocol(str_at(p, "/protocol")), port_number(p.get("port")))
            else {
                continue;
            };
            let port_name = str_at(p, "/name");
            let node_port = if matches!(ty, "NodePort" | "LoadBalancer") {
                port_number(p.get("nodePort"))
            } else {
                None
            };
            if addresses.is_empty() && node_port.is_none() {
                continue;
            }
            let label = if port_name.is_empty() {
                format!("{proto}{port}")
            } else {
                port_name.to_string()
            };
            out.push(Port {
                id: format!("{ns}/{name}/{label}"),
                protocol: proto,
                addresses: addresses.clone(),
                port,
                node_port,
                endpoints: endpoints_for(eps, port_name, str_at(p, "/protocol")),
            });
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

fn family(ip: &IpAddr) -> &'static str {
    match ip {
        IpAddr::V4(_) => "ip",
        IpAddr::V6(_) => "ip6",
    }
}

fn dnat_target(ip: &IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(a) => format!("ip to {a}:{port}"),
        IpAddr::V6(a) => format!("ip6 to [{a}]:{port}"),
    }
}

/// The `nft -f` script for `services` and `endpoints` (v1 objects as the API returns them)
/// on the node `node`: deletes and recreates `table inet dustkube` atomically.
pub fn ruleset(services: &[Value], endpoints: &[Value], node: &NodeContext) -> String {
    let ports = ports(services, endpoints);
    let cidrs: Vec<(&'static str, &str)> = node
        .cluster_cidrs
        .iter()
        .map(|c| {
            let fam = if c.contains(':') { "ip6" } else { "ip" };
            (fam, c.as_str())
        })
        .collect();
    let mut s = String::new();
    let w = &mut s;
    // `add` then `delete` works whether or not the table exists; the whole file is one
    // transaction, so packets never see a half-built table.
    let _ = writeln!(w, "add table inet {TABLE}\ndelete table inet {TABLE}\n");
    let _ = writeln!(w, "table inet {TABLE} {{");
    // -100 is `dstnat`; nft 1.0.6 accepts that name only in prerouting.
    for (chain, hook, prio) in [
        ("nat-prerouting", "prerouting", "-100"),
        ("nat-output", "output", "-100"),
    ] {
        let _ = writeln!(
            w,
            "\tchain {chain} {{\n\t\ttype nat hook {hook} priority {prio}; policy accept;\n\t\tjump services\n\t}}\n"
        );
    }
    let _ = writeln!(
        w,
        "\tchain nat-postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\t\tmeta mark & {MASQ_MARK:#x} == 0 return\n\t\tmeta mark set meta mark ^ {MASQ_MARK:#x}\n\t\tmasquerade fully-random\n\t}}\n"
    );
    for (chain, hook) in [
        ("filter-input", "input"),
        ("filter-forward", "forward"),
        ("filter-output", "output"),
    ] {
        let _ = writeln!(
            w,
            "\tchain {chain} {{\n\t\ttype filter hook {hook} priority filter - 10; policy accept;\n\t\tct state new jump no-endpoints\n\t}}\n"
        );
    }

    // Dispatch: Service addresses, then node ports on local addresses (not loopback: DNAT from
    // 127.0.0.1 to a pod cannot route back).
    let _ = writeln!(w, "\tchain services {{");
    for p in ports.iter().filter(|p| !p.endpoints.is_empty()) {
        for a in &p.addresses {
            let _ = writeln!(
                w,
                "\t\t{} daddr {a} {} dport {} goto svc/{}",
                family(a),
                p.protocol,
                p.port,
                p.id
            );
        }
    }
    if ports
        .iter()
        .any(|p| p.node_port.is_some() && !p.endpoints.is_empty())
    {
        let _ = writeln!(
            w,
            "\t\tfib daddr type local ip daddr != 127.0.0.0/8 jump nodeports\n\t\tfib daddr type local ip6 daddr != ::1 jump nodeports"
        );
    }
    let _ = writeln!(w, "\t}}\n");
    let _ = writeln!(w, "\tchain nodeports {{");
    for p in ports.iter().filter(|p| !p.endpoints.is_empty()) {
        if let Some(np) = p.node_port {
            let _ = writeln!(w, "\t\t{} dport {np} goto svc/{}", p.protocol, p.id);
        }
    }
    let _ = writeln!(w, "\t}}\n");

    // Services without ready endpoints refuse connections instead of timing out.
    let _ = writeln!(w, "\tchain no-endpoints {{");
    for p in ports.iter().filter(|p| p.endpoints.is_empty()) {
        for a in &p.addresses {
            let _ = writeln!(
                w,
                "\t\t{} daddr {a} {} dport {} reject",
                family(a),
                p.protocol,
                p.port
            );
        }
        if let Some(np) = p.node_port {
            let _ = writeln!(
                w,
                "\t\tfib daddr type local {} dport {np} reject",
                p.protocol
            );
        }
    }
    let _ = writeln!(w, "\t}}\n");

    for p in ports.iter().filter(|p| !p.endpoints.is_empty()) {
        let _ = writeln!(w, "\tchain svc/{} {{", p.id);
        // Masquerade connections from outside the pod network (nodes, external clients).
        let fams: Vec<&str> = {
            let mut f: Vec<&str> = p.endpoints.iter().map(|(ip, _)| family(ip)).collect();
            f.dedup();
            f
        };
        for fam in fams {
            let own: Vec<&str> = cidrs
                .iter()
                .filter(|(f, _)| *f == fam)
                .map(|(_, c)| *c)
                .collect();
            if own.is_empty() {
                let _ = writeln!(
                    w,
                    "\t\tmeta nfproto {} meta mark set meta mark | {MASQ_MARK:#x}",
                    if fam == "ip" { "ipv4" } else { "ipv6" }
                );
            } else {
                let _ = writeln!(
                    w,
                    "\t\t{fam} saddr != {{ {} }} meta mark set meta mark | {MASQ_MARK:#x}",
                    own.join(", ")
                );
            }
        }
        let n = p.endpoints.len();
        if n == 1 {
            let _ = writeln!(w, "\t\tgoto ep/{}/0", p.id);
        } else {
            let arms: Vec<String> = (0..n)
                .map(|i| format!("{i} : goto ep/{}/{i}", p.id))
                .collect();
            let _ = writeln!(
                w,
                "\t\tnumgen random mod {n} vmap {{ {} }}",
                arms.join(", ")
            );
        }
        let _ = writeln!(w, "\t}}\n");
        for (i, (ip, port)) in p.endpoints.iter().enumerate() {
            let fam = family(ip);
            let _ = writeln!(
                w,
                "\tchain ep/{}/{i} {{\n\t\t{fam} saddr {ip} meta mark set meta mark | {MASQ_MARK:#x}\n\t\tmeta l4proto {} dnat {}\n\t}}\n",
                p.id,
                p.protocol,
                dnat_target(ip, *port)
            );
        }
    }
    let _ = writeln!(w, "}}");
    s
}

/// Loads an `nft -f` script (one transaction: all of it or nothing).
pub fn apply(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run nft (install nftables)")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("nft: no stdin"))?
        .write_all(script.as_bytes())
        .context("writing the ruleset to nft")?;
    let out = child.wait_with_output().context("waiting for nft")?;
    if out.status.success() {
        Ok(())
    } else {
        Err(anyhow!(
            "nft -f failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Deletes `table inet dustkube`; `Ok(false)` when it did not exist (`dustkube reset`).
pub fn delete_table() -> Result<bool> {
    let exists = Command::new("nft")
        .args(["list", "table", "inet", TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("cannot run nft (install nftables)")?
        .success();
    if !exists {
        return Ok(false);
    }
    apply(&format!("delete table inet {TABLE}\n"))?;
    Ok(true)
}

/// Keeps the table in step with the API: [`Proxier::sync`] loads a new ruleset only when it
/// differs from the last one loaded.
#[derive(Debug, Default)]
pub struct Proxier {
    node: NodeContext,
    last: Option<String>,
}

impl Proxier {
    /// A proxier for the node `node`.
    pub fn new(node: NodeContext) -> Proxier {
        Proxier { node, last: None }
    }

    /// Renders the rules for the current Services and Endpoints and applies them if they
    /// changed; returns whether nft ran. Call on every change of either kind (and
    /// periodically, so a table flushed by someone else comes back: see [`Proxier::forget`]).
    pub fn sync(&mut self, services: &[Value], endpoints: &[Value]) -> Result<bool> {
        let script = ruleset(services, endpoints, &self.node);
        if self.last.as_deref() == Some(script.as_str()) {
            return Ok(false);
        }
        apply(&script)?;
        self.last = Some(script);
        Ok(true)
    }

    /// Forgets the last ruleset, so the next sync applies it again.
    pub fn forget(&mut self) {
        self.last = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(name: &str, ty: &str, ip: &str, ports: Value) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"type": ty, "clusterIP": ip, "ports": ports},
        })
    }

    fn eps(name: &str, ips: &[&str], ports: Value) -> Value {
        let addrs: Vec<Value> = ips.iter().map(|i| json!({"ip": i})).collect();
        json!({
            "metadata": {"name": name, "namespace": "default"},
            "subsets": [{"addresses": addrs, "notReadyAddresses": [{"ip": "10.244.9.9"}], "ports": ports}],
        })
    }

    fn node() -> NodeContext {
        NodeContext {
            node_name: "w1".into(),
            cluster_cidrs: vec!["10.244.0.0/16".into()],
        }
    }

    #[test]
    fn snapshot_of_a_small_cluster() {
        let services = vec![
            svc(
                "web",
                "NodePort",
                "10.96.0.10",
                json!([{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP", "nodePort": 30080}]),
            ),
            svc(
                "dns",
                "ClusterIP",
                "10.96.0.53",
                json!([{"port": 53, "protocol": "UDP"}]),
            ),
            svc("empty", "ClusterIP", "10.96.0.11", json!([{"port": 80}])),
            svc("headless", "ClusterIP", "None", json!([{"port": 80}])),
        ];
        let endpoints = vec![
            eps(
                "web",
                &["10.244.1.3", "10.244.1.2"],
                json!([{"name": "http", "port": 8080, "protocol": "TCP"}]),
            ),
            eps(
                "dns",
                &["10.244.2.5"],
                json!([{"port": 5353, "protocol": "UDP"}]),
            ),
            eps("headless", &["10.244.1.2"], json!([{"port": 80}])),
        ];
        let got = ruleset(&services, &endpoints, &node());
        let want = "\
add table inet dustkube
delete table inet dustkube

table inet dustkube {
\tchain nat-prerouting {
\t\ttype nat hook prerouting priority -100; policy accept;
\t\tjump services
\t}

\tchain nat-output {
\t\ttype nat hook output priority -100; policy accept;
\t\tjump services
\t}

\tchain nat-postrouting {
\t\ttype nat hook postrouting priority srcnat; policy accept;
\t\tmeta mark & 0x4000 == 0 return
\t\tmeta mark set meta mark ^ 0x4000
\t\tmasquerade fully-random
\t}

\tchain filter-input {
\t\ttype filter hook input priority filter - 10; policy accept;
\t\tct state new jump no-endpoints
\t}

\tchain filter-forward {
\t\ttype filter hook forward priority filter - 10; policy accept;
\t\tct state new jump no-endpoints
\t}

\tchain filter-output {
\t\ttype filter hook output priority filter - 10; policy accept;
\t\tct state new jump no-endpoints
\t}

\tchain services {
\t\tip daddr 10.96.0.53 udp dport 53 goto svc/default/dns/udp53
\t\tip daddr 10.96.0.10 tcp dport 80 goto svc/default/web/http
\t\tfib daddr type local ip daddr != 127.0.0.0/8 jump nodeports
\t\tfib daddr type local ip6 daddr != ::1 jump nodeports
\t}

\tchain nodeports {
\t\ttcp dport 30080 goto svc/default/web/http
\t}

\tchain no-endpoints {
\t\tip daddr 10.96.0.11 tcp dport 80 reject
\t}

\tchain svc/default/dns/udp53 {
\t\tip saddr != { 10.244.0.0/16 } meta mark set meta mark | 0x4000
\t\tgoto ep/default/dns/udp53/0
\t}

\tchain ep/default/dns/udp53/0 {
\t\tip saddr 10.244.2.5 meta mark set meta mark | 0x4000
\t\tmeta l4proto udp dnat ip to 10.244.2.5:5353
\t}

\tchain svc/default/web/http {
\t\tip saddr != { 10.244.0.0/16 } meta mark set meta mark | 0x4000
\t\tnumgen random mod 2 vmap { 0 : goto ep/default/web/http/0, 1 : goto ep/default/web/http/1 }
\t}

\tchain ep/default/web/http/0 {
\t\tip saddr 10.244.1.2 meta mark set meta mark | 0x4000
\t\tmeta l4proto tcp dnat ip to 10.244.1.2:8080
\t}

\tchain ep/default/web/http/1 {
\t\tip saddr 10.244.1.3 meta mark set meta mark | 0x4000
\t\tmeta l4proto tcp dnat ip to 10.244.1.3:8080
\t}

}
";
        if got != want {
            let diff = similar_lines(want, &got);
            panic!("ruleset differs:\n{diff}\n--- got:\n{got}");
        }
    }

    fn similar_lines(a: &str, b: &str) -> String {
        a.lines()
            .zip(b.lines())
            .enumerate()
            .filter(|(_, (x, y))| x != y)
            .map(|(i, (x, y))| format!("line {}: want {x:?}\n         got  {y:?}", i + 1))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn external_addresses_ipv6_and_unmatched_ports() {
        let mut s = svc(
            "lb",
            "LoadBalancer",
            "fd00::10",
            json!([{"name": "https", "port": 443, "nodePort": 31443}]),
        );
        s["spec"]["externalIPs"] = json!(["fd00::99"]);
        s["status"] = json!({"loadBalancer": {"ingress": [{"ip": "fd00::aa"}]}});
        // Endpoint port named differently: no endpoints for "https".
        let e = eps(
            "lb",
            &["fd00:244::5"],
            json!([{"name": "http", "port": 8443}]),
        );
        let got = ruleset(&[s.clone()], &[e], &NodeContext::default());
        assert!(
            got.contains("ip6 daddr fd00::10 tcp dport 443 reject"),
            "{got}"
        );
        assert!(
            got.contains("ip6 daddr fd00::99 tcp dport 443 reject"),
            "{got}"
        );
        assert!(
            got.contains("ip6 daddr fd00::aa tcp dport 443 reject"),
            "{got}"
        );
        assert!(
            got.contains("fib daddr type local tcp dport 31443 reject"),
            "{got}"
        );

        let e = eps(
            "lb",
            &["fd00:244::5"],
            json!([{"name": "https", "port": 8443}]),
        );
        let got = ruleset(&[s], &[e], &NodeContext::default());
        assert!(
            got.contains("meta nfproto ipv6 meta mark set meta mark | 0x4000"),
            "{got}"
        );
        assert!(
            got.contains("meta l4proto tcp dnat ip6 to [fd00:244::5]:8443"),
            "{got}"
        );
        assert!(
            got.contains("tcp dport 31443 goto svc/default/lb/https"),
            "{got}"
        );
    }
}
