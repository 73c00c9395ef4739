//! libvirt XML for a lab: domains (direct kernel boot, overlay + NoCloud seed disks, two NICs,
//! logged serial console, duststack metadata), networks with DHCP reservations, and overlay volumes.

use super::model::Network;
use super::model::{DhcpHost, Lab, NetworkKind, Node, VirtType};

/// XML namespace of the `<metadata>` element duststack puts on every domain it creates.
pub const METADATA_NS: &str = "https://duststack.dev/xmlns/lab/1";

/// Escapes text for XML content and attribute values (both quote kinds included).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A tiny indenting XML writer; every attribute value and text is escaped.
struct Xml {
    out: String,
    open: Vec<String>,
}

impl Xml {
    fn new() -> Xml {
        Xml {
            out: String::new(),
            open: Vec::new(),
        }
    }

    fn start_tag(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.out.push_str(&"  ".repeat(self.open.len()));
        self.out.push('<');
        self.out.push_str(name);
        for (k, v) in attrs {
            self.out.push_str(&format!(" {k}=\"{}\"", escape(v)));
        }
    }

    /// `<name attrs>` and descend.
    fn open(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.start_tag(name, attrs);
        self.out.push_str(">\n");
        self.open.push(name.to_string());
    }

    /// `<name attrs/>`.
    fn empty(&mut self, name: &str, attrs: &[(&str, &str)]) {
        self.start_tag(name, attrs);
        self.out.push_str("/>\n");
    }

    /// `<name attrs>text</name>`.
    fn text(&mut self, name: &str, attrs: &[(&str, &str)], text: &str) {
        self.start_tag(name, attrs);
        self.out.push_str(&format!(">{}</{name}>\n", escape(text)));
    }

    fn close(&mut self) {
        if let Some(name) = self.open.pop() {
            self.out.push_str(&"  ".repeat(self.open.len()));
            self.out.push_str(&format!("</{name}>\n"));
        }
    }

    fn finish(mut self) -> String {
        while !self.open.is_empty() {
            self.close();
        }
        self.out
    }
}

/// The kernel command line for a node: root on the overlay, a quiet serial console (every
/// console byte is slow under TCG), NoCloud,
/// and a unique machine id (so clones of one image never share a DHCP DUID).
pub fn kernel_cmdline(node: &Node) -> String {
    format!(
        "root=/dev/vda rw console=ttyS0 quiet ds=nocloud systemd.machine_id={}",
        node.machine_id
    )
}

/// Domain XML for one node of the lab.
pub fn domain_xml(lab: &Lab, node: &Node) -> String {
    let mut x = Xml::new();
    x.open("domain", &[("type", lab.virt_type.as_str())]);
    x.text("name", &[], &lab.domain_name(node));
    x.open("metadata", &[]);
    x.empty(
        "duststack:lab",
        &[
            ("xmlns:duststack", METADATA_NS),
            ("name", &lab.name),
            ("node", &node.name),
            ("role", node.role.as_str()),
        ],
    );
    x.close();
    x.text("memory", &[("unit", "MiB")], &node.memory_mib.to_string());
    x.text("vcpu", &[], &node.vcpu.to_string());
    x.open("os", &[]);
    x.text("type", &[("arch", "x86_64"), ("machine", "pc")], "hvm");
    if lab.kernel.is_empty() {
        // A cloud image boots through its own bootloader; cloud-init reads the seed.
        x.empty("boot", &[("dev", "hd")]);
    } else {
        x.text("kernel", &[], &lab.kernel);
        x.text("initrd", &[], &lab.initrd);
        x.text("cmdline", &[], &kernel_cmdline(node));
    }
    x.close();
    x.open("features", &[]);
    x.empty("acpi", &[]);
    x.close();
    if lab.virt_type == VirtType::Kvm {
        x.empty("cpu", &[("mode", "host-passthrough")]);
    }
    x.text("on_poweroff", &[], "destroy");
    x.text("on_reboot", &[], "restart");
    x.text("on_crash", &[], "destroy");
    x.open("devices", &[]);
    // vda: the system disk, a copy-on-write overlay on the base image.
    x.open("disk", &[("type", "file"), ("device", "disk")]);
    x.empty("driver", &[("name", "qemu"), ("type", &node.disk_format)]);
    x.empty("source", &[("file", &lab.overlay_path(node))]);
    x.empty("target", &[("dev", "vda"), ("bus", "virtio")]);
    x.close();
    // vdb: the NoCloud seed (an ISO 9660 image labelled cidata), read-only.
    x.open("disk", &[("type", "file"), ("device", "disk")]);
    x.empty("driver", &[("name", "qemu"), ("type", "raw")]);
    x.empty("source", &[("file", &lab.seed_path(node))]);
    x.empty("target", &[("dev", "vdb"), ("bus", "virtio")]);
    x.empty("readonly", &[]);
    x.close();
    for nic in &node.nics {
        x.open("interface", &[("type", "network")]);
        x.empty("source", &[("network", &nic.network)]);
        x.empty("mac", &[("address", &nic.mac)]);
        x.empty("model", &[("type", "virtio")]);
        x.close();
    }
    // Serial console: a pty (for `virsh console`) whose output virtlogd also appends to a file.
    let log = lab.console_log_path(node);
    x.open("serial", &[("type", "pty")]);
    x.empty("log", &[("file", &log), ("append", "on")]);
    x.empty("target", &[("port", "0")]);
    x.close();
    x.open("console", &[("type", "pty")]);
    x.empty("target", &[("type", "serial"), ("port", "0")]);
    x.close();
    x.open("rng", &[("model", "virtio")]);
    x.text("backend", &[("model", "random")], "/dev/urandom");
    x.close();
    x.close();
    x.finish()
}

