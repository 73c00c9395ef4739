//! `dustkube reset` removes pod sandboxes through CRI: a private containerd (temp root, state
//! and socket, in a network namespace this test creates) with a busybox "pause" image, two
//! host-network sandboxes made through CRI, then reset lists none left. Needs root,
//! containerd, runc, ctr and busybox.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListPodSandboxRequest, NamespaceMode,
    NamespaceOption, PodSandboxConfig, PodSandboxMetadata, RunPodSandboxRequest,
};

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// containerd, stopped (by pid) and its mounts undone when dropped.
struct Containerd {
    child: Child,
    state: PathBuf,
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Sandbox shm and rootfs mounts left by a failed test.
        let _ = Command::new("umount")
            .arg("-R")
            .arg(&self.state)
            .stderr(Stdio::null())
            .status();
    }
}

fn sh(script: &str) {
    let out = Command::new("sh").args(["-c", script]).output().unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A docker-archive tarball of a "pause" image: busybox sleeping.
fn pause_image(dir: &Path) -> PathBuf {
    let img = dir.join("img");
    fs::create_dir_all(img.join("rootfs/bin")).unwrap();
    fs::copy("/usr/bin/busybox", img.join("rootfs/bin/busybox")).unwrap();
    sh(&format!(
        "cd {0} && tar -C rootfs -cf layer.tar bin && d=$(sha256sum layer.tar | cut -d' ' -f1) && \
         printf '{{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{{\"Entrypoint\":[\"/bin/busybox\",\"sleep\",\"1000000\"]}},\"rootfs\":{{\"type\":\"layers\",\"diff_ids\":[\"sha256:%s\"]}}}}' $d > config.json && \
         echo '[{{\"Config\":\"config.json\",\"RepoTags\":[\"registry.k8s.io/pause:3.6\"],\"Layers\":[\"layer.tar\"]}}]' > manifest.json && \
         tar -cf ../pause.tar manifest.json config.json layer.tar",
        img.display()
    ));
    dir.join("pause.tar")
}

fn start_containerd(dir: &Path, ns: &Netns) -> (Containerd, PathBuf) {
    let sock = dir.join("c.sock");
    let d = |f: &str| dir.join(f).display().to_string();
    let config = format!(
        "version = 2\nroot = \"{}\"\nstate = \"{}\"\n[grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n\
[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    restrict_oom_score_adj = true\n    sandbox_image = \"registry.k8s.io/pause:3.6\"\n    stream_server_address = \"127.0.0.1\"\n    stream_server_port = \"0\"\n\
    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"{}\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"{}\"\n",
        d("root"),
        d("state"),
        sock.display(),
        d("c.ttrpc.sock"),
        d("cni"),
        d("opt"),
    );
    fs::create_dir_all(dir.join("cni")).unwrap();
    fs::write(dir.join("config.toml"), config).unwrap();
    let log = fs::File::create(dir.join("containerd.log")).unwrap();
    // nsenter switches only the network namespace (`ip netns exec` also remounts /sys, which
    // hides the cgroup mounts runc needs).
    let child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", ns.0))
        .args(["containerd", "--config"])
        .arg(dir.join("config.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let c = Containerd {
        child,
        state: dir.join("state"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !sock.exists() {
        assert!(
            Instant::now() < deadline,
            "containerd did not start:\n{}",
            fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    (c, sock)
}

async fn cri(sock: &Path) -> RuntimeServiceClient<tonic::transport::Channel> {
    let path = sock.to_path_buf();
    let channel = tonic::transport::Endpoint::try_from("http://[::]:50051")
        .unwrap()
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap();
    RuntimeServiceClient::new(channel)
}

fn sandbox(name: &str, dir: &Path) -> RunPodSandboxRequest {
    RunPodSandboxRequest {
        config: Some(PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: name.into(),
                uid: format!("uid-{name}"),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: dir.join("logs").join(name).display().to_string(),
            linux: Some(LinuxPodSandboxConfig {
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Node as i32,
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        runtime_handler: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn reset_stops_and_removes_every_pod_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ns = Netns(format!("dk-cri-{}", std::process::id()));
    sh(&format!(
        "ip netns add {0} && ip netns exec {0} ip link set lo up",
        ns.0
    ));
    let (_containerd, sock) = start_containerd(dir, &ns);
    let tar = pause_image(dir);
    sh(&format!(
        "ctr -a {} -n k8s.io images import {}",
        sock.display(),
        tar.display()
    ));

    let mut client = cri(&sock).await;
    for name in ["web-1", "web-2"] {
        client
            .run_pod_sandbox(sandbox(name, dir))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "RunPodSandbox {name}: {e}\n{}",
                    fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
                )
            });
    }
    let listed = client
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.items.len(), 2);

    let d = |f: &str| dir.join(f).display().to_string();
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            env!("CARGO_BIN_EXE_dustkube"),
            "reset",
            "--force",
        ])
        .args(["--cri-socket", &sock.display().to_string()])
        .args(["--kubeconfig-dir", &d("conf"), "--root-dir", &d("agent")])
        .args(["--data-dir", &d("etcd"), "--run-dir", &d("run")])
        .args(["--cni-conf-dir", &d("cni")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    eprintln!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success());
    for name in ["web-1", "web-2"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("[reset] removed pod sandbox default/{name} ("))),
            "{text}"
        );
    }
    let listed = client
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner();
    assert!(listed.items.is_empty(), "{:?}", listed.items);

    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &ns.0,
            env!("CARGO_BIN_EXE_dustkube"),
            "reset",
            "--force",
        ])
        .args(["--cri-socket", &sock.display().to_string()])
        .args(["--kubeconfig-dir", &d("conf"), "--root-dir", &d("agent")])
        .args(["--data-dir", &d("etcd"), "--run-dir", &d("run")])
        .args(["--cni-conf-dir", &d("cni")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("nothing to remove"));
}
