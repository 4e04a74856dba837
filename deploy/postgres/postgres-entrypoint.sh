#!/bin/sh
# initdb on first start (scram-sha-256 for every TCP client, the password from a file), the
# database and its owner, then postgres in the foreground. PGPORT (5432) moves it.
set -eu
port="${PGPORT:-5432}"
db="${POSTGRES_DB:-orchestrator}"
user="${POSTGRES_USER:-orchestrator}"
password_file="${POSTGRES_PASSWORD_FILE:-/run/secrets/postgres_password}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ ! -f "$password_file" ]; then
        echo "postgres-entrypoint: no password file $password_file" >&2
        exit 2
    fi
    initdb --pgdata="$PGDATA" --username=postgres --auth-local=peer \
        --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    echo "host all all 0.0.0.0/0 scram-sha-256" >> "$PGDATA/pg_hba.conf"
    pg_ctl --pgdata="$PGDATA" -o "-p $port -c listen_addresses=''" -w start >/dev/null
    password=$(sed "s/'/''/g" "$password_file")
    psql -p "$port" -v ON_ERROR_STOP=1 -q -U postgres postgres <<SQL
CREATE ROLE "$user" LOGIN PASSWORD '$password';
CREATE DATABASE "$db" OWNER "$user";
SQL
    pg_ctl --pgdata="$PGDATA" -m fast -w stop >/dev/null
fi
exec postgres -p "$port" "$@"
