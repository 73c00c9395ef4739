#!/usr/bin/env bash
# Benchmark (not a test): 20 network-namespace hosts × 50 tasks (command, copy, template,
# lineinfile, file), duststack vs ansible-playbook (pipelining, forks=20) in one run, plus the
# raw-exec floor (1000 × `true` on one russh session). Prints a table with the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
HOSTS=${HOSTS:-20}
TASKS=${TASKS:-50}
DIR=$(mktemp -d /tmp/duststack-bench.XXXXXX)
NAME=dsbench

cargo build --release --quiet --bin duststack --example raw_exec
TARGET=${CARGO_TARGET_DIR:-target}
BIN=$TARGET/release/duststack
cleanup() { "$BIN" testbed down --name "$NAME" --dir "$DIR/bed" >/dev/null 2>&1 || true; rm -rf "$DIR"; }
trap cleanup EXIT
"$BIN" testbed up --name "$NAME" --hosts "$HOSTS" --dir "$DIR/bed" >/dev/null
CTL="ip netns exec $NAME-ctl"

# The playbook: TASKS tasks cycling through five modules, all inside each host's workdir.
mkdir -p "$DIR/pb/templates"
echo 'name={{ inventory_hostname }} task={{ n }}' > "$DIR/pb/templates/t.j2"
{
  echo "- hosts: all"
  echo "  gather_facts: false"
  echo "  tasks:"
  echo "    - file: path={{ workdir }}/{{ run }} state=directory"
  for i in $(seq 1 $((TASKS - 1))); do
    case $((i % 5)) in
      0) echo "    - command: echo $i";;
      1) echo "    - copy: content='task $i' dest={{ workdir }}/{{ run }}/copy$i";;
      2) echo "    - template: src=t.j2 dest={{ workdir }}/{{ run }}/tpl$i"; echo "      vars: {n: $i}";;
      3) echo "    - lineinfile: path={{ workdir }}/{{ run }}/lines line='line $i' create=yes";;
      4) echo "    - file: path={{ workdir }}/{{ run }}/dir$i state=directory";;
    esac
  done
} > "$DIR/pb/bench.yml"

INV="$DIR/bed/inventory.ini"
time_it() { local s e; s=$(date +%s.%N); "$@" >"$DIR/last.log" 2>&1 || { cat "$DIR/last.log"; exit 1; }; e=$(date +%s.%N); awk -v a="$s" -v b="$e" 'BEGIN{print b-a}'; }

dust=$(time_it $CTL "$BIN" play "$DIR/pb/bench.yml" -i "$INV" -e run=dust -f 20)
dust2=$(time_it $CTL "$BIN" play "$DIR/pb/bench.yml" -i "$INV" -e run=dust -f 20)
export ANSIBLE_PIPELINING=True ANSIBLE_HOST_KEY_CHECKING=True ANSIBLE_NOCOLOR=1 ANSIBLE_LOCAL_TEMP="$DIR/ansible-tmp"
ans=$(time_it $CTL ansible-playbook "$DIR/pb/bench.yml" -i "$INV" -e run=ansible -f 20)
ans2=$(time_it $CTL ansible-playbook "$DIR/pb/bench.yml" -i "$INV" -e run=ansible -f 20)
floor=$($CTL "$TARGET/release/examples/raw_exec" 10.77.0.11 "$DIR/bed/client_ed25519" "$DIR/bed/known_hosts" 1000)

printf '\n%-38s %10s %10s %8s\n' "run ($HOSTS hosts x $TASKS tasks)" duststack ansible ratio
printf '%-38s %9.2fs %9.2fs %7.1fx\n' "first run (changes)" "$dust" "$ans" "$(awk -v a="$ans" -v b="$dust" 'BEGIN{print a/b}')"
printf '%-38s %9.2fs %9.2fs %7.1fx\n' "second run (no changes)" "$dust2" "$ans2" "$(awk -v a="$ans2" -v b="$dust2" 'BEGIN{print a/b}')"
echo "raw-exec floor: $floor"
