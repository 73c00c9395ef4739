//! The agent's HTTPS endpoint on `--port` (10250), which the API server proxies `pods/log`,
//! `pods/exec` and `pods/attach` to: `/containerLogs/<ns>/<pod>/<container>` reads the CRI log
//! file (tail, follow, previous, timestamps); `/exec/...` and `/attach/...` ask the runtime for
//! a streaming URL and relay the upgraded connection to it unchanged. The serving certificate
//! is the agent's own (a self-signed CA in `<root-dir>/pki`); callers must present a client
//! certificate from the cluster CA that belongs to the API server or `system:masters`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Extension, Router};
use k8s_cri::v1 as cri;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::cri::{LABEL_CONTAINER, LABEL_NAME, LABEL_NAMESPACE};
use super::{logs, Agent};
use crate::api::proxy::{query_pairs, relay_upgrade};
use crate::api::Caller;

/// Groups and users that may use the endpoint.
const ALLOWED_GROUPS: &[&str] = &["system:masters", "kubeadm:cluster-admins"];
const ALLOWED_USERS: &[&str] = &["kube-apiserver-kubelet-client"];

/// Makes (once) the agent's CA and serving certificate; returns (cert, key) paths.
fn serving_cert(agent: &Agent) -> Result<(std::path::PathBuf, std::path::PathBuf)> {
    use duststack::pki::issue::{generate_key, issue, parse_key};
    use duststack::pki::spec::Usage;
    use duststack::pki::{CertSpec, KeyAlgorithm};
    let dir = agent.path("pki");
    std::fs::create_dir_all(&dir)?;
    let (crt, key) = (dir.join("agent.crt"), dir.join("agent.key"));
    let marker = dir.join("agent.san");
    let san = format!("{} {}", agent.node_name, agent.node_ip);
    if crt.exists()
        && key.exists()
        && std::fs::read_to_string(&marker).ok().as_deref() == Some(san.as_str())
    {
        return Ok((crt, key));
    }
    let now = time::OffsetDateTime::now_utc();
    let ca_key = generate_key(KeyAlgorithm::EcdsaP256).map_err(|e| anyhow!("{e}"))?;
    let ca_spec = CertSpec {
        name: "agent-ca".into(),
        issuer: None,
        common_name: format!("{}-ca", agent.node_name),
        organizations: Vec::new(),
        dns_names: Vec::new(),
        ips: Vec::new(),
        usage: None,
    };
    let ca_pem = issue(&ca_spec, &ca_key, None, now).map_err(|e| anyhow!("{e}"))?;
    let ca_key = parse_key(&ca_key.serialize_pem()).map_err(|e| anyhow!("{e}"))?;
    let leaf_key = generate_key(KeyAlgorithm::EcdsaP256).map_err(|e| anyhow!("{e}"))?;
    let leaf = CertSpec {
        name: "agent".into(),
        issuer: Some("agent-ca".into()),
        common_name: agent.node_name.clone(),
        organizations: Vec::new(),
        dns_names: vec![agent.node_name.clone()],
        ips: vec![agent.node_ip],
        usage: Some(Usage::Server),
    };
    let pem = issue(&leaf, &leaf_key, Some((&ca_pem, &ca_key)), now).map_err(|e| anyhow!("{e}"))?;
    std::fs::write(dir.join("agent-ca.crt"), &ca_pem)?;
    std::fs::write(&crt, format!("{pem}{ca_pem}"))?;
    std::fs::write(&key, leaf_key.serialize_pem())?;
    std::fs::write(&marker, san)?;
    Ok((crt, key))
}

/// The cluster CA from the kubeconfig, written where the TLS config reads it.
fn client_ca(agent: &Agent) -> Result<std::path::PathBuf> {
    let text = std::fs::read_to_string(&agent.args.kubeconfig)?;
    let kc = duststack::pki::kubeconfig::Kubeconfig::parse(&text, &agent.args.kubeconfig)
        .map_err(|e| anyhow!("{e}"))?;
    let path = agent.path("pki/client-ca.crt");
    std::fs::write(&path, kc.ca_pem)?;
    Ok(path)
}

