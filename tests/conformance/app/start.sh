#!/bin/sh
# Hooks on 9000 (one hook.sh per connection); a counter on 8081 whose value
# lives only in the memory of the loop below (count.sh asks it through
# FIFOs); the app on 8080.
nc -ll -p 9000 -e /app/hook.sh &
mkfifo /tmp/counter-ask /tmp/counter-say
(
    n=0
    while :; do
        read -r _ </tmp/counter-ask
        n=$((n + 1))
        echo "$n" >/tmp/counter-say
    done
) &
nc -ll -p 8081 -e /app/count.sh &
exec httpd -f -p 8080 -h /www
