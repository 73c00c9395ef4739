//! `systemd`/`systemd_service` and `service`: a unit's running state, enablement and masking via
//! `systemctl show` + the `systemctl` verbs still needed; `service` falls back to `service NAME
//! ACTION` (and `update-rc.d`) on hosts not booted with systemd.

use anyhow::{bail, Result};
use async_trait::async_trait;
use serde_json::{Map, Value};

use super::{quote, Args, Ctx, Module, Outcome};

/// `systemd` / `systemd_service`.
pub struct Systemd;
/// `service`.
pub struct Service;

const SYSTEMD_PARAMS: &[&str] = &[
    "name",
    "service",
    "unit",
    "state",
    "enabled",
    "masked",
    "daemon_reload",
    "daemon-reload",
    "daemon_reexec",
    "daemon-reexec",
    "scope",
    "no_block",
    "force",
];

const SERVICE_PARAMS: &[&str] = &[
    "name",
    "state",
    "enabled",
    "pattern",
    "sleep",
    "arguments",
    "args",
    "runlevel",
    "use",
];

const STATES: &[&str] = &["started", "stopped", "restarted", "reloaded"];

/// The properties read from `systemctl show`.
const PROPS: &[&str] = &[
    "Id",
    "LoadState",
    "ActiveState",
    "SubState",
    "UnitFileState",
    "MainPID",
];

/// Parses `systemctl show` output (`Key=Value` lines).
pub fn parse_show(out: &str) -> Map<String, Value> {
    out.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), Value::from(v)))
        .collect()
}

/// The `systemctl` commands needed to go from `status` to the wanted state/enabled/masked.
pub fn plan(
    unit: &str,
    status: &Map<String, Value>,
    state: Option<&str>,
    enabled: Option<bool>,
    masked: Option<bool>,
) -> Vec<String> {
    let get = |k: &str| status.get(k).and_then(Value::as_str).unwrap_or_default();
    let u = quote(unit);
    let mut cmds = Vec::new();
    let file_state = get("UnitFileState");
    let is_masked = file_state.starts_with("masked") || get("LoadState") == "masked";
    match masked {
        Some(true) if !is_masked => cmds.push(format!("systemctl mask {u}")),
        Some(false) if is_masked => cmds.push(format!("systemctl unmask {u}")),
        _ => {}
    }
    let is_enabled = matches!(
        file_state,
        "enabled"
            | "enabled-runtime"
            | "static"
            | "alias"
            | "indirect"
            | "generated"
            | "linked"
            | "linked-runtime"
    );
    match enabled {
        Some(true) if !is_enabled => cmds.push(format!("systemctl enable {u}")),
        Some(false) if is_enabled && file_state != "static" => {
            cmds.push(format!("systemctl disable {u}"))
        }
        _ => {}
    }
    let active = matches!(get("ActiveState"), "active" | "activating" | "reloading");
    match state {
        Some("started") if !active => cmds.push(format!("systemctl start {u}")),
        Some("stopped") if active => cmds.push(format!("systemctl stop {u}")),
        Some("restarted") => cmds.push(format!("systemctl restart {u}")),
        Some("reloaded") if active => cmds.push(format!("systemctl reload {u}")),
        Some("reloaded") => cmds.push(format!("systemctl start {u}")),
        _ => {}
    }
    cmds
}