/// Binds the port and serves in the background.
pub async fn start(agent: Arc<Agent>) -> Result<tokio::task::JoinHandle<()>> {
    let (crt, key) = serving_cert(&agent).context("agent serving certificate")?;
    let ca = client_ca(&agent).context("cluster CA")?;
    let tls = crate::server::tls_config(&crt, &key, &ca)?;
    let addr = SocketAddr::from(([0, 0, 0, 0], agent.args.port));
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    tracing::info!(%addr, "agent endpoint serving");
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/containerLogs/{ns}/{pod}/{container}", get(container_logs))
        .route("/exec/{ns}/{pod}/{container}", any(exec))
        .route("/attach/{ns}/{pod}/{container}", any(attach))
        .with_state(agent);
    Ok(tokio::spawn(async move {
        let r = crate::server::serve(
            listener,
            TlsAcceptor::from(Arc::new(tls)),
            app,
            std::future::pending(),
        )
        .await;
        if let Err(e) = r {
            tracing::error!(error = %format!("{e:#}"), "agent endpoint stopped");
        }
    }))
}

fn deny(caller: Option<Extension<Caller>>) -> Option<Response> {
    let user = crate::api::caller_of(caller);
    match user {
        None => Some((StatusCode::UNAUTHORIZED, "Unauthorized\n").into_response()),
        Some(u)
            if ALLOWED_USERS.contains(&u.name.as_str())
                || u.groups
                    .iter()
                    .any(|g| ALLOWED_GROUPS.contains(&g.as_str())) =>
        {
            None
        }
        Some(u) => Some(
            (
                StatusCode::FORBIDDEN,
                format!(
                    "Forbidden (user={}, verb=get, resource=nodes, subresource=proxy)\n",
                    u.name
                ),
            )
                .into_response(),
        ),
    }
}

fn not_found(msg: String) -> Response {
    (StatusCode::NOT_FOUND, msg).into_response()
}

/// The pod's containers named `container`, newest attempt first.
async fn find(agent: &Agent, ns: &str, pod: &str, container: &str) -> Result<Vec<cri::Container>> {
    let labels = HashMap::from([
        (LABEL_NAMESPACE.to_string(), ns.to_string()),
        (LABEL_NAME.to_string(), pod.to_string()),
        (LABEL_CONTAINER.to_string(), container.to_string()),
    ]);
    let mut list = agent.cri.containers(labels).await?;
    list.sort_by_key(|c| {
        std::cmp::Reverse((
            c.metadata.as_ref().map(|m| m.attempt).unwrap_or(0),
            c.created_at,
        ))
    });
    Ok(list)
}

fn flag(q: &[(String, String)], k: &str) -> bool {
    q.iter().any(|(n, v)| n == k && (v == "true" || v == "1"))
}

fn value<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
}

