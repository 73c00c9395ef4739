//! Supervised child processes for `init --foreground` (and hosts without systemd): each service
//! is restarted when it exits; [`Supervisor::stop`] sends SIGTERM in reverse start order and
//! waits for each to exit (SIGKILL after 10 s).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One supervised program.
#[derive(Debug, Clone)]
pub struct Service {
    /// Name in messages (`etcd`, `dustkube server`).
    pub name: &'static str,
    /// The binary.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// File its stdout and stderr are appended to (`None`: inherited).
    pub log: Option<PathBuf>,
}

struct Running {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// The services started so far.
#[derive(Default)]
pub struct Supervisor {
    running: Vec<Running>,
}

fn spawn(svc: &Service) -> Result<Child> {
    let mut cmd = Command::new(&svc.program);
    cmd.args(&svc.args).stdin(Stdio::null()).kill_on_drop(true);
    // SAFETY: prctl is async-signal-safe; it makes the child get SIGTERM when we die (even by
    // SIGKILL), so no etcd or server outlives its supervisor.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    if let Some(log) = &svc.log {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("{}: cannot open the log", log.display()))?;
        cmd.stderr(out.try_clone()?).stdout(out);
    }
    cmd.spawn()
        .with_context(|| format!("cannot start {} ({})", svc.name, svc.program.display()))
}

async fn terminate(name: &str, child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
    }
    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
        Ok(status) => println!(
            "[supervisor] {name} stopped ({})",
            status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| e.to_string())
        ),
        Err(_) => {
            println!("[supervisor] {name} did not stop within 10s; killing it");
            let _ = child.kill().await;
        }
    }
}

async fn keep_running(svc: Service, mut child: Child, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                println!("[supervisor] {} exited ({status}); restarting in 1s", svc.name);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = stop.changed() => return,
                }
                match spawn(&svc) {
                    Ok(c) => {
                        println!("[supervisor] restarted {} (pid {})", svc.name, c.id().unwrap_or(0));
                        child = c;
                    }
                    Err(e) => {
                        println!("[supervisor] {e:#}; retrying in 5s");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                            _ = stop.changed() => return,
                        }
                        if let Ok(c) = spawn(&svc) {
                            child = c;
                        }
                    }
                }
            }
            _ = stop.changed() => {
                terminate(svc.name, &mut child).await;
                return;
            }
        }
    }
}

impl Supervisor {
    /// Starts `svc` and keeps it running; prints its pid.
    pub fn start(&mut self, svc: Service) -> Result<u32> {
        let child = spawn(&svc)?;
        let pid = child.id().unwrap_or(0);
        println!("[supervisor] started {} (pid {pid})", svc.name);
        let (tx, rx) = watch::channel(false);
        let name = svc.name;
        let task = tokio::spawn(keep_running(svc, child, rx));
        self.running.push(Running {
            name,
            stop: tx,
            task,
        });
        Ok(pid)
    }

    /// Stops every service, last started first.
    pub async fn stop(&mut self) {
        while let Some(r) = self.running.pop() {
            let _ = r.stop.send(true);
            if r.task.await.is_err() {
                println!("[supervisor] the task watching {} failed", r.name);
            }
        }
    }
}
