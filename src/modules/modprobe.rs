//! `modprobe`: a kernel module loaded or not (`/proc/modules`, builtins count as loaded), and
//! optionally persisted in `/etc/modules-load.d/<name>.conf` / `/etc/modprobe.d/<name>.conf`.

use anyhow::Result;
use async_trait::async_trait;

use super::{quote, Args, Ctx, Diff, Module, Outcome};

/// `modprobe`.
pub struct Modprobe;

/// What the host says about a module.
#[derive(Debug, PartialEq, Eq)]
pub struct ModState {
    /// `loaded`, `builtin` or `absent`.
    pub status: String,
    /// Content of `/etc/modules-load.d/<name>.conf` (empty when missing).
    pub load_conf: String,
    /// Content of `/etc/modprobe.d/<name>.conf`.
    pub options_conf: String,
}

const SEP: &str = "--duststack--";

fn read_command(name: &str) -> String {
    let n = quote(&name.replace('-', "_"));
    let d = quote(&name.replace('_', "-"));
    let orig = quote(name);
    format!(
        "n={n}; d={d}; if grep -q \"^$n \" /proc/modules; then echo loaded; \
         elif grep -qE \"/($n|$d)\\.ko(\\.[a-z]+)?$\" /lib/modules/$(uname -r)/modules.builtin 2>/dev/null; then echo builtin; \
         else echo absent; fi; echo {SEP}; cat /etc/modules-load.d/{orig}.conf 2>/dev/null; echo {SEP}; cat /etc/modprobe.d/{orig}.conf 2>/dev/null; true"
    )
}

/// Parses the output of the read command.
pub fn parse(out: &str) -> ModState {
    let sep = format!("{SEP}\n");
    let mut parts = out.split(&sep);
    ModState {
        status: parts.next().unwrap_or_default().trim().to_owned(),
        load_conf: parts.next().unwrap_or_default().to_owned(),
        options_conf: parts.next().unwrap_or_default().to_owned(),
    }
}

#[async_trait]
impl Module for Modprobe {
    fn params(&self) -> &'static [&'static str] {
        &["name", "state", "params", "persistent"]
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let name = args.required(&["name"])?;
        let present = args.choice("state", &["present", "absent"], "present")? == "present";
        let params = args.str("params")?.unwrap_or_default();
        let persistent =
            args.choice("persistent", &["disabled", "present", "absent"], "disabled")?;
        let st = parse(&ctx.read_ok(&read_command(&name)).await?);
        let mut out = Outcome::ok()
            .with("name", name.clone())
            .with("params", params.clone())
            .with("state", if present { "present" } else { "absent" });
        let loaded = st.status != "absent";
        if present && !loaded {
            let p = params
                .split_whitespace()
                .map(quote)
                .collect::<Vec<_>>()
                .join(" ");
            ctx.apply(format!("modprobe {} {p}", quote(&name)).trim_end())
                .await?;
            out.changed = true;
        } else if !present && st.status == "loaded" {
            ctx.apply(&format!("modprobe -r {}", quote(&name))).await?;
            out.changed = true;
        }
        let load_path = format!("/etc/modules-load.d/{name}.conf");
        let opt_path = format!("/etc/modprobe.d/{name}.conf");
        let files: Vec<(String, &String, Option<String>)> = match persistent.as_str() {
            "present" => vec![
                (load_path, &st.load_conf, Some(format!("{name}\n"))),
                (
                    opt_path,
                    &st.options_conf,
                    (!params.is_empty()).then(|| format!("options {name} {params}\n")),
                ),
            ],
            "absent" => vec![
                (load_path, &st.load_conf, None),
                (opt_path, &st.options_conf, None),
            ],
            _ => Vec::new(),
        };
        for (path, cur, want) in files {
            match want {
                Some(w) if *cur != w => {
                    if ctx.diff {
                        out.diffs.push(Diff::text(&path, cur, &w));
                    }
                    ctx.write_file(&path, w.as_bytes(), Some(0o644)).await?;
                    out.changed = true;
                }
                None if !cur.is_empty() => {
                    if ctx.diff {
                        out.diffs.push(Diff::text(&path, cur, ""));
                    }
                    ctx.apply(&format!("rm -f {}", quote(&path))).await?;
                    out.changed = true;
                }
                _ => {}
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, FakeConn};
    use serde_json::json;

    #[tokio::test]
    async fn loads_and_persists_only_when_needed() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let c = FakeConn::new().on("/proc/modules", 0, &format!("absent\n{SEP}\n{SEP}\n"));
        let a = json!({"name": "br_netfilter", "persistent": "present", "params": "x=1"});
        let o = run(&Modprobe, a.clone(), &env.ctx(&c)).await;
        assert!(o.changed);
        assert!(c.sent("^modprobe br_netfilter 'x=1'$"));
        assert_eq!(
            c.files.lock().unwrap()["/etc/modules-load.d/br_netfilter.conf"],
            b"br_netfilter\n"
        );
        assert_eq!(
            c.files.lock().unwrap()["/etc/modprobe.d/br_netfilter.conf"],
            b"options br_netfilter x=1\n"
        );

        let c = FakeConn::new().on(
            "/proc/modules",
            0,
            &format!("loaded\n{SEP}\nbr_netfilter\n{SEP}\noptions br_netfilter x=1\n"),
        );
        let o = run(&Modprobe, a, &env.ctx(&c)).await;
        assert!(!o.changed);
        assert_eq!(c.commands().len(), 1);

        let c = FakeConn::new().on("/proc/modules", 0, &format!("builtin\n{SEP}\n{SEP}\n"));
        assert!(
            !run(&Modprobe, json!({"name": "overlay"}), &env.ctx(&c))
                .await
                .changed
        );
        assert!(
            !run(
                &Modprobe,
                json!({"name": "overlay", "state": "absent"}),
                &env.ctx(&c)
            )
            .await
            .changed
        );

        let c = FakeConn::new().on("/proc/modules", 0, &format!("loaded\n{SEP}\n{SEP}\n"));
        assert!(
            run(
                &Modprobe,
                json!({"name": "dummy", "state": "absent"}),
                &env.ctx(&c)
            )
            .await
            .changed
        );
        assert!(c.sent("^modprobe -r dummy$"));
    }

    #[tokio::test]
    async fn read_command_is_valid_shell_here() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&crate::modules::testing::LocalConn);
        let st = parse(
            &ctx.read_ok(&read_command("no_such_module_xyz"))
                .await
                .unwrap(),
        );
        assert_eq!(
            st,
            ModState {
                status: "absent".into(),
                load_conf: String::new(),
                options_conf: String::new()
            }
        );
    }

    #[test]
    fn parse_read() {
        let s = parse(&format!("loaded\n{SEP}\na\n{SEP}\n"));
        assert_eq!(
            (
                s.status.as_str(),
                s.load_conf.as_str(),
                s.options_conf.as_str()
            ),
            ("loaded", "a\n", "")
        );
    }
}
