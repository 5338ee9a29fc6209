#!/usr/bin/env bash
# Runs hearth's tests: sets the machine up (scripts/setup.sh), then runs the
# workspace's tests, which boot real VMs from the assets built here.
#
# usage: scripts/test.sh [extra cargo test arguments]
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
export HEARTH_DATA="${HEARTH_TEST_DATA:-$REPO/target/hearth-test}"
export HEARTH_ASSETS="$HEARTH_DATA/assets"
"$REPO/scripts/setup.sh"

printf '\n==> checking format and lints\n' >&2
cd "$REPO"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

printf '\n==> running the tests\n' >&2
# Tests make their own data directories; they share the assets and the
# seeded base-image store built above.
export HEARTH_TEST_SEED_DATA="$HEARTH_DATA"
unset HEARTH_DATA
export HEARTH_TEST_ROOTFS="${HEARTH_TEST_DATA:-$REPO/target/hearth-test}/rootfs/busybox"
cargo test --workspace --locked --no-fail-fast "$@"

printf '\n==> running the wire API conformance suite (boto3, AWS CLI)\n' >&2
"$REPO/tests/conformance/run.sh"
