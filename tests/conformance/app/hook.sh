#!/bin/sh
# Answers one lifecycle hook request on stdin with 200. The run hook's body
# is written to /tmp/run-payload; each hook's name is appended to
# /tmp/hooks.log.
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
if [ "$hook" = run ]; then
    dd bs=1 count="$length" of=/tmp/run-payload 2>/dev/null
else
    dd bs=1 count="$length" of=/dev/null 2>/dev/null
fi
echo "$hook" >>/tmp/hooks.log
printf 'HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok'
