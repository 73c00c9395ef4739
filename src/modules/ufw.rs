//! `ufw`: firewall state (enabled/disabled/reloaded/reset) and rules. Whether a rule is new is
//! decided by ufw itself: `ufw --dry-run RULE` prints "Skipping adding existing rule" (or "Could
//! not delete non-existent rule") when nothing would change, and writes nothing.

use anyhow::{bail, Result};
use async_trait::async_trait;

use super::{quote, Args, Ctx, Module, Outcome};

/// `ufw`.
pub struct Ufw;

const PARAMS: &[&str] = &[
    "rule",
    "port",
    "to_port",
    "proto",
    "protocol",
    "from_ip",
    "from",
    "src",
    "from_port",
    "to_ip",
    "to",
    "dest",
    "direction",
    "state",
    "delete",
    "comment",
    "interface",
    "if",
    "log",
    "insert",
    "route",
    "policy",
    "default",
    "logging",
];

/// The ufw rule words for the arguments (`allow in on eth0 from any to any port 22 proto tcp`).
pub fn rule_words(args: &Args, rule: &str) -> Result<Vec<String>> {
    let mut w = Vec::new();
    if args.bool("route", false)? {
        w.push("route".to_owned());
    }
    if let Some(i) = args.int("insert")? {
        w.push(format!("insert {i}"));
    }
    w.push(rule.to_owned());
    let dir = args.str("direction")?.map(|d| match d.as_str() {
        "incoming" => "in".to_owned(),
        "outgoing" => "out".to_owned(),
        d => d.to_owned(),
    });
    if let Some(d) = &dir {
        w.push(d.clone());
    }
    if let Some(i) = args.str_any(&["interface", "if"])? {
        w.push(format!("on {}", quote(&i)));
    }
    if args.bool("log", false)? {
        w.push("log".into());
    }
    let from = args
        .str_any(&["from_ip", "from", "src"])?
        .unwrap_or_else(|| "any".into());
    w.push(format!("from {}", quote(&from)));
    if let Some(p) = args.str("from_port")? {
        w.push(format!("port {}", quote(&p)));
    }
    let to = args
        .str_any(&["to_ip", "to", "dest"])?
        .unwrap_or_else(|| "any".into());
    w.push(format!("to {}", quote(&to)));
    if let Some(p) = args.str_any(&["port", "to_port"])? {
        w.push(format!("port {}", quote(&p)));
    }
    if let Some(p) = args.str_any(&["proto", "protocol"])?.filter(|p| p != "any") {
        w.push(format!("proto {}", quote(&p)));
    }
    if let Some(c) = args.str("comment")? {
        w.push(format!("comment {}", quote(&c)));
    }
    Ok(w)
}

#[async_trait]
impl Module for Ufw {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let mut cmds = Vec::new();
        if let Some(rule) = args.str("rule")? {
            if !["allow", "deny", "reject", "limit"].contains(&rule.as_str()) {
                bail!("value of rule must be one of: allow, deny, reject, limit, got: {rule}");
            }
            let delete = if args.bool("delete", false)? {
                "delete "
            } else {
                ""
            };
            let words = rule_words(args, &rule)?.join(" ");
            let dry = ctx.read(&format!("ufw --dry-run {delete}{words}")).await?;
            let text = format!("{}{}", dry.stdout_str(), dry.stderr_str());
            if dry.rc != 0 && !text.contains("non-existent rule") {
                return Ok(Outcome::failed(format!(
                    "ufw rejected the rule: {}",
                    text.trim()
                )));
            }
            if !(text.contains("Skipping") || text.contains("non-existent rule")) {
                cmds.push(format!("ufw {delete}{words}"));
            }
        }
        if let Some(p) = args.str_any(&["policy", "default"])? {
            let dir = args.str("direction")?.unwrap_or_else(|| "incoming".into());
            let verbose = ctx.read_ok("ufw status verbose").await?;
            let cur = verbose
                .lines()
                .find_map(|l| l.strip_prefix("Default:"))
                .unwrap_or_default()
                .to_owned();
            if !cur.contains(&format!("{p} ({dir})")) {
                cmds.push(format!("ufw default {} {}", quote(&p), quote(&dir)));
            }
        }
        if let Some(l) = args.str("logging")? {
            cmds.push(format!("ufw logging {}", quote(&l)));
        }
        if let Some(state) = args.str("state")? {
            let active = ctx
                .read("ufw status")
                .await?
                .stdout_str()
                .lines()
                .next()
                .is_some_and(|l| l.trim() == "Status: active");
            match state.as_str() {
                "enabled" if !active => cmds.push("ufw --force enable".into()),
                "disabled" if active => cmds.push("ufw disable".into()),
                "reloaded" => cmds.push("ufw reload".into()),
                "reset" => cmds.push("ufw --force reset".into()),
                "enabled" | "disabled" => {}
                s => bail!(
                    "value of state must be one of: enabled, disabled, reloaded, reset, got: {s}"
                ),
            }
        }
        if cmds.is_empty()
            && args.get("rule").is_none()
            && args.get("state").is_none()
            && args.get("policy").is_none()
            && args.get("default").is_none()
            && args.get("logging").is_none()
        {
            bail!("one of the following is required: state, default, rule, logging");
        }
        for c in &cmds {
            ctx.apply(c).await?;
        }
        Ok(Outcome::changed(!cmds.is_empty()).with("commands", cmds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, FakeConn};
    use serde_json::json;

    #[tokio::test]
    async fn dry_run_decides() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let c = FakeConn::new().on("--dry-run", 0, "Rules updated\n");
        let o = run(
            &Ufw,
            json!({"rule": "allow", "port": "22", "proto": "tcp", "from_ip": "10.0.0.0/8"}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert!(c.sent("^ufw allow from 10.0.0.0/8 to any port 22 proto tcp$"));

        let c = FakeConn::new().on("--dry-run", 0, "Skipping adding existing rule\n");
        assert!(
            !run(&Ufw, json!({"rule": "allow", "port": "22"}), &env.ctx(&c))
                .await
                .changed
        );
        assert_eq!(c.commands().len(), 1);

        let c = FakeConn::new().on("^ufw status", 0, "Status: active\n");
        assert!(
            !run(&Ufw, json!({"state": "enabled"}), &env.ctx(&c))
                .await
                .changed
        );
        let c = FakeConn::new().on("^ufw status", 0, "Status: inactive\n");
        assert!(
            run(&Ufw, json!({"state": "enabled"}), &env.ctx(&c))
                .await
                .changed
        );
        assert!(c.sent("^ufw --force enable$"));
    }
}
