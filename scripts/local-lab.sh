#!/usr/bin/env bash
# The main job: the default classroom lab (inventory/classroom) as VMs on this machine.
# 1. the Debian 12 base image (`duststack image build`, cached after the first run),
# 2. libvirtd + virtlogd inside network namespace $LAB_NETNS (never in the machine's own network),
# 3. `duststack lab up -i inventory/classroom`: VMs, seeds, networks, SSH-ready, and the
#    generated inventory inventory/generated/classroom.yml for the install plays.
# Re-running it changes nothing; the VMs stay up for you to use.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=target/release/duststack
NS=${LAB_NETNS:-dsvirt}
INVENTORY=${LAB_INVENTORY:-inventory/classroom}

[ -f ~/.ssh/id_ed25519 ] || ssh-keygen -q -t ed25519 -N "" -C "duststack-lab" -f ~/.ssh/id_ed25519
"$BIN" image build
if ! ip netns exec "$NS" virsh -c qemu:///system version >/dev/null 2>&1; then
    "$BIN" testbed hypervisor up --name "$NS"
fi
ip netns exec "$NS" "$BIN" lab up -i "$INVENTORY"
if [ -f playbooks/prepare.yml ]; then
    ip netns exec "$NS" "$BIN" play playbooks/prepare.yml -i inventory/generated/classroom.yml
fi
cat <<MSG

The lab is up. From the lab's network namespace:
  ip netns exec $NS ssh -o UserKnownHostsFile=inventory/generated/classroom.known_hosts root@<address>
  ip netns exec $NS $BIN play PLAYBOOK -i inventory/generated/classroom.yml
  ip netns exec $NS $BIN lab status -i $INVENTORY
Reset the class:  ip netns exec $NS $BIN lab snapshot -i $INVENTORY start  (later: lab restore ... start)
Tear it down:     ip netns exec $NS $BIN lab down -i $INVENTORY && $BIN testbed hypervisor down --name $NS
MSG
