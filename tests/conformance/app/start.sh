#!/bin/sh
# Hooks on 9000 (one hook.sh per connection), the app on 8080.
nc -ll -p 9000 -e /app/hook.sh &
exec httpd -f -p 8080 -h /www