async fn run_systemd(
    ctx: &Ctx<'_>,
    name: Option<String>,
    state: Option<String>,
    enabled: Option<bool>,
    masked: Option<bool>,
    reload: bool,
    reexec: bool,
) -> Result<Outcome> {
    if reexec {
        ctx.apply("systemctl daemon-reexec").await?;
    }
    if reload {
        ctx.apply("systemctl daemon-reload").await?;
    }
    let Some(name) = name else {
        if state.is_some() || enabled.is_some() || masked.is_some() {
            bail!("missing required arguments: name");
        }
        return Ok(Outcome::ok());
    };
    let unit = if name.contains('.') {
        name.clone()
    } else {
        format!("{name}.service")
    };
    let props = PROPS.join(",");
    let status = parse_show(
        &ctx.read_ok(&format!(
            "systemctl show {} --property={props} --no-pager",
            quote(&unit)
        ))
        .await?,
    );
    let load = status
        .get("LoadState")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if load == "not-found" && (state.is_some() || enabled == Some(true) || masked == Some(false)) {
        return Ok(Outcome::failed(format!(
            "Could not find the requested service {name}: host"
        )));
    }
    let cmds = plan(&unit, &status, state.as_deref(), enabled, masked);
    for c in &cmds {
        ctx.apply(c).await?;
    }
    let mut out = Outcome::changed(!cmds.is_empty()).with("name", name);
    if let Some(s) = state {
        out = out.with("state", s);
    }
    if let Some(e) = enabled {
        out = out.with("enabled", e);
    }
    Ok(out.with("status", Value::Object(status)))
}

#[async_trait]
impl Module for Systemd {
    fn params(&self) -> &'static [&'static str] {
        SYSTEMD_PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let state = match args.str("state")? {
            Some(_) => Some(args.choice("state", STATES, "")?),
            None => None,
        };
        run_systemd(
            ctx,
            args.str_any(&["name", "service", "unit"])?,
            state,
            args.opt_bool("enabled")?,
            args.opt_bool("masked")?,
            args.bool("daemon_reload", false)? || args.bool("daemon-reload", false)?,
            args.bool("daemon_reexec", false)? || args.bool("daemon-reexec", false)?,
        )
        .await
    }
}

