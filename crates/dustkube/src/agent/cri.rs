//! The container runtime: a CRI v1 client (k8s-cri over tonic) on containerd's unix socket,
//! with the calls the agent makes and the labels that tie sandboxes and containers to pods.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Label carrying the pod's uid on sandboxes and containers (the kubelet's names).
pub const LABEL_UID: &str = "io.kubernetes.pod.uid";
/// Label carrying the pod's name.
pub const LABEL_NAME: &str = "io.kubernetes.pod.name";
/// Label carrying the pod's namespace.
pub const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// Label carrying the container's name.
pub const LABEL_CONTAINER: &str = "io.kubernetes.container.name";
/// Label marking what this agent created.
pub const LABEL_MANAGED: &str = "io.dustkube.managed";

/// How long one runtime call may take (image pulls and stops pass their own).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// A CRI client (cheap to clone: the channel is shared).
#[derive(Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
}

/// The path of a `unix://` endpoint (a bare path is accepted too).
pub fn socket_path(endpoint: &str) -> Result<String> {
    match endpoint.strip_prefix("unix://") {
        Some(p) => Ok(p.to_string()),
        None if endpoint.starts_with('/') => Ok(endpoint.to_string()),
        None => Err(anyhow!(
            "{endpoint}: only unix:// container runtime endpoints are supported"
        )),
    }
}

fn status_err(what: &str, e: tonic::Status) -> anyhow::Error {
    anyhow!("CRI {what}: {} ({:?})", e.message(), e.code())
}

