//! `pods/<name>/log`, `pods/<name>/exec` and `pods/<name>/attach`: authorized here, then
//! proxied to the node agent that runs the pod (address = the Node's InternalIP, port =
//! `status.daemonEndpoints.kubeletEndpoint.Port`). Logs stream through; exec and attach relay
//! the SPDY upgrade unchanged (WebSocket upgrades are declined, so kubectl ≥ 1.30 falls back to
//! SPDY). The server authenticates to agents with `--kubelet-client-certificate/-key`.
//!
//! Runs as a middleware in front of the object routes (it needs the raw request to take over
//! the connection after `101 Switching Protocols`).

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::status::ApiError;
use super::{AppState, Caller};
use crate::auth::{Attributes, Decision};
use crate::resources::{nodes, pods};

/// The TLS client config for agents (set once at startup from the kubelet-client flags).
static KUBELET_TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

/// How long connecting to an agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Agents' serving certificates are their own (self-signed CA): like kube-apiserver without
/// `--kubelet-certificate-authority`, the server does not verify them, but checks handshake
/// signatures.
#[derive(Debug)]
struct AnyServerCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(identity: Option<(&Path, &Path)>) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServerCert(provider)));
    let mut config = match identity {
        Some((cert, key)) => {
            let certs = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("{}: cannot read", cert.display()))?
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("{}: bad PEM", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("{}: cannot read the key", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .context("kubelet client certificate and key do not match")?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Sets the client certificate the server presents to node agents (once, at startup).
pub fn configure_kubelet_client(cert: &Path, key: &Path) -> Result<()> {
    let config = client_config(Some((cert, key)))?;
    KUBELET_TLS
        .set(Arc::new(config))
        .map_err(|_| anyhow!("the kubelet client certificate is already set"))
}

fn kubelet_tls() -> Result<Arc<rustls::ClientConfig>> {
    if let Some(c) = KUBELET_TLS.get() {
        return Ok(c.clone());
    }
    let c = Arc::new(client_config(None)?);
    Ok(KUBELET_TLS.get_or_init(|| c).clone())
}

/// Decodes `a=1&b=%2F` into pairs, keeping repeated keys (exec's `command`).
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                },
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

fn encode(s: &str) -> String {
    crate::agent::client::escape(s)
}

/// Headers that carry an upgrade handshake (SPDY or WebSocket).
const UPGRADE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "x-stream-protocol-version",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
];

/// Sends `req`'s method and upgrade headers to `path` over `io`; on `101` answers the client
/// `101` with the backend's headers and splices the two upgraded connections; otherwise
/// returns the backend's answer.
pub async fn relay_upgrade<T>(mut req: Request, io: T, authority: &str, path: &str) -> Response
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    // Copied out first: the request body is not Sync, so no borrow of it may cross an await.
    let method = req.method().clone();
    let headers: Vec<(&str, axum::http::HeaderValue)> = UPGRADE_HEADERS
        .iter()
        .flat_map(|name| {
            req.headers()
                .get_all(*name)
                .iter()
                .map(|v| (*name, v.clone()))
        })
        .collect();
    let result = async move {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let mut out = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, authority);
        for (name, v) in headers {
            out = out.header(name, v);
        }
        let resp = send.send_request(out.body(Empty::<Bytes>::new())?).await?;
        Ok::<_, anyhow::Error>(resp)
    }
    .await;
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_GATEWAY,
                format!("error dialing backend: {e:#}\n"),
            )
                .into_response()
        }
    };
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        let status = resp.status();
        let ct = resp.headers().get(header::CONTENT_TYPE).cloned();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut r = (status, body).into_response();
        if let Some(ct) = ct {
            r.headers_mut().insert(header::CONTENT_TYPE, ct);
        }
        return r;
    }
    let mut answer = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (k, v) in resp.headers() {
        answer = answer.header(k, v);
    }
    let client = hyper::upgrade::on(&mut req);
    let backend = hyper::upgrade::on(resp);
    tokio::spawn(async move {
        match tokio::join!(client, backend) {
            (Ok(c), Ok(b)) => {
                let (mut c, mut b) = (TokioIo::new(c), TokioIo::new(b));
                let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
            }
            (c, b) => tracing::info!(
                client = c.is_ok(),
                backend = b.is_ok(),
                "stream upgrade failed"
            ),
        }
    });
    answer
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `(namespace, pod, sub)` of `/api/v1/namespaces/<ns>/pods/<pod>/<log|exec|attach>`.
fn target(path: &str) -> Option<(String, String, &'static str)> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", pod, sub] => {
            let sub = match *sub {
                "log" => "log",
                "exec" => "exec",
                "attach" => "attach",
                _ => return None,
            };
            Some((ns.to_string(), pod.to_string(), sub))
        }
        _ => None,
    }
}

