//! `hostname`: the running host name and `/etc/hostname`, set with `hostnamectl` when systemd runs,
//! else by writing `/etc/hostname` and running `hostname NAME`.

use anyhow::Result;
use async_trait::async_trait;
use serde_json::json;

use super::{quote, Args, Ctx, Diff, Module, Outcome};

/// `hostname`.
pub struct Hostname;

#[async_trait]
impl Module for Hostname {
    fn params(&self) -> &'static [&'static str] {
        &["name", "use"]
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let name = args.required(&["name"])?;
        let out = ctx
            .read_ok(
                "echo \"cur=$(hostname)\"; echo \"file=$(cat /etc/hostname 2>/dev/null | head -n1)\"; \
                 if command -v hostnamectl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then echo ctl=1; else echo ctl=0; fi",
            )
            .await?;
        let field = |k: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(k))
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        let (cur, file) = (field("cur="), field("file="));
        let use_ = args.str("use")?.unwrap_or_default();
        let ctl = use_ == "systemd" || (use_.is_empty() && field("ctl=") == "1");
        let mut o = Outcome::ok();
        if cur != name || file != name {
            o.changed = true;
            if ctx.diff {
                o.diffs.push(Diff::text(
                    "hostname",
                    &format!("hostname = {cur}\n"),
                    &format!("hostname = {name}\n"),
                ));
            }
            if ctl {
                ctx.apply(&format!("hostnamectl set-hostname {}", quote(&name)))
                    .await?;
            } else {
                if file != name {
                    ctx.write_file("/etc/hostname", format!("{name}\n").as_bytes(), Some(0o644))
                        .await?;
                }
                if cur != name {
                    ctx.apply(&format!("hostname {}", quote(&name))).await?;
                }
            }
        }
        let short = name.split('.').next().unwrap_or(&name).to_owned();
        Ok(o.with("name", name.clone()).with(
            "ansible_facts",
            json!({"ansible_hostname": short, "ansible_nodename": name}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, FakeConn};
    use serde_json::json;

    #[tokio::test]
    async fn sets_only_what_differs() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let c = FakeConn::new().on("^echo \"cur", 0, "cur=old\nfile=node1\nctl=0\n");
        let o = run(&Hostname, json!({"name": "node1"}), &env.ctx(&c)).await;
        assert!(o.changed);
        assert!(c.sent("^hostname node1$") && !c.sent("^PUT"));
        let c = FakeConn::new().on("^echo \"cur", 0, "cur=node1\nfile=node1\nctl=1\n");
        assert!(
            !run(&Hostname, json!({"name": "node1"}), &env.ctx(&c))
                .await
                .changed
        );
        assert_eq!(c.commands().len(), 1);
        let c = FakeConn::new().on("^echo \"cur", 0, "cur=a\nfile=a\nctl=1\n");
        assert!(
            run(&Hostname, json!({"name": "b.example"}), &env.ctx(&c))
                .await
                .changed
        );
        assert!(c.sent("^hostnamectl set-hostname b.example$"));
    }
}