#[async_trait]
impl Module for Service {
    fn params(&self) -> &'static [&'static str] {
        SERVICE_PARAMS
    }
    async fn run(&self, args: &Args, ctx: &Ctx<'_>) -> Result<Outcome> {
        let name = args.required(&["name"])?;
        let state = match args.str("state")? {
            Some(_) => Some(args.choice("state", STATES, "")?),
            None => None,
        };
        let enabled = args.opt_bool("enabled")?;
        if state.is_none() && enabled.is_none() {
            bail!("one of the following is required: state, enabled");
        }
        let use_ = args.str("use")?.unwrap_or_else(|| "auto".into());
        let systemd = match use_.as_str() {
            "systemd" => true,
            "auto" => {
                ctx.read("command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]")
                    .await?
                    .rc
                    == 0
            }
            _ => false,
        };
        if systemd {
            return run_systemd(ctx, Some(name), state, enabled, None, false, false).await;
        }
        let n = quote(&name);
        let extra = args
            .str_any(&["arguments", "args"])?
            .map(|a| format!(" {a}"))
            .unwrap_or_default();
        let running = ctx
            .read(&format!("service {n} status >/dev/null 2>&1"))
            .await?
            .rc
            == 0;
        let mut cmds = Vec::new();
        match state.as_deref() {
            Some("started") if !running => cmds.push(format!("service {n} start{extra}")),
            Some("stopped") if running => cmds.push(format!("service {n} stop{extra}")),
            Some("restarted") => cmds.push(format!("service {n} restart{extra}")),
            Some("reloaded") if running => cmds.push(format!("service {n} reload{extra}")),
            Some("reloaded") => cmds.push(format!("service {n} start{extra}")),
            _ => {}
        }
        if let Some(e) = enabled {
            // SysV: enabled when a start link exists in the default runlevels.
            let on = ctx
                .read(&format!("ls /etc/rc[2345].d/S??{name} >/dev/null 2>&1"))
                .await?
                .rc
                == 0;
            if on != e {
                let verb = if e { "enable" } else { "disable" };
                cmds.push(format!(
                    "if command -v update-rc.d >/dev/null 2>&1; then update-rc.d {n} {verb}; \
                     elif command -v chkconfig >/dev/null 2>&1; then chkconfig {n} {}; \
                     else echo 'no update-rc.d or chkconfig to {verb} {name}' >&2; exit 1; fi",
                    if e { "on" } else { "off" }
                ));
            }
        }
        for c in &cmds {
            ctx.apply(c).await?;
        }
        let mut out = Outcome::changed(!cmds.is_empty()).with("name", name);
        if let Some(s) = state {
            out = out.with("state", s);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::modules::testing::{run, Env, FakeConn};
    use serde_json::json;

    fn show(active: &str, file: &str) -> String {
        format!("Id=nginx.service\nLoadState=loaded\nActiveState={active}\nSubState=x\nUnitFileState={file}\nMainPID=0\n")
    }

    #[tokio::test]
    async fn systemd_plans_only_needed_verbs() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let c = FakeConn::new().on("^systemctl show", 0, &show("inactive", "disabled"));
        let o = run(
            &Systemd,
            json!({"name": "nginx", "state": "started", "enabled": true, "daemon_reload": true}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert_eq!(
            c.commands(),
            vec![
                "systemctl daemon-reload".to_owned(),
                "systemctl show nginx.service --property=Id,LoadState,ActiveState,SubState,UnitFileState,MainPID --no-pager".into(),
                "systemctl enable nginx.service".into(),
                "systemctl start nginx.service".into(),
            ]
        );
        assert_eq!(o.data["status"]["ActiveState"], "inactive");

        let c = FakeConn::new().on("^systemctl show", 0, &show("active", "enabled"));
        let o = run(
            &Systemd,
            json!({"name": "nginx", "state": "started", "enabled": "yes"}),
            &env.ctx(&c),
        )
        .await;
        assert!(!o.changed);
        assert_eq!(c.commands().len(), 1);

        let c = FakeConn::new().on("^systemctl show", 0, &show("active", "enabled"));
        assert!(
            run(
                &Systemd,
                json!({"name": "nginx", "state": "restarted"}),
                &env.ctx(&c)
            )
            .await
            .changed
        );
        assert!(c.sent("^systemctl restart nginx.service$"));

        let c = FakeConn::new().on("^systemctl show", 0, &show("active", "masked"));
        assert!(
            run(
                &Systemd,
                json!({"name": "x.socket", "masked": false}),
                &env.ctx(&c)
            )
            .await
            .changed
        );
        assert!(c.sent("^systemctl unmask x.socket$"));

        let mut cenv = Env::new(dir.path());
        cenv.check = true;
        let c = FakeConn::new().on("^systemctl show", 0, &show("active", "enabled"));
        let o = run(
            &Systemd,
            json!({"name": "nginx", "state": "stopped"}),
            &cenv.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert!(!c.sent("stop"));

        let c = FakeConn::new().on(
            "^systemctl show",
            0,
            "Id=nope.service\nLoadState=not-found\nActiveState=inactive\n",
        );
        let o = run(
            &Systemd,
            json!({"name": "nope", "state": "started"}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.failed);
    }

    #[tokio::test]
    async fn service_falls_back_to_sysv() {
        let dir = tempfile::tempdir().unwrap();
        let env = Env::new(dir.path());
        let c = FakeConn::new()
            .on("command -v systemctl", 1, "")
            .on("status", 3, "")
            .on("^ls /etc/rc", 2, "");
        let o = run(
            &Service,
            json!({"name": "ssh", "state": "started", "enabled": true}),
            &env.ctx(&c),
        )
        .await;
        assert!(o.changed);
        assert!(c.sent("^service ssh start$"));
        assert!(c.sent("update-rc.d ssh enable"));
        let c = FakeConn::new().on("command -v systemctl", 0, "").on(
            "^systemctl show",
            0,
            &show("active", "enabled"),
        );
        assert!(
            !run(
                &Service,
                json!({"name": "ssh", "state": "started"}),
                &env.ctx(&c)
            )
            .await
            .changed
        );
    }
}
