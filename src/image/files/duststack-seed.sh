#!/bin/sh
# duststack-seed: applies the duststack seed of this VM on every boot (idempotent).
#
# The seed is a filesystem labelled CIDATA (vfat or iso9660; normally /dev/vdb). Besides the
# NoCloud files (meta-data, user-data, network-config: ignored here) it carries duststack/:
#   hostname                  one line      -> /etc/hostname, `hostname`, 127.0.1.1 in /etc/hosts
#   authorized_keys                         -> /root/.ssh/authorized_keys (0700 / 0600)
#   ssh_host_*_key[.pub]                    -> /etc/ssh/ (0600 / 0644); other host key types removed
#   network/*.network                       -> /etc/systemd/network/ (the 99- fallback stays)
# Without a seed the VM keeps what it has; missing host keys are generated (ssh-keygen -A).
# The root filesystem is grown to the size of its disk on every boot (resize2fs; a no-op
# when already grown). A missing seed is not an error (exit 0).
# Installed by `duststack image build`.

set -u
PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PATH

STATE=/var/lib/duststack-seed
WAIT_STEPS=30 # 30 x 0.5 s: how long to wait for the seed disk to appear

log() {
	echo "duststack-seed: $*"
}

grow_root() {
	dev=$(findmnt -n -o SOURCE / 2>/dev/null) || return 0
	fstype=$(findmnt -n -o FSTYPE / 2>/dev/null) || return 0
	case "$dev" in /dev/*) ;; *) return 0 ;; esac
	case "$fstype" in ext2 | ext3 | ext4) ;; *) return 0 ;; esac
	if out=$(resize2fs "$dev" 2>&1); then
		case "$out" in
		*"Nothing to do"*) ;;
		*) log "grew the root filesystem on $dev to its disk size" ;;
		esac
	else
		log "resize2fs $dev failed: $out"
	fi
}

find_seed() {
	i=0
	while [ "$i" -lt "$WAIT_STEPS" ]; do
		for label in CIDATA cidata; do
			if [ -b "/dev/disk/by-label/$label" ]; then
				readlink -f "/dev/disk/by-label/$label"
				return 0
			fi
			dev=$(blkid -l -o device -t "LABEL=$label" 2>/dev/null) && [ -b "$dev" ] && {
				echo "$dev"
				return 0
			}
		done
		sleep 0.5
		i=$((i + 1))
	done
	if [ -b /dev/vdb ]; then
		echo /dev/vdb
		return 0
	fi
	return 1
}

set_hostname() {
	h=$(head -n 1 "$1" | tr -d '\r\t ')
	case "$h" in
	"" | *[!A-Za-z0-9.-]* | -* | .*)
		log "ignoring invalid hostname '$h'"
		return 0
		;;
	esac
	short=${h%%.*}
	if [ "$(cat /etc/hostname 2>/dev/null)" != "$h" ]; then
		printf '%s\n' "$h" >/etc/hostname.duststack-seed && mv /etc/hostname.duststack-seed /etc/hostname
	fi
	hostname "$h" 2>/dev/null || printf '%s' "$h" >/proc/sys/kernel/hostname
	if [ "$short" = "$h" ]; then
		line="127.0.1.1	$h"
	else
		line="127.0.1.1	$h $short"
	fi
	if ! grep -qxF "$line" /etc/hosts 2>/dev/null; then
		{
			grep -v '^127\.0\.1\.1[[:space:]]' /etc/hosts 2>/dev/null
			echo "$line"
		} >/etc/hosts.duststack-seed && chmod 0644 /etc/hosts.duststack-seed &&
			mv /etc/hosts.duststack-seed /etc/hosts
	fi
	log "hostname $h"
}

set_authorized_keys() {
	install -d -m 0700 -o root -g root /root/.ssh
	install -m 0600 -o root -g root "$1" /root/.ssh/authorized_keys
	log "root authorized_keys: $(grep -c . /root/.ssh/authorized_keys) key(s)"
}

set_host_keys() {
	found=""
	for key in "$1"/ssh_host_*_key; do
		[ -f "$key" ] || continue
		name=${key##*/}
		install -m 0600 -o root -g root "$key" "/etc/ssh/$name"
		if [ -f "$key.pub" ]; then
			install -m 0644 -o root -g root "$key.pub" "/etc/ssh/$name.pub"
		else
			ssh-keygen -y -f "/etc/ssh/$name" >"/etc/ssh/$name.pub" && chmod 0644 "/etc/ssh/$name.pub"
		fi
		found="$found $name"
	done
	[ -n "$found" ] || return 0
	# The host identity is exactly the seeded keys: drop other types (e.g. from an unseeded boot).
	for key in /etc/ssh/ssh_host_*_key; do
		[ -f "$key" ] || continue
		case " $found " in *" ${key##*/} "*) ;; *) rm -f "$key" "$key.pub" ;; esac
	done
	log "SSH host keys:$found"
}

set_network() {
	mkdir -p /etc/systemd/network "$STATE"
	new=""
	for f in "$1"/*.network; do
		[ -f "$f" ] || continue
		name=${f##*/}
		install -m 0644 -o root -g root "$f" "/etc/systemd/network/$name"
		new="$new$name
"
	done
	# Files a previous seed installed and this one no longer carries go away.
	if [ -f "$STATE/network.list" ]; then
		while IFS= read -r old; do
			[ -n "$old" ] || continue
			printf '%s' "$new" | grep -qxF "$old" || rm -f "/etc/systemd/network/$old"
		done <"$STATE/network.list"
	fi
	printf '%s' "$new" >"$STATE/network.list"
	log "network files: $(printf '%s' "$new" | tr '\n' ' ')"
}

apply_seed() {
	dev=$1
	mnt=$(mktemp -d /run/duststack-seed.XXXXXX) || return 1
	if ! err=$(mount -o ro "$dev" "$mnt" 2>&1); then
		log "cannot mount the seed $dev: $err"
		rmdir "$mnt"
		return 1
	fi
	d="$mnt/duststack"
	if [ -d "$d" ]; then
		log "applying the seed from $dev"
		[ -f "$d/hostname" ] && set_hostname "$d/hostname"
		[ -f "$d/authorized_keys" ] && set_authorized_keys "$d/authorized_keys"
		set_host_keys "$d"
		[ -d "$d/network" ] && set_network "$d/network"
	else
		log "$dev has no duststack/ directory; nothing to apply"
	fi
	umount "$mnt"
	rmdir "$mnt"
	return 0
}

grow_root

if dev=$(find_seed); then
	apply_seed "$dev" || log "the seed on $dev was not applied"
else
	log "no seed disk (label CIDATA) found; keeping the current configuration"
fi

if ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
	log "no SSH host keys: generating them (ssh-keygen -A)"
	ssh-keygen -A
fi
exit 0
