//! A small HTTPS client for the verbs: one HTTP/1.1 connection per request, the server verified
//! against the cluster CA (or, for `join`'s discovery only, not at all), the caller identified by
//! a kubeconfig's client certificate or a bearer token (bootstrap token).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header;
use hyper_util::rt::TokioIo;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use duststack::pki::kubeconfig::Kubeconfig;
use duststack::pki::spec::Endpoint;

/// Accepts every server certificate (signatures of the handshake are still checked).
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
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
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// How long one request may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(15);

/// An API client bound to one server URL and identity.
#[derive(Clone)]
pub struct ApiClient {
    /// `https://host:port`.
    pub server: String,
    endpoint: Endpoint,
    tls: Arc<rustls::ClientConfig>,
    bearer: Option<String>,
}

/// A response: status code and body (JSON when it parses, else a JSON string).
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// The body.
    pub body: Value,
}

impl Reply {
    /// True for 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The Status message of an error body, or the body text.
    pub fn message(&self) -> String {
        match &self.body {
            Value::String(s) => s.trim().to_string(),
            v => v
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string()),
        }
    }
}

fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let out = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{what}: bad PEM"))?;
    if out.is_empty() {
        return Err(anyhow!("{what}: no certificate"));
    }
    Ok(out)
}

impl ApiClient {
    /// A client for `server` trusting `ca_pem`, with an optional client certificate and key.
    pub fn new(server: &str, ca_pem: &str, identity: Option<(&str, &str)>) -> Result<Self> {
        let authority = server
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("{server}: only https:// servers are supported"))?
            .trim_end_matches('/');
        let endpoint = Endpoint::parse(authority).map_err(|e| anyhow!("{server}: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for c in certs(ca_pem, "cluster CA")? {
            roots.add(c).context("cluster CA is not usable")?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .with_root_certificates(roots);
        let mut tls = match identity {
            Some((cert, key)) => {
                let key =
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).context("client key: bad PEM")?;
                builder
                    .with_client_auth_cert(certs(cert, "client certificate")?, key)
                    .context("client certificate and key do not match")?
            }
            None => builder.with_no_client_auth(),
        };
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            server: server.trim_end_matches('/').to_string(),
            endpoint,
            tls: Arc::new(tls),
            bearer: None,
        })
    }

    /// An anonymous client that accepts any server certificate: only for reading data whose
    /// integrity is checked otherwise (cluster-info, signed with the bootstrap token).
    pub fn unverified(server: &str) -> Result<Self> {
        let authority = server
            .strip_prefix("https://")
            .ok_or_else(|| anyhow!("{server}: only https:// servers are supported"))?
            .trim_end_matches('/');
        let endpoint = Endpoint::parse(authority).map_err(|e| anyhow!("{server}: {e}"))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .context("TLS versions")?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            server: server.trim_end_matches('/').to_string(),
            endpoint,
            tls: Arc::new(tls),
            bearer: None,
        })
    }

    /// The same client sending `Authorization: Bearer <token>` (a bootstrap token).
    pub fn with_bearer(mut self, token: &str) -> Self {
        self.bearer = Some(token.to_string());
        self
    }

    /// A client with the cluster, CA and user of a kubeconfig file.
    pub fn from_kubeconfig(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("{}: cannot read the kubeconfig", path.display()))?;
        let kc = Kubeconfig::parse(&text, path).map_err(|e| anyhow!("{e}"))?;
        Self::new(&kc.server, &kc.ca_pem, Some((&kc.cert_pem, &kc.key_pem)))
            .with_context(|| format!("{}: unusable credentials", path.display()))
    }

    /// Sends one request; `body` is sent as JSON (or as a merge patch for PATCH).
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
        tokio::time::timeout(TIMEOUT, self.send(method, path, body))
            .await
            .map_err(|_| anyhow!("{method} {}{path}: timed out", self.server))?
            .with_context(|| format!("{method} {}{path}", self.server))
    }

    /// One HTTP/1.1 connection to the server, its driver spawned.
    async fn connect(&self) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
        let host = self.endpoint.host.as_str();
        let tcp = TcpStream::connect((host, self.endpoint.port)).await?;
        let name = ServerName::try_from(host.to_string()).context("server name")?;
        let tls = TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(send)
    }

    /// A GET whose body is read as it arrives (watches): only connecting and the response head
    /// are under the timeout. Returns the status and the body.
    pub async fn stream(&self, path: &str) -> Result<(u16, hyper::body::Incoming)> {
        let open = async {
            let mut send = self.connect().await?;
            let req = hyper::Request::builder()
                .method("GET")
                .uri(path)
                .header(
                    header::HOST,
                    format!("{}:{}", self.endpoint.host, self.endpoint.port),
                )
                .header(header::ACCEPT, "application/json")
                .header(header::USER_AGENT, "dustkube")
                .body(Full::new(Bytes::new()))?;
            let resp = send.send_request(req).await?;
            Ok::<_, anyhow::Error>((resp.status().as_u16(), resp.into_body()))
        };
        tokio::time::timeout(TIMEOUT, open)
            .await
            .map_err(|_| anyhow!("GET {}{path}: timed out", self.server))?
            .with_context(|| format!("GET {}{path}", self.server))
    }

    async fn send(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Reply> {
        let host = self.endpoint.host.as_str();
        let mut send = self.connect().await?;
        let content_type = if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        };
        let bytes = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v)?),
            None => Bytes::new(),
        };
        let mut req = hyper::Request::builder();
        if let Some(token) = &self.bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .method(method)
            .uri(path)
            .header(header::HOST, format!("{host}:{}", self.endpoint.port))
            .header(header::ACCEPT, "application/json")
            .header(header::CONTENT_TYPE, content_type)
            .header(header::USER_AGENT, "dustkube")
            .body(Full::new(bytes))?;
        let resp = send.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok(Reply { status, body })
    }

    /// GET; `None` on 404, an error on other failures.
    pub async fn get(&self, path: &str) -> Result<Option<Value>> {
        let r = self.request("GET", path, None).await?;
        match r.status {
            404 => Ok(None),
            _ if r.ok() => Ok(Some(r.body)),
            s => Err(anyhow!("GET {path}: {s} {}", r.message())),
        }
    }

    /// Sends and expects 2xx; returns the body.
    pub async fn expect_ok(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let r = self.request(method, path, body).await?;
        if r.ok() {
            Ok(r.body)
        } else {
            Err(anyhow!("{method} {path}: {} {}", r.status, r.message()))
        }
    }

    /// True when `/readyz` answers 200 (the server presented a certificate the CA signed).
    pub async fn ready(&self) -> bool {
        matches!(self.request("GET", "/readyz", None).await, Ok(r) if r.status == 200)
    }
}
