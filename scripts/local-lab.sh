#!/usr/bin/env bash
# The main job until VM labs land: bring up local SSH hosts (network namespaces with their own
# sshd) and configure them with a bundled playbook. The hosts stay up for you to use.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/duststack
DIR=${LAB_DIR:-/var/tmp/duststack-testbed}
"$BIN" testbed up --hosts "${LAB_HOSTS:-3}" --dir "$DIR"
ip netns exec dslab-ctl "$BIN" play playbooks/testbed.yml -i "$DIR/inventory.ini"
echo
echo "The lab is up. Run more playbooks with:"
echo "  ip netns exec dslab-ctl $BIN play PLAYBOOK -i $DIR/inventory.ini"
echo "Tear it down with: $BIN testbed down --dir $DIR"
