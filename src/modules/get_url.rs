//! `get_url`: download a URL on the host (curl, else wget) to `dest`, skipped when `dest` exists
//! and (no checksum, or its checksum matches) unless `force`; a checksum mismatch fails.

use anyhow::{bail, Result};
use async_trait::async_trait;
use serde_json::Value;

use super::attrs::{self, Attrs, Kind};
use super::{quote, Args, Ctx, Module, Outcome};

/// `get_url`.
pub struct GetUrl;

const PARAMS: &[&str] = &[
    "url",
    "dest",
    "checksum",
    "mode",
    "owner",
    "group",
    "force",
    "timeout",
    "headers",
    "validate_certs",
    "url_username",
    "username",
    "url_password",
    "password",
    "force_basic_auth",
    "backup",
    "tmp_dest",
    "http_agent",
    "use_proxy",
    "unredirected_headers",
    "decompress",
];

/// Splits `alg:hex` (`sha256:ab…`).
pub fn parse_checksum(s: &str) -> Result<(String, String)> {
    let (alg, hex) = s
        .split_once(':')
        .ok_or_else(|| anyhow::anyhow!("checksum must be ALGORITHM:HEX, got '{s}'"))?;
    let alg = alg.trim().to_ascii_lowercase();
    if !["md5", "sha1", "sha224", "sha256", "sha384", "sha512"].contains(&alg.as_str()) {
        bail!("unsupported checksum algorithm '{alg}'");
    }
    if hex.starts_with("http://") || hex.starts_with("https://") {
        bail!("checksum from a URL is not supported");
    }
    Ok((alg, hex.trim().to_ascii_lowercase()))
}

