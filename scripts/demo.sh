#!/usr/bin/env bash
# The main job, as far as hearth goes today: set up, boot a VM whose app
# counts in memory and on disk, drive it through its agent, snapshot it,
# restore two VMs from that one snapshot, show both continue with their own
# randomness, and clean up. Each step is printed.
#
# usage: scripts/demo.sh
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
"$REPO/scripts/setup.sh"
if [[ -z "${HEARTH_DATA:-}" ]]; then
    if [[ $(id -u) -eq 0 ]]; then HEARTH_DATA=/var/lib/hearth; else HEARTH_DATA="$HOME/.local/share/hearth"; fi
fi
export HEARTH_DATA
hearth() { "$REPO/target/release/hearth" "$@"; }
step() { printf '\n==> %s\n' "$*"; }

WORK="$(mktemp -d)"
VMS=()
cleanup() {
    ((${#VMS[@]})) && hearth vm rm "${VMS[@]}" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

step "booting a busybox VM whose app counts, in memory and in /tmp/count"
id=$(hearth vm boot --rootfs "$HEARTH_DATA/rootfs/busybox" \
    --cmd 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done')
VMS+=("$id")
hearth vm ls

step "running commands through the agent"
hearth vm exec "$id" -- uname -a
echo "a note written before the snapshot" | hearth vm exec "$id" -- sh -c 'cat > /root/note'
hearth vm exec "$id" -- cat /root/note
sleep 1
echo "counter: $(hearth vm exec "$id" -- cat /tmp/count)"

step "snapshotting it (memory, devices, disk) and stopping it"
hearth vm snapshot "$id" "$WORK/snap" --stop
ls -l "$WORK/snap"

step "restoring two VMs from the one snapshot"
a=$(hearth vm restore "$WORK/snap"); VMS+=("$a")
b=$(hearth vm restore "$WORK/snap"); VMS+=("$b")
for vm in "$a" "$b"; do
    echo "$vm: counter $(hearth vm exec "$vm" -- cat /tmp/count)," \
        "note: $(hearth vm exec "$vm" -- cat /root/note)," \
        "random: $(hearth vm exec "$vm" -- sh -c 'head -c 8 /dev/urandom | od -An -tx1')"
done
sleep 1
for vm in "$a" "$b"; do
    echo "$vm a second later: counter $(hearth vm exec "$vm" -- cat /tmp/count)"
done

step "removing the VMs"
hearth vm rm "${VMS[@]}"
VMS=()
hearth vm ls
step "done"
