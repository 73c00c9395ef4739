//! `firewalld`: a service, port, rich rule, source, interface or masquerade enabled/disabled in a
//! zone, queried and changed with `firewall-cmd` in the runtime and/or permanent configuration.

use anyhow::{bail, Result};
use async_trait::async_trait;

use super::{quote, Args, Ctx, Module, Outcome};

/// `firewalld`.
pub struct Firewalld;

const PARAMS: &[&str] = &[
    "service",
    "port",
    "rich_rule",
    "source",
    "interface",
    "masquerade",
    "icmp_block",
    "zone",
    "permanent",
    "immediate",
    "state",
    "offline",
    "timeout",
];

/// Which configurations to act on: `(runtime, permanent)` (Ansible: permanent=no → runtime only;
/// permanent=yes → permanent, plus runtime with immediate=yes).
pub fn targets(permanent: bool, immediate: bool) -> (bool, bool) {
    (!permanent || immediate, permanent)
}

#[async_trait]
impl Module for Firewalld {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let state = args.choice("state", &["enabled", "disabled", "present", "absent"], "")?;
        let enable = matches!(state.as_str(), "enabled" | "present");
        let mut items: Vec<(&str, Option<String>)> = Vec::new();
        for key in [
            "service",
            "port",
            "rich_rule",
            "source",
            "interface",
            "icmp_block",
        ] {
            if let Some(v) = args.str(key)? {
                let flag = match key {
                    "rich_rule" => "rich-rule",
                    "icmp_block" => "icmp-block",
                    k => k,
                };
                items.push((flag, Some(v)));
            }
        }
        if args.get("masquerade").is_some() {
            // `masquerade: yes` (the item) with `state` deciding on/off, as the collection does.
            items.push(("masquerade", None));
        }
        if items.len() != 1 {
            bail!("exactly one of service, port, rich_rule, source, interface, masquerade, icmp_block is required");
        }
        let (flag, value) = &items[0];
        let (runtime, permanent) = targets(
            args.bool("permanent", false)?,
            args.bool("immediate", false)?,
        );
        let zone = args
            .str("zone")?
            .map(|z| format!(" --zone={}", quote(&z)))
            .unwrap_or_default();
        let arg = |verb: &str| match value {
            Some(v) => format!("--{verb}-{flag}={}", quote(v)),
            None => format!("--{verb}-{flag}"),
        };
        let timeout = match args.int("timeout")? {
            Some(t) if t > 0 && enable => format!(" --timeout={t}"),
            _ => String::new(),
        };
        let mut out = Outcome::ok();
        let mut cmds = Vec::new();
        for (on, perm) in [(runtime, ""), (permanent, " --permanent")] {
            if !on {
                continue;
            }
            let q = ctx
                .read(&format!("firewall-cmd{perm}{zone} {}", arg("query")))
                .await?;
            if q.rc > 1 {
                return Ok(Outcome::failed(format!(
                    "firewall-cmd query failed (is firewalld running?): {}{}",
                    q.stdout_str().trim(),
                    q.stderr_str().trim()
                )));
            }
            let present = q.rc == 0;
            if present != enable {
                let verb = if enable { "add" } else { "remove" };
                let t = if perm.is_empty() {
                    timeout.as_str()
                } else {
                    ""
                };
                cmds.push(format!("firewall-cmd{perm}{zone} {}{t}", arg(verb)));
            }
        }
        for c in &cmds {
            ctx.apply(c).await?;
        }
        out.changed = !cmds.is_empty();
        let what = value.clone().unwrap_or_else(|| "masquerade".into());
        let msg = if out.changed {
            format!("Changed {flag} {what} to {state}")
        } else {
            format!("{flag} {what} already {state}")
        };
        Ok(out.with_msg(msg))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, FakeConn};
    use serde_json::json;

    #[tokio::test]
    async fn runtime_and_permanent_per_flags() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let c = FakeConn::new()
            .on("--permanent .*--query", 1, "no")
            .on("--query", 0, "yes");
        let o = run(&Firewalld, json!({"port": "6443/tcp", "zone": "public", "permanent": true, "immediate": true, "state": "enabled"}), &env.ctx(&c)).await;
        assert!(o.changed);
        assert!(c.sent("^firewall-cmd --permanent --zone=public --add-port=6443/tcp$"));
        assert!(!c.sent("^firewall-cmd --zone=public --add-port"));

        let c = FakeConn::new().on("--query", 0, "yes");
        let o = run(
            &Firewalld,
            json!({"service": "https", "state": "enabled"}),
            &env.ctx(&c),
        )
        .await;
        assert!(!o.changed);
        assert_eq!(
            c.commands(),
            vec!["firewall-cmd --query-service=https".to_owned()]
        );

        let c = FakeConn::new().on("--query", 0, "yes");
        let o = run(
            &Firewalld,
            json!({"masquerade": true, "state": "disabled", "permanent": true}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert_eq!(
            c.commands(),
            vec![
                "firewall-cmd --permanent --query-masquerade".to_owned(),
                "firewall-cmd --permanent --remove-masquerade".into()
            ]
        );
    }
}
