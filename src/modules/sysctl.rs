//! `sysctl`: a kernel parameter in a sysctl file ([`fix_lines`], pure) and, with `sysctl_set`,
//! its live value (`sysctl -w` when `sysctl -n` differs); reloads the file after editing it.

use anyhow::Result;
use async_trait::async_trait;

use super::edit::{edit_file, Edit, EditOpts};
use super::{args::to_bool, quote, Args, Ctx, Module, Outcome};

/// `sysctl`.
pub struct Sysctl;

const PARAMS: &[&str] = &[
    "name",
    "key",
    "value",
    "val",
    "state",
    "reload",
    "sysctl_file",
    "sysctl_set",
    "ignoreerrors",
];

/// Values compare equal after whitespace normalisation (`"4096 87380"` vs `"4096\t87380"`).
pub fn same_value(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

/// The value of `name` in a sysctl file's text (first assignment), if any.
pub fn file_value(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let t = l.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            return None;
        }
        let (k, v) = t.split_once('=')?;
        (k.trim() == name).then(|| v.trim().to_owned())
    })
}

/// Ansible's `fix_lines`: comments and other keys kept, the first `name=` line set to `value`
/// (or dropped when `value` is `None`), later duplicates dropped, appended when missing.
pub fn fix_lines(text: &str, name: &str, value: Option<&str>) -> String {
    let mut out = String::new();
    let mut seen = false;
    for l in text.split_inclusive('\n') {
        let t = l.trim();
        let key = (!t.is_empty() && !t.starts_with('#') && !t.starts_with(';'))
            .then(|| t.split_once('=').map(|(k, _)| k.trim()))
            .flatten();
        if key != Some(name) {
            out.push_str(l);
            if !l.ends_with('\n') {
                out.push('\n');
            }
            continue;
        }
        if !seen {
            if let Some(v) = value {
                out.push_str(&format!("{name}={v}\n"));
            }
        }
        seen = true;
    }
    if !seen {
        if let Some(v) = value {
            out.push_str(&format!("{name}={v}\n"));
        }
    }
    out
}

#[async_trait]
impl Module for Sysctl {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let name = args.required(&["name", "key"])?;
        let present = args.choice("state", &["present", "absent"], "present")? == "present";
        let value = match args.get_any(&["value", "val"]) {
            Some(serde_json::Value::Bool(b)) => Some(if *b { "1" } else { "0" }.to_owned()),
            Some(v @ serde_json::Value::String(s))
                if ["yes", "no", "true", "false", "on", "off"]
                    .contains(&s.to_ascii_lowercase().as_str()) =>
            {
                to_bool(v).map(|b| if b { "1" } else { "0" }.to_owned())
            }
            _ => args
                .str_any(&["value", "val"])?
                .map(|v| v.trim().to_owned()),
        };
        if present && value.is_none() {
            anyhow::bail!("value is required with state=present");
        }
        let file = args
            .str("sysctl_file")?
            .unwrap_or_else(|| "/etc/sysctl.conf".into());
        let reload = args.bool("reload", true)?;
        let ignore = args.bool("ignoreerrors", false)?;
        let opts = EditOpts::default();
        let want = if present { value.as_deref() } else { None };
        let mut out = edit_file(ctx, &file, &opts, |text| {
            let text = text.unwrap_or_default();
            let cur = file_value(text, &name);
            let same = match (&cur, want) {
                (Some(c), Some(w)) => same_value(c, w),
                (None, None) => true,
                _ => false,
            };
            if same {
                Edit::Keep(String::new())
            } else {
                Edit::Write(fix_lines(text, &name, want), String::new())
            }
        })
        .await?;
        if out.failed {
            return Ok(out);
        }
        let e = if ignore { "-e " } else { "" };
        if out.changed && reload {
            ctx.apply(&format!("sysctl {e}-p {}", quote(&file))).await?;
        }
        if present && args.bool("sysctl_set", false)? {
            let v = value.clone().unwrap_or_default();
            let live = ctx.read(&format!("sysctl -n {}", quote(&name))).await?;
            if live.rc != 0 && !ignore {
                return Ok(Outcome::failed(format!(
                    "setting {name} failed: {}",
                    live.stderr_str().trim()
                )));
            }
            if !same_value(&live.stdout_str(), &v) {
                ctx.apply(&format!("sysctl {e}-w {}", quote(&format!("{name}={v}"))))
                    .await?;
                out.changed = true;
            }
        }
        out.msg = None;
        out.data.remove("msg");
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, FakeConn};
    use serde_json::json;

    #[test]
    fn fix_lines_like_ansible() {
        let t = "# c\nnet.ipv4.ip_forward = 0\nvm.swappiness=10\nnet.ipv4.ip_forward=0\n";
        assert_eq!(
            fix_lines(t, "net.ipv4.ip_forward", Some("1")),
            "# c\nnet.ipv4.ip_forward=1\nvm.swappiness=10\n"
        );
        assert_eq!(
            fix_lines(t, "vm.swappiness", None),
            "# c\nnet.ipv4.ip_forward = 0\nnet.ipv4.ip_forward=0\n"
        );
        assert_eq!(fix_lines("a=1", "b", Some("2")), "a=1\nb=2\n");
        assert_eq!(file_value(t, "net.ipv4.ip_forward").as_deref(), Some("0"));
        assert!(same_value("4096 87380", "4096\t87380\n"));
    }

    const STAT: &str = "81a4|644|0|0|root|root|10|1|2|3|4|5|1\n\n\nArw\n\n";

    fn conn(file: &str, live: &str) -> FakeConn {
        FakeConn::new()
            .on("^p=", 0, STAT)
            .on("then cat", 0, file)
            .on("^sysctl -n", 0, live)
    }

    #[tokio::test]
    async fn plans_write_reload_and_set() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let c = conn("net.ipv4.ip_forward=0\n", "0\n");
        let o = run(
            &Sysctl,
            json!({"name": "net.ipv4.ip_forward", "value": "1", "sysctl_set": true}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert_eq!(
            c.files.lock().unwrap()["/etc/sysctl.conf"],
            b"net.ipv4.ip_forward=1\n"
        );
        assert!(c.sent("^sysctl -p /etc/sysctl.conf$"));
        assert!(c.sent("^sysctl -w 'net.ipv4.ip_forward=1'$"));

        // file and live value already right: only reads
        let c = conn("net.ipv4.ip_forward = 1\n", "1\n");
        let o = run(
            &Sysctl,
            json!({"name": "net.ipv4.ip_forward", "value": 1, "sysctl_set": true}),
            &env.ctx(&c),
        )
        .await;
        assert!(!o.changed);
        assert!(!c.sent("^sysctl -[wp]|^PUT"));

        // live value differs but file right: only sysctl -w
        let c = conn("net.ipv4.ip_forward=1\n", "0\n");
        let o = run(
            &Sysctl,
            json!({"name": "net.ipv4.ip_forward", "value": "1", "sysctl_set": "yes"}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert!(c.sent("^sysctl -w") && !c.sent("^PUT|^sysctl -p"));

        // check mode: nothing changing is sent
        let mut cenv = Env::new(dir.path());
        cenv.check = true;
        let c = conn("", "0\n");
        let o = run(
            &Sysctl,
            json!({"name": "vm.x", "value": "1", "sysctl_set": true}),
            &cenv.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert_eq!(o.diffs[0].after, "vm.x=1\n");
        assert!(!c.sent("^sysctl -[wp]|^PUT"));
    }
}
