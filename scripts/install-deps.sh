#!/usr/bin/env bash
# Installs what the tests and the local lab need on a fresh Debian 12 machine (run as root).
# Idempotent: skips what is already there. Fails loudly when something cannot be installed.
set -euo pipefail

need_apt=()
command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ssh-keygen >/dev/null 2>&1 || need_apt+=(openssh-client)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
command -v sudo >/dev/null 2>&1 || need_apt+=(sudo)
# The lab tests validate generated libvirt XML against libvirt's own schemas.
command -v virt-xml-validate >/dev/null 2>&1 || need_apt+=(libvirt-clients)
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)
# The virt crate links libvirt.so (found through pkg-config); its tests use the built-in test:///default driver.
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
pkg-config --exists libvirt 2>/dev/null || need_apt+=(libvirt-dev)
# The PKI tests start a real etcd with the generated certificates.
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
# kubectl parses the generated kubeconfigs in the PKI tests (Debian ships it as kubernetes-client).
command -v kubectl >/dev/null 2>&1 || need_apt+=(kubernetes-client)
# The Hyper-V seed ISO is checked with isoinfo (volume id, Rock Ridge/Joliet names) and blkid -p.
command -v isoinfo >/dev/null 2>&1 || need_apt+=(genisoimage)
command -v blkid >/dev/null 2>&1 || [ -x /sbin/blkid ] || need_apt+=(util-linux)
# `duststack image build` and its test: debootstrap, mke2fs -d / debugfs, qemu-img, a TCG boot,
# and a vfat CIDATA seed made with mkfs.vfat + mcopy.
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || need_apt+=(debootstrap)
command -v mke2fs >/dev/null 2>&1 || [ -x /usr/sbin/mke2fs ] || need_apt+=(e2fsprogs)
command -v qemu-img >/dev/null 2>&1 || need_apt+=(qemu-utils)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_apt+=(qemu-system-x86)
command -v mcopy >/dev/null 2>&1 || need_apt+=(mtools)
command -v mkfs.vfat >/dev/null 2>&1 || [ -x /usr/sbin/mkfs.vfat ] || need_apt+=(dosfstools)
# `duststack lab` VMs: libvirtd + virtlogd (started by the tests inside their own network
# namespace), dnsmasq for libvirt's networks, the system ssh client for the VM checks.
[ -x /usr/sbin/libvirtd ] && [ -f /etc/libvirt/qemu.conf ] || need_apt+=(libvirt-daemon-system libvirt-daemon-driver-qemu)
[ -x /usr/sbin/dnsmasq ] || need_apt+=(dnsmasq-base)
# etcd-client (dustkube) compiles etcd's .proto files at build time with protoc.
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# dustkube's node agent and its test: containerd (CRI) + runc, the CNI plugins (bridge,
# host-local, portmap, loopback in /usr/lib/cni), a static busybox for the offline images, curl
# and nsenter. (Debian 12 has no cri-tools; the test uses ctr.)
command -v containerd >/dev/null 2>&1 || need_apt+=(containerd)
command -v runc >/dev/null 2>&1 || [ -x /usr/sbin/runc ] || need_apt+=(runc)
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || need_apt+=(containernetworking-plugins)
dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
# The agent's Service data path (and its test) loads nftables rules with nft.
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need_apt+=(nftables)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to apt-get install ${need_apt[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi
mkdir -p /run/sshd

# ansible-core is the differential oracle (inventory --list, playbook recaps) and the benchmark peer.
if ! ansible-inventory --version 2>/dev/null | grep -q 'core 2.19' || ! python3 -c 'import ansible_collections.ansible.posix' 2>/dev/null; then
  # The 'ansible' package pins ansible-core 2.19 and carries ansible.posix (sysctl, mount, authorized_key).
  python3 -m pip install -q 'ansible==12.3.0'
fi
# (no `| head`: ansible-inventory dies of a broken pipe when the reader stops early)
version=$(ansible-inventory --version)
echo "${version%%$'\n'*}"
