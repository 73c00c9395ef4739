//! The raw-exec floor of the benchmark: N × `true` over one russh connection.
//!
//! `cargo run --release --example raw_exec -- HOST KEY KNOWN_HOSTS [N]`

use std::time::Instant;

use duststack::connection::spec::{connect, ConnectionSpec};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 4, "usage: raw_exec HOST KEY KNOWN_HOSTS [N]");
    let n: usize = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let spec = ConnectionSpec::ssh(
        &args[1],
        22,
        "root",
        Some(std::path::Path::new(&args[2])),
        std::path::Path::new(&args[3]),
    );
    let conn = connect(&spec).await?;
    let start = Instant::now();
    for _ in 0..n {
        let out = conn.exec("true", None).await?;
        anyhow::ensure!(out.rc == 0, "true failed");
    }
    let total = start.elapsed();
    println!(
        "{n} x true on one connection: {:.3} s ({:.2} ms each)",
        total.as_secs_f64(),
        total.as_secs_f64() * 1000.0 / n as f64
    );
    conn.close().await;
    Ok(())
}
