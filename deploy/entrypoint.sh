#!/bin/sh
# Secrets by reference: every file of /run/secrets named like an environment variable
# (ORCHESTRATOR_DATABASE_URL, REDIS_URL, ORCHESTRATOR_API__KEY, ...) becomes that variable of
# the command, so compose.yaml holds only references and `docker inspect` shows no value.
set -eu
if [ -d /run/secrets ]; then
    for file in /run/secrets/*; do
        [ -f "$file" ] || continue
        name=$(basename "$file")
        case "$name" in
            *[!A-Za-z0-9_]* | [0-9]*) continue ;;
        esac
        value=$(cat "$file")
        export "$name=$value"
    done
fi
exec "$@"
