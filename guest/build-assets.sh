#!/usr/bin/env bash
# Builds the guest assets of a managed base image: the kernel, an initramfs
# holding the agent as /init plus the kernel modules the guest needs, and a
# manifest that names what went in.
#
# usage: guest/build-assets.sh OUT_DIR AGENT_BINARY [CACHE_DIR]
#
# OUT_DIR receives vmlinuz, initramfs.cpio.gz and manifest.json. The kernel
# package is downloaded (never installed on the host) into CACHE_DIR, by
# default the directory `guest-cache` beside OUT_DIR, so reruns do not fetch
# it again. A run whose manifest already matches the agent and the kernel
# release exits at once. Concurrent runs on one OUT_DIR serialise on a lock.
#
# Environment:
#   HEARTH_KERNEL_META   the metapackage to resolve (linux-image-cloud-amd64)
#   HEARTH_KERNEL_PACKAGE  a kernel package to use instead of resolving one
set -euo pipefail

readonly FORMAT=1
readonly META_PACKAGE="${HEARTH_KERNEL_META:-linux-image-cloud-amd64}"
# The modules the guest loads, by module name; their dependencies are added.
readonly WANTED_MODULES=(
    virtio_ring virtio virtio_mmio virtio_blk virtio_console virtio_balloon
    failover net_failover virtio_net ext4 jbd2 mbcache crc16 crc32c_generic
)

die() {
    echo "build-assets: $*" >&2
    exit 1
}

[[ $# -ge 2 && $# -le 3 ]] || die "usage: $0 OUT_DIR AGENT_BINARY [CACHE_DIR]"
for tool in apt-cache apt-get dpkg-deb cpio gzip sha256sum flock; do
    command -v "$tool" >/dev/null || die "missing tool: $tool"
done

mkdir -p "$1"
OUT_DIR="$(cd "$1" && pwd)"
AGENT="$(realpath "$2")"
CACHE_DIR="${3:-$(dirname "$OUT_DIR")/guest-cache}"
mkdir -p "$CACHE_DIR"
CACHE_DIR="$(cd "$CACHE_DIR" && pwd)"
[[ -f "$AGENT" && -x "$AGENT" ]] || die "agent binary is not an executable file: $2"

# One run at a time per output directory.
exec 9>"$OUT_DIR/.lock"
flock 9

# Resolve the kernel package from the metapackage, refreshing the package
# lists only when they do not know it.
resolve_kernel_package() {
    if [[ -n "${HEARTH_KERNEL_PACKAGE:-}" ]]; then
        echo "$HEARTH_KERNEL_PACKAGE"
        return
    fi
    local dep
    dep="$(apt-cache depends "$META_PACKAGE" 2>/dev/null |
        sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)"
    if [[ -z "$dep" ]]; then
        apt-get update -qq >&2 || die "apt-get update failed"
        dep="$(apt-cache depends "$META_PACKAGE" |
            sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)"
    fi
    [[ -n "$dep" ]] || die "cannot resolve the kernel package of $META_PACKAGE"
    echo "$dep"
}

KERNEL_PACKAGE="$(resolve_kernel_package)"
KERNEL_RELEASE="${KERNEL_PACKAGE#linux-image-}"
AGENT_SHA256="$(sha256sum "$AGENT" | cut -d' ' -f1)"

# Nothing to do when the manifest already describes this agent and kernel.
manifest_field() {
    sed -n "s/^ *\"$1\": *\"\\{0,1\\}\\([^\",]*\\).*/\\1/p" "$OUT_DIR/manifest.json" | head -n1
}
if [[ -f "$OUT_DIR/manifest.json" && -f "$OUT_DIR/vmlinuz" && -f "$OUT_DIR/initramfs.cpio.gz" ]] &&
    [[ "$(manifest_field agent_sha256)" == "$AGENT_SHA256" ]] &&
    [[ "$(manifest_field kernel_release)" == "$KERNEL_RELEASE" ]] &&
    [[ "$(manifest_field format)" == "$FORMAT" ]]; then
    echo "build-assets: $OUT_DIR is up to date ($KERNEL_RELEASE)" >&2
    exit 0
fi

WORK="$(mktemp -d "$OUT_DIR/.work.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Download the kernel package into the cache unless it is there already.
fetch_deb() {
    local deb
    deb="$(find "$CACHE_DIR" -maxdepth 1 -name "${KERNEL_PACKAGE}_*.deb" | sort | tail -n1)"
    if [[ -n "$deb" ]]; then
        echo "$deb"
        return
    fi
    if ! (cd "$WORK" && apt-get download -q "$KERNEL_PACKAGE" >&2 2>"$WORK/apt.err"); then
        apt-get update -qq >&2 || die "apt-get update failed"
        (cd "$WORK" && apt-get download -q "$KERNEL_PACKAGE" >&2) ||
            die "cannot download $KERNEL_PACKAGE"
    fi
    deb="$(find "$WORK" -maxdepth 1 -name "${KERNEL_PACKAGE}_*.deb" | head -n1)"
    [[ -n "$deb" ]] || die "apt-get download left no package for $KERNEL_PACKAGE"
    mv "$deb" "$CACHE_DIR/"
    echo "$CACHE_DIR/$(basename "$deb")"
}

