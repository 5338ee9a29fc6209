#!/usr/bin/env bash
# The main job: set up; start `hearth serve`; have it build the example app
# (examples/python-app: a Dockerfile FROM debian:12 that installs Python in a
# build microVM) into an image with `hearth image create`; run two microVMs
# from its snapshot and call each app through its endpoint (curl with a token
# from `hearth token`); suspend one (memory and disk to disk) and resume it
# with its in-memory request count and its files intact; let the other, run
# with an idle policy, suspend by itself and be woken by the next request;
# then remove both and stop the server. Each step is printed.
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
# Calls the app of a microVM through its endpoint (the API reports it; curl
# resolves *.localhost to loopback) with a token for port 8080.
call() {
    curl -sS --fail-with-body -H "X-aws-proxy-auth: $(hearth token "$1" --port 8080)" "$(endpoint "$1")/demo"
}
endpoint() { hearth ps --json | jq -r --arg id "$1" '.[] | select(.microvmId == $id) | .endpoint'; }
# The state of a microVM, from the API.
state() { hearth ps --json | jq -r --arg id "$1" '.[] | select(.microvmId == $id) | .state'; }

WORK="$(mktemp -d)"
SERVER=""
VMS=()
cleanup() {
    if ((${#VMS[@]})); then hearth rm "${VMS[@]}" >/dev/null 2>&1 || true; fi
    if [[ -n "$SERVER" ]]; then
        kill -TERM "$SERVER" 2>/dev/null || true
        wait "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

step "starting hearth serve (the API, its S3 API and the microVMs' endpoints, on free loopback ports)"
# Started directly (not through the function) so that $! is the server.
"$REPO/target/release/hearth" serve --listen 127.0.0.1:0 --s3-listen 127.0.0.1:0 --no-profile \
    --ingress-listen 127.0.0.1:0 --ingress-tls-listen 127.0.0.1:0 \
    >"$WORK/serve.out" 2>"$WORK/serve.log" &
SERVER=$!
for _ in $(seq 1 100); do
    [[ $(grep -c '^\(api\|s3\|ingress\|ingress-tls\) ' "$WORK/serve.out" 2>/dev/null) -eq 4 ]] && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
    sleep 0.2
done
HEARTH_ENDPOINT_URL=$(sed -n 's/^api //p' "$WORK/serve.out")
HEARTH_S3_ENDPOINT_URL=$(sed -n 's/^s3 //p' "$WORK/serve.out")
export HEARTH_ENDPOINT_URL HEARTH_S3_ENDPOINT_URL
echo "API $HEARTH_ENDPOINT_URL, S3 $HEARTH_S3_ENDPOINT_URL," \
    "endpoints $(sed -n 's/^ingress //p' "$WORK/serve.out") (log: $WORK/serve.log)"

step "building examples/python-app into an image (RUN steps execute in a build microVM)"
hearth image create "$REPO/examples/python-app" --name demo-app \
    --hooks-port 9000 --ready --hook run --hook suspend --hook resume --memory 256

step "running two microVMs from the image's snapshot (the second suspends after 60 s without traffic)"
a=$(hearth run demo-app --payload '{"tenant": "a"}'); VMS+=("$a")
b=$(hearth run demo-app --payload '{"tenant": "b"}' --idle 60); VMS+=("$b")
hearth ps

step "calling each app through its endpoint (curl with a token from hearth token)"
echo "$a: $(call "$a")"
echo "$b: $(call "$b")"

step "writing state into $a: a file on disk, and the app's request count in memory"
echo "written before the suspend" | hearth vm exec "$a" -- sh -c 'cat > /app/note'
echo "$a again: $(call "$a")"

step "suspending $a (memory, devices and disk saved, its VM stopped) and resuming it"
hearth suspend "$a"
hearth ps
hearth resume "$a"
echo "$a after the resume (the request count goes on): $(call "$a")"
echo "its note: $(hearth vm exec "$a" -- cat /app/note)"

step "leaving $b idle: after 60 s without traffic it suspends by itself"
for _ in $(seq 1 90); do
    [[ $(state "$b") == SUSPENDED ]] && break
    sleep 2
done
hearth ps
[[ $(state "$b") == SUSPENDED ]] || { echo "$b did not suspend" >&2; exit 1; }

step "a request to the suspended $b wakes it (the client sees only latency)"
tok=$(hearth token "$b" --port 8080)
url="$(endpoint "$b")/demo"
echo "curl -H \"X-aws-proxy-auth: \$(hearth token $b --port 8080)\" $url"
started=$(date +%s%N)
echo "$b: $(curl -sS --fail-with-body -H "X-aws-proxy-auth: $tok" "$url")"
echo "answered in $((($(date +%s%N) - started) / 1000000)) ms, the resume included"
hearth ps

step "the app's output in $a (run, suspend and resume hooks included)"
hearth logs "$a"

step "removing the microVMs"
hearth rm "${VMS[@]}"
VMS=()
hearth ps -a
step "done"
