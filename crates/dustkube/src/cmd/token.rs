//! `dustkube token create|list|delete`: bootstrap tokens as Secrets through the API (with
//! admin.conf's credentials), keeping cluster-info's JWS signatures in step.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context, Result};
use chrono::Utc;
use serde_json::{json, Value};

use super::bootstrap::{self, Token, CLUSTER_INFO_PATH, JWS_PREFIX, SECRETS_PATH};
use super::client::ApiClient;

/// Flags of `dustkube token`.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Kubeconfig to talk to the API with.
    #[arg(long, global = true, default_value = "/etc/kubernetes/admin.conf")]
    pub kubeconfig: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: TokenCommand,
}

/// `token` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a bootstrap token (random unless given) and print it.
    Create {
        /// The token to create (`[a-z0-9]{6}.[a-z0-9]{16}`); random when omitted.
        token: Option<String>,
        /// Lifetime (24h, 30m, 1h30m; 0 = never expires).
        #[arg(long, default_value = "24h")]
        ttl: String,
        /// Free-text description stored with the token.
        #[arg(long, default_value = "")]
        description: String,
        /// Print the whole `dustkube join` command instead of the token.
        #[arg(long)]
        print_join_command: bool,
        /// Upload the shared control-plane certificates (encrypted) for `join --control-plane`
        /// under a new certificate key (printed), or under `--certificate-key`.
        #[arg(long)]
        upload_certs: bool,
        /// The certificate key to encrypt the uploaded certificates with (64 hex digits); the
        /// join command printed then includes `--control-plane --certificate-key`.
        #[arg(long)]
        certificate_key: Option<String>,
        /// PKI directory the shared certificates are read from.
        #[arg(long, default_value = "/etc/kubernetes/pki")]
        cert_dir: PathBuf,
    },
    /// List bootstrap tokens (ID, TTL, EXPIRES, USAGES, DESCRIPTION, EXTRA GROUPS).
    List,
    /// Delete bootstrap tokens by id or full token.
    Delete {
        /// Token ids (`abcdef`) or tokens (`abcdef.0123456789abcdef`).
        #[arg(required = true)]
        ids: Vec<String>,
    },
}

/// `dustkube join <endpoint> --token … --discovery-token-ca-cert-hash sha256:…`.
pub fn join_command(server: &str, token: &Token, ca_hash: &str) -> String {
    let endpoint = server.strip_prefix("https://").unwrap_or(server);
    format!("dustkube join {endpoint} --token {token} --discovery-token-ca-cert-hash {ca_hash}")
}

/// The CA pin of the client's cluster (from the kubeconfig's CA).
pub fn ca_hash_of(kubeconfig: &Path) -> Result<String> {
    let text = std::fs::read_to_string(kubeconfig)
        .with_context(|| format!("{}: cannot read", kubeconfig.display()))?;
    let kc = duststack::pki::kubeconfig::Kubeconfig::parse(&text, kubeconfig)
        .map_err(|e| anyhow!("{e}"))?;
    duststack::pki::ca_cert_hash(kc.ca_pem.as_bytes()).map_err(|e| anyhow!("cluster CA: {e}"))
}

/// Stores `token` as a Secret and adds its signature to cluster-info (when cluster-info exists;
/// returns whether it was signed).
pub async fn store_token(
    client: &ApiClient,
    token: &Token,
    ttl: Option<chrono::Duration>,
    description: &str,
) -> Result<bool> {
    let secret = bootstrap::token_secret(token, Utc::now(), ttl, description);
    let r = client.request("POST", SECRETS_PATH, Some(&secret)).await?;
    if r.status == 409 {
        return Err(anyhow!("token {} already exists", token.id));
    }
    if !r.ok() {
        return Err(anyhow!(
            "creating the token Secret: {} {}",
            r.status,
            r.message()
        ));
    }
    sign_cluster_info(client, token).await
}

/// Adds `jws-kubeconfig-<id>` for `token` to cluster-info; `false` when cluster-info is missing.
pub async fn sign_cluster_info(client: &ApiClient, token: &Token) -> Result<bool> {
    let Some(ci) = client.get(CLUSTER_INFO_PATH).await? else {
        return Ok(false);
    };
    let kubeconfig = ci
        .pointer("/data/kubeconfig")
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("cluster-info has no kubeconfig"))?;
    let jws = bootstrap::detached_jws(kubeconfig, token);
    let patch = json!({"data": {format!("{JWS_PREFIX}{}", token.id): jws}});
    client
        .expect_ok("PATCH", CLUSTER_INFO_PATH, Some(&patch))
        .await
        .context("signing cluster-info")?;
    Ok(true)
}

