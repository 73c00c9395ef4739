//! `mount`: an fstab entry ([`set_entry`] / [`remove_entry`], pure) and whether it is mounted
//! (`findmnt`), with `mount` / `umount` / remount as needed.

use anyhow::{bail, Result};
use async_trait::async_trait;

use super::edit::{edit_file, Edit, EditOpts};
use super::{quote, Args, Ctx, Module, Outcome};

/// `mount`.
pub struct Mount;

const PARAMS: &[&str] = &[
    "path", "name", "state", "src", "fstype", "opts", "dump", "passno", "fstab", "boot", "backup",
];

/// One fstab line's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Device / source.
    pub src: String,
    /// Mount point.
    pub path: String,
    /// Filesystem type.
    pub fstype: String,
    /// Options.
    pub opts: String,
    /// dump field.
    pub dump: String,
    /// passno field.
    pub passno: String,
}

fn escape(s: &str) -> String {
    s.replace(' ', "\\040").replace('\t', "\\011")
}

impl Entry {
    fn fields(&self) -> [String; 6] {
        [
            escape(&self.src),
            escape(&self.path),
            escape(&self.fstype),
            escape(&self.opts),
            self.dump.clone(),
            self.passno.clone(),
        ]
    }
    /// The fstab line (with newline).
    pub fn line(&self) -> String {
        format!("{}\n", self.fields().join(" "))
    }
}

fn fields_of(line: &str) -> Option<Vec<&str>> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') {
        return None;
    }
    let f: Vec<&str> = t.split_whitespace().collect();
    (f.len() >= 4).then_some(f)
}

/// fstab text with `e` present: lines for the same mount point that differ are rewritten,
/// a missing entry is appended. `None` when nothing changes.
pub fn set_entry(text: &str, e: &Entry) -> Option<String> {
    let want = e.fields();
    let mut found = false;
    let mut changed = false;
    let mut out = String::new();
    for l in text.split_inclusive('\n') {
        match fields_of(l) {
            Some(f) if f[1] == want[1] => {
                found = true;
                let cur = [
                    f[0],
                    f[1],
                    f[2],
                    f[3],
                    f.get(4).copied().unwrap_or("0"),
                    f.get(5).copied().unwrap_or("0"),
                ];
                if cur.iter().zip(&want).all(|(a, b)| a == b) {
                    out.push_str(l);
                } else {
                    out.push_str(&e.line());
                    changed = true;
                }
            }
            _ => out.push_str(l),
        }
    }
    if !found {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&e.line());
        changed = true;
    }
    changed.then_some(out)
}

/// fstab text without entries for `path`; `None` when there was none.
pub fn remove_entry(text: &str, path: &str) -> Option<String> {
    let p = escape(path);
    let mut changed = false;
    let out: String = text
        .split_inclusive('\n')
        .filter(|l| {
            let hit = fields_of(l).is_some_and(|f| f[1] == p);
            changed |= hit;
            !hit
        })
        .collect();
    changed.then_some(out)
}

