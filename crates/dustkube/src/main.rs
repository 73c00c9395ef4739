//! The `dustkube` command: `server`, `init`, `join`, `reset`, `token`, `certs`, `agent`, `images`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use dustkube::cmd;

/// A small Kubernetes-compatible control plane.
#[derive(Parser)]
#[command(name = "dustkube", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (HTTPS, objects in etcd).
    Server(dustkube::server::ServerArgs),
    /// Set up a control plane on this host: preflight, PKI, etcd + server, bootstrap token.
    Init(cmd::init::InitArgs),
    /// Join this host to a cluster: discovery, TLS bootstrap, node agent.
    Join(cmd::join::JoinArgs),
    /// Undo init/join on this host: units, pods, network rules, files.
    Reset(cmd::reset::ResetArgs),
    /// Manage bootstrap tokens (create, list, delete).
    Token(cmd::token::TokenArgs),
    /// Check certificate expiry and renew certificates.
    Certs(cmd::certs::CertsArgs),
    /// Run the node agent: register this Node and run its pods through the CRI.
    Agent(dustkube::agent::AgentArgs),
    /// The offline image bundle (busybox, pause) as docker-archive tarballs.
    Images(dustkube::images::ImagesArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs in files and journals stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dustkube: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Server(args) => dustkube::server::run(args)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Init(args) => cmd::init::run(args).await,
            Command::Join(args) => cmd::join::run(args).await,
            Command::Reset(args) => cmd::reset::run(args).await,
            Command::Token(args) => cmd::token::run(args).await,
            Command::Certs(args) => cmd::certs::run(&args),
            Command::Agent(args) => dustkube::agent::run(args).await.map(|()| ExitCode::SUCCESS),
            Command::Images(args) => dustkube::images::run(&args).map(|()| ExitCode::SUCCESS),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("dustkube: {e:#}");
            ExitCode::FAILURE
        }
    }
}
