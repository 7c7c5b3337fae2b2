#!/usr/bin/env bash
# Bench: the overhead of `migfix simulate` against doing the same by hand —
# CREATE DATABASE ... TEMPLATE, the ledger writes and the pending migration
# through psql, DROP DATABASE — on the ticketing seed case (a complete
# migration recorded as failed, one pending migration). Prints both times
# and the ratio. Uses its own throwaway PostgreSQL.
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
MIGFIX=$ROOT/migfix
. tests/lib/pg.sh
N=${BENCH_RUNS:-5}
W=$(mktemp -d "${TMPDIR:-/tmp}/migfix-bench.XXXXXX")
trap 'pg_stop; rm -rf "$W"' EXIT
pg_start >/dev/null || exit 1
FIX=tests/fixtures/ticketing/prisma/migrations
mkdir -p "$W/p/prisma/migrations"
cp "$FIX/migration_lock.toml" "$W/p/prisma/migrations/"
cp -r "$FIX/20240105093000_init" "$FIX/20240312141500_sla_kb_forms_email" "$W/p/prisma/migrations/"
psql -qX -c "CREATE DATABASE bench" >/dev/null
echo "DATABASE_URL=\"postgresql://postgres@127.0.0.1:$PGPORT/bench?schema=public\"" > "$W/p/.env"
(cd "$W/p" && "$MIGFIX" deploy >/dev/null) || { echo "bench: setup deploy failed"; exit 1; }
psql -qX -d bench -c "UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0, logs = NULL
                        WHERE migration_name = '20240312141500_sla_kb_forms_email'" >/dev/null
cp -r "$FIX/20240402101500_ticket_merge" "$W/p/prisma/migrations/"
MERGE_SQL=$W/p/prisma/migrations/20240402101500_ticket_merge/migration.sql

now() { date +%s.%N; }

by_hand() {
    psql -qX -d postgres -c "CREATE DATABASE bench_hand TEMPLATE bench" >/dev/null
    psql -qX -d bench_hand -v ON_ERROR_STOP=1 >/dev/null <<SQL
UPDATE _prisma_migrations SET rolled_back_at = now() WHERE migration_name = '20240312141500_sla_kb_forms_email' AND finished_at IS NULL;
INSERT INTO _prisma_migrations (id, checksum, logs, started_at, finished_at, migration_name)
  VALUES (gen_random_uuid()::text, 'x', '', now(), now(), '20240312141500_sla_kb_forms_email');
INSERT INTO _prisma_migrations (id, checksum, started_at, migration_name)
  VALUES ('bench-merge', 'x', now(), '20240402101500_ticket_merge');
SQL
    psql -qX -d bench_hand -v ON_ERROR_STOP=1 -1 -f "$MERGE_SQL" >/dev/null
    psql -qX -d bench_hand -c "UPDATE _prisma_migrations SET applied_steps_count = 1, finished_at = now() WHERE id = 'bench-merge'" >/dev/null
    psql -qX -d postgres -c "DROP DATABASE bench_hand" >/dev/null
}

with_migfix() { (cd "$W/p" && "$MIGFIX" simulate --from template >/dev/null) || { echo "bench: simulate failed"; exit 1; }; }

by_hand; with_migfix   # warm up
t0=$(now); for _ in $(seq "$N"); do by_hand; done; t1=$(now)
for _ in $(seq "$N"); do with_migfix; done; t2=$(now)
awk -v a="$t0" -v b="$t1" -v c="$t2" -v n="$N" 'BEGIN {
    h = (b - a) / n; m = (c - b) / n;
    printf "simulate bench (ticketing seed, %d runs each)\n", n;
    printf "  by hand (CREATE DATABASE TEMPLATE + psql + DROP): %.3f s per run\n", h;
    printf "  migfix simulate --from template:                  %.3f s per run\n", m;
    printf "  ratio: %.2fx\n", m / h }'
