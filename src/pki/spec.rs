//! The table: which certificates and kubeconfigs a cluster has, computed from a [`ClusterSpec`].

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use super::PkiError;

/// Validity of a CA certificate (10 years, like kubeadm).
pub const CA_VALIDITY_DAYS: i64 = 3650;
/// Validity of a leaf certificate (1 year, like kubeadm).
pub const LEAF_VALIDITY_DAYS: i64 = 365;
/// API server port used when the control-plane endpoint has none.
pub const DEFAULT_API_PORT: u16 = 6443;

/// Key algorithm for newly generated keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAlgorithm {
    /// RSA 2048 bits (kubeadm's default).
    #[default]
    Rsa2048,
    /// RSA 4096 bits.
    Rsa4096,
    /// ECDSA on P-256.
    EcdsaP256,
}

impl FromStr for KeyAlgorithm {
    type Err = PkiError;
    fn from_str(s: &str) -> Result<Self, PkiError> {
        match s.to_ascii_lowercase().as_str() {
            "rsa-2048" | "rsa2048" => Ok(Self::Rsa2048),
            "rsa-4096" | "rsa4096" => Ok(Self::Rsa4096),
            "ecdsa-p256" | "ecdsa-p-256" => Ok(Self::EcdsaP256),
            _ => Err(PkiError::Input {
                flag: "--key-algorithm",
                message: format!(
                    "unknown key algorithm '{s}' (expected rsa-2048, rsa-4096 or ecdsa-p256)"
                ),
            }),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rsa2048 => "rsa-2048",
            Self::Rsa4096 => "rsa-4096",
            Self::EcdsaP256 => "ecdsa-p256",
        })
    }
}

/// An IP network in CIDR notation (`10.96.0.0/12`, `fd00::/108`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    /// The address as written (host bits may be set).
    pub addr: IpAddr,
    /// Prefix length.
    pub prefix: u8,
}

impl Cidr {
    /// Parses `ADDR/PREFIX`; `flag` names the option in error messages.
    pub fn parse(s: &str, flag: &'static str) -> Result<Self, PkiError> {
        let bad = |message: String| PkiError::Input { flag, message };
        let (addr, prefix) = s.split_once('/').ok_or_else(|| {
            bad(format!(
                "'{s}' is not a CIDR (expected ADDRESS/PREFIX, e.g. 10.96.0.0/12)"
            ))
        })?;
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| bad(format!("'{addr}' in '{s}' is not an IP address")))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
            bad(format!(
                "'{prefix}' in '{s}' is not a prefix length between 0 and {max}"
            ))
        })?;
        Ok(Self { addr, prefix })
    }

    /// The first usable address: network address + 1 (10.96.0.1 for 10.96.0.0/12).
    pub fn first_ip(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).wrapping_add(1).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).wrapping_add(1).into())
            }
        }
    }
}

/// The control-plane endpoint: a host (DNS name or IP) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// DNS name or IP address, without brackets.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// Parses `HOST`, `HOST:PORT`, `IPV6`, or `[IPV6]:PORT`.
    pub fn parse(s: &str) -> Result<Self, PkiError> {
        let bad = |message: String| PkiError::Input {
            flag: "--control-plane-endpoint",
            message,
        };
        let s = s.trim();
        if s.is_empty() {
            return Err(bad("empty endpoint".into()));
        }
        let parse_port = |p: &str| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(format!("'{p}' is not a port number")))
        };
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest
                .split_once(']')
                .ok_or_else(|| bad(format!("'{s}': missing ']'")))?;
            let port = match after.strip_prefix(':') {
                Some(p) => parse_port(p)?,
                None if after.is_empty() => DEFAULT_API_PORT,
                None => return Err(bad(format!("'{s}': unexpected text after ']'"))),
            };
            (host.to_string(), port)
        } else if s.parse::<IpAddr>().is_ok() {
            (s.to_string(), DEFAULT_API_PORT)
        } else if let Some((h, p)) = s.rsplit_once(':') {
            (h.to_string(), parse_port(p)?)
        } else {
            (s.to_string(), DEFAULT_API_PORT)
        };
        let valid_host = host.parse::<IpAddr>().is_ok()
            || (!host.is_empty()
                && host
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.'));
        if !valid_host {
            return Err(bad(format!(
                "'{host}' is neither an IP address nor a DNS name"
            )));
        }
        Ok(Self { host, port })
    }

    /// `https://host:port` (IPv6 in brackets).
    pub fn url(&self) -> String {
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("https://[{}]:{}", self.host, self.port),
            _ => format!("https://{}:{}", self.host, self.port),
        }
    }
}

