#!/usr/bin/env bash
# Fleet benchmark (make bench runs it; never a test): migfix diagnose over 100 and
# 1,000 databases, each with the same failed migration (complete: killed after the
# commit), against a sequential loop of one real psql round trip per database, and
# against a loop of psql sending each database the catalog statements diagnose sends
# (the server's own share: a new backend opens ~18 catalogs and reads the snapshot).
# Reports wall time (median of interleaved runs, min-max) and peak RSS of the parent
# and of the workers (getrusage of the process and of its children), so "memory flat
# with N" can be read off: RSS at 1,000 targets vs at 100.
# FLEET_N="100 1000" FLEET_RUNS=3
set -u
cd "$(dirname "$0")/../.."
ROOT=$(pwd)
MIGFIX=${MIGFIX_BIN:-$ROOT/migfix}
PSQL=$(pg_config --bindir 2>/dev/null)/psql
[ -x "$PSQL" ] || PSQL=/usr/lib/postgresql/15/bin/psql
. tests/lib/pg.sh
W=$(mktemp -d "${TMPDIR:-/tmp}/migfix-fleetbench.XXXXXX")
cleanup() { pg_stop; rm -rf "$W"; }
trap cleanup EXIT
pg_start >/dev/null || exit 1
sizes=${FLEET_N:-"100 1000"}
runs=${FLEET_RUNS:-3}
max=0; for n in $sizes; do [ "$n" -gt "$max" ] && max=$n; done

# the project: the ticketing init and its big migration (26 tables, 74 indexes)
mkdir -p "$W/p/prisma/migrations"
cp tests/fixtures/ticketing/prisma/migrations/migration_lock.toml "$W/p/prisma/migrations/"
cp -r tests/fixtures/ticketing/prisma/migrations/20240105093000_init \
      tests/fixtures/ticketing/prisma/migrations/20240312141500_sla_kb_forms_email "$W/p/prisma/migrations/"
"$PSQL" -qX -d postgres -c "CREATE DATABASE fb_tpl" >/dev/null
"$MIGFIX" -C "$W/p" --url "postgresql://postgres@127.0.0.1:$PGPORT/fb_tpl" deploy >/dev/null || { echo "fleet bench: setup deploy failed"; exit 1; }
"$PSQL" -qX -d fb_tpl -c "UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0, logs = NULL WHERE migration_name = '20240312141500_sla_kb_forms_email'" >/dev/null
echo "== creating $max tenant databases from a template"
for i in $(seq 1 "$max"); do echo "CREATE DATABASE fb_$i TEMPLATE fb_tpl;"; done | "$PSQL" -qX -d postgres >/dev/null
for n in $sizes; do
  : > "$W/t$n"
  for i in $(seq 1 "$n"); do echo "t$i postgresql://postgres@127.0.0.1:$PGPORT/fb_$i" >> "$W/t$n"; done
done

# the statements diagnose sends inside the catalog snapshot, as a psql script
"$MIGFIX" -C "$W/p" --url "postgresql://postgres@127.0.0.1:$PGPORT/fb_1" exec tests/bench/capture-snapshot.lua "$W/snap.sql" \
    || { echo "fleet bench: could not capture the snapshot statements"; exit 1; }

now_ms() { date +%s%3N; }
median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%d (%d-%d)", m, a[1], a[NR]}'; }
rss() { # the peak RSS (KiB) of a command and of its children, via getrusage
  /usr/bin/python3 - "$@" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
}
echo
printf '%-8s %-22s %-20s %-7s %-22s %-7s %s\n' targets "migfix diagnose ms" "psql SELECT 1 loop" "ratio" "psql snapshot loop" "ratio" "peak RSS KiB (largest process)"
for n in $sizes; do
  : > "$W/m"; : > "$W/q"; : > "$W/s"
  for r in $(seq 1 "$runs"); do
    t0=$(now_ms); "$MIGFIX" -C "$W/p" diagnose --targets "$W/t$n" --json >/dev/null; echo $(( $(now_ms) - t0 )) >> "$W/m"
    if [ "$n" -le 100 ]; then
      t0=$(now_ms)
      for i in $(seq 1 "$n"); do "$PSQL" -qAtX -d "postgresql://postgres@127.0.0.1:$PGPORT/fb_$i" -c "SELECT 1" >/dev/null; done
      echo $(( $(now_ms) - t0 )) >> "$W/q"
      t0=$(now_ms)
      for i in $(seq 1 "$n"); do "$PSQL" -qAtX -o /dev/null -d "postgresql://postgres@127.0.0.1:$PGPORT/fb_$i" -f "$W/snap.sql"; done
      echo $(( $(now_ms) - t0 )) >> "$W/s"
    fi
  done
  m=$(median < "$W/m"); q="-"; ratio="-"; sq="-"; sratio="-"
  if [ -s "$W/q" ]; then
    q=$(median < "$W/q")
    ratio=$(awk -v a="${m%% *}" -v b="${q%% *}" 'BEGIN { printf "%.2f", a / b }')
    sq=$(median < "$W/s")
    sratio=$(awk -v a="${m%% *}" -v b="${sq%% *}" 'BEGIN { printf "%.2f", a / b }')
  fi
  printf '%-8s %-22s %-20s %-7s %-22s %-7s %s\n' "$n" "$m" "$q" "$ratio" "$sq" "$sratio" "$(rss "$MIGFIX" -C "$W/p" diagnose --targets "$W/t$n" --json)"
done
echo "(machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg))"