DEB="$(fetch_deb)"
PACKAGE_VERSION="$(dpkg-deb -f "$DEB" Version)"
dpkg-deb -x "$DEB" "$WORK/kernel"
MODDIR="$WORK/kernel/lib/modules/$KERNEL_RELEASE"
CONFIG="$WORK/kernel/boot/config-$KERNEL_RELEASE"
[[ -d "$MODDIR" ]] || die "$DEB has no modules for $KERNEL_RELEASE"
[[ -f "$CONFIG" ]] || die "$DEB has no kernel config"
cp "$WORK/kernel/boot/vmlinuz-$KERNEL_RELEASE" "$WORK/vmlinuz"

# Index every module file by its module name (dashes read as underscores).
declare -A MODULE_FILE
while IFS= read -r file; do
    base="$(basename "$file")"
    name="${base%%.ko*}"
    MODULE_FILE["${name//-/_}"]="$file"
done < <(find "$MODDIR" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')

# Write a module as a plain .ko, decompressing it when it was packed.
unpack_module() {
    local src="$1" dest="$2"
    case "$src" in
        *.ko.xz) xz -dc "$src" >"$dest" ;;
        *.ko.zst) zstd -qdc "$src" >"$dest" ;;
        *.ko.gz) gzip -dc "$src" >"$dest" ;;
        *) cp "$src" "$dest" ;;
    esac
}

# The `depends=` entry of a module's .modinfo section, comma separated.
module_depends() {
    tr '\0' '\n' <"$1" | sed -n 's/^depends=//p' | head -n1
}

ROOT="$WORK/root"
mkdir -p "$ROOT"/{dev,proc,sys,newroot,lib/modules}
declare -A VISITED
LOAD_ORDER=()

# Depth-first: a module's dependencies are placed before it.
visit() {
    local name="$1"
    [[ -n "${VISITED[$name]:-}" ]] && return
    VISITED[$name]=1
    local file="${MODULE_FILE[$name]:-}"
    if [[ -z "$file" ]]; then
        grep -q "/${name}.ko" "$MODDIR/modules.builtin" ||
            grep -q "/${name//_/-}.ko" "$MODDIR/modules.builtin" ||
            die "module $name is neither a module file nor built in"
        return
    fi
    unpack_module "$file" "$ROOT/lib/modules/$name.ko"
    local deps dep
    deps="$(module_depends "$ROOT/lib/modules/$name.ko")"
    for dep in ${deps//,/ }; do
        visit "${dep//-/_}"
    done
    LOAD_ORDER+=("$name.ko")
}

for module in "${WANTED_MODULES[@]}"; do
    visit "$module"
done
printf '%s\n' "${LOAD_ORDER[@]}" >"$ROOT/lib/modules/load-order"
echo "build-assets: modules: ${LOAD_ORDER[*]}" >&2
grep -q '^CONFIG_EXT4_FS=y' "$CONFIG" && echo "build-assets: ext4 is built in" >&2

install -m 0755 "$AGENT" "$ROOT/init"
(cd "$ROOT" && find . -mindepth 1 | LC_ALL=C sort |
    cpio --quiet -o -H newc --owner=0:0 --reproducible) | gzip -6 >"$WORK/initramfs.cpio.gz"

modules_json="$(printf '"%s", ' "${LOAD_ORDER[@]}")"
cat >"$WORK/manifest.json" <<EOF
{
  "format": $FORMAT,
  "kernel_release": "$KERNEL_RELEASE",
  "kernel_package": "$KERNEL_PACKAGE",
  "kernel_package_version": "$PACKAGE_VERSION",
  "agent_sha256": "$AGENT_SHA256",
  "modules": [${modules_json%, }]
}
EOF

# Put the artefacts in place, the manifest last, so that a run cut short
# never leaves a manifest that vouches for files it did not write.
rm -f "$OUT_DIR/manifest.json"
mv "$WORK/vmlinuz" "$OUT_DIR/vmlinuz"
mv "$WORK/initramfs.cpio.gz" "$OUT_DIR/initramfs.cpio.gz"
sync "$OUT_DIR/vmlinuz" "$OUT_DIR/initramfs.cpio.gz"
mv "$WORK/manifest.json" "$OUT_DIR/manifest.json"
echo "build-assets: wrote $OUT_DIR ($KERNEL_RELEASE, $PACKAGE_VERSION)" >&2