/// What the cluster's PKI is computed from (kubeadm's InitConfiguration/ClusterConfiguration subset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSpec {
    /// This control-plane node's name (apiserver SAN, etcd CN and SANs).
    pub node_name: String,
    /// The address the API server and etcd advertise.
    pub advertise_address: IpAddr,
    /// Shared endpoint of the control plane; `None` = advertise address, port 6443.
    pub control_plane_endpoint: Option<Endpoint>,
    /// Service network; its first address is the `kubernetes` Service IP.
    pub service_cidr: Cidr,
    /// Cluster DNS domain.
    pub dns_domain: String,
    /// Extra API server SANs (DNS names or IPs).
    pub cert_sans: Vec<String>,
    /// Algorithm for newly generated keys.
    pub key_algorithm: KeyAlgorithm,
    /// Nodes that get a `kubelet-<node>.conf`.
    pub nodes: Vec<String>,
}

impl ClusterSpec {
    /// A spec with kubeadm's defaults (service CIDR 10.96.0.0/12, domain cluster.local, RSA-2048).
    pub fn new(node_name: &str, advertise_address: IpAddr) -> Self {
        Self {
            node_name: node_name.to_string(),
            advertise_address,
            control_plane_endpoint: None,
            service_cidr: Cidr {
                addr: IpAddr::V4([10, 96, 0, 0].into()),
                prefix: 12,
            },
            dns_domain: "cluster.local".into(),
            cert_sans: Vec::new(),
            key_algorithm: KeyAlgorithm::Rsa2048,
            nodes: Vec::new(),
        }
    }

    /// Checks names that end up in certificates.
    pub fn validate(&self) -> Result<(), PkiError> {
        check_dns("--node-name", &self.node_name)?;
        check_dns("--dns-domain", &self.dns_domain)?;
        for san in &self.cert_sans {
            if san.parse::<IpAddr>().is_err() {
                check_dns("--cert-sans", san)?;
            }
        }
        for node in &self.nodes {
            check_dns("--nodes", node)?;
        }
        Ok(())
    }

    /// The API server URL written into kubeconfigs.
    pub fn server_url(&self) -> String {
        match &self.control_plane_endpoint {
            Some(e) => e.url(),
            None => Endpoint {
                host: self.advertise_address.to_string(),
                port: DEFAULT_API_PORT,
            }
            .url(),
        }
    }
}

fn check_dns(flag: &'static str, name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '*')
        });
    if ok {
        Ok(())
    } else {
        Err(PkiError::Input {
            flag,
            message: format!("'{name}' is not a valid DNS name"),
        })
    }
}

/// Extended key usage of a leaf certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// TLS server (serverAuth).
    Server,
    /// TLS client (clientAuth).
    Client,
    /// Both (etcd server and peer).
    ServerAndClient,
}

impl Usage {
    /// (serverAuth, clientAuth) flags.
    pub fn flags(self) -> (bool, bool) {
        match self {
            Self::Server => (true, false),
            Self::Client => (false, true),
            Self::ServerAndClient => (true, true),
        }
    }
}

/// One certificate of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// Path stem inside the PKI dir: `apiserver`, `etcd/server` (files `<name>.crt`, `<name>.key`).
    pub name: String,
    /// Name of the signing CA (`ca`, `front-proxy-ca`, `etcd/ca`); `None` for a self-signed CA.
    pub issuer: Option<String>,
    /// Subject common name.
    pub common_name: String,
    /// Subject organizations.
    pub organizations: Vec<String>,
    /// DNS subject alternative names.
    pub dns_names: Vec<String>,
    /// IP subject alternative names.
    pub ips: Vec<IpAddr>,
    /// Extended key usage (`None` for CAs).
    pub usage: Option<Usage>,
}

impl CertSpec {
    /// True for a CA (self-signed, keyCertSign).
    pub fn is_ca(&self) -> bool {
        self.issuer.is_none()
    }

