//! The node agent (kubelet and kube-proxy's jobs). [`proxy`]: the Service data path in
//! nftables.

pub mod proxy;
