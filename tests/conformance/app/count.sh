#!/bin/sh
# Answers one request on 8081 with the next number of the counter that
# start.sh keeps in a shell's memory (asked and answered through FIFOs).
echo next >/tmp/counter-ask
n=$(cat /tmp/counter-say)
printf 'HTTP/1.1 200 OK\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' "${#n}" "$n"