async fn container_logs(
    State(agent): State<Arc<Agent>>,
    caller: Option<Extension<Caller>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    req: Request,
) -> Response {
    if let Some(r) = deny(caller) {
        return r;
    }
    let q = query_pairs(req.uri().query().unwrap_or(""));
    let list = match find(&agent, &ns, &pod, &container).await {
        Ok(l) => l,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    };
    let idx = usize::from(flag(&q, "previous"));
    let Some(c) = list.get(idx) else {
        let what = if idx == 1 {
            "previous terminated container"
        } else {
            "container"
        };
        return not_found(format!(
            "{what} \"{container}\" in pod \"{pod}\" not found\n"
        ));
    };
    let status = match agent.cri.container_status(&c.id).await {
        Ok(s) => s,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    };
    let tail = value(&q, "tailLines")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .map(|n| n as usize);
    let timestamps = flag(&q, "timestamps");
    let follow = flag(&q, "follow");
    let path = std::path::PathBuf::from(&status.log_path);
    let text = tokio::fs::read(&path).await.unwrap_or_default();
    // Only whole lines: a partly written last line is left for follow.
    let cut = text
        .iter()
        .rposition(|b| *b == b'\n')
        .map(|i| i + 1)
        .unwrap_or(0);
    let head = logs::format(
        &logs::render(&String::from_utf8_lossy(&text[..cut])),
        tail,
        timestamps,
    );
    if !follow {
        return ([(header::CONTENT_TYPE, "text/plain")], head).into_response();
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    let id = c.id.clone();
    tokio::spawn(async move {
        if tx.send(Ok(bytes::Bytes::from(head))).await.is_err() {
            return;
        }
        follow_file(&agent, &id, &path, cut as u64, timestamps, tx).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    ([(header::CONTENT_TYPE, "text/plain")], body).into_response()
}

/// Sends what is appended to the log file from `offset` until the container has exited and
/// everything was sent, or the reader went away.
async fn follow_file(
    agent: &Agent,
    id: &str,
    path: &Path,
    mut offset: u64,
    timestamps: bool,
    tx: tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>,
) {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut pending = Vec::new();
    loop {
        let exited = !matches!(
            agent.cri.container_status(id).await,
            Ok(s) if s.state == cri::ContainerState::ContainerRunning as i32
        );
        let mut chunk = Vec::new();
        if let Ok(mut f) = tokio::fs::File::open(path).await {
            if f.seek(std::io::SeekFrom::Start(offset)).await.is_ok() {
                let _ = f.read_to_end(&mut chunk).await;
            }
        }
        offset += chunk.len() as u64;
        pending.extend_from_slice(&chunk);
        if let Some(i) = pending.iter().rposition(|b| *b == b'\n') {
            let whole: Vec<u8> = pending.drain(..=i).collect();
            let out = logs::format(
                &logs::render(&String::from_utf8_lossy(&whole)),
                None,
                timestamps,
            );
            if !out.is_empty() && tx.send(Ok(bytes::Bytes::from(out))).await.is_err() {
                return;
            }
        }
        if exited && chunk.is_empty() {
            return;
        }
        if tx.is_closed() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The streaming session parameters of an exec/attach request.
struct Streams {
    command: Vec<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

fn streams(q: &[(String, String)]) -> Streams {
    Streams {
        command: q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.clone())
            .collect(),
        stdin: flag(q, "stdin") || flag(q, "input"),
        stdout: flag(q, "stdout") || flag(q, "output"),
        stderr: flag(q, "stderr") || flag(q, "error"),
        tty: flag(q, "tty"),
    }
}

async fn running_container(
    agent: &Agent,
    ns: &str,
    pod: &str,
    container: &str,
) -> Result<String, Response> {
    let list = find(agent, ns, pod, container)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response())?;
    list.into_iter()
        .find(|c| c.state == cri::ContainerState::ContainerRunning as i32)
        .map(|c| c.id)
        .ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!("container {container} is not running in pod {ns}/{pod}\n"),
            )
                .into_response()
        })
}

async fn exec(
    State(agent): State<Arc<Agent>>,
    caller: Option<Extension<Caller>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    req: Request,
) -> Response {
    if let Some(r) = deny(caller) {
        return r;
    }
    let s = streams(&query_pairs(req.uri().query().unwrap_or("")));
    if s.command.is_empty() {
        return (StatusCode::BAD_REQUEST, "no command given\n").into_response();
    }
    let id = match running_container(&agent, &ns, &pod, &container).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let url = agent
        .cri
        .exec_url(cri::ExecRequest {
            container_id: id,
            cmd: s.command,
            tty: s.tty,
            stdin: s.stdin,
            stdout: s.stdout,
            stderr: s.stderr && !s.tty,
        })
        .await;
    to_runtime(req, url).await
}

async fn attach(
    State(agent): State<Arc<Agent>>,
    caller: Option<Extension<Caller>>,
    UrlPath((ns, pod, container)): UrlPath<(String, String, String)>,
    req: Request,
) -> Response {
    if let Some(r) = deny(caller) {
        return r;
    }
    let s = streams(&query_pairs(req.uri().query().unwrap_or("")));
    let id = match running_container(&agent, &ns, &pod, &container).await {
        Ok(id) => id,
        Err(r) => return r,
    };
    let url = agent
        .cri
        .attach_url(cri::AttachRequest {
            container_id: id,
            stdin: s.stdin,
            tty: s.tty,
            stdout: s.stdout,
            stderr: s.stderr && !s.tty,
        })
        .await;
    to_runtime(req, url).await
}

/// Relays the (upgrade) request to the runtime's streaming URL (`http://127.0.0.1:port/...`).
async fn to_runtime(req: Request, url: Result<String>) -> Response {
    let url = match url {
        Ok(u) => u,
        Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    };
    let Some(rest) = url.strip_prefix("http://") else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("unexpected streaming URL {url}\n"),
        )
            .into_response();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let tcp = match TcpStream::connect(authority).await {
        Ok(t) => t,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("streaming server {authority}: {e}\n"),
            )
                .into_response()
        }
    };
    relay_upgrade(req, tcp, authority, path).await
}
