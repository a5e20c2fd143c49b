#!/bin/sh
# Entry point of postgres-debian.Dockerfile: the part of the official image's
# docker-entrypoint.sh that the demo relies on. On first start, make a cluster in $PGDATA
# for POSTGRES_USER (default postgres), with POSTGRES_PASSWORD or
# POSTGRES_HOST_AUTH_METHOD=trust, accepting connections from any address like the
# official image; then run the server as the postgres user.
set -eu

if [ "${1:-}" != postgres ] || [ "$(id -u)" != 0 ]; then
    exec "$@"
fi

as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

user=${POSTGRES_USER:-postgres}
auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}

mkdir -p "$PGDATA"
chown postgres:postgres "$PGDATA"
chmod 700 "$PGDATA"

if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != trust ]; then
        echo "error: set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust" >&2
        exit 1
    fi
    password_file=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" >"$password_file"
    chown postgres "$password_file"
    as_postgres initdb --username="$user" --auth-local=trust --auth-host="$auth" \
        ${POSTGRES_PASSWORD:+"--pwfile=$password_file"} >/dev/null
    rm -f "$password_file"
    printf 'host all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    echo "initialized a cluster in $PGDATA for user $user"
fi

exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
