//! The cluster PKI in kubeadm's layout: CAs, leaf certificates, service-account keys and kubeconfigs.
//!
//! How the parts connect:
//! - [`spec`] is the table: from a [`ClusterSpec`] it computes every [`CertSpec`] (CN, O, SANs,
//!   usage, issuer) and [`KubeconfigSpec`]. Pure, no I/O.
//! - [`issue`] turns a spec into PEM (rcgen): key generation, self-signed CAs, leaves signed by a CA.
//! - [`info`] reads a certificate back (x509-parser) into a [`CertInfo`]: subject, SANs, usages,
//!   validity, and whether a given CA signed it.
//! - [`store`] is the directory: `ca.crt`/`ca.key`, `etcd/server.crt`, `sa.key`/`sa.pub`; atomic
//!   writes, keys 0600, certs 0644.
//! - [`csr`] makes, reads and signs certificate signing requests (node TLS bootstrap).
//! - [`kubeconfig`] renders and parses the kubeconfig files with embedded certificates.
//! - [`init`] plans and applies: keeps what is valid, re-issues what the inputs changed, creates
//!   what is missing; [`renew`] re-issues leaves keeping their subject and SANs; [`check`] builds
//!   the expiration table; [`hash`] computes the CA pin `sha256:<hex>`.
//!
//! Nothing here parses flags or prints; the CLI (`duststack pki`) and `dustkube init` call it.

pub mod check;
pub mod csr;
pub mod hash;
pub mod info;
pub mod init;
pub mod issue;
pub mod kubeconfig;
pub mod renew;
pub mod spec;
pub mod store;

pub use check::{check, CheckReport, CheckRow};
pub use hash::ca_cert_hash;
pub use info::CertInfo;
pub use init::{init, Action, InitReport, InitRow};
pub use renew::{renew, RenewTarget};
pub use spec::{certificates, kubeconfigs, CertSpec, ClusterSpec, KeyAlgorithm, KubeconfigSpec};
pub use store::Store;

use std::path::PathBuf;

/// Everything that can go wrong in the PKI library.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A user input is invalid; `flag` names the option (e.g. `--service-cidr`).
    #[error("{flag}: {message}")]
    Input {
        /// The option that carried the bad value.
        flag: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file exists but cannot be parsed (bad PEM, bad certificate, bad kubeconfig).
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Generating a key or signing a certificate failed.
    #[error("{name}: {message}")]
    Issue {
        /// The certificate or key being made.
        name: String,
        /// The cause.
        message: String,
    },
    /// A certificate must be signed but its CA's key is not on disk (externally managed CA).
    #[error(
        "{name} needs to be issued ({reason}) but {ca}.key is missing (externally managed CA)"
    )]
    MissingCaKey {
        /// The certificate that needs signing.
        name: String,
        /// Why it needs issuing.
        reason: String,
        /// The CA whose key is missing.
        ca: String,
    },
    /// `renew` was given a name that is not a leaf certificate or kubeconfig.
    #[error("unknown certificate '{0}' (expected one of: {1})")]
    UnknownName(String, String),
}
