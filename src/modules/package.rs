//! `apt`, `dnf`, `yum` and `package`: install / upgrade / remove only the packages whose state
//! differs (checked with `dpkg-query` / `rpm -q` in one round trip), refreshing the cache when asked.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use async_trait::async_trait;

use super::{quote, Args, Ctx, Module, Outcome};

/// `apt`.
pub struct Apt;
/// `dnf`.
pub struct Dnf;
/// `yum`.
pub struct Yum;
/// `package`: apt, dnf or yum, whichever the host has.
pub struct Package;

const PARAMS: &[&str] = &[
    "name",
    "pkg",
    "package",
    "state",
    "update_cache",
    "update-cache",
    "cache_valid_time",
    "install_recommends",
    "install-recommends",
    "purge",
    "autoremove",
    "force",
    "allow_downgrade",
    "allow_unauthenticated",
    "default_release",
    "default-release",
    "lock_timeout",
    "enablerepo",
    "disablerepo",
    "disable_gpg_check",
    "use",
];

/// Which package tool a module drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    /// apt-get / dpkg.
    Apt,
    /// dnf / rpm.
    Dnf,
    /// yum / rpm.
    Yum,
}

/// The package name without a version pin (`nginx=1.2*` → `nginx`, `foo-1.0` stays).
fn base_name(spec: &str, m: Manager) -> String {
    match m {
        Manager::Apt => spec.split('=').next().unwrap_or(spec).to_owned(),
        _ => spec
            .split(['<', '>', '='])
            .next()
            .unwrap_or(spec)
            .trim()
            .to_owned(),
    }
}

/// One shell command printing `I name`, `M name` or (for latest) `U name` per package.
pub fn query_command(m: Manager, names: &[String], latest: bool) -> String {
    let list = names.iter().map(|n| quote(n)).collect::<Vec<_>>().join(" ");
    let (installed, upgradable) = match m {
        Manager::Apt => (
            "dpkg-query -W -f='${Status}' \"$p\" 2>/dev/null | grep -q 'ok installed'",
            "apt-cache policy \"$p\" 2>/dev/null | awk '/Installed:/{i=$2}/Candidate:/{c=$2}END{exit !(c!=\"\" && c!=\"(none)\" && i!=c)}'",
        ),
        Manager::Dnf => ("rpm -q \"$p\" >/dev/null 2>&1", "dnf -q check-update \"$p\" >/dev/null 2>&1; [ $? -eq 100 ]"),
        Manager::Yum => ("rpm -q \"$p\" >/dev/null 2>&1", "yum -q check-update \"$p\" >/dev/null 2>&1; [ $? -eq 100 ]"),
    };
    let up = if latest {
        format!("if {upgradable}; then echo \"U $p\"; else echo \"I $p\"; fi")
    } else {
        "echo \"I $p\"".to_owned()
    };
    format!("for p in {list}; do if {installed}; then {up}; else echo \"M $p\"; fi; done")
}

async fn run_packages(m: Manager, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
    let names = {
        let mut v = args.list("name")?;
        if v.is_empty() {
            v = args.list("pkg")?;
        }
        if v.is_empty() {
            v = args.list("package")?;
        }
        v
    };
    let state = args.choice(
        "state",
        &[
            "present",
            "installed",
            "latest",
            "absent",
            "removed",
            "purged",
        ],
        "present",
    )?;
    let update = args.bool("update_cache", false)? || args.bool("update-cache", false)?;
    let mut out = Outcome::ok();
    if update {
        let fresh = match (m, args.int("cache_valid_time")?) {
            (Manager::Apt, Some(valid)) if valid > 0 => {
                let stamp = ctx
                    .read("stat -c %Y /var/lib/apt/periodic/update-success-stamp /var/lib/apt/lists 2>/dev/null | sort -n | tail -1")
                    .await?
                    .stdout_str();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_secs() as i64)
                    .unwrap_or(0);
                stamp.trim().parse::<i64>().is_ok_and(|t| now - t < valid)
            }
            _ => false,
        };
        if !fresh {
            let cmd = match m {
                Manager::Apt => "DEBIAN_FRONTEND=noninteractive apt-get update -q",
                Manager::Dnf => "dnf -q -y makecache",
                Manager::Yum => "yum -q -y makecache",
            };
            ctx.apply(cmd).await?;
            // Ansible's apt reports a cache refresh as a change.
            out.changed = m == Manager::Apt;
            out.data.insert("cache_updated".into(), true.into());
        } else {
            out.data.insert("cache_updated".into(), false.into());
        }
    }
    if names.is_empty() {
        if !update {
            bail!("one of the following is required: name, update_cache");
        }
        return Ok(out);
    }
    let bases: Vec<String> = names.iter().map(|n| base_name(n, m)).collect();
    let latest = state == "latest";
    let listing = ctx.read_ok(&query_command(m, &bases, latest)).await?;
    let status = |b: &str| {
        listing
            .lines()
            .find(|l| l.get(2..) == Some(b))
            .and_then(|l| l.chars().next())
            .unwrap_or('M')
    };
    let remove = matches!(state.as_str(), "absent" | "removed" | "purged");
    let targets: Vec<&String> = names
        .iter()
        .zip(&bases)
        .filter(|(_, b)| match status(b) {
            'I' => remove,
            'U' => !remove,
            _ => !remove,
        })
        .map(|(n, _)| n)
        .collect();
    if targets.is_empty() {
        return Ok(out);
    }
    let list = targets
        .iter()
        .map(|n| quote(n))
        .collect::<Vec<_>>()
        .join(" ");
    let purge = state == "purged" || args.bool("purge", false)?;
    let cmd = match (m, remove) {
        (Manager::Apt, false) => {
            let rec = match args
                .opt_bool("install_recommends")?
                .or(args.opt_bool("install-recommends")?)
            {
                Some(false) => " --no-install-recommends",
                Some(true) => " -o APT::Install-Recommends=yes",
                None => "",
            };
            format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold{rec} {list}")
        }
        (Manager::Apt, true) => format!(
            "DEBIAN_FRONTEND=noninteractive apt-get remove -y -q{} {list}",
            if purge { " --purge" } else { "" }
        ),
        (Manager::Dnf | Manager::Yum, r) => {
            let tool = if m == Manager::Dnf { "dnf" } else { "yum" };
            let verb = if r {
                "remove"
            } else if latest {
                "upgrade"
            } else {
                "install"
            };
            // `upgrade` does not install missing packages: install them alongside.
            if latest {
                format!("{tool} -y -q install {list} && {tool} -y -q upgrade {list}")
            } else {
                format!("{tool} -y -q {verb} {list}")
            }
        }
    };
    ctx.apply(&cmd).await?;
    out.changed = true;
    out.data.insert(
        "packages".into(),
        targets
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .into(),
    );
    Ok(out)
}

