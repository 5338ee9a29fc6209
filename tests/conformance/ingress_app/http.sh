#!/bin/sh
# Answers one HTTP/1.1 request on stdin (the connection), then closes:
#   /headers          the request's headers, as received
#   /upload           the SHA-256 of the request body
#   /download/N       N random bytes (kept in /tmp/download)
#   /download-sha     the SHA-256 of the last download
#   /keep/N           starts `sleep N` in the background (state only memory holds)
#   /ps               the running processes' command lines
#   /ws               a WebSocket handshake, then every byte echoed back
#   anything else     "hello from <hostname>"
read -r method target version
length=0
key=
protocols=
headers=
while read -r line; do
    line=$(printf '%s' "$line" | tr -d '\r')
    [ -z "$line" ] && break
    headers="$headers$line
"
    value=$(printf '%s' "${line#*:}" | sed 's/^ *//')
    case "$line" in
        [Cc]ontent-[Ll]ength:*) length=$value ;;
        [Ss]ec-[Ww]eb[Ss]ocket-[Kk]ey:*) key=$value ;;
        [Ss]ec-[Ww]eb[Ss]ocket-[Pp]rotocol:*) protocols=$value ;;
    esac
done

reply() {
    printf 'HTTP/1.1 200 OK\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "${#1}" "$1"
}

case "$target" in
    /headers) reply "$headers" ;;
    /upload) reply "$(head -c "$length" | sha256sum | cut -d' ' -f1)" ;;
    /download/*)
        n=${target#/download/}
        printf 'HTTP/1.1 200 OK\r\nContent-Length: %s\r\nConnection: close\r\n\r\n' "$n"
        head -c "$n" /dev/urandom | tee /tmp/download
        ;;
    /download-sha) reply "$(sha256sum /tmp/download | cut -d' ' -f1)" ;;
    /keep/*)
        setsid sleep "${target#/keep/}" </dev/null >/dev/null 2>&1 &
        reply "kept"
        ;;
    /ps) reply "$(ps -o args)" ;;
    /ws)
        accept=$(printf '%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11' "$key" | sha1sum | cut -c1-40 | xxd -r -p | base64)
        printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\nX-Seen-Protocols: %s\r\n\r\n' "$accept" "$protocols"
        exec cat
        ;;
    *) reply "hello from $(hostname)" ;;
esac
