#!/bin/sh
# Answers one lifecycle hook request on stdin, with 200 unless told
# otherwise. The run hook's body is written to /tmp/run-payload; each hook's
# name is appended to /tmp/hooks.log once it is answered.
#
# Tests steer a hook through files: /tmp/hook-<name>-status holds the status
# to answer (e.g. 500), /tmp/hook-<name>-delay (or /app/hook-<name>-delay,
# baked into an image) the seconds to wait before answering; a run payload
# with "hookDelaySeconds": N delays the run hook.
read -r method path version
length=0
while read -r line; do
    line=$(printf '%s' "$line" | tr -d '\r')
    [ -z "$line" ] && break
    case "$line" in
        [Cc]ontent-[Ll]ength:*) length=$(printf '%s' "${line#*:}" | tr -d ' ') ;;
    esac
done
hook=${path##*/}
delay=0
if [ "$hook" = run ]; then
    dd bs=1 count="$length" of=/tmp/run-payload 2>/dev/null
    delay=$(sed -n 's/.*"hookDelaySeconds": *\([0-9][0-9]*\).*/\1/p' /tmp/run-payload)
else
    dd bs=1 count="$length" of=/dev/null 2>/dev/null
fi
for f in "/app/hook-$hook-delay" "/tmp/hook-$hook-delay"; do
    [ -f "$f" ] && delay=$(cat "$f")
done
[ -n "$delay" ] && [ "$delay" -gt 0 ] && sleep "$delay"
status=200
[ -f "/tmp/hook-$hook-status" ] && status=$(cat "/tmp/hook-$hook-status")
echo "$hook" >>/tmp/hooks.log
printf 'HTTP/1.1 %s Hook\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok' "$status"
