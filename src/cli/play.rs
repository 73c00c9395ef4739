//! `duststack play`: runs a playbook against an inventory, like `ansible-playbook`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use crate::exec::pool::ConnOverrides;
use crate::exec::{run_playbook, stats, RunOptions};
use crate::inventory::Inventory;
use crate::output::Printer;
use crate::playbook::load_playbook;

/// Flags of `duststack play`.
#[derive(Debug, clap::Args)]
pub struct PlayArgs {
    /// The playbook file(s) to run, in order.
    #[arg(required = true)]
    pub playbooks: Vec<PathBuf>,
    /// Inventory source (file or directory); may be repeated.
    #[arg(short = 'i', long = "inventory")]
    pub inventory: Vec<PathBuf>,
    /// Only run on hosts matching this pattern.
    #[arg(short = 'l', long)]
    pub limit: Option<String>,
    /// Extra variables: key=value, YAML/JSON, or @file; may be repeated.
    #[arg(short = 'e', long = "extra-vars")]
    pub extra_vars: Vec<String>,
    /// Only run tasks with these tags (comma-separated; may be repeated).
    #[arg(short = 't', long = "tags")]
    pub tags: Vec<String>,
    /// Skip tasks with these tags.
    #[arg(long = "skip-tags")]
    pub skip_tags: Vec<String>,
    /// Report what would change, change nothing.
    #[arg(short = 'C', long)]
    pub check: bool,
    /// Show file differences.
    #[arg(short = 'D', long)]
    pub diff: bool,
    /// Hosts worked on at once.
    #[arg(short = 'f', long, default_value_t = 50)]
    pub forks: usize,
    /// More output (-v shows every result).
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Print a JSON event per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Connect as this user (unless the inventory says otherwise).
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Private key file for SSH.
    #[arg(long = "private-key", visible_alias = "key-file")]
    pub private_key: Option<PathBuf>,
    /// known_hosts file checked strictly (default ~/.ssh/known_hosts).
    #[arg(long = "known-hosts")]
    pub known_hosts: Option<PathBuf>,
    /// Trust and record host keys seen for the first time (never a changed one).
    #[arg(long = "accept-new-host-keys")]
    pub accept_new_host_keys: bool,
    /// SSH connect timeout in seconds.
    #[arg(short = 'T', long = "timeout")]
    pub timeout: Option<u64>,
    /// More directories to find roles in.
    #[arg(long = "roles-path")]
    pub roles_path: Vec<PathBuf>,
    /// Ask for the SSH password (for hosts without `ansible_password`).
    #[arg(short = 'k', long = "ask-pass")]
    pub ask_pass: bool,
    /// Ask for the sudo password used by `become`.
    #[arg(short = 'K', long = "ask-become-pass")]
    pub ask_become_pass: bool,
    /// Only check that the playbook and inventory load.
    #[arg(long = "syntax-check")]
    pub syntax_check: bool,
}

/// Parses `-e` values into one map (later ones win).
pub fn parse_extra_vars(values: &[String]) -> Result<Map<String, Value>> {
    let mut out = Map::new();
    for v in values {
        let v = v.trim();
        if let Some(file) = v.strip_prefix('@') {
            out.extend(crate::data::yaml::load_vars_file(std::path::Path::new(
                file,
            ))?);
        } else if v.starts_with('{') || v.starts_with('-') || (v.contains(": ") && !v.contains('='))
        {
            match crate::data::yaml::parse_yaml(v, std::path::Path::new("<extra vars>"))? {
                Value::Object(m) => out.extend(m),
                _ => anyhow::bail!("extra vars must be a mapping: {v}"),
            }
        } else {
            let words = shlex::split(v).with_context(|| format!("cannot parse extra vars: {v}"))?;
            for w in words {
                let (k, val) = w.split_once('=').with_context(|| {
                    format!("extra vars must be key=value, YAML/JSON or @file: {w}")
                })?;
                out.insert(k.to_owned(), Value::String(val.to_owned()));
            }
        }
    }
    Ok(out)
}

fn split_tags(v: &[String]) -> Vec<String> {
    v.iter()
        .flat_map(|t| t.split(','))
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Asks once for the passphrase of the first encrypted private key the run will use
/// (`--private-key`, then the inventory's `ansible_ssh_private_key_file`s).
fn key_passphrase(
    inventory: &Inventory,
    cli_key: Option<&std::path::Path>,
    ask: &dyn Fn(&str) -> Result<String>,
) -> Result<Option<String>> {
    let mut keys: Vec<PathBuf> = cli_key.map(PathBuf::from).into_iter().collect();
    for host in inventory.hosts() {
        if let Ok(vars) = inventory.vars_for_host(&host, None) {
            if let Some(k) = vars
                .get("ansible_ssh_private_key_file")
                .and_then(Value::as_str)
            {
                let k = PathBuf::from(k);
                if !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
    }
    for key in keys {
        let Ok(text) = std::fs::read_to_string(&key) else {
            continue;
        };
        if let Ok(k) = russh::keys::ssh_key::PrivateKey::from_openssh(&text) {
            if k.is_encrypted() {
                if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    anyhow::bail!("{} is encrypted and no terminal is there to ask for its passphrase (use ssh-agent)", key.display());
                }
                return ask(&format!("Passphrase for {}", key.display())).map(Some);
            }
        }
    }
    Ok(None)
}

/// Runs `duststack play`. Everything is loaded and validated before any host is contacted.
pub fn run(args: &PlayArgs) -> Result<ExitCode> {
    let sources = if args.inventory.is_empty() {
        vec![PathBuf::from("inventory")]
    } else {
        args.inventory.clone()
    };
    let inventory = Inventory::load(&sources)?;
    let extra_vars = parse_extra_vars(&args.extra_vars)?;
    let mut books = Vec::new();
    for p in &args.playbooks {
        books.push(load_playbook(p, &args.roles_path)?);
    }
    if args.syntax_check {
        for b in &books {
            println!("\nplaybook: {}", b.path.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let ask = |what: &str| -> Result<String> {
        rpassword::prompt_password(format!("{what}: "))
            .with_context(|| format!("reading the {what} from the terminal"))
    };
    let password = if args.ask_pass {
        Some(ask("SSH password")?)
    } else {
        None
    };
    let become_password = if args.ask_become_pass {
        Some(ask("BECOME password")?)
    } else {
        None
    };
    let key_passphrase = key_passphrase(&inventory, args.private_key.as_deref(), &ask)?;
    let opts = RunOptions {
        check: args.check,
        diff: args.diff,
        forks: args.forks,
        limit: args.limit.clone(),
        tags: split_tags(&args.tags),
        skip_tags: split_tags(&args.skip_tags),
        extra_vars,
        conn: ConnOverrides {
            user: args.user.clone(),
            private_key: args.private_key.clone(),
            known_hosts: args.known_hosts.clone(),
            accept_new_host_keys: args.accept_new_host_keys,
            connect_timeout: args.timeout.map(Duration::from_secs),
            password,
            key_passphrase,
        },
        role_paths: args.roles_path.clone(),
        become_password,
    };
    let printer = Printer::new(args.json, args.verbose, args.diff);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut all = Vec::new();
    for book in &books {
        let recap = runtime.block_on(run_playbook(book, &inventory, &opts, &printer))?;
        all.extend(recap);
    }
    printer.recap(&all);
    Ok(ExitCode::from(stats::exit_code(all.iter().map(|(_, s)| s))))
}
