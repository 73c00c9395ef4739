//! The `duststack` command line: parse flags, run one subcommand, exit with its status.

fn main() -> std::process::ExitCode {
    duststack::cli::run()
}
