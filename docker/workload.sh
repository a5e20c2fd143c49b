#!/bin/bash
# The demo's workload, in a loop until stopped: slow and fast statements over the simple
# protocol (psql) and the extended one (pgbench -M extended), and lock contention: a
# session idle in transaction holds a row lock while two others queue behind it.
# Connects with the libpq variables (PGHOST, PGPORT, PGUSER, PGDATABASE).
set -euo pipefail
trap 'exit 0' TERM INT

readonly SLOW_S=${WORKLOAD_SLOW_S:-0.3}
readonly HOLD_S=${WORKLOAD_HOLD_S:-1.5}
readonly PAUSE_S=${WORKLOAD_PAUSE_S:-1}
readonly SCRIPTS=$(mktemp -d)

sql() { psql -X -q -v ON_ERROR_STOP=1 "$@" >/dev/null; }

setup() {
    until pg_isready -q; do sleep 0.5; done
    sql -c "CREATE TABLE IF NOT EXISTS demo_accounts (id int PRIMARY KEY, balance int NOT NULL)" \
        -c "INSERT INTO demo_accounts SELECT g, 100 FROM generate_series(1, 10) g ON CONFLICT DO NOTHING"
    echo "SELECT pg_sleep($SLOW_S);" >"$SCRIPTS/slow.sql"
    printf '%s\n' '\set id random(1, 10)' 'SELECT balance FROM demo_accounts WHERE id = :id;' \
        >"$SCRIPTS/fast.sql"
}

simple_protocol() {
    sql -c "SELECT pg_sleep($SLOW_S)"
    sql -c "SELECT count(*) FROM generate_series(1, 2000000)"
    for id in $(seq 1 20); do sql -c "SELECT balance FROM demo_accounts WHERE id = $((id % 10 + 1))"; done
}

extended_protocol() {
    pgbench -n -M extended -f "$SCRIPTS/slow.sql" -t 2 >/dev/null
    pgbench -n -M extended -f "$SCRIPTS/fast.sql" -t 200 >/dev/null
}

lock_contention() {
    # The holder sends its UPDATE, then nothing for HOLD_S: idle in transaction, row locked.
    { echo "BEGIN; UPDATE demo_accounts SET balance = balance - 1 WHERE id = 1;"
      sleep "$HOLD_S"
      echo "COMMIT;"; } | sql &
    sleep 0.3
    sql -c "UPDATE demo_accounts SET balance = balance + 1 WHERE id = 1" &
    sql -c "UPDATE demo_accounts SET balance = balance + 2 WHERE id = 1" &
    wait
}

setup
echo "workload: running against ${PGHOST:-local}:${PGPORT:-5432}"
for (( round = 1; ; round++ )); do
    simple_protocol
    extended_protocol
    lock_contention
    echo "workload: round $round done"
    sleep "$PAUSE_S"
done