/// Where the pod's agent listens and which container is meant.
async fn locate(
    state: &AppState,
    ns: &str,
    name: &str,
    container: Option<&str>,
) -> Result<(String, u16, String), ApiError> {
    let rt = &pods::TYPE;
    let pod = state
        .store
        .get(&rt.key(Some(ns), name))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(rt, name))?
        .value;
    let container = match container.filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => pod
            .pointer("/spec/containers/0/name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string(),
    };
    let known = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["name"] == container.as_str()));
    if !known {
        return Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        )));
    }
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {name} does not have a host assigned"))
        })?;
    let node = state
        .store
        .get(&nodes::TYPE.key(None, node_name))
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::not_found(&nodes::TYPE, node_name))?
        .value;
    let ip = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)
        .and_then(|a| a.iter().find(|x| x["type"] == "InternalIP"))
        .and_then(|x| x["address"].as_str())
        .ok_or_else(|| ApiError::bad_request(format!("node {node_name} has no InternalIP")))?
        .to_string();
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .unwrap_or(10250) as u16;
    Ok((ip, port, container))
}

async fn connect(ip: &str, port: u16) -> Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let addr = if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    };
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&addr))
        .await
        .map_err(|_| anyhow!("{addr}: connection timed out"))??;
    let name = ServerName::try_from(ip.to_string()).context("agent address")?;
    let tls = TlsConnector::from(kubelet_tls()?)
        .connect(name, tcp)
        .await
        .with_context(|| format!("{addr}: TLS handshake"))?;
    Ok(tls)
}

/// The middleware: serves log/exec/attach, passes everything else on.
pub async fn intercept(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some((ns, name, sub)) = target(req.uri().path()) else {
        return next.run(req).await;
    };
    match serve(&state, req, &ns, &name, sub).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(
    state: &AppState,
    req: Request,
    ns: &str,
    name: &str,
    sub: &'static str,
) -> Result<Response, ApiError> {
    let user = req
        .extensions()
        .get::<Caller>()
        .and_then(|c| c.0.clone())
        .ok_or_else(ApiError::unauthorized)?;
    let verb = if sub == "log" { "get" } else { "create" };
    let attrs = Attributes {
        verb: verb.into(),
        group: String::new(),
        resource: "pods".into(),
        subresource: sub.into(),
        namespace: Some(ns.to_string()),
        name: Some(name.to_string()),
        path: None,
    };
    if let Decision::Deny(_) = state.authorizer.authorize(&user, &attrs).await {
        return Err(ApiError::forbidden_request(
            &user.name,
            verb,
            &pods::TYPE,
            sub,
            Some(name),
            Some(ns),
        ));
    }
    let query = query_pairs(req.uri().query().unwrap_or(""));
    let container = query
        .iter()
        .find(|(k, _)| k == "container")
        .map(|(_, v)| v.as_str());
    let (ip, port, container) = locate(state, ns, name, container).await?;
    let authority = format!("{ip}:{port}");
    if sub == "log" {
        let mut path = format!("/containerLogs/{ns}/{name}/{}", encode(&container));
        let mut sep = '?';
        for (k, v) in &query {
            if [
                "follow",
                "tailLines",
                "previous",
                "timestamps",
                "limitBytes",
                "sinceSeconds",
            ]
            .contains(&k.as_str())
            {
                path.push_str(&format!("{sep}{}={}", encode(k), encode(v)));
                sep = '&';
            }
        }
        return logs(&ip, port, &authority, &path).await;
    }
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if upgrade.contains("websocket") {
        return Err(ApiError::bad_request(
            "WebSocket streaming is not supported by this server; use SPDY",
        ));
    }
    if !upgrade.contains("spdy") {
        return Err(ApiError::bad_request("Upgrade request required"));
    }
    let mut path = format!("/{sub}/{ns}/{name}/{}", encode(&container));
    let mut sep = '?';
    for (k, v) in &query {
        if k != "container" {
            path.push_str(&format!("{sep}{}={}", encode(k), encode(v)));
            sep = '&';
        }
    }
    let tls = connect(&ip, port)
        .await
        .map_err(|e| ApiError::internal(format!("error dialing backend: {e:#}")))?;
    Ok(relay_upgrade(req, tls, &authority, &path).await)
}

/// GET on the agent; the body streams through (for `logs -f`).
async fn logs(ip: &str, port: u16, authority: &str, path: &str) -> Result<Response, ApiError> {
    let fail = |e: anyhow::Error| ApiError::internal(format!("error dialing backend: {e:#}"));
    let tls = connect(ip, port).await.map_err(fail)?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| fail(e.into()))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let req = hyper::Request::builder()
        .method("GET")
        .uri(path)
        .header(header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(e.into()))?;
    let resp = send.send_request(req).await.map_err(|e| fail(e.into()))?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let msg = String::from_utf8_lossy(&body).trim().to_string();
        return Err(match status.as_u16() {
            404 => ApiError::bad_request(msg),
            400 => ApiError::bad_request(msg),
            _ => ApiError::internal(msg),
        });
    }
    let mut r = Response::new(Body::new(resp.into_body()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("text/plain"),
    );
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            target("/api/v1/namespaces/demo/pods/web/exec"),
            Some(("demo".into(), "web".into(), "exec"))
        );
        assert_eq!(target("/api/v1/namespaces/demo/pods/web/status"), None);
        assert_eq!(target("/api/v1/namespaces/demo/pods/web"), None);
    }

    #[test]
    fn queries_keep_repeats() {
        let q = query_pairs("command=cat&command=%2Fetc%2Fhostname&stdout=true&x");
        assert_eq!(q[0], ("command".into(), "cat".into()));
        assert_eq!(q[1], ("command".into(), "/etc/hostname".into()));
        assert_eq!(q[3], ("x".into(), String::new()));
    }
}