    fn ca(name: &str, cn: &str) -> Self {
        Self {
            name: name.into(),
            issuer: None,
            common_name: cn.into(),
            organizations: Vec::new(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage: None,
        }
    }

    fn leaf(name: &str, issuer: &str, cn: &str, orgs: &[&str], usage: Usage) -> Self {
        Self {
            name: name.into(),
            issuer: Some(issuer.into()),
            common_name: cn.into(),
            organizations: orgs.iter().map(|o| o.to_string()).collect(),
            dns_names: Vec::new(),
            ips: Vec::new(),
            usage: Some(usage),
        }
    }
}

/// Names of the three CAs, in the order they are created.
pub const CA_NAMES: [&str; 3] = ["ca", "front-proxy-ca", "etcd/ca"];

/// Every leaf certificate name with its issuer (the static part of the table, used by `check`).
pub const LEAF_NAMES: [(&str, &str); 7] = [
    ("apiserver", "ca"),
    ("apiserver-kubelet-client", "ca"),
    ("front-proxy-client", "front-proxy-ca"),
    ("etcd/server", "etcd/ca"),
    ("etcd/peer", "etcd/ca"),
    ("etcd/healthcheck-client", "etcd/ca"),
    ("apiserver-etcd-client", "etcd/ca"),
];

/// All certificates of the cluster, CAs first (kubeadm's table).
pub fn certificates(spec: &ClusterSpec) -> Vec<CertSpec> {
    let node = spec.node_name.as_str();
    let mut apiserver = CertSpec::leaf("apiserver", "ca", "kube-apiserver", &[], Usage::Server);
    apiserver.dns_names = vec![
        node.to_string(),
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{}", spec.dns_domain),
    ];
    apiserver.ips = vec![spec.service_cidr.first_ip(), spec.advertise_address];
    let extra = spec
        .control_plane_endpoint
        .iter()
        .map(|e| e.host.as_str())
        .chain(spec.cert_sans.iter().map(String::as_str));
    for san in extra {
        match san.parse::<IpAddr>() {
            Ok(ip) => push_unique(&mut apiserver.ips, ip),
            Err(_) => push_unique(&mut apiserver.dns_names, san.to_string()),
        }
    }

    let etcd_node = |name: &str| {
        let mut c = CertSpec::leaf(name, "etcd/ca", node, &[], Usage::ServerAndClient);
        c.dns_names = vec![node.to_string(), "localhost".into()];
        c.ips = vec![spec.advertise_address];
        push_unique(&mut c.ips, IpAddr::V4([127, 0, 0, 1].into()));
        push_unique(&mut c.ips, IpAddr::V6(std::net::Ipv6Addr::LOCALHOST));
        c
    };

    vec![
        CertSpec::ca("ca", "kubernetes"),
        CertSpec::ca("front-proxy-ca", "front-proxy-ca"),
        CertSpec::ca("etcd/ca", "etcd-ca"),
        apiserver,
        CertSpec::leaf(
            "apiserver-kubelet-client",
            "ca",
            "kube-apiserver-kubelet-client",
            &["kubeadm:cluster-admins"],
            Usage::Client,
        ),
        CertSpec::leaf(
            "front-proxy-client",
            "front-proxy-ca",
            "front-proxy-client",
            &[],
            Usage::Client,
        ),
        etcd_node("etcd/server"),
        etcd_node("etcd/peer"),
        CertSpec::leaf(
            "etcd/healthcheck-client",
            "etcd/ca",
            "kube-etcd-healthcheck-client",
            &[],
            Usage::Client,
        ),
        CertSpec::leaf(
            "apiserver-etcd-client",
            "etcd/ca",
            "kube-apiserver-etcd-client",
            &[],
            Usage::Client,
        ),
    ]
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}

/// One kubeconfig: file name and the client certificate's subject (signed by `ca`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigSpec {
    /// File name inside the kubeconfig dir (`admin.conf`).
    pub file: String,
    /// Client certificate common name (also the kubeconfig user name).
    pub common_name: String,
    /// Client certificate organizations.
    pub organizations: Vec<String>,
}

/// File names of the kubeconfigs every control plane has (kubelet ones depend on `--nodes`).
pub const CONTROL_PLANE_KUBECONFIGS: [&str; 4] = [
    "admin.conf",
    "super-admin.conf",
    "controller-manager.conf",
    "scheduler.conf",
];

