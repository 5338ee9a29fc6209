#!/usr/bin/env bash
# Lays out a minimal busybox root filesystem in a directory: bin/busybox
# from busybox-static with a link for every applet in bin/ and sbin/, the
# users root and nobody, and the usual empty directories. Rerunning it on the
# same directory changes nothing.
#
# usage: guest/make-busybox-rootfs.sh DIR
set -euo pipefail

die() {
    echo "make-busybox-rootfs: $*" >&2
    exit 1
}

[[ $# -eq 1 ]] || die "usage: $0 DIR"
BUSYBOX="${HEARTH_BUSYBOX:-/bin/busybox}"
[[ -x "$BUSYBOX" ]] || die "no busybox at $BUSYBOX (install busybox-static)"
# A dynamically linked busybox would need a libc in the image.
if command -v file >/dev/null && ! file -L "$BUSYBOX" | grep -q 'statically linked'; then
    die "$BUSYBOX is not statically linked (install busybox-static)"
fi

ROOT="$1"
mkdir -p "$ROOT"/{bin,sbin,etc,tmp,proc,sys,dev,root,var,run}
chmod 1777 "$ROOT/tmp"
chmod 0700 "$ROOT/root"

if ! cmp -s "$BUSYBOX" "$ROOT/bin/busybox"; then
    install -m 0755 "$BUSYBOX" "$ROOT/bin/busybox"
fi

# `busybox --list-full` names each applet with its usual directory; applets
# of usr/ go to bin/ and sbin/ as well so that one PATH finds all of them.
while IFS= read -r applet; do
    name="$(basename "$applet")"
    case "$applet" in
        sbin/* | usr/sbin/*) dir=sbin ;;
        *) dir=bin ;;
    esac
    [[ "$name" == busybox ]] && continue
    link="$ROOT/$dir/$name"
    if [[ "$(readlink "$link" 2>/dev/null)" != /bin/busybox ]]; then
        ln -sfn /bin/busybox "$link"
    fi
done < <("$ROOT/bin/busybox" --list-full)

write_if_changed() {
    local path="$1" content="$2"
    if [[ ! -f "$path" || "$(cat "$path")" != "$content" ]]; then
        printf '%s\n' "$content" >"$path"
    fi
}

write_if_changed "$ROOT/etc/passwd" "root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false"
write_if_changed "$ROOT/etc/group" "root:x:0:
nogroup:x:65534:"
write_if_changed "$ROOT/etc/shadow" "root:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::"
chmod 0640 "$ROOT/etc/shadow"
write_if_changed "$ROOT/etc/hostname" "hearth"
