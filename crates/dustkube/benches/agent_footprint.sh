#!/usr/bin/env bash
# Footprint of `dustkube agent`: its RSS while it runs 10+ pods on a real containerd.
# Runs the multi-node agent test (tests/agent.rs: lab network namespace with etcd + server, two
# node namespaces each with containerd and an agent) from a release build and prints the RSS
# line it reports after 10 idle pods are Running on node-2 (target: <= 25 MB).
#
# Usage: crates/dustkube/benches/agent_footprint.sh      (root; scripts/install-deps.sh first)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
cd "$ROOT"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
if ! cargo test --release -q -p dustkube --test agent -- --nocapture >"$LOG" 2>&1; then
  tail -60 "$LOG"
  exit 1
fi
grep 'agent RSS with 10 pods' "$LOG"