/// All kubeconfigs: admin, super-admin, controller-manager, scheduler, then one kubelet per node.
pub fn kubeconfigs(spec: &ClusterSpec) -> Vec<KubeconfigSpec> {
    let k = |file: &str, cn: &str, orgs: &[&str]| KubeconfigSpec {
        file: file.into(),
        common_name: cn.into(),
        organizations: orgs.iter().map(|o| o.to_string()).collect(),
    };
    let mut out = vec![
        k(
            "admin.conf",
            "kubernetes-admin",
            &["kubeadm:cluster-admins"],
        ),
        k(
            "super-admin.conf",
            "kubernetes-super-admin",
            &["system:masters"],
        ),
        k(
            "controller-manager.conf",
            "system:kube-controller-manager",
            &[],
        ),
        k("scheduler.conf", "system:kube-scheduler", &[]),
    ];
    for node in &spec.nodes {
        out.push(k(
            &format!("kubelet-{node}.conf"),
            &format!("system:node:{node}"),
            &["system:nodes"],
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_service_ip() {
        let c = Cidr::parse("10.96.0.0/12", "--service-cidr").unwrap();
        assert_eq!(c.first_ip().to_string(), "10.96.0.1");
        let c = Cidr::parse("10.100.7.9/16", "--service-cidr").unwrap();
        assert_eq!(c.first_ip().to_string(), "10.100.0.1");
        let c = Cidr::parse("fd00:10:96::/108", "--service-cidr").unwrap();
        assert_eq!(c.first_ip().to_string(), "fd00:10:96::1");
        assert!(Cidr::parse("10.96.0.0", "--service-cidr").is_err());
        assert!(Cidr::parse("10.96.0.0/33", "--service-cidr").is_err());
        let err = Cidr::parse("10.300.0.0/12", "--service-cidr").unwrap_err();
        assert!(err.to_string().contains("--service-cidr"), "{err}");
    }

    #[test]
    fn endpoints() {
        let e = Endpoint::parse("cp.example.com").unwrap();
        assert_eq!((e.host.as_str(), e.port), ("cp.example.com", 6443));
        let e = Endpoint::parse("10.0.0.5:443").unwrap();
        assert_eq!(e.url(), "https://10.0.0.5:443");
        let e = Endpoint::parse("[fd00::1]:6444").unwrap();
        assert_eq!(e.url(), "https://[fd00::1]:6444");
        let e = Endpoint::parse("fd00::1").unwrap();
        assert_eq!(e.port, 6443);
        assert!(Endpoint::parse("cp:0").is_err());
        assert!(Endpoint::parse("bad host:1").is_err());
    }

    #[test]
    fn static_names_match_the_table() {
        let spec = ClusterSpec::new("n", "10.0.0.1".parse().unwrap());
        let certs = certificates(&spec);
        let cas: Vec<&str> = certs
            .iter()
            .filter(|c| c.is_ca())
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(cas, CA_NAMES);
        let leaves: Vec<(&str, &str)> = certs
            .iter()
            .filter_map(|c| Some((c.name.as_str(), c.issuer.as_deref()?)))
            .collect();
        assert_eq!(leaves, LEAF_NAMES);
    }

    #[test]
    fn key_algorithms() {
        assert_eq!(
            "ECDSA-P256".parse::<KeyAlgorithm>().unwrap(),
            KeyAlgorithm::EcdsaP256
        );
        let err = "dsa".parse::<KeyAlgorithm>().unwrap_err();
        assert!(err.to_string().contains("--key-algorithm"));
    }

    #[test]
    fn apiserver_sans_follow_inputs() {
        let mut spec = ClusterSpec::new("cp1", "192.168.1.10".parse().unwrap());
        spec.control_plane_endpoint = Some(Endpoint::parse("lb.example:6443").unwrap());
        spec.cert_sans = vec!["10.0.0.1".into(), "api.example".into()];
        let certs = certificates(&spec);
        let api = certs.iter().find(|c| c.name == "apiserver").unwrap();
        assert_eq!(
            api.dns_names,
            [
                "cp1",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "lb.example",
                "api.example"
            ]
        );
        let ips: Vec<String> = api.ips.iter().map(|i| i.to_string()).collect();
        assert_eq!(ips, ["10.96.0.1", "192.168.1.10", "10.0.0.1"]);
        assert_eq!(spec.server_url(), "https://lb.example:6443");
    }
}
