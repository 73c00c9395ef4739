//! File state on the host in one round trip ([`stat`]), and the shared owner/group/mode,
//! backup and content-replacement steps used by copy, template, file, lineinfile and blockinfile.

use anyhow::{bail, Result};
use serde_json::{json, Map, Value};

use super::{quote, Args, Ctx};

/// Kind of a filesystem object (from the `st_mode` type bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Regular file.
    File,
    /// Directory.
    Dir,
    /// Symbolic link (only when not following links).
    Link,
    /// Block device.
    Block,
    /// Character device.
    Char,
    /// Named pipe.
    Fifo,
    /// Socket.
    Socket,
}

impl Kind {
    /// The name Ansible's `file` module uses for this state.
    pub fn state_name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "directory",
            Kind::Link => "link",
            _ => "file",
        }
    }
}

/// What `stat` saw of an existing path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileState {
    /// Object kind.
    pub kind: Kind,
    /// Permission bits (`0o7777` part).
    pub mode: u32,
    /// Owner uid.
    pub uid: u32,
    /// Group gid.
    pub gid: u32,
    /// Owner name (`UNKNOWN` when unmapped).
    pub owner: String,
    /// Group name.
    pub group: String,
    /// Size in bytes.
    pub size: u64,
    /// Access, modify, change times (seconds since the epoch).
    pub atime: i64,
    /// Modification time.
    pub mtime: i64,
    /// Status change time.
    pub ctime: i64,
    /// Inode number.
    pub inode: u64,
    /// Device number.
    pub dev: u64,
    /// Hard link count.
    pub nlink: u64,
    /// Link target as written (`readlink`), for symlinks.
    pub link_target: Option<String>,
    /// Fully resolved target (`readlink -f`), for symlinks.
    pub link_source: Option<String>,
    /// Readable / writable / executable by the connecting user.
    pub access: (bool, bool, bool),
    /// Checksum of a regular file, when asked for.
    pub checksum: Option<String>,
}

impl FileState {
    /// Mode as Ansible prints it (`"0644"`).
    pub fn mode_str(&self) -> String {
        format!("{:04o}", self.mode)
    }
}

/// The shell command printing what [`parse_stat`] reads for `path`.
pub fn stat_command(path: &str, follow: bool, checksum: Option<&str>) -> String {
    let l = if follow { "-L " } else { "" };
    let sum = match checksum {
        Some(alg) => format!(
            "if [ -f \"$p\" ] && [ -r \"$p\" ] && {{ [ {follow} = 1 ] || [ ! -L \"$p\" ]; }}; then {alg}sum < \"$p\"; else echo; fi",
            follow = u8::from(follow)
        ),
        None => "echo".to_owned(),
    };
    format!(
        "p={}; if [ -e \"$p\" ] || [ -L \"$p\" ]; then stat {l}-c '%f|%a|%u|%g|%U|%G|%s|%X|%Y|%Z|%i|%d|%h' -- \"$p\" || exit 1; \
         if [ -L \"$p\" ]; then readlink -- \"$p\"; readlink -f -- \"$p\" || echo; else echo; echo; fi; \
         a=; [ -r \"$p\" ] && a=r; [ -w \"$p\" ] && a=${{a}}w; [ -x \"$p\" ] && a=${{a}}x; echo \"A$a\"; {sum}; else echo ABSENT; fi",
        quote(path)
    )
}

/// Parses the output of [`stat_command`]; `None` when the path does not exist.
pub fn parse_stat(out: &str) -> Result<Option<FileState>> {
    let mut lines = out.lines();
    let first = lines.next().unwrap_or_default();
    if first == "ABSENT" {
        return Ok(None);
    }
    let f: Vec<&str> = first.split('|').collect();
    if f.len() != 13 {
        bail!("unexpected stat output: {first}");
    }
    let raw =
        u32::from_str_radix(f[0], 16).map_err(|_| anyhow::anyhow!("bad stat mode {}", f[0]))?;
    let kind = match raw & 0o170000 {
        0o040000 => Kind::Dir,
        0o120000 => Kind::Link,
        0o060000 => Kind::Block,
        0o020000 => Kind::Char,
        0o010000 => Kind::Fifo,
        0o140000 => Kind::Socket,
        _ => Kind::File,
    };
    let num = |i: usize| -> Result<i64> {
        f[i].parse()
            .map_err(|_| anyhow::anyhow!("unexpected stat field {}", f[i]))
    };
    let target = lines.next().unwrap_or_default();
    let source = lines.next().unwrap_or_default();
    let access = lines.next().unwrap_or_default();
    let sum = lines.next().unwrap_or_default();
    let opt = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    Ok(Some(FileState {
        kind,
        mode: raw & 0o7777,
        uid: num(2)? as u32,
        gid: num(3)? as u32,
        owner: f[4].to_owned(),
        group: f[5].to_owned(),
        size: num(6)? as u64,
        atime: num(7)?,
        mtime: num(8)?,
        ctime: num(9)?,
        inode: num(10)? as u64,
        dev: num(11)? as u64,
        nlink: num(12)? as u64,
        link_target: (kind == Kind::Link).then(|| target.to_owned()),
        link_source: (kind == Kind::Link).then(|| source.to_owned()),
        access: (
            access.contains('r'),
            access.contains('w'),
            access.contains('x'),
        ),
        checksum: sum.split_whitespace().next().and_then(opt),
    }))
}

/// Stats `path` on the host (without following a final symlink unless `follow`), with the sha1
/// of a regular file when `checksum`.
pub async fn stat(
    ctx: &Ctx<'_>,
    path: &str,
    follow: bool,
    checksum: bool,
) -> Result<Option<FileState>> {
    let out = ctx
        .read_ok(&stat_command(path, follow, checksum.then_some("sha1")))
        .await?;
    parse_stat(&out)
}