/// Network XML for one lab network: NAT (forward mode nat) or isolated (no forward),
/// a DHCP range, one reservation per node so every address is known in advance, and
/// duststack `<metadata>` naming the lab (so `lab down` removes only networks it defined).
pub fn network_xml(lab: &Lab, net: &Network) -> String {
    let mut x = Xml::new();
    x.open("network", &[]);
    x.text("name", &[], &net.name);
    x.open("metadata", &[]);
    let kind = match net.kind {
        NetworkKind::Nat => "nat",
        NetworkKind::Isolated => "isolated",
    };
    x.empty(
        "duststack:lab",
        &[
            ("xmlns:duststack", METADATA_NS),
            ("name", &lab.name),
            ("kind", kind),
        ],
    );
    x.close();
    if net.kind == NetworkKind::Nat {
        x.empty("forward", &[("mode", "nat")]);
    }
    let gateway = net.gateway().to_string();
    let netmask = net.netmask().to_string();
    x.open("ip", &[("address", &gateway), ("netmask", &netmask)]);
    x.open("dhcp", &[]);
    let (start, end) = (net.dhcp_start.to_string(), net.dhcp_end.to_string());
    x.empty("range", &[("start", &start), ("end", &end)]);
    for host in &net.hosts {
        write_dhcp_host(&mut x, host);
    }
    x.finish()
}

fn write_dhcp_host(x: &mut Xml, host: &DhcpHost) {
    let ip = host.ip.to_string();
    x.empty(
        "host",
        &[("mac", &host.mac), ("name", &host.name), ("ip", &ip)],
    );
}

/// One `<host>` element, for `virsh net-update <net> add ip-dhcp-host` on a network that
/// already exists (libvirt's `default`).
pub fn dhcp_host_xml(host: &DhcpHost) -> String {
    let mut x = Xml::new();
    write_dhcp_host(&mut x, host);
    x.finish().trim_end().to_string()
}

