#!/bin/sh
# redis-server with persistence in /data; `redis-entrypoint ping` is the health check.
# REDIS_PORT (6379) moves it; /run/secrets/redis_password, when present, turns the
# `default` user's password on (clients then need it in their REDIS_URL).
set -eu
port="${REDIS_PORT:-6379}"
secret=/run/secrets/redis_password
if [ "${1:-}" = ping ]; then
    if [ -f "$secret" ]; then
        REDISCLI_AUTH=$(cat "$secret") exec redis-cli -p "$port" ping
    fi
    exec redis-cli -p "$port" ping
fi
set -- --port "$port" --bind 0.0.0.0 --protected-mode no --dir /data \
    --appendonly yes --appendfsync everysec --save "60 1000" "$@"
if [ -f "$secret" ]; then
    set -- "$@" --requirepass "$(cat "$secret")"
fi
exec redis-server "$@"