#[async_trait]
impl Module for Apt {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        run_packages(Manager::Apt, args, ctx).await
    }
}

#[async_trait]
impl Module for Dnf {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        run_packages(Manager::Dnf, args, ctx).await
    }
}

#[async_trait]
impl Module for Yum {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        run_packages(Manager::Yum, args, ctx).await
    }
}

#[async_trait]
impl Module for Package {
    fn params(&self) -> &'static [&'static str] {
        PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let chosen = match args.str("use")?.filter(|u| u != "auto").or_else(|| {
            ctx.facts
                .get("ansible_pkg_mgr")
                .or_else(|| ctx.facts.get("pkg_mgr"))
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        }) {
            Some(u) => u,
            None => ctx
                .read_ok("for t in apt-get dnf yum; do if command -v $t >/dev/null 2>&1; then echo $t; exit 0; fi; done; echo none")
                .await?
                .trim()
                .to_owned(),
        };
        let m = match chosen.as_str() {
            "apt" | "apt-get" => Manager::Apt,
            "dnf" | "dnf5" => Manager::Dnf,
            "yum" => Manager::Yum,
            other => {
                return Ok(Outcome::failed(format!(
                    "no supported package manager found (got '{other}')"
                )))
            }
        };
        run_packages(m, args, ctx).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, FakeConn};
    use serde_json::json;

    #[tokio::test]
    async fn apt_installs_only_missing() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let c = FakeConn::new().on("^for p in", 0, "I curl\nM jq\n");
        let o = run(
            &Apt,
            json!({"name": ["curl", "jq=1.6*"], "install_recommends": false}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert!(c.sent("apt-get install .*--no-install-recommends 'jq=1.6\\*'$"));
        assert!(!c.sent("install.* curl"));

        let c = FakeConn::new().on("^for p in", 0, "I curl\nI jq\n");
        let o = run(&Apt, json!({"name": "curl,jq"}), &env.ctx(&c)).await;
        assert!(!o.changed);
        assert_eq!(c.commands().len(), 1);

        let c = FakeConn::new().on("^for p in", 0, "I curl\nM jq\n");
        let o = run(
            &Apt,
            json!({"name": ["curl", "jq"], "state": "absent", "purge": true}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert!(c.sent("apt-get remove -y -q --purge curl$"));
    }

    #[tokio::test]
    async fn apt_cache_valid_time_and_package_dispatch() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let c = FakeConn::new().on("^stat -c %Y", 0, &format!("{}\n", now - 10));
        let o = run(
            &Apt,
            json!({"update_cache": true, "cache_valid_time": 3600}),
            &env.ctx(&c),
        )
        .await;
        assert!(!o.changed && !c.sent("apt-get update"));
        let c = FakeConn::new().on("^stat -c %Y", 0, &format!("{}\n", now - 7200));
        let o = run(
            &Apt,
            json!({"update_cache": true, "cache_valid_time": 3600}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed && c.sent("apt-get update"));

        let c = FakeConn::new()
            .on("^for t in", 0, "dnf\n")
            .on("^for p in", 0, "U kernel\n");
        let o = run(
            &Package,
            json!({"name": "kernel", "state": "latest"}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert!(c.sent("dnf -y -q install kernel && dnf -y -q upgrade kernel"));
        assert!(c.sent("check-update"));
    }

    #[tokio::test]
    async fn query_command_runs_on_this_host() {
        // dpkg-query exists on the Debian build machine; reading is harmless.
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let ctx = env.ctx(&crate::modules::testing::LocalConn);
        let out = ctx
            .read_ok(&query_command(
                Manager::Apt,
                &["coreutils".into(), "no-such-pkg-xyz".into()],
                false,
            ))
            .await
            .unwrap();
        assert_eq!(out, "I coreutils\nM no-such-pkg-xyz\n");
    }
}