#[async_trait]
impl Module for Mount {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let path = args.required(&["path", "name"])?;
        let path = if path.len() > 1 {
            path.trim_end_matches('/').to_owned()
        } else {
            path
        };
        let state = args.choice(
            "state",
            &[
                "mounted",
                "unmounted",
                "present",
                "absent",
                "remounted",
                "ephemeral",
            ],
            "",
        )?;
        if state == "ephemeral" {
            bail!("state=ephemeral is not supported");
        }
        let fstab = args.str("fstab")?.unwrap_or_else(|| "/etc/fstab".into());
        let q = quote(&path);
        let mounted = ctx
            .read(&format!(
                "if command -v findmnt >/dev/null 2>&1; then findmnt -n --mountpoint {q} >/dev/null; \
                 else awk -v p={q} '$2==p{{f=1}}END{{exit !f}}' /proc/mounts; fi"
            ))
            .await?
            .rc
            == 0;
        let opts = EditOpts {
            backup: args.bool("backup", false)?,
            ..EditOpts::default()
        };
        let mut out = Outcome::ok();
        let mut cmds = Vec::new();
        match state.as_str() {
            "mounted" | "present" => {
                let (Some(src), Some(fstype)) = (args.str("src")?, args.str("fstype")?) else {
                    bail!("state is {state} but all of the following are missing: src, fstype");
                };
                let mut o = args.str("opts")?.unwrap_or_else(|| "defaults".into());
                if !args.bool("boot", true)? && !o.split(',').any(|x| x == "noauto") {
                    o.push_str(",noauto");
                }
                let e = Entry {
                    src,
                    path: path.clone(),
                    fstype,
                    opts: o,
                    dump: args.str("dump")?.unwrap_or_else(|| "0".into()),
                    passno: args.str("passno")?.unwrap_or_else(|| "0".into()),
                };
                out = edit_file(ctx, &fstab, &opts, |t| {
                    match set_entry(t.unwrap_or_default(), &e) {
                        Some(n) => Edit::Write(n, String::new()),
                        None => Edit::Keep(String::new()),
                    }
                })
                .await?;
                if state == "mounted" {
                    if !mounted {
                        let how = if fstab == "/etc/fstab" {
                            format!("mount {q}")
                        } else {
                            format!(
                                "mount -o {} -t {} {} {q}",
                                quote(&e.opts),
                                quote(&e.fstype),
                                quote(&e.src)
                            )
                        };
                        cmds.push(format!("mkdir -p {q} && {how}"));
                    } else if out.changed {
                        cmds.push(format!("mount -o remount {q}"));
                    }
                }
            }
            "absent" => {
                out = edit_file(ctx, &fstab, &opts, |t| {
                    match t.and_then(|t| remove_entry(t, &path)) {
                        Some(n) => Edit::Write(n, String::new()),
                        None => Edit::Keep(String::new()),
                    }
                })
                .await?;
                if mounted {
                    cmds.push(format!("umount {q}"));
                }
                if mounted || out.changed {
                    cmds.push(format!(
                        "if [ -d {q} ]; then rmdir {q} 2>/dev/null || true; fi"
                    ));
                }
            }
            "unmounted" if mounted => cmds.push(format!("umount {q}")),
            "remounted" => cmds.push(format!("mount -o remount {q}")),
            _ => {}
        }
        if out.failed {
            return Ok(out);
        }
        for c in &cmds {
            ctx.apply(c).await?;
        }
        out.changed |= !cmds.is_empty();
        out.msg = None;
        out.data.remove("msg");
        Ok(out.with("name", path).with("fstab", fstab))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, FakeConn};
    use serde_json::json;

    fn e(opts: &str) -> Entry {
        Entry {
            src: "/dev/sdb1".into(),
            path: "/data".into(),
            fstype: "ext4".into(),
            opts: opts.into(),
            dump: "0".into(),
            passno: "0".into(),
        }
    }

    #[test]
    fn fstab_edits() {
        let t = "# c\nUUID=x / ext4 defaults 0 1\n/dev/sdb1   /data  ext4  defaults\n";
        assert_eq!(set_entry(t, &e("defaults")), None);
        assert_eq!(
            set_entry(t, &e("noatime")).unwrap(),
            "# c\nUUID=x / ext4 defaults 0 1\n/dev/sdb1 /data ext4 noatime 0 0\n"
        );
        assert_eq!(
            set_entry("a b c d 0 0", &e("defaults")).unwrap(),
            "a b c d 0 0\n/dev/sdb1 /data ext4 defaults 0 0\n"
        );
        assert_eq!(
            remove_entry(t, "/data").unwrap(),
            "# c\nUUID=x / ext4 defaults 0 1\n"
        );
        assert_eq!(remove_entry(t, "/nope"), None);
        let sp = Entry {
            path: "/my data".into(),
            ..e("defaults")
        };
        assert_eq!(sp.line(), "/dev/sdb1 /my\\040data ext4 defaults 0 0\n");
    }

    const STAT: &str = "81a4|644|0|0|root|root|10|1|2|3|4|5|1\n\n\nArw\n\n";

    #[tokio::test]
    async fn mounted_plans() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let a = json!({"path": "/data", "src": "/dev/sdb1", "fstype": "ext4", "state": "mounted"});
        let c = FakeConn::new()
            .on("^p=", 0, STAT)
            .on("then cat", 0, "")
            .on("findmnt", 1, "");
        let o = run(&Mount, a.clone(), &env.ctx(&c)).await;
        assert!(o.changed);
        assert_eq!(
            c.files.lock().unwrap()["/etc/fstab"],
            b"/dev/sdb1 /data ext4 defaults 0 0\n"
        );
        assert!(c.sent("^mkdir -p /data && mount /data$"));

        let c = FakeConn::new()
            .on("^p=", 0, STAT)
            .on("then cat", 0, "/dev/sdb1 /data ext4 defaults 0 0\n")
            .on("findmnt", 0, "");
        assert!(!run(&Mount, a, &env.ctx(&c)).await.changed);
        assert!(!c.sent("^mount|^PUT|^umount"));

        let c = FakeConn::new()
            .on("^p=", 0, STAT)
            .on("then cat", 0, "/dev/sdb1 /data ext4 defaults 0 0\n")
            .on("findmnt", 0, "");
        let o = run(
            &Mount,
            json!({"path": "/data", "state": "absent"}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert!(c.sent("^umount /data$"));
        assert_eq!(c.files.lock().unwrap()["/etc/fstab"], b"");
    }
}
