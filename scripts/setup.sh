#!/usr/bin/env bash
# Sets up a machine for hearth, idempotently: Debian packages, the hearth
# binary, the static agent, the guest assets (kernel + initramfs) and a
# busybox root filesystem for quick VMs.
#
# usage: scripts/setup.sh
#
# Environment:
#   HEARTH_DATA     data directory (default /var/lib/hearth as root,
#                   ~/.local/share/hearth otherwise)
#   HEARTH_ASSETS   where the guest assets go (default $HEARTH_DATA/assets)
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
if [[ -z "${HEARTH_DATA:-}" ]]; then
    if [[ $(id -u) -eq 0 ]]; then HEARTH_DATA=/var/lib/hearth; else HEARTH_DATA="$HOME/.local/share/hearth"; fi
fi
HEARTH_ASSETS="${HEARTH_ASSETS:-$HEARTH_DATA/assets}"
export HEARTH_DATA HEARTH_ASSETS

step() { printf '\n==> %s\n' "$*" >&2; }

PACKAGES=(qemu-system-x86 qemu-utils busybox-static cpio e2fsprogs
    docker-registry skopeo umoci apache2-utils debootstrap jq nftables iproute2 curl
    python3-venv tmux)
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    step "installing Debian packages: ${missing[*]}"
    SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

command -v cargo >/dev/null || {
    echo "setup: cargo not found: install a Rust toolchain (rustup, Rust 1.88 or newer) first" >&2
    exit 1
}

step "building hearth"
cd "$REPO"
cargo build --release --locked -p hearth

step "building the static agent"
RUSTFLAGS="-C target-feature=+crt-static" \
    cargo build --release --locked -p hearth-agent --target x86_64-unknown-linux-gnu
AGENT="$REPO/target/x86_64-unknown-linux-gnu/release/hearth-agent"

step "building guest assets in $HEARTH_ASSETS"
mkdir -p "$HEARTH_DATA"
"$REPO/guest/build-assets.sh" "$HEARTH_ASSETS" "$AGENT" "$HEARTH_DATA/guest-cache"

step "making the busybox root filesystem"
"$REPO/guest/make-busybox-rootfs.sh" "$HEARTH_DATA/rootfs/busybox"

step "seeding the base-image store (debian:12 by debootstrap, busybox)"
"$REPO/target/release/hearth" image seed

step "ready: $REPO/target/release/hearth (data in $HEARTH_DATA)"
