//! Client-certificate rotation: once 80% of the node certificate's lifetime has passed, the
//! agent asks for a new one (a CSR signed in with the current certificate, auto-approved for
//! `system:node:<name>` renewing itself) and rewrites its kubeconfig; it then restarts to use
//! it — the unit or the supervising `join` starts it again, and running pods are adopted.

use std::path::PathBuf;
use std::time::Duration;

use crate::cmd::tls_bootstrap::{renew_node_kubeconfig, renewal_due};

/// How often the certificate's age is checked.
const CHECK_EVERY: Duration = Duration::from_secs(600);

/// Returns once the kubeconfig at `kubeconfig` holds a renewed certificate.
pub async fn until_renewed(kubeconfig: PathBuf, node_name: String) {
    loop {
        match renewal_due(&kubeconfig) {
            Ok(true) => match renew_node_kubeconfig(&kubeconfig, &node_name).await {
                Ok(()) => {
                    tracing::info!(path = %kubeconfig.display(), "client certificate renewed");
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "certificate renewal failed; retrying")
                }
            },
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the client certificate")
            }
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}
