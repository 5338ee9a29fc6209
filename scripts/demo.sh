#!/usr/bin/env bash
# The main job, as far as hearth goes today: set up; build the example app
# (examples/python-app: a Dockerfile FROM debian:12 that installs Python in a
# build microVM) into an image; run two microVMs from its snapshot and call
# each app; suspend one to disk and resume it with its memory and files
# intact; then clean up. Each step is printed.
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
# Calls the app inside a microVM, on its own loopback.
call() {
    hearth vm exec "$1" -- python3 -c \
        'import urllib.request; print(urllib.request.urlopen("http://127.0.0.1:8080/demo").read().decode())'
}

WORK="$(mktemp -d)"
VMS=()
cleanup() {
    if ((${#VMS[@]})); then hearth vm rm "${VMS[@]}" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

step "building examples/python-app into an image (RUN steps execute in a build microVM)"
hearth image build "$REPO/examples/python-app" --name demo-app --hooks-port 9000 --ready --memory 256
hearth image ls

step "running two microVMs from the image's snapshot"
a=$(hearth image run demo-app); VMS+=("$a")
b=$(hearth image run demo-app); VMS+=("$b")
hearth vm ls

step "calling each app"
echo "$a: $(call "$a")"
echo "$b: $(call "$b")"

step "writing state into $a: a file on disk, and the app's request count in memory"
echo "written before the suspend" | hearth vm exec "$a" -- sh -c 'cat > /app/note'
echo "$a again: $(call "$a")"

step "suspending $a to disk (memory, devices, disk) and resuming it"
hearth vm snapshot "$a" "$WORK/suspended" --stop
resumed=$(hearth vm restore "$WORK/suspended"); VMS+=("$resumed")
echo "resumed as $resumed (the request count goes on): $(call "$resumed")"
echo "its note: $(hearth vm exec "$resumed" -- cat /app/note)"

step "removing the microVMs"
hearth vm rm "${VMS[@]}"
VMS=()
step "done"