impl Cri {
    /// A client for the runtime at `endpoint` (`unix:///run/containerd/containerd.sock`); the
    /// socket is dialled lazily and redialled after failures.
    pub fn connect(endpoint: &str) -> Result<Cri> {
        let path = socket_path(endpoint)?;
        let channel =
            Endpoint::try_from("http://[::]:50051")
                .context("CRI endpoint")?
                .timeout(CALL_TIMEOUT)
                .connect_with_connector_lazy(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?))
                    }
                }));
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
        })
    }

    /// Runtime name and version (`containerd`, `1.6.20`).
    pub async fn version(&self) -> Result<cri::VersionResponse> {
        let r = self
            .runtime
            .clone()
            .version(cri::VersionRequest {
                version: "v1".into(),
            })
            .await
            .map_err(|e| status_err("Version", e))?;
        Ok(r.into_inner())
    }

    /// The runtime's conditions (`RuntimeReady`, `NetworkReady`) as (type, ready, message).
    pub async fn conditions(&self) -> Result<Vec<(String, bool, String)>> {
        let r = self
            .runtime
            .clone()
            .status(cri::StatusRequest { verbose: false })
            .await
            .map_err(|e| status_err("Status", e))?;
        Ok(r.into_inner()
            .status
            .map(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.r#type, c.status, c.message))
            .collect())
    }

    /// The image's ID if the runtime has it.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>> {
        let r = self
            .images
            .clone()
            .image_status(cri::ImageStatusRequest {
                image: Some(image_spec(image)),
                verbose: false,
            })
            .await
            .map_err(|e| status_err("ImageStatus", e))?;
        Ok(r.into_inner().image.map(|i| i.id))
    }

    /// Pulls an image; returns its reference.
    pub async fn pull(&self, image: &str) -> Result<String> {
        let mut req = tonic::Request::new(cri::PullImageRequest {
            image: Some(image_spec(image)),
            auth: None,
            sandbox_config: None,
        });
        req.set_timeout(Duration::from_secs(600));
        let r = self
            .images
            .clone()
            .pull_image(req)
            .await
            .map_err(|e| status_err("PullImage", e))?;
        Ok(r.into_inner().image_ref)
    }

    /// Starts a sandbox; returns its id.
    pub async fn run_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String> {
        let mut req = tonic::Request::new(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        });
        req.set_timeout(Duration::from_secs(240));
        let r = self
            .runtime
            .clone()
            .run_pod_sandbox(req)
            .await
            .map_err(|e| status_err("RunPodSandbox", e))?;
        Ok(r.into_inner().pod_sandbox_id)
    }

    /// Stops a sandbox (its containers are killed, its network torn down).
    pub async fn stop_sandbox(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(|e| status_err("StopPodSandbox", e))?;
        Ok(())
    }

    /// Removes a stopped sandbox and its containers.
    pub async fn remove_sandbox(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .remove_pod_sandbox(cri::RemovePodSandboxRequest {
                pod_sandbox_id: id.into(),
            })
            .await
            .map_err(|e| status_err("RemovePodSandbox", e))?;
        Ok(())
    }

    /// A sandbox's status (state, IPs).
    pub async fn sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let r = self
            .runtime
            .clone()
            .pod_sandbox_status(cri::PodSandboxStatusRequest {
                pod_sandbox_id: id.into(),
                verbose: false,
            })
            .await
            .map_err(|e| status_err("PodSandboxStatus", e))?;
        r.into_inner()
            .status
            .ok_or_else(|| anyhow!("PodSandboxStatus: no status for {id}"))
    }

    /// Sandboxes carrying every label of `labels`.
    pub async fn sandboxes(&self, labels: HashMap<String, String>) -> Result<Vec<cri::PodSandbox>> {
        let r = self
            .runtime
            .clone()
            .list_pod_sandbox(cri::ListPodSandboxRequest {
                filter: Some(cri::PodSandboxFilter {
                    label_selector: labels,
                    ..Default::default()
                }),
            })
            .await
            .map_err(|e| status_err("ListPodSandbox", e))?;
        Ok(r.into_inner().items)
    }

    /// Containers carrying every label of `labels`.
    pub async fn containers(&self, labels: HashMap<String, String>) -> Result<Vec<cri::Container>> {
        let r = self
            .runtime
            .clone()
            .list_containers(cri::ListContainersRequest {
                filter: Some(cri::ContainerFilter {
                    label_selector: labels,
                    ..Default::default()
                }),
            })
            .await
            .map_err(|e| status_err("ListContainers", e))?;
        Ok(r.into_inner().containers)
    }

    /// Creates a container in a sandbox; returns its id.
    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox: cri::PodSandboxConfig,
    ) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: sandbox_id.into(),
                config: Some(config),
                sandbox_config: Some(sandbox),
            })
            .await
            .map_err(|e| status_err("CreateContainer", e))?;
        Ok(r.into_inner().container_id)
    }

    /// Starts a created container.
    pub async fn start_container(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .start_container(cri::StartContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(|e| status_err("StartContainer", e))?;
        Ok(())
    }

    /// Stops a container: SIGTERM (or its stop signal), SIGKILL after `grace` seconds.
    pub async fn stop_container(&self, id: &str, grace: i64) -> Result<()> {
        let mut req = tonic::Request::new(cri::StopContainerRequest {
            container_id: id.into(),
            timeout: grace,
        });
        req.set_timeout(Duration::from_secs(grace.max(0) as u64 + 30));
        self.runtime
            .clone()
            .stop_container(req)
            .await
            .map_err(|e| status_err("StopContainer", e))?;
        Ok(())
    }

    /// Removes a stopped container.
    pub async fn remove_container(&self, id: &str) -> Result<()> {
        self.runtime
            .clone()
            .remove_container(cri::RemoveContainerRequest {
                container_id: id.into(),
            })
            .await
            .map_err(|e| status_err("RemoveContainer", e))?;
        Ok(())
    }

    /// A container's status (state, times, exit code, log path).
    pub async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let r = self
            .runtime
            .clone()
            .container_status(cri::ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            })
            .await
            .map_err(|e| status_err("ContainerStatus", e))?;
        r.into_inner()
            .status
            .ok_or_else(|| anyhow!("ContainerStatus: no status for {id}"))
    }

    /// Runs a command in a container and waits (probes): (exit code, stdout, stderr).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>, Vec<u8>)> {
        let mut req = tonic::Request::new(cri::ExecSyncRequest {
            container_id: id.into(),
            cmd,
            timeout: timeout.as_secs().max(1) as i64,
        });
        req.set_timeout(timeout + Duration::from_secs(5));
        let r = self
            .runtime
            .clone()
            .exec_sync(req)
            .await
            .map_err(|e| status_err("ExecSync", e))?
            .into_inner();
        Ok((r.exit_code, r.stdout, r.stderr))
    }

    /// The streaming URL of an exec session.
    pub async fn exec_url(&self, req: cri::ExecRequest) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .exec(req)
            .await
            .map_err(|e| status_err("Exec", e))?;
        Ok(r.into_inner().url)
    }

    /// The streaming URL of an attach session.
    pub async fn attach_url(&self, req: cri::AttachRequest) -> Result<String> {
        let r = self
            .runtime
            .clone()
            .attach(req)
            .await
            .map_err(|e| status_err("Attach", e))?;
        Ok(r.into_inner().url)
    }
}

/// An image reference as CRI wants it.
pub fn image_spec(image: &str) -> cri::ImageSpec {
    cri::ImageSpec {
        image: image.into(),
        ..Default::default()
    }
}

/// An image reference with the registry and tag defaults filled in
/// (`busybox` → `docker.io/library/busybox:latest`), as the runtime names images.
pub fn normalize_image(image: &str) -> String {
    let (name, digest) = match image.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (image, None),
    };
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_registry {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    let last = full.rsplit('/').next().unwrap_or("");
    if digest.is_none() && !last.contains(':') {
        full.push_str(":latest");
    }
    match digest {
        Some(d) => format!("{full}@{d}"),
        None => full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_normalize() {
        assert_eq!(
            normalize_image("busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_image("busybox:stable"),
            "docker.io/library/busybox:stable"
        );
        assert_eq!(normalize_image("me/app:1"), "docker.io/me/app:1");
        assert_eq!(
            normalize_image("registry.k8s.io/pause:3.6"),
            "registry.k8s.io/pause:3.6"
        );
        assert_eq!(
            normalize_image("localhost:5000/x"),
            "localhost:5000/x:latest"
        );
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/containerd/containerd.sock").unwrap(),
            "/run/containerd/containerd.sock"
        );
        assert!(socket_path("tcp://1.2.3.4:1").is_err());
    }
}
