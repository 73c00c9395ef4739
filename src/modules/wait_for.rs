//! `wait_for`: poll on the host, in one shell loop, until a TCP port is open/closed or a file
//! exists/is gone (optionally containing a regex). Ports are probed with `nc -z`, else bash's
//! `/dev/tcp`, else (for local hosts) a LISTEN entry in `/proc/net/tcp{,6}`. Never "changed".

use anyhow::{bail, Result};
use async_trait::async_trait;

use super::{quote, Args, Ctx, Module, Outcome};

/// `wait_for`.
pub struct WaitFor;

const PARAMS: &[&str] = &[
    "host",
    "port",
    "path",
    "state",
    "timeout",
    "delay",
    "sleep",
    "search_regex",
    "connect_timeout",
    "msg",
    "exclude_hosts",
    "active_connection_states",
];

/// The probe for an open port.
pub fn port_probe(host: &str, port: u16, ct: i64) -> String {
    let h = quote(host);
    let local = matches!(host, "127.0.0.1" | "localhost" | "::1" | "0.0.0.0");
    let proc_check = if local {
        format!("grep -qiE '^ *[0-9]+: [0-9A-F]+:{port:04X} [0-9A-F]+:[0-9A-F]+ 0A' /proc/net/tcp /proc/net/tcp6 2>/dev/null")
    } else {
        "false".into()
    };
    format!(
        "if command -v nc >/dev/null 2>&1; then nc -z -w {ct} {h} {port} >/dev/null 2>&1; \
         elif command -v bash >/dev/null 2>&1; then timeout {ct} bash -c 'exec 3<>/dev/tcp/'{h}'/{port}' >/dev/null 2>&1; \
         else {proc_check}; fi"
    )
}

#[async_trait]
impl Module for WaitFor {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let host = args.str("host")?.unwrap_or_else(|| "127.0.0.1".into());
        let state = args.choice(
            "state",
            &["started", "stopped", "present", "absent", "drained"],
            "started",
        )?;
        if state == "drained" {
            bail!("state=drained is not supported");
        }
        let timeout = args.int("timeout")?.unwrap_or(300);
        let delay = args.int("delay")?.unwrap_or(0);
        let sleep = args.int("sleep")?.unwrap_or(1).max(1);
        let ct = args.int("connect_timeout")?.unwrap_or(5);
        let regex = args.str("search_regex")?;
        let port = args
            .int("port")?
            .map(|p| u16::try_from(p).map_err(|_| anyhow::anyhow!("port out of range: {p}")))
            .transpose()?;
        let path = args.str("path")?;
        let want_up = matches!(state.as_str(), "started" | "present");
        let (check, what) = match (&path, port) {
            (Some(p), None) => {
                let qp = quote(p);
                let up = match &regex {
                    Some(r) => format!("[ -e {qp} ] && grep -qE {} {qp}", quote(r)),
                    None => format!("[ -e {qp} ]"),
                };
                (
                    if want_up {
                        up
                    } else {
                        format!("! [ -e {qp} ]")
                    },
                    format!("file {p}"),
                )
            }
            (None, Some(p)) => {
                let up = match &regex {
                    Some(r) => format!(
                        "nc -w {ct} {} {p} </dev/null 2>/dev/null | grep -qE {}",
                        quote(&host),
                        quote(r)
                    ),
                    None => port_probe(&host, p, ct),
                };
                (
                    if want_up {
                        up
                    } else {
                        format!("! {{ {up}; }}")
                    },
                    format!("{host}:{p}"),
                )
            }
            (Some(_), Some(_)) => {
                bail!("port and path parameter can not both be passed to wait_for")
            }
            (None, None) => (String::new(), String::new()),
        };
        let script = if check.is_empty() {
            format!("sleep {}; echo elapsed=0", timeout.max(delay))
        } else {
            format!(
                "start=$(date +%s); sleep {delay}; while :; do if {check}; then echo elapsed=$(( $(date +%s) - start )); exit 0; fi; \
                 if [ $(( $(date +%s) - start )) -ge {timeout} ]; then echo elapsed=$(( $(date +%s) - start )); exit 1; fi; sleep {sleep}; done"
            )
        };
        let out = ctx.read(&script).await?;
        let text = out.stdout_str();
        let elapsed: i64 = text
            .lines()
            .find_map(|l| l.strip_prefix("elapsed="))
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let mut o = Outcome::ok()
            .with("elapsed", elapsed)
            .with("state", state.clone());
        if let Some(p) = port {
            o = o.with("port", p).with("host", host);
        }
        if let Some(p) = path {
            o = o.with("path", p);
        }
        if out.rc != 0 {
            let msg = args.str("msg")?.unwrap_or_else(|| {
                if regex.is_some() {
                    format!(
                        "Timeout when waiting for search string {} in {what}",
                        regex.clone().unwrap_or_default()
                    )
                } else {
                    format!("Timeout when waiting for {what}")
                }
            });
            o.failed = true;
            o.msg = Some(msg);
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, LocalConn};
    use serde_json::json;

    #[tokio::test]
    async fn path_and_port() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ready");
        std::fs::write(&f, "status: up\n").unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let o = run(
            &WaitFor,
            json!({"path": f.to_str().unwrap(), "search_regex": "up$", "timeout": 5}),
            &ctx,
        )
        .await;
        assert!(!o.failed && !o.changed);
        let o = run(
            &WaitFor,
            json!({"path": dir.path().join("nope").to_str().unwrap(), "timeout": 1}),
            &ctx,
        )
        .await;
        assert!(o.failed);
        assert!(o.msg.unwrap().starts_with("Timeout when waiting for file"));
        let o = run(&WaitFor, json!({"path": dir.path().join("nope").to_str().unwrap(), "state": "absent", "timeout": 1}), &ctx).await;
        assert!(!o.failed);

        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let o = run(&WaitFor, json!({"port": port, "timeout": 5}), &ctx).await;
        assert!(!o.failed, "{o:?}");
        drop(l);
        let o = run(
            &WaitFor,
            json!({"port": port, "state": "stopped", "timeout": 5}),
            &ctx,
        )
        .await;
        assert!(!o.failed, "{o:?}");
    }
}