/// What `token create` should do about the shared certificates.
struct Upload<'a> {
    wanted: bool,
    key: Option<&'a str>,
    cert_dir: &'a Path,
}

async fn create(
    client: &ApiClient,
    kubeconfig: &Path,
    token: Option<&str>,
    ttl: &str,
    description: &str,
    print_join: bool,
    upload: Upload<'_>,
) -> Result<()> {
    let ttl = bootstrap::parse_ttl(ttl)?;
    let token = match token {
        Some(t) => Token::parse(t)?,
        None => Token::generate()?,
    };
    let signed = store_token(client, &token, ttl, description).await?;
    if !signed {
        eprintln!("warning: kube-public/cluster-info does not exist; the token cannot be used for discovery");
    }
    let mut key = None;
    if upload.wanted || upload.key.is_some() {
        let k = match upload.key {
            Some(k) => k.to_string(),
            None => super::certkey::generate()?,
        };
        super::certkey::upload(client, upload.cert_dir, &k).await?;
        key = Some(k);
    }
    if print_join {
        let mut cmd = join_command(&client.server, &token, &ca_hash_of(kubeconfig)?);
        if let Some(k) = &key {
            cmd.push_str(&format!(" --control-plane --certificate-key {k}"));
        }
        println!("{cmd}");
    } else {
        println!("{token}");
        if let Some(k) = &key {
            println!("certificate key: {k}");
        }
    }
    Ok(())
}

/// The token Secrets, sorted by id.
pub async fn list_tokens(client: &ApiClient) -> Result<Vec<bootstrap::TokenInfo>> {
    let list = client
        .expect_ok("GET", SECRETS_PATH, None)
        .await
        .context("listing Secrets in kube-system")?;
    let mut out: Vec<_> = list
        .get("items")
        .and_then(Value::as_array)
        .map(|items| items.iter().filter_map(bootstrap::token_info).collect())
        .unwrap_or_default();
    out.sort_by(|a: &bootstrap::TokenInfo, b| a.id.cmp(&b.id));
    Ok(out)
}

fn table(rows: &[Vec<String>]) -> String {
    let n = rows.first().map(Vec::len).unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect();
            format!("{}\n", line.join("   ").trim_end())
        })
        .collect()
}

async fn list(client: &ApiClient) -> Result<()> {
    let now = Utc::now();
    let mut rows = vec![[
        "ID",
        "TTL",
        "EXPIRES",
        "USAGES",
        "DESCRIPTION",
        "EXTRA GROUPS",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect::<Vec<_>>()];
    for t in list_tokens(client).await? {
        let (ttl, expires) = match t.expires {
            Some(e) => (
                bootstrap::human(e - now),
                e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            ),
            None => ("<forever>".into(), "<never>".into()),
        };
        rows.push(vec![
            t.id,
            ttl,
            expires,
            t.usages.join(","),
            if t.description.is_empty() {
                "<none>".into()
            } else {
                t.description
            },
            t.extra_groups,
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

async fn delete(client: &ApiClient, ids: &[String]) -> Result<()> {
    for raw in ids {
        let id = bootstrap::parse_id(raw)?;
        let path = format!("{SECRETS_PATH}/bootstrap-token-{id}");
        let r = client.request("DELETE", &path, None).await?;
        match r.status {
            404 => return Err(anyhow!("bootstrap token {id} not found")),
            _ if r.ok() => {}
            s => return Err(anyhow!("deleting token {id}: {s} {}", r.message())),
        }
        if client.get(CLUSTER_INFO_PATH).await?.is_some() {
            let patch = json!({"data": {format!("{JWS_PREFIX}{id}"): null}});
            client
                .expect_ok("PATCH", CLUSTER_INFO_PATH, Some(&patch))
                .await
                .context("removing the token's cluster-info signature")?;
        }
        println!("bootstrap token \"{id}\" deleted");
    }
    Ok(())
}

/// Runs `dustkube token`.
pub async fn run(args: TokenArgs) -> Result<ExitCode> {
    let client = ApiClient::from_kubeconfig(&args.kubeconfig)?;
    match &args.command {
        TokenCommand::Create {
            token,
            ttl,
            description,
            print_join_command,
            upload_certs,
            certificate_key,
            cert_dir,
        } => {
            let upload = Upload {
                wanted: *upload_certs,
                key: certificate_key.as_deref(),
                cert_dir,
            };
            create(
                &client,
                &args.kubeconfig,
                token.as_deref(),
                ttl,
                description,
                *print_join_command,
                upload,
            )
            .await?
        }
        TokenCommand::List => list(&client).await?,
        TokenCommand::Delete { ids } => delete(&client, ids).await?,
    }
    Ok(ExitCode::SUCCESS)
}