/// Desired owner, group and mode (`owner`, `group`, `mode` arguments).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attrs {
    /// User name or uid.
    pub owner: Option<String>,
    /// Group name or gid.
    pub group: Option<String>,
    /// Permission bits.
    pub mode: Option<u32>,
}

impl Attrs {
    /// Reads `owner`, `group` and `mode` from the arguments.
    pub fn from_args(args: &Args) -> Result<Self> {
        Ok(Attrs {
            owner: args.str("owner")?,
            group: args.str("group")?,
            mode: args.mode("mode")?,
        })
    }

    /// The `chown`/`chgrp`/`chmod` commands needed to bring `cur` to these attributes
    /// (all of them when the file does not exist yet).
    pub fn plan(&self, path: &str, cur: Option<&FileState>, recurse: bool) -> Vec<String> {
        let q = quote(path);
        let r = if recurse { "-R " } else { "" };
        let mut cmds = Vec::new();
        let differs = |want: &str, name: &str, id: u32| {
            if want.chars().all(|c| c.is_ascii_digit()) {
                want.parse::<u32>().ok() != Some(id)
            } else {
                want != name
            }
        };
        if let Some(o) = &self.owner {
            if cur.is_none_or(|c| differs(o, &c.owner, c.uid)) {
                cmds.push(format!("chown {r}{} {q}", quote(o)));
            }
        }
        if let Some(g) = &self.group {
            if cur.is_none_or(|c| differs(g, &c.group, c.gid)) {
                cmds.push(format!("chgrp {r}{} {q}", quote(g)));
            }
        }
        if let Some(m) = self.mode {
            if cur.is_none_or(|c| c.mode != m) {
                cmds.push(format!("chmod {r}{m:o} {q}"));
            }
        }
        cmds
    }

    /// Applies what differs (honouring check mode); returns whether anything (would have) changed.
    pub async fn apply(&self, ctx: &Ctx<'_>, path: &str, cur: Option<&FileState>) -> Result<bool> {
        let cmds = self.plan(path, cur, false);
        if cmds.is_empty() {
            return Ok(false);
        }
        ctx.apply(&cmds.join(" && ")).await?;
        Ok(true)
    }
}

/// Copies `path` to `path.<pid>.<timestamp>~` keeping attributes (skipped in check mode);
/// returns the backup's name.
pub async fn backup(ctx: &Ctx<'_>, path: &str) -> Result<Option<String>> {
    if ctx.check {
        return Ok(None);
    }
    let q = quote(path);
    let out = ctx
        .read_ok(&format!(
            "b={q}.$$.$(date +%Y-%m-%d@%H:%M:%S)~ && cp -p {q} \"$b\" && printf %s \"$b\""
        ))
        .await?;
    Ok(Some(out))
}

/// Writes `data` to `path`; an existing file keeps its mode, owner and group unless `mode` says otherwise.
pub async fn replace_content(
    ctx: &Ctx<'_>,
    path: &str,
    data: &[u8],
    old: Option<&FileState>,
    mode: Option<u32>,
) -> Result<()> {
    let keep = mode.or(old.map(|o| o.mode));
    ctx.write_file(path, data, keep).await?;
    if let Some(o) = old {
        ctx.apply(&format!("chown {}:{} {}", o.uid, o.gid, quote(path)))
            .await?;
    }
    Ok(())
}

/// sha1 of bytes as lowercase hex.
pub fn sha1_hex(data: &[u8]) -> String {
    use sha1::Digest;
    hex(&sha1::Sha1::digest(data))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Ansible's file result fields (`path`/`dest`, `mode`, `owner`, …) from a stat.
pub fn result_fields(st: &FileState) -> Map<String, Value> {
    let v = json!({
        "uid": st.uid,
        "gid": st.gid,
        "owner": st.owner,
        "group": st.group,
        "mode": st.mode_str(),
        "size": st.size,
        "state": st.kind.state_name(),
    });
    v.as_object().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{Env, LocalConn};

    #[tokio::test]
    async fn stat_reads_file_and_absent() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a");
        std::fs::write(&p, "hello\n").unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&LocalConn);
        let st = stat(&ctx, p.to_str().unwrap(), false, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(st.kind, Kind::File);
        assert_eq!(st.size, 6);
        assert_eq!(st.checksum.as_deref(), Some(sha1_hex(b"hello\n").as_str()));
        let none = stat(&ctx, dir.path().join("nope").to_str().unwrap(), false, true)
            .await
            .unwrap();
        assert!(none.is_none());
        std::os::unix::fs::symlink("a", dir.path().join("l")).unwrap();
        let l = stat(&ctx, dir.path().join("l").to_str().unwrap(), false, true)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(l.kind, Kind::Link);
        assert_eq!(l.link_target.as_deref(), Some("a"));
        assert_eq!(l.checksum, None);
    }

    #[test]
    fn plan_only_what_differs() {
        let st = parse_stat("81a4|644|0|0|root|root|6|1|2|3|4|5|1\n\n\nArw\n\n")
            .unwrap()
            .unwrap();
        let a = Attrs {
            owner: Some("0".into()),
            group: Some("root".into()),
            mode: Some(0o600),
        };
        assert_eq!(a.plan("/x", Some(&st), false), vec!["chmod 600 /x"]);
        let b = Attrs {
            owner: Some("bob".into()),
            ..Attrs::default()
        };
        assert_eq!(b.plan("/x", Some(&st), false), vec!["chown bob /x"]);
    }
}
