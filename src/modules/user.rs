//! `user`: an account's existence and properties, read with `getent`/`id` in one round trip and
//! changed with only the `useradd`/`usermod`/`userdel` options that differ.

use anyhow::Result;
use async_trait::async_trait;

use super::{quote, Args, Ctx, Module, Outcome};

/// `user`.
pub struct User;

const PARAMS: &[&str] = &[
    "name",
    "user",
    "state",
    "uid",
    "group",
    "groups",
    "append",
    "shell",
    "home",
    "create_home",
    "createhome",
    "system",
    "password",
    "comment",
    "remove",
    "force",
    "move_home",
    "non_unique",
    "update_password",
    "expires",
    "skeleton",
    "password_lock",
];

/// An account as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// uid.
    pub uid: String,
    /// Primary gid.
    pub gid: String,
    /// Primary group name.
    pub group: String,
    /// GECOS comment.
    pub comment: String,
    /// Home directory.
    pub home: String,
    /// Login shell.
    pub shell: String,
    /// Supplementary group names.
    pub groups: Vec<String>,
    /// Password hash from shadow (empty if unreadable).
    pub password: String,
}

/// Parses the read command's output (`None` when the user does not exist).
pub fn parse(out: &str) -> Option<Account> {
    let mut lines = out.lines();
    let pw: Vec<&str> = lines.next()?.split(':').collect();
    if pw.len() < 7 {
        return None;
    }
    let group = lines.next().unwrap_or_default().trim().to_owned();
    let groups = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter(|g| *g != group)
        .map(str::to_owned)
        .collect();
    Some(Account {
        uid: pw[2].into(),
        gid: pw[3].into(),
        group,
        comment: pw[4].into(),
        home: pw[5].into(),
        shell: pw[6].into(),
        groups,
        password: lines.next().unwrap_or_default().trim().to_owned(),
    })
}