#[async_trait]
impl Module for GetUrl {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let url = args.required(&["url"])?;
        let mut dest = args.required(&["dest"])?;
        let force = args.bool("force", false)?;
        let timeout = args.int("timeout")?.unwrap_or(10);
        let insecure = !args.bool("validate_certs", true)?;
        let checksum = args
            .str("checksum")?
            .filter(|c| !c.is_empty())
            .map(|c| parse_checksum(&c))
            .transpose()?;
        let alg = checksum.as_ref().map(|(a, _)| a.as_str()).unwrap_or("sha1");
        let out = ctx
            .read_ok(&attrs::stat_command(&dest, true, Some(alg)))
            .await?;
        let mut cur = attrs::parse_stat(&out)?;
        if cur.as_ref().is_some_and(|c| c.kind == Kind::Dir) {
            let name = url
                .split(['?', '#'])
                .next()
                .unwrap_or(&url)
                .rsplit('/')
                .next()
                .unwrap_or("index.html");
            let name = if name.is_empty() { "index.html" } else { name };
            dest = format!("{}/{name}", dest.trim_end_matches('/'));
            cur = attrs::parse_stat(
                &ctx.read_ok(&attrs::stat_command(&dest, true, Some(alg)))
                    .await?,
            )?;
        }
        let a = Attrs::from_args(args)?;
        let mut result = Outcome::ok()
            .with("url", url.clone())
            .with("dest", dest.clone());
        let up_to_date = match (&cur, &checksum) {
            (None, _) => false,
            (Some(c), Some((_, want))) => c.checksum.as_deref() == Some(want.as_str()),
            (Some(_), None) => !force,
        };
        if !up_to_date {
            result.changed = true;
            if !ctx.check {
                let mut curl = format!("curl -fsSL --max-time {timeout}");
                let mut wget = format!("wget -q -T {timeout}");
                if insecure {
                    curl.push_str(" -k");
                    wget.push_str(" --no-check-certificate");
                }
                if let Some(Value::Object(h)) = args.get("headers") {
                    for (k, v) in h {
                        let hv = format!("{k}: {}", super::args::to_string(v).unwrap_or_default());
                        curl.push_str(&format!(" -H {}", quote(&hv)));
                        wget.push_str(&format!(" --header={}", quote(&hv)));
                    }
                }
                if let (Some(u), Some(p)) = (
                    args.str_any(&["url_username", "username"])?,
                    args.str_any(&["url_password", "password"])?,
                ) {
                    curl.push_str(&format!(" -u {}", quote(&format!("{u}:{p}"))));
                    wget.push_str(&format!(" --user={} --password={}", quote(&u), quote(&p)));
                }
                let q = quote(&dest);
                let qu = quote(&url);
                let script = format!(
                    "tmp=$(mktemp {q}.XXXXXX) || exit 1; \
                     if command -v curl >/dev/null 2>&1; then {curl} -o \"$tmp\" {qu}; \
                     elif command -v wget >/dev/null 2>&1; then {wget} -O \"$tmp\" {qu}; \
                     else echo 'neither curl nor wget on the host' >&2; rm -f \"$tmp\"; exit 2; fi || {{ rc=$?; rm -f \"$tmp\"; exit $rc; }}; \
                     {alg}sum < \"$tmp\" | cut -d' ' -f1; sha1sum < \"$tmp\" | cut -d' ' -f1; echo \"$tmp\""
                );
                let dl = ctx.read(&script).await?;
                if dl.rc != 0 {
                    return Ok(Outcome::failed(format!(
                        "Request failed: {}",
                        dl.stderr_str().trim()
                    ))
                    .with("url", url)
                    .with("dest", dest));
                }
                let text = dl.stdout_str();
                let lines: Vec<&str> = text.lines().collect();
                let (got, sha1, tmp) = match lines.as_slice() {
                    [a, b, c] => (*a, *b, *c),
                    _ => bail!("unexpected download output: {text}"),
                };
                if let Some((_, want)) = &checksum {
                    if got != want {
                        ctx.apply(&format!("rm -f {}", quote(tmp))).await?;
                        return Ok(Outcome::failed(format!(
                            "The checksum for {dest} did not match {want}; it was {got}."
                        )));
                    }
                }
                let same = cur
                    .as_ref()
                    .is_some_and(|c| checksum.is_none() && c.checksum.as_deref() == Some(sha1));
                if same {
                    ctx.apply(&format!("rm -f {}", quote(tmp))).await?;
                    result.changed = false;
                } else {
                    let keep = match &cur {
                        Some(c) => format!(
                            " && chown {}:{} \"$t\" && chmod {:o} \"$t\"",
                            c.uid, c.gid, c.mode
                        ),
                        None => " && chmod 644 \"$t\"".into(),
                    };
                    ctx.apply(&format!("t={}{keep} && mv -f \"$t\" {q}", quote(tmp)))
                        .await?;
                }
                result.data.insert("checksum_dest".into(), sha1.into());
            }
        }
        let base = if result.changed && !ctx.check {
            None
        } else {
            cur.as_ref()
        };
        let base = if base.is_none() && !result.changed {
            cur.as_ref()
        } else {
            base
        };
        if !ctx.check || cur.is_some() {
            result.changed |= a.apply(ctx, &dest, base).await?;
        }
        if let Some((_, want)) = checksum {
            result.data.insert("checksum_src".into(), want.into());
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, run_err, Env, LocalConn};
    use serde_json::json;

    #[tokio::test]
    async fn downloads_with_curl_file_url() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.bin");
        std::fs::write(&src, "payload").unwrap();
        let dest = dir.path().join("dest.bin");
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let url = format!("file://{}", src.display());
        let sum = {
            use sha2::Digest;
            attrs::hex(&sha2::Sha256::digest(b"payload"))
        };
        let a = json!({"url": url, "dest": dest.to_str().unwrap(), "checksum": format!("sha256:{sum}"), "mode": "0600"});
        let o = run(&GetUrl, a.clone(), &ctx).await;
        assert!(o.changed, "{o:?}");
        assert_eq!(std::fs::read_to_string(&dest).unwrap(), "payload");
        assert!(!run(&GetUrl, a, &ctx).await.changed);
        // no checksum, dest exists, not forced: nothing to do
        assert!(
            !run(
                &GetUrl,
                json!({"url": url, "dest": dest.to_str().unwrap()}),
                &ctx
            )
            .await
            .changed
        );
        let e = run_err(&GetUrl, json!({"url": url, "dest": dir.path().join("o").to_str().unwrap(), "checksum": "sha256:00"}), &ctx).await;
        assert!(e.contains("did not match"), "{e}");
        assert!(!dir.path().join("o").exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