/// Storage volume XML for a node's system disk: an overlay of `capacity` GiB backed by the base image.
pub fn volume_xml(lab: &Lab, node: &Node) -> String {
    let mut x = Xml::new();
    x.open("volume", &[("type", "file")]);
    x.text(
        "name",
        &[],
        &format!("{}.{}", lab.domain_name(node), node.disk_format),
    );
    x.text("capacity", &[("unit", "GiB")], &node.disk_gib.to_string());
    x.open("target", &[]);
    x.text("path", &[], &lab.overlay_path(node));
    x.empty("format", &[("type", &node.disk_format)]);
    x.close();
    x.open("backingStore", &[]);
    x.text("path", &[], &lab.base_image);
    x.empty("format", &[("type", &lab.base_image_format)]);
    x.close();
    x.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::model::tests::sample_lab;

    fn child<'a>(n: roxmltree::Node<'a, 'a>, name: &str) -> roxmltree::Node<'a, 'a> {
        n.children()
            .find(|c| c.has_tag_name(name))
            .unwrap_or_else(|| panic!("no <{name}> in <{}>", n.tag_name().name()))
    }

    fn text<'a>(n: roxmltree::Node<'a, 'a>, path: &[&str]) -> String {
        let mut cur = n;
        for p in path {
            cur = child(cur, p);
        }
        cur.text().unwrap_or("").to_string()
    }

    #[test]
    fn lab_domain_xml_parses_back() {
        let lab = sample_lab();
        let node = &lab.nodes[1];
        let xml = domain_xml(&lab, node);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let d = doc.root_element();
        assert_eq!(d.tag_name().name(), "domain");
        assert_eq!(d.attribute("type"), Some("kvm"));
        assert_eq!(text(d, &["name"]), "classroom-k8s-node-1");
        assert_eq!(text(d, &["memory"]), "4096");
        assert_eq!(child(d, "memory").attribute("unit"), Some("MiB"));
        assert_eq!(text(d, &["vcpu"]), "2");
        assert_eq!(
            text(d, &["os", "kernel"]),
            "/var/lib/duststack/images/debian-12.vmlinuz"
        );
        assert_eq!(
            text(d, &["os", "initrd"]),
            "/var/lib/duststack/images/debian-12.initrd"
        );
        let cmdline = text(d, &["os", "cmdline"]);
        assert!(
            cmdline.starts_with("root=/dev/vda rw console=ttyS0 quiet ds=nocloud"),
            "{cmdline}"
        );
        assert!(cmdline.contains(&format!("systemd.machine_id={}", node.machine_id)));

        let meta = child(child(d, "metadata"), "lab");
        assert_eq!(meta.tag_name().namespace(), Some(METADATA_NS));
        assert_eq!(meta.attribute("name"), Some("classroom"));
        assert_eq!(meta.attribute("node"), Some("k8s-node-1"));
        assert_eq!(meta.attribute("role"), Some("worker"));

        let devices = child(d, "devices");
        let disks: Vec<_> = devices
            .children()
            .filter(|c| c.has_tag_name("disk"))
            .collect();
        assert_eq!(disks.len(), 2);
        assert_eq!(child(disks[0], "driver").attribute("type"), Some("qcow2"));
        assert_eq!(
            child(disks[0], "source").attribute("file"),
            Some("/var/lib/libvirt/images/classroom-k8s-node-1.qcow2")
        );
        assert_eq!(child(disks[0], "target").attribute("dev"), Some("vda"));
        assert_eq!(child(disks[0], "target").attribute("bus"), Some("virtio"));
        assert_eq!(
            child(disks[1], "source").attribute("file"),
            Some("/var/lib/libvirt/images/classroom-k8s-node-1-seed.img")
        );
        assert!(disks[1].children().any(|c| c.has_tag_name("readonly")));

        let nics: Vec<_> = devices
            .children()
            .filter(|c| c.has_tag_name("interface"))
            .collect();
        assert_eq!(nics.len(), 2);
        for (el, nic) in nics.iter().zip(&node.nics) {
            assert_eq!(
                child(*el, "source").attribute("network"),
                Some(nic.network.as_str())
            );
            assert_eq!(
                child(*el, "mac").attribute("address"),
                Some(nic.mac.as_str())
            );
            assert_eq!(child(*el, "model").attribute("type"), Some("virtio"));
        }
        let serial = child(devices, "serial");
        assert_eq!(
            child(serial, "log").attribute("file"),
            Some("/var/log/libvirt/qemu/classroom-k8s-node-1-console.log")
        );
    }

    #[test]
    fn lab_domain_xml_escapes_values_and_follows_virt_type() {
        let mut lab = sample_lab();
        lab.virt_type = VirtType::Qemu;
        lab.kernel = "/img/a&b<'\">.vmlinuz".into();
        lab.name = "x\"><evil/>".into();
        let xml = domain_xml(&lab, &lab.nodes[0]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let d = doc.root_element();
        assert_eq!(d.attribute("type"), Some("qemu"));
        assert!(!d.children().any(|c| c.has_tag_name("cpu")));
        assert!(!d.descendants().any(|c| c.has_tag_name("evil")));
        assert_eq!(text(d, &["os", "kernel"]), "/img/a&b<'\">.vmlinuz");
        assert_eq!(
            child(child(d, "metadata"), "lab").attribute("name"),
            Some("x\"><evil/>")
        );
    }

    #[test]
    fn lab_network_xml_has_reservations() {
        let lab = sample_lab();
        for net in &lab.networks {
            let xml = network_xml(&lab, net);
            let doc = roxmltree::Document::parse(&xml).unwrap();
            let n = doc.root_element();
            assert_eq!(text(n, &["name"]), net.name);
            let meta = child(child(n, "metadata"), "lab");
            assert_eq!(meta.tag_name().namespace(), Some(METADATA_NS));
            assert_eq!(meta.attribute("name"), Some("classroom"));
            let forward = n.children().find(|c| c.has_tag_name("forward"));
            match net.kind {
                NetworkKind::Nat => assert_eq!(forward.unwrap().attribute("mode"), Some("nat")),
                NetworkKind::Isolated => assert!(forward.is_none()),
            }
            let ip = child(n, "ip");
            let want_gw = if net.kind == NetworkKind::Nat {
                "192.168.122.1"
            } else {
                "192.168.90.1"
            };
            assert_eq!(ip.attribute("address"), Some(want_gw));
            assert_eq!(ip.attribute("netmask"), Some("255.255.255.0"));
            let dhcp = child(ip, "dhcp");
            let range = child(dhcp, "range");
            assert!(range.attribute("start").unwrap().ends_with(".128"));
            assert!(range.attribute("end").unwrap().ends_with(".254"));
            let hosts: Vec<_> = dhcp.children().filter(|c| c.has_tag_name("host")).collect();
            assert_eq!(hosts.len(), lab.nodes.len());
            for (el, node) in hosts.iter().zip(&lab.nodes) {
                let nic = node.nics.iter().find(|c| c.network == net.name).unwrap();
                assert_eq!(el.attribute("mac"), Some(nic.mac.as_str()));
                assert_eq!(el.attribute("ip"), Some(nic.ip.to_string().as_str()));
                assert_eq!(el.attribute("name"), Some(node.hostname.as_str()));
            }
        }
        let one = dhcp_host_xml(&lab.networks[0].hosts[0]);
        let doc = roxmltree::Document::parse(&one).unwrap();
        assert_eq!(doc.root_element().attribute("ip"), Some("192.168.122.10"));
    }

    #[test]
    fn lab_volume_xml_is_an_overlay() {
        let lab = sample_lab();
        let xml = volume_xml(&lab, &lab.nodes[0]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let v = doc.root_element();
        assert_eq!(text(v, &["name"]), "classroom-k8s-master-1.qcow2");
        assert_eq!(text(v, &["capacity"]), "20");
        assert_eq!(child(v, "capacity").attribute("unit"), Some("GiB"));
        assert_eq!(
            child(child(v, "target"), "format").attribute("type"),
            Some("qcow2")
        );
        assert_eq!(
            text(v, &["backingStore", "path"]),
            "/var/lib/duststack/images/debian-12.qcow2"
        );
        assert_eq!(
            child(child(v, "backingStore"), "format").attribute("type"),
            Some("qcow2")
        );
    }

    /// Checks the XML against libvirt's own RelaxNG schemas with `virt-xml-validate`
    /// (libvirt-clients + libxml2-utils, installed by scripts/install-deps.sh); fails without it.
    #[test]
    fn lab_xml_validates_against_libvirt_schemas() {
        let probe = std::process::Command::new("virt-xml-validate")
            .arg("--help")
            .output();
        assert!(
            probe.is_ok(),
            "virt-xml-validate is missing: run scripts/install-deps.sh (libvirt-clients, libxml2-utils)"
        );
        let lab = sample_lab();
        let dir = tempfile::tempdir().unwrap();
        let mut files = vec![("domain", domain_xml(&lab, &lab.nodes[0]))];
        files.push(("storagevol", volume_xml(&lab, &lab.nodes[0])));
        for net in &lab.networks {
            files.push(("network", network_xml(&lab, net)));
        }
        for (i, (schema, xml)) in files.iter().enumerate() {
            let path = dir.path().join(format!("{i}.xml"));
            std::fs::write(&path, xml).unwrap();
            let out = std::process::Command::new("virt-xml-validate")
                .arg(&path)
                .arg(schema)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{schema} does not validate: {}{}\n{xml}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn lab_cloud_image_boots_from_disk() {
        let mut lab = sample_lab();
        lab.kernel = String::new();
        lab.initrd = String::new();
        let xml = domain_xml(&lab, &lab.nodes[0]);
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let os = child(doc.root_element(), "os");
        assert_eq!(child(os, "boot").attribute("dev"), Some("hd"));
        assert!(os
            .children()
            .all(|c| !c.has_tag_name("kernel") && !c.has_tag_name("cmdline")));
    }
}