#[async_trait]
impl Module for User {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let name = args.required(&["name", "user"])?;
        let present = args.choice("state", &["present", "absent"], "present")? == "present";
        let n = quote(&name);
        let read = format!(
            "getent passwd {n} || exit 0; id -gn {n}; id -Gn {n}; getent shadow {n} 2>/dev/null | cut -d: -f2; true"
        );
        let cur = parse(&ctx.read_ok(&read).await?);
        let mut out = Outcome::ok()
            .with("name", name.clone())
            .with("state", if present { "present" } else { "absent" });
        if !present {
            if cur.is_some() {
                let mut cmd = "userdel".to_owned();
                if args.bool("remove", false)? {
                    cmd.push_str(" -r");
                }
                if args.bool("force", false)? {
                    cmd.push_str(" -f");
                }
                ctx.apply(&format!("{cmd} {n}")).await?;
                out.changed = true;
            }
            return Ok(out);
        }
        let uid = args.str("uid")?;
        let group = args.str("group")?;
        let groups = args
            .get("groups")
            .map(|_| args.list("groups"))
            .transpose()?;
        let append = args.bool("append", false)?;
        let shell = args.str("shell")?;
        let home = args.str("home")?;
        let comment = args.str("comment")?;
        let password = args.str("password")?;
        let mut opts: Vec<String> = Vec::new();
        match &cur {
            None => {
                let mut push = |flag: &str, v: &Option<String>| {
                    if let Some(v) = v {
                        opts.push(format!("{flag} {}", quote(v)));
                    }
                };
                push("-u", &uid);
                push("-g", &group);
                push("-s", &shell);
                push("-d", &home);
                push("-c", &comment);
                push("-p", &password);
                push("-k", &args.str("skeleton")?);
                push("-e", &args.str("expires")?);
                if let Some(g) = groups.as_ref().filter(|g| !g.is_empty()) {
                    opts.push(format!("-G {}", quote(&g.join(","))));
                }
                if args.bool("system", false)? {
                    opts.push("-r".into());
                }
                if args.bool("non_unique", false)? {
                    opts.push("-o".into());
                }
                let create = args
                    .opt_bool("create_home")?
                    .or(args.opt_bool("createhome")?)
                    .unwrap_or(true);
                opts.push(if create { "-m" } else { "-M" }.into());
                ctx.apply(&format!("useradd {} {n}", opts.join(" ")))
                    .await?;
                out.changed = true;
            }
            Some(a) => {
                let differs =
                    |want: &Option<String>, have: &str| want.as_ref().is_some_and(|w| w != have);
                if differs(&uid, &a.uid) {
                    opts.push(format!("-u {}", quote(uid.as_deref().unwrap_or_default())));
                    if args.bool("non_unique", false)? {
                        opts.push("-o".into());
                    }
                }
                if let Some(g) = &group {
                    if g != &a.group && g != &a.gid {
                        opts.push(format!("-g {}", quote(g)));
                    }
                }
                if let Some(want) = &groups {
                    let missing: Vec<&String> =
                        want.iter().filter(|g| !a.groups.contains(g)).collect();
                    let extra = a.groups.iter().any(|g| !want.contains(g));
                    if append && !missing.is_empty() {
                        let m: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                        opts.push(format!("-a -G {}", quote(&m.join(","))));
                    } else if !append && (!missing.is_empty() || extra) {
                        opts.push(format!("-G {}", quote(&want.join(","))));
                    }
                }
                if differs(&shell, &a.shell) {
                    opts.push(format!(
                        "-s {}",
                        quote(shell.as_deref().unwrap_or_default())
                    ));
                }
                if differs(&home, &a.home) {
                    let mv = if args.bool("move_home", false)? {
                        " -m"
                    } else {
                        ""
                    };
                    opts.push(format!(
                        "-d {}{mv}",
                        quote(home.as_deref().unwrap_or_default())
                    ));
                }
                if differs(&comment, &a.comment) {
                    opts.push(format!(
                        "-c {}",
                        quote(comment.as_deref().unwrap_or_default())
                    ));
                }
                let always =
                    args.choice("update_password", &["always", "on_create"], "always")? == "always";
                if always && differs(&password, &a.password) {
                    opts.push(format!(
                        "-p {}",
                        quote(password.as_deref().unwrap_or_default())
                    ));
                }
                if !opts.is_empty() {
                    ctx.apply(&format!("usermod {} {n}", opts.join(" ")))
                        .await?;
                    out.changed = true;
                }
                out = out
                    .with("uid", a.uid.clone())
                    .with("home", a.home.clone())
                    .with("shell", a.shell.clone())
                    .with("group", a.group.clone());
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

    const BOB: &str = "bob:x:1001:1001:Bob:/home/bob:/bin/sh\nbob\nbob sudo\n$6$abc\n";

    #[tokio::test]
    async fn useradd_usermod_userdel() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let c = FakeConn::new().on("^getent passwd", 0, "");
        let o = run(&User, json!({"name": "bob", "shell": "/bin/bash", "groups": ["sudo", "docker"], "system": true}), &env.ctx(&c)).await;
        assert!(o.changed);
        assert!(
            c.sent("^useradd -s /bin/bash -G 'sudo,docker' -r -m bob$"),
            "{:?}",
            c.commands()
        );

        let c = FakeConn::new().on("^getent passwd", 0, BOB);
        let o = run(&User, json!({"name": "bob", "shell": "/bin/sh", "groups": "sudo", "comment": "Bob", "password": "$6$abc"}), &env.ctx(&c)).await;
        assert!(!o.changed, "{:?}", c.commands());
        assert_eq!(c.commands().len(), 1);

        let c = FakeConn::new().on("^getent passwd", 0, BOB);
        let o = run(
            &User,
            json!({"name": "bob", "groups": ["docker"], "append": true, "shell": "/bin/bash"}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert!(
            c.sent("^usermod -a -G docker -s /bin/bash bob$"),
            "{:?}",
            c.commands()
        );

        let c = FakeConn::new().on("^getent passwd", 0, BOB);
        assert!(
            run(
                &User,
                json!({"name": "bob", "state": "absent", "remove": true}),
                &env.ctx(&c)
            )
            .await
            .changed
        );
        assert!(c.sent("^userdel -r bob$"));
    }

    #[tokio::test]
    async fn read_command_parses_root_here() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&crate::modules::testing::LocalConn);
        let o = run(&User, json!({"name": "root", "uid": "0"}), &ctx).await;
        assert!(!o.changed);
        assert_eq!(o.data["home"], "/root");
    }
}
