#!/bin/sh
# Raw-exec floor: 1000 x `true` on one russh connection, and 200 sequential echo execs,
# against the network-namespace test bed (needs root). Optimised build for realistic numbers.
set -e
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/work/main/target}"
cargo test --release --test transport -- --nocapture --test-threads 1 \
    raw_exec_floor sequential_execs twenty_concurrent many_hosts 2>&1 |
    grep -E 'raw-exec floor|sequential execs|concurrent|in parallel|test result'
