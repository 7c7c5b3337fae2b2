#!/usr/bin/env python3
"""make bench: benchmarks, never tests (tests/bench/run starts the server).

Every comparison is measured in one sitting, interleaved: round r runs every
case of a group once (in an order rotated by r), so a load spike on the shared
machine hits all of them alike. Figures are medians with min-max of the
rounds; ratios are of medians from the same group. Floors use the real
PostgreSQL binaries (pg_config --bindir, else /usr/lib/postgresql/15/bin),
never Debian's perl wrapper on PATH. Peak RSS is the child's ru_maxrss.

Environment: BENCH_N (rounds of the quick groups, default 11), BENCH_N_SLOW
(rounds of the deploy groups, default 3), BENCH_TIMEOUT (seconds one run may take, default
900), BENCH_HISTORY_LIMIT (deploy only the first N migrations of the real history), BENCH_ONLY (comma-separated group
names: startup, seed, history, deploy, catalog, real, lint10mb, simulate),
BENCH_SIZES (history sizes, default "1000,10000"), BENCH_HISTORY (a real
Prisma migrations folder of 800+ migrations for the "real" group, default
$BENCH_HISTORY_DEFAULT), BENCH_OUT (a directory that keeps the EXPLAIN output).
"""
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

ROOT = os.environ.get("BENCH_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MIGFIX = os.environ.get("MIGFIX", os.path.join(ROOT, "migfix"))
WORK = os.environ["WORK"]
PORT = os.environ["PGPORT"]
N = int(os.environ.get("BENCH_N", "11"))
N_SLOW = int(os.environ.get("BENCH_N_SLOW", "3"))
TIMEOUT = int(os.environ.get("BENCH_TIMEOUT", "900"))
ONLY = set(x for x in os.environ.get("BENCH_ONLY", "").split(",") if x)
SIZES = [int(x) for x in os.environ.get("BENCH_SIZES", "1000,10000").split(",") if x]
FIX = os.path.join(ROOT, "tests/fixtures/ticketing/prisma/migrations")
SEED_INIT, SEED_FAILED = "20240105093000_init", "20240312141500_sla_kb_forms_email"


def pg_bindir():
    try:
        d = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout.strip()
        if os.path.isfile(os.path.join(d, "psql")) and not open(os.path.join(d, "psql"), "rb").read(2) == b"#!":
            return d
    except (OSError, subprocess.CalledProcessError):
        pass
    return "/usr/lib/postgresql/15/bin"


PSQL = os.path.join(pg_bindir(), "psql")
TIME = "/usr/bin/time"


def url(db):
    return "postgresql://postgres@127.0.0.1:%s/%s" % (PORT, db)


def psql(db, *args, stdin=None, check=True):
    r = subprocess.run([PSQL, "-qAtX", "-v", "ON_ERROR_STOP=1", "-d", url(db)] + list(args),
                       input=stdin, capture_output=True, text=True)
    if check and r.returncode != 0:
        sys.exit("bench: psql failed: %s\n%s" % (" ".join(args)[:200], r.stderr[-2000:]))
    return r.stdout


def sh(argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, **kw)
    if check and r.returncode != 0:
        sys.exit("bench: %s failed (exit %d)\n%s%s" % (" ".join(argv)[:300], r.returncode, r.stdout[-2000:], r.stderr[-3000:]))
    return r


def run_timed(argv, cwd=None, env=None):
    """wall seconds and peak RSS (KiB) of one run. Every run goes through
    GNU time (/usr/bin/time -f %M): its fork gives the child an address space
    of its own, so ru_maxrss is the command's, not a copy of this Python's
    (posix_spawn and vfork carry the parent's high-water mark across exec)."""
    errf = os.path.join(WORK, "stderr.txt")
    rssf = os.path.join(WORK, "rss.txt")
    fa = [(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
          (os.POSIX_SPAWN_OPEN, 2, errf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
    full = [TIME, "-q", "-f", "%M", "-o", rssf] + list(argv)
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    t0 = time.perf_counter()
    try:
        pid = os.posix_spawn(TIME, full, env if env is not None else os.environ, file_actions=fa)
    finally:
        os.chdir(old)
    timer = threading.Timer(TIMEOUT, lambda: os.kill(pid, signal.SIGKILL))
    timer.start()
    _, status, _ = os.wait4(pid, 0)
    wall = time.perf_counter() - t0
    timer.cancel()
    with open(errf, errors="replace") as f:
        err = f.read()
    try:
        with open(rssf) as f:
            rss = int(f.read().split()[-1])
    except (OSError, ValueError, IndexError):
        rss = 0
    if wall >= TIMEOUT:
        return wall, rss, -999, "timed out after %d s (BENCH_TIMEOUT)" % TIMEOUT
    return wall, rss, os.waitstatus_to_exitcode(status), err


class Case:
    def __init__(self, label, argv, setup=None, ok=(0,), cwd=None):
        self.label, self.argv, self.setup, self.ok, self.cwd = label, argv, setup, ok, cwd
        self.times, self.rss = [], []
        self.failed = None


def measure(cases, rounds, warmup=True):
    """a case that exits with an unexpected code is reported as failed (its
    last lines of stderr) and left out of the later rounds"""
    def one(c, keep):
        if c.failed:
            return
        if c.setup:
            c.setup()
        wall, rss, rc, err = run_timed(c.argv, cwd=c.cwd)
        if rc not in c.ok:
            c.failed = "exit %d: %s" % (rc, " | ".join(l for l in err.strip().splitlines()[-3:]))
            return
        if keep:
            c.times.append(wall * 1000)
            c.rss.append(rss)
    if warmup:
        for c in cases:
            one(c, False)
    for r in range(rounds):
        k = r % len(cases)
        for c in cases[k:] + cases[:k]:
            one(c, True)
    return cases


def med(c):
    return statistics.median(c.times) if c.times else float("nan")


def line(c, ratio=None, note="", rss=True):
    if c.failed or not c.times:
        print("  %-62s    FAILED  %s" % (c.label, (c.failed or "no run")[:300]), flush=True)
        return
    s = "  %-62s %9.1f ms  [%.1f-%.1f]" % (c.label, med(c), min(c.times), max(c.times))
    if rss:
        s += "  %6.1f MiB" % (max(c.rss) / 1024.0)
    if ratio:
        s += "  %s" % ratio
    if note:
        s += "  " + note
    print(s, flush=True)


def ratio_text(a, b, target=None, what="floor"):
    if not a.times or not b.times:
        return "(no ratio)"
    x = med(a) / med(b)
    t = ""
    if target is not None:
        t = " (target <= %.1fx: %s)" % (target, "met" if x <= target else "NOT MET")
    return "%.2fx %s%s" % (x, what, t)


def section(name, title):
    if ONLY and name not in ONLY:
        return False
    print("\n" + title, flush=True)
    return True


# ---------------------------------------------------------------- projects

def project(path, folders=(), lock=True):
    mdir = os.path.join(path, "prisma", "migrations")
    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(mdir)
    if lock:
        with open(os.path.join(mdir, "migration_lock.toml"), "w") as f:
            f.write('# Please do not edit this file manually\nprovider = "postgresql"\n')
    for src in folders:
        shutil.copytree(src, os.path.join(mdir, os.path.basename(src)))
    return mdir


def step_name(i):
    return "%014d_step_%05d" % (20240000000000 + i * 100, i)


def step_sql(i):
    return ('-- CreateTable\nCREATE TABLE "T%d" (\n    "id" TEXT NOT NULL,\n    "v" INTEGER NOT NULL DEFAULT 0,\n'
            '    "w" TEXT,\n    CONSTRAINT "T%d_pkey" PRIMARY KEY ("id")\n);\n\n-- CreateIndex\n'
            'CREATE INDEX "T%d_v_idx" ON "T%d"("v");\n\n-- CreateIndex\nCREATE INDEX "T%d_w_idx" ON "T%d"("w");\n') % ((i,) * 6)


def write_steps(mdir, lo, hi):
    for i in range(lo, hi + 1):
        d = os.path.join(mdir, step_name(i))
        os.makedirs(d)
        with open(os.path.join(d, "migration.sql"), "w") as f:
            f.write(step_sql(i))


LEDGER_DDL = """CREATE TABLE IF NOT EXISTS "_prisma_migrations" (
    id VARCHAR(36) PRIMARY KEY NOT NULL, checksum VARCHAR(64) NOT NULL, finished_at TIMESTAMPTZ,
    migration_name VARCHAR(255) NOT NULL, logs TEXT, rolled_back_at TIMESTAMPTZ,
    started_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_steps_count INTEGER NOT NULL DEFAULT 0)"""


def ledger_rows(db, rows):
    """rows: (name, sql text, failed?) -> COPY into the ledger"""
    out = []
    for k, (name, text, failed) in enumerate(rows):
        ck = hashlib.sha256(text.encode()).hexdigest()
        started = "2024-01-01 00:00:00+00"
        fin = "\\N" if failed else "2024-01-01 00:00:01+00"
        out.append("\t".join([str(uuid.uuid4()), ck, fin, name, "\\N" if failed else "", "\\N", started,
                              "0" if failed else "1"]))
    psql(db, "-c", LEDGER_DDL)
    psql(db, "-c", "COPY _prisma_migrations (id, checksum, finished_at, migration_name, logs, rolled_back_at, "
                   "started_at, applied_steps_count) FROM STDIN", stdin="\n".join(out) + "\n")


def create_steps(db, lo, hi, batch=250):
    """run step migrations lo..hi through psql, a transaction per batch"""
    for a in range(lo, hi + 1, batch):
        b = min(hi, a + batch - 1)
        psql(db, "-1", "-f", "-", stdin="".join(step_sql(i) for i in range(a, b + 1)))


def fresh_db(name, template=None):
    psql("postgres", "-c", 'DROP DATABASE IF EXISTS "%s"' % name)
    psql("postgres", "-c", 'CREATE DATABASE "%s"%s' % (name, (' TEMPLATE "%s"' % template) if template else ""))


def snapshot_sql(proj, db, out):
    """the exact statements diagnose sends for its catalog snapshot (captured
    around migfix.catalog.snapshot), as a psql script"""
    lua = os.path.join(ROOT, "tests/bench/capture-snapshot.lua")
    sh([MIGFIX, "-C", proj, "--url", url(db), "exec", lua, out])


# ---------------------------------------------------------------- groups

def g_startup():
    if not section("startup", "startup (no database: loading the Lua modules)"):
        return
    p = os.path.join(WORK, "startup")
    project(p, [os.path.join(FIX, SEED_INIT)])
    cs = measure([
        Case("lua5.4 -e '' (the interpreter alone)", ["lua5.4", "-e", ""]),
        Case("migfix --version", [MIGFIX, "--version"]),
        Case("migfix help", [MIGFIX, "help"]),
        Case("migfix help status", [MIGFIX, "help", "status"]),
        Case("migfix status, no database URL (exit 2)", [MIGFIX, "-C", p, "status"], ok=(2,)),
    ], N)
    for c in cs:
        line(c)


def seed_db(db):
    fresh_db(db)
    for name in (SEED_INIT, SEED_FAILED):
        psql(db, "-1", "-f", os.path.join(FIX, name, "migration.sql"))
    ledger_rows(db, [(SEED_INIT, open(os.path.join(FIX, SEED_INIT, "migration.sql")).read(), False),
                     (SEED_FAILED, open(os.path.join(FIX, SEED_FAILED, "migration.sql")).read(), True)])


def g_seed(floor_case):
    if not section("seed", "seed case: the ticketing project, its 166-statement migration complete but recorded as failed"):
        return
    seed_db("seed")
    p = os.path.join(WORK, "seed")
    project(p, [os.path.join(FIX, SEED_INIT), os.path.join(FIX, SEED_FAILED)])
    snap = os.path.join(WORK, "seed-snapshot.sql")
    snapshot_sql(p, "seed", snap)
    floor = floor_case("seed")
    fsnap = Case("floor: psql, connect + the snapshot statements diagnose sends", [PSQL, "-qAtX", "-d", url("seed"), "-f", snap])
    diag = Case("migfix diagnose --json", [MIGFIX, "-C", p, "--url", url("seed"), "diagnose", "--json"], ok=(0, 1))
    stat = Case("migfix status --json", [MIGFIX, "-C", p, "--url", url("seed"), "status", "--json"], ok=(0, 1))
    measure([floor, fsnap, diag, stat], N)
    line(floor, rss=False)
    line(fsnap, rss=False)
    line(diag, ratio_text(diag, fsnap, 1.3, "snapshot floor"))
    line(stat, ratio_text(stat, floor))


def history_db(n):
    """a database with n step migrations applied (tables T1..Tn, 3 indexes
    each) and the last one recorded as failed; built with psql only"""
    db = "hist%d" % n
    p = os.path.join(WORK, db)
    mdir = project(p)
    write_steps(mdir, 1, n)
    fresh_db(db)
    create_steps(db, 1, n)
    ledger_rows(db, [(step_name(i), step_sql(i), i == n) for i in range(1, n + 1)])
    psql(db, "-c", "VACUUM ANALYZE")
    return db, p


def g_history(floor_case):
    if not section("history", "synthetic histories (each migration: a table, its primary key and 2 indexes; the last one recorded as failed)"):
        return {}
    built = {}
    for n in SIZES:
        t0 = time.time()
        db, p = history_db(n)
        built[n] = (db, p)
        print("  (%d-migration history built in %.0f s)" % (n, time.time() - t0), flush=True)
        floor = floor_case(db)
        cs = [floor,
              Case("status --json, %d migrations" % n, [MIGFIX, "-C", p, "--url", url(db), "status", "--json"], ok=(1,)),
              Case("status (text table), %d migrations" % n, [MIGFIX, "-C", p, "--url", url(db), "status"], ok=(1,)),
              Case("diagnose --json, %d migrations (1 failed)" % n, [MIGFIX, "-C", p, "--url", url(db), "diagnose", "--json"], ok=(0, 1)),
              Case("lint --all --offline --json, %d migrations" % n, [MIGFIX, "-C", p, "lint", "--all", "--offline", "--json"], ok=(0, 1)),
              Case("lint --all --json (live sizes), %d migrations" % n, [MIGFIX, "-C", p, "--url", url(db), "lint", "--all", "--json"], ok=(0, 1))]
        measure(cs, N if n <= 1000 else max(3, N // 2))
        line(floor, rss=False)
        for c in cs[1:]:
            target = None
            if c.label.startswith("status --json") and n >= 10000:
                target = 10
            note = ""
            if c.label.startswith("lint --all --offline") and n >= 10000:
                ok = med(c) <= 2000 and max(c.rss) <= 60 * 1024
                note = "(target <= 2000 ms and <= 60 MiB: %s)" % ("met" if ok else "NOT MET")
            line(c, ratio_text(c, floor, target), note)
    return built


def g_deploy():
    if not section("deploy", "deploy of 200 migrations: onto an empty ledger vs onto a 10,000-row ledger"):
        return
    k, big = 200, 10000
    # (a) the same 200 folders; the 10,000 rows belong to migrations not in the folder
    pa = os.path.join(WORK, "dep200")
    mdir = project(pa)
    write_steps(mdir, big + 1, big + k)
    fresh_db("dep_empty_t")
    fresh_db("dep_rows_t")
    ledger_rows("dep_rows_t", [("%014d_old_%05d" % (20230000000000 + i, i), "SELECT %d;\n" % i, False) for i in range(1, big + 1)])
    # (b) 10,000 applied folders + 200 pending, the ledger holding the 10,000
    pb = os.path.join(WORK, "dep10200")
    mdir = project(pb)
    write_steps(mdir, 1, big + k)
    fresh_db("dep_hist_t")
    ledger_rows("dep_hist_t", [(step_name(i), step_sql(i), False) for i in range(1, big + 1)])

    def reset(db, tmpl):
        return lambda: fresh_db(db, tmpl)
    empty = Case("deploy 200 onto an empty ledger", [MIGFIX, "-C", pa, "--url", url("dep_empty"), "deploy"],
                 setup=reset("dep_empty", "dep_empty_t"))
    rows = Case("deploy 200 onto 10,000 rows of other migrations", [MIGFIX, "-C", pa, "--url", url("dep_rows"), "deploy"],
                setup=reset("dep_rows", "dep_rows_t"))
    hist = Case("deploy 200 pending of a 10,200-folder history (10,000 rows)", [MIGFIX, "-C", pb, "--url", url("dep_hist"), "deploy"],
                setup=reset("dep_hist", "dep_hist_t"))
    # the floor: the same 200 files, each sent as one query, in one psql session
    files = [os.path.join(pa, "prisma/migrations", step_name(i), "migration.sql") for i in range(big + 1, big + k + 1)]
    argv = [PSQL, "-qAtX", "-v", "ON_ERROR_STOP=1", "-d", url("dep_psql")]
    for f in files:
        argv += ["-c", open(f).read()]
    floor = Case("floor: psql, one session, the 200 files each as one query", argv, setup=reset("dep_psql", "dep_empty_t"))
    measure([floor, empty, rows, hist], N_SLOW)
    line(floor, rss=False)
    line(empty, ratio_text(empty, floor))
    line(rows, ratio_text(rows, empty, 1.2, "empty ledger"))
    line(hist, ratio_text(hist, empty, 1.2, "empty ledger"))
    per = lambda c: med(c) / k
    print("  per migration: %.2f ms (empty), %.2f ms (10,000 rows), %.2f ms (10,200 folders), %.2f ms (psql)"
          % (per(empty), per(rows), per(hist), per(floor)))


def explain_summary(db, snapfile, label):
    stmts = [s for s in open(snapfile).read().split(";\n") if s.strip()]
    query = [s for s in stmts if "json_build_object" in s][0]
    pre = [s for s in stmts if s.strip().upper().startswith("SET")]
    script = "BEGIN READ ONLY;\n" + "".join(s + ";\n" for s in pre) + \
             "EXPLAIN (ANALYZE, BUFFERS, FORMAT TEXT) " + query + ";\nCOMMIT;\n"
    out = psql(db, "-f", "-", stdin=script)
    keep = os.environ.get("BENCH_OUT")
    if keep:
        os.makedirs(keep, exist_ok=True)
        with open(os.path.join(keep, "explain-%s.txt" % label), "w") as f:
            f.write(out)
    print("  EXPLAIN (ANALYZE, BUFFERS) of the snapshot query on %s%s:" % (db, " (" + ", ".join(pre) + ")" if pre else ""))
    seqs = {}
    for l in out.splitlines():
        s = l.strip()
        if "Seq Scan on" in s:
            rel = s.split("Seq Scan on", 1)[1].split()[0]
            seqs[rel] = seqs.get(rel, 0) + 1
        if s.startswith(("Planning Time", "Execution Time", "JIT:", "Functions:", "Timing:")):
            print("    " + s)
    big = sorted(seqs.items(), key=lambda kv: -kv[1])
    print("    sequential scans (relation: plan nodes): " + (", ".join("%s: %d" % kv for kv in big) or "none"))
    for l in out.splitlines():
        s = l.strip()
        if "Seq Scan on pg_class" in s or "Seq Scan on pg_index " in s or "Seq Scan on pg_constraint" in s \
           or "Seq Scan on pg_attribute" in s or "Seq Scan on pg_type" in s or "Seq Scan on pg_proc" in s:
            print("      " + s[:150])


def g_catalog(floor_case, built):
    if not section("catalog", "a 10,000-table / 30,000-index catalog: the seed case diagnosed beside 10,000 other tables"):
        return
    src = built.get(10000, (None,))[0]
    if src is None:
        db, _ = history_db(10000)
        src = db
    fresh_db("seed10k", src)
    psql("seed10k", "-c", 'DROP TABLE "_prisma_migrations"')
    for name in (SEED_INIT, SEED_FAILED):
        psql("seed10k", "-1", "-f", os.path.join(FIX, name, "migration.sql"))
    ledger_rows("seed10k", [(SEED_INIT, open(os.path.join(FIX, SEED_INIT, "migration.sql")).read(), False),
                            (SEED_FAILED, open(os.path.join(FIX, SEED_FAILED, "migration.sql")).read(), True)])
    psql("seed10k", "-c", "VACUUM ANALYZE")
    n = psql("seed10k", "-c", "SELECT count(*) FILTER (WHERE relkind = 'r'), count(*) FILTER (WHERE relkind = 'i') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE nspname = 'public'").strip()
    print("  (public holds %s tables | indexes)" % n.replace("|", " | "))
    p = os.path.join(WORK, "seed10k")
    project(p, [os.path.join(FIX, SEED_INIT), os.path.join(FIX, SEED_FAILED)])
    snap = os.path.join(WORK, "seed10k-snapshot.sql")
    snapshot_sql(p, "seed10k", snap)
    floor = floor_case("seed10k")
    fsnap = Case("floor: psql, connect + the snapshot statements diagnose sends", [PSQL, "-qAtX", "-d", url("seed10k"), "-f", snap])
    nojit = os.path.join(WORK, "seed10k-snapshot-jit.sql")
    with open(nojit, "w") as f:
        f.write("".join(s + ";\n" for s in open(snap).read().split(";\n")
                        if s.strip() and not s.strip().upper().startswith(("SET LOCAL JIT", "SET JIT"))))
    fjit = Case("psql, the same query with the server's jit setting", [PSQL, "-qAtX", "-d", url("seed10k"), "-f", nojit])
    diag = Case("migfix diagnose --json", [MIGFIX, "-C", p, "--url", url("seed10k"), "diagnose", "--json"], ok=(0, 1))
    measure([floor, fsnap, fjit, diag], N)
    line(floor, rss=False)
    line(fsnap, rss=False)
    line(fjit, ratio_text(fjit, fsnap, what="snapshot floor"), rss=False)
    line(diag, ratio_text(diag, fsnap, 1.2, "snapshot floor"))
    explain_summary("seed10k", snap, "seed10k")


def g_real():
    hist = os.environ.get("BENCH_HISTORY") or os.environ.get("BENCH_HISTORY_DEFAULT", "")
    if not section("real", "a real public Prisma history: migfix deploy vs one psql session sending the same files"):
        return
    if not hist or not os.path.isdir(hist):
        print("  skipped: set BENCH_HISTORY to a Prisma migrations folder (e.g. one fetched from a public repository)")
        return
    limit = int(os.environ.get("BENCH_HISTORY_LIMIT", "0"))
    # Prisma's order is the folder name (localeCompare); migfix sorts the same
    # way, psql gets them in the order migfix reports them
    p = os.path.join(WORK, "real")
    mdir = project(p, lock=False)
    for d in os.listdir(hist):
        s = os.path.join(hist, d)
        if os.path.isdir(s):
            shutil.copytree(s, os.path.join(mdir, d))
        else:
            shutil.copy(s, mdir)
    if not os.path.exists(os.path.join(mdir, "migration_lock.toml")):
        with open(os.path.join(mdir, "migration_lock.toml"), "w") as f:
            f.write('provider = "postgresql"\n')
    fresh_db("real_order")
    out = sh([MIGFIX, "-C", p, "--url", url("real_order"), "status", "--json"], check=False).stdout
    import json
    order = [m["name"] for m in json.loads(out)["migrations"] if m["local"] and m["local"]["has_sql"]]
    if limit and limit < len(order):
        # the first `limit` migrations only (BENCH_HISTORY_LIMIT): a real prefix of the history
        for n in order[limit:]:
            shutil.rmtree(os.path.join(mdir, n))
        order = order[:limit]
    print("  %s: %d migrations, %.1f MB of SQL" % (hist, len(order),
          sum(os.path.getsize(os.path.join(mdir, n, "migration.sql")) for n in order) / 1e6))
    argv = [PSQL, "-qAtX", "-v", "ON_ERROR_STOP=1", "-d", url("real_psql")]
    for n in order:
        argv += ["-c", open(os.path.join(mdir, n, "migration.sql")).read()]
    floor = Case("floor: psql, one session, each file as one query", argv, setup=lambda: fresh_db("real_psql"))
    dep = Case("migfix deploy (ledger, journal, each migration diagnosed again)", [MIGFIX, "-C", p, "--url", url("real_mf"), "deploy"],
               setup=lambda: fresh_db("real_mf"))
    measure([floor, dep], N_SLOW, warmup=False)
    line(floor, rss=False)
    line(dep, ratio_text(dep, floor, 1.5))
    print("  per migration: %.2f ms (migfix), %.2f ms (psql)" % (med(dep) / len(order), med(floor) / len(order)))


def g_lint10mb():
    if not section("lint10mb", "one 10 MB migration of INSERTs (lint --offline): linear in the size of one file"):
        return
    cases = []
    for mb in (1, 10):
        p = os.path.join(WORK, "ins%d" % mb)
        mdir = project(p)
        d = os.path.join(mdir, "20240101000000_data")
        os.makedirs(d)
        with open(os.path.join(d, "migration.sql"), "w") as f:
            f.write('-- CreateTable\nCREATE TABLE "Item" ("id" INTEGER NOT NULL, "name" TEXT, "price" DECIMAL(10,2),'
                    ' CONSTRAINT "Item_pkey" PRIMARY KEY ("id"));\n\n')
            size, i = 0, 0
            while size < mb * 1024 * 1024:
                s = 'INSERT INTO "Item" ("id", "name", "price") VALUES (%d, \'item number %d, with some text\', %d.50);\n' % (i, i, i % 1000)
                f.write(s)
                size += len(s)
                i += 1
        cases.append(Case("lint --all --offline, %d MB (%d INSERTs)" % (mb, i), [MIGFIX, "-C", p, "lint", "--all", "--offline", "--json"], ok=(0, 1)))
    measure(cases, max(3, N // 3))
    line(cases[0])
    line(cases[1], "%.1fx the 1 MB file" % (med(cases[1]) / med(cases[0])))


def main():
    load = open("/proc/loadavg").read().split()[:3]
    print("benchmarks: medians [min-max] of interleaved rounds (%d quick, %d slow), PostgreSQL 15 on 127.0.0.1:%s, "
          "%d cores, load average %s at the start; floors with %s"
          % (N, N_SLOW, PORT, os.cpu_count(), " ".join(load), PSQL), flush=True)

    def floor_case(db):
        return Case("floor: psql, connect + one round trip (SELECT 1)", [PSQL, "-qAtX", "-d", url(db), "-c", "SELECT 1"])
    g_startup()
    g_seed(floor_case)
    built = g_history(floor_case)
    g_catalog(floor_case, built)
    g_deploy()
    g_real()
    g_lint10mb()
    load = open("/proc/loadavg").read().split()[:3]
    print("\nload average at the end: %s" % " ".join(load))


if __name__ == "__main__":
    main()
