-- migfix.backup and the backup/backups/restore commands, against the test server.
local H = require "helper"
local backup = require "migfix.backup"
local crypto = require "migfix.crypto"
local json = require "migfix.json"
local db = require "migfix.db"

local T = {}

local SEED = [[
CREATE TYPE "Role" AS ENUM ('USER', 'ADMIN');
CREATE TABLE "User" (id SERIAL PRIMARY KEY, email TEXT NOT NULL, role "Role" NOT NULL DEFAULT 'USER');
CREATE UNIQUE INDEX "User_email_key" ON "User"(email);
CREATE TABLE "Post" (id SERIAL PRIMARY KEY, "authorId" INT NOT NULL, title TEXT,
  CONSTRAINT "Post_authorId_fkey" FOREIGN KEY ("authorId") REFERENCES "User"(id) ON DELETE CASCADE);
CREATE INDEX "Post_authorId_idx" ON "Post"("authorId");
INSERT INTO "User" (email, role) VALUES ('a@example.com', 'ADMIN'), ('b@example.com', 'USER');
INSERT INTO "Post" ("authorId", title) VALUES (1, 'hello'), (2, 'world');
CREATE TABLE "_prisma_migrations" (
  id VARCHAR(36) PRIMARY KEY NOT NULL, checksum VARCHAR(64) NOT NULL, finished_at TIMESTAMPTZ,
  migration_name VARCHAR(255) NOT NULL, logs TEXT, rolled_back_at TIMESTAMPTZ,
  started_at TIMESTAMPTZ NOT NULL DEFAULT now(), applied_steps_count INTEGER NOT NULL DEFAULT 0);
INSERT INTO "_prisma_migrations" (id, checksum, finished_at, migration_name, applied_steps_count)
  VALUES ('11111111-1111-1111-1111-111111111111', repeat('a', 64), now(), '20240101000000_init', 1),
         ('22222222-2222-2222-2222-222222222222', repeat('b', 64), NULL, '20240102000000_add_post', 0);
]]

local function seeded_db()
  local name, url = H.fresh_db()
  H.psql(url, SEED)
  return name, url
end

local function pw_url(name)
  local pw = assert(os.getenv("MIGFIX_TEST_PW"), "MIGFIX_TEST_PW not set (tests/lib/pg.sh)")
  return H.admin_url:gsub("://[^@/]*@", "://migfix_pw:" .. pw .. "@"):gsub("/[^/?]*$", "/" .. name), pw
end

local function mode(path) return (H.sh("stat -c %a " .. H.shq(path))) end
local function ls(dir) return (H.sh("ls -A " .. H.shq(dir) .. " 2>/dev/null")) end

local function schema_dump(url, dbname)
  local out, rc = H.sh(("pg_dump --schema-only --no-owner --restrict-key=migfix -d %s 2>&1"):format(H.shq(url)))
  H.eq(rc, 0, "pg_dump --schema-only: " .. out)
  return (out:gsub(dbname, "DB"))
end

--- a bin directory with pg_restore from the system and a pg_dump script
local function fake_bindir(pg_dump_script)
  local dir = H.tmpdir()
  local real = H.sh("ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1"):gsub("%s+$", "")
  H.sh(("ln -s %s/pg_restore %s/pg_restore"):format(H.shq(real), H.shq(dir)))
  H.write(dir .. "/pg_dump", "#!/bin/sh\nREAL=" .. H.shq(real .. "/pg_dump") .. "\n" .. pg_dump_script)
  H.sh("chmod 755 " .. H.shq(dir .. "/pg_dump"))
  return dir
end

T["module leaves globals alone"] = function()
  local before = {}
  for k in pairs(_G) do before[k] = true end
  package.loaded["migfix.backup"] = nil
  local b = require "migfix.backup"
  for k in pairs(_G) do H.ok(before[k], "new global " .. tostring(k)) end
  H.eq(type(b.dump), "function")
end

T["bad arguments raise and quote the expected call"] = function()
  H.raises(function() backup.dump { url = "postgresql://x/y", dir = "/tmp", bogus = 1 } end,
    'unrecognized option "bogus" (expected backup.dump{')
  H.raises(function() backup.dump { url = "postgresql://x/y", dir = "/tmp", scope = "data" } end,
    'unrecognized scope "data" (expected full, schema or ledger)')
  H.raises(function() backup.dump { dir = "/tmp" } end, 'option "url" must be a string')
  H.raises(function() backup.restore { file = "x", url = "postgresql://x/y", into = "z" } end,
    'unrecognized option "into" (expected backup.restore{')
end

T["url_password decodes the userinfo password"] = function()
  H.eq(backup.url_password("postgresql://u:p%40ss%3Aw@h:5432/db?schema=x"), "p@ss:w")
  H.eq(backup.url_password("postgresql://u:a@b@h/db"), "a@b")
  H.eq(backup.url_password("postgresql://u@h/db"), nil)
  H.eq(backup.url_password("postgresql://h/db?password=x"), nil)
  H.eq(backup.url_password("not a url"), nil)
end

T["count_objects parses pg_restore --list"] = function()
  local c = backup.count_objects([[
;
; Archive created at 2024-01-01
;
215; 1259 16385 TABLE public User postgres
3347; 0 16385 TABLE DATA public User postgres
3204; 2606 16391 CONSTRAINT public User User_pkey postgres
3210; 2606 16400 FK CONSTRAINT public Post Post_authorId_fkey postgres
3361; 0 0 SEQUENCE SET public User_id_seq postgres
3360; 0 0 SEQUENCE OWNED BY public User_id_seq postgres
216; 1259 16393 SEQUENCE public User_id_seq postgres
]])
  H.same(c, { TABLE = 1, ["TABLE DATA"] = 1, CONSTRAINT = 1, ["FK CONSTRAINT"] = 1, ["SEQUENCE SET"] = 1,
              ["SEQUENCE OWNED BY"] = 1, SEQUENCE = 1 })
end

T["full dump: file, modes, manifest, checksum, object counts"] = function()
  local name, url = seeded_db()
  local dir = H.tmpdir() .. "/backups/prod"
  local m, err = backup.dump { url = url, dir = dir, reason = "before fixing 20240102000000_add_post",
                               migration = "20240102000000_add_post", environment = "prod" }
  H.ok(m, err)
  H.eq(mode(dir), "700\n", "directory created 0700")
  H.ok(m.file:match("^" .. name .. "_%d%d%d%d%d%d%d%dT%d%d%d%d%d%dZ_full%.dump$"), "file name " .. m.file)
  H.eq(m.path, dir .. "/" .. m.file)
  H.eq(mode(m.path), "600\n", "dump mode")
  H.eq(mode(m.path .. ".json"), "600\n", "manifest mode")
  H.eq(m.version, 1)
  H.eq(m.scope, "full")
  H.eq(m.schema, "public")
  H.ok(m.created_at:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$"), "created_at " .. m.created_at)
  H.eq(m.database.name, name)
  H.eq(m.database.host, "127.0.0.1")
  H.eq(m.database.port, tonumber(os.getenv("PGPORT")))
  H.eq(m.database.user, "postgres")
  H.ok(m.database.server_version >= 150000, "server_version")
  H.ok(m.pg_dump_version:match("^%d+%.%d+$"), "pg_dump_version " .. m.pg_dump_version)
  H.eq(m.reason, "before fixing 20240102000000_add_post")
  H.eq(m.migration, "20240102000000_add_post")
  H.eq(m.environment, "prod")
  H.eq(m.size, tonumber((H.sh("stat -c %s " .. H.shq(m.path)))))
  H.eq(m.sha256, crypto.sha256_file(m.path))
  H.eq(m.sha256 .. "\n", (H.sh("sha256sum " .. H.shq(m.path) .. " | cut -d' ' -f1")))
  H.eq(m.objects.TABLE, 3)
  H.eq(m.objects["TABLE DATA"], 3)
  H.eq(m.objects.INDEX, 2)
  H.eq(m.objects.CONSTRAINT, 3)
  H.eq(m.objects["FK CONSTRAINT"], 1)
  H.eq(m.objects.TYPE, 1)
  H.eq(m.objects.SEQUENCE, 2)
  -- the manifest on disk is the returned one
  local disk = json.decode(H.read(m.path .. ".json"))
  H.eq(disk.sha256, m.sha256)
  H.eq(disk.file, m.file)
  H.eq(disk.database.name, name)
  H.eq(disk.objects.TABLE, 3)
  H.ok(backup.verify(m.path))
  H.ok(backup.verify(m))
end

T["schema and ledger scopes"] = function()
  local name, url = seeded_db()
  local dir = H.tmpdir()
  local conn <close> = assert(db.connect(url))
  local s = assert(backup.dump { url = url, dir = dir, scope = "schema", conn = conn })
  H.ok(s.file:match("_schema%.dump$"))
  H.eq(s.objects.TABLE, 3)
  H.eq(s.objects["TABLE DATA"], nil, "no data in a schema-only dump")

  local l = assert(backup.dump { url = url, dir = dir, scope = "ledger" })
  H.ok(l.file:match("_ledger%.dump$"))
  H.eq(l.objects.TABLE, 1)
  H.eq(l.objects["TABLE DATA"], 1)
  H.eq(l.objects.TYPE, nil)
  H.eq(l.journal_schema, nil)
  -- with the journal schema, its tables come along
  H.psql(url, "CREATE SCHEMA migfix; CREATE TABLE migfix.journal (id BIGSERIAL PRIMARY KEY, entry JSONB)")
  local lj = assert(backup.dump { url = url, dir = dir, scope = "ledger" })
  H.eq(lj.objects.TABLE, 2)
  H.eq(lj.journal_schema, "migfix")
  local listing = H.sh("pg_restore --list " .. H.shq(lj.path))
  H.contains(listing, "TABLE migfix journal")
  H.contains(listing, "TABLE public _prisma_migrations")
  H.not_contains(listing, "TABLE public User")
  -- a custom ledger schema
  H.psql(url, 'CREATE SCHEMA app; CREATE TABLE app."_prisma_migrations" (id text primary key)')
  -- restoring a ledger backup needs the journal schema in the target
  local _, turl = H.fresh_db()
  local r, err, info = backup.restore { file = lj.path, url = turl }
  H.eq(r, nil)
  H.contains(info.hint, 'CREATE SCHEMA "migfix"')
  H.psql(turl, "CREATE SCHEMA migfix")
  H.ok(backup.restore { file = lj.path, url = turl }, err)
  H.eq(H.psql(turl, "SELECT count(*) FROM _prisma_migrations"), "2\n")
  local la = assert(backup.dump { url = url, dir = dir, scope = "ledger", schema = "app" })
  H.contains(H.sh("pg_restore --list " .. H.shq(la.path)), "TABLE app _prisma_migrations")
end

T["ledger scope without a ledger: clear error, no file"] = function()
  local _, url = H.fresh_db()
  local dir = H.tmpdir()
  local m, err, info = backup.dump { url = url, dir = dir, scope = "ledger" }
  H.eq(m, nil)
  H.contains(err, 'there is no Prisma ledger "public"."_prisma_migrations"')
  H.contains(info.hint, "--scope full")
  H.eq(ls(dir), "")
end

T["verify detects a modified, truncated or missing archive"] = function()
  local _, url = seeded_db()
  local m = assert(backup.dump { url = url, dir = H.tmpdir(), scope = "schema" })
  -- same size, one byte changed
  local data = H.read(m.path)
  local pos = #data // 2
  local flipped = data:sub(1, pos - 1) .. string.char((data:byte(pos) + 1) % 256) .. data:sub(pos + 1)
  H.write(m.path, flipped)
  local ok, err, info = backup.verify(m.path)
  H.eq(ok, nil)
  H.contains(err, "does not match its manifest: SHA-256")
  H.eq(info.kind, "verify")
  H.write(m.path, data)
  H.ok(backup.verify(m.path))
  H.write(m.path, data:sub(1, 100))
  ok, err = backup.verify(m.path)
  H.eq(ok, nil)
  H.contains(err, ("has 100 bytes, its manifest says %d"):format(m.size))
  os.remove(m.path)
  ok, err = backup.verify(m.path .. ".json")
  H.eq(ok, nil)
  H.contains(err, "is missing")
  ok, err = backup.verify("/nonexistent/x.dump")
  H.eq(ok, nil)
  H.contains(err, 'could not read backup manifest "/nonexistent/x.dump.json"')
  -- a file that matches its manifest but is no archive
  local dir = H.tmpdir()
  H.write(dir .. "/junk.dump", "not an archive")
  H.write(dir .. "/junk.dump.json", json.encode { version = 1, file = "junk.dump", size = 14,
    sha256 = require("migfix.migrations").checksum("not an archive"), pg_dump_version = "15.0" })
  ok, err = backup.verify(dir .. "/junk.dump")
  H.eq(ok, nil)
  H.contains(err, "is not a readable archive")
end

T["restore into a new database gives the same schema"] = function()
  local name, url = seeded_db()
  local m = assert(backup.dump { url = url, dir = H.tmpdir() })
  local tname, turl = H.fresh_db()
  local r, err = backup.restore { file = m.path, url = turl }
  H.ok(r, err)
  H.eq(r.database.name, tname)
  H.eq(r.forced, false)
  H.eq(schema_dump(turl, tname), schema_dump(url, name))
  H.eq(H.psql(turl, 'SELECT count(*) FROM "Post"'), "2\n")
  H.eq(H.psql(turl, "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NULL"), "20240102000000_add_post\n")
  -- restoring again into the now non-empty target fails and leaves it as it was
  local r2, err2, info2 = backup.restore { file = m.path, url = turl }
  H.eq(r2, nil)
  H.contains(err2, "pg_restore exited with code 1")
  H.contains(info2.detail, "already exists")
  H.contains(info2.hint, "restore into an empty database")
  H.eq(H.psql(turl, 'SELECT count(*) FROM "Post"'), "2\n")
end

T["restore into the source is refused without force"] = function()
  local name, url = seeded_db()
  local m = assert(backup.dump { url = url, dir = H.tmpdir(), scope = "ledger" })
  local r, err, info = backup.restore { file = m.path, url = url }
  H.eq(r, nil)
  H.contains(err, ('refusing to restore into database "%s"'):format(name))
  H.eq(info.kind, "refused")
  H.contains(info.hint, "--force")
  -- localhost is the same server as 127.0.0.1
  r, err = backup.restore { file = m.path, url = url:gsub("127%.0%.0%.1", "localhost") }
  H.eq(r, nil)
  H.contains(err, "refusing")
  -- the project's own URL counts as the source too
  local _, other = H.fresh_db()
  r, err = backup.restore { file = m.path, url = other, source_url = other }
  H.eq(r, nil)
  H.contains(err, "refusing")
  -- with force the ledger is put back as it was
  H.psql(url, "DELETE FROM _prisma_migrations WHERE finished_at IS NULL")
  r, err = backup.restore { file = m.path, url = url, force = true }
  H.ok(r, err)
  H.eq(r.forced, true)
  H.eq(H.psql(url, "SELECT count(*) FROM _prisma_migrations"), "2\n")
end

T["restore needs an existing target database"] = function()
  local _, url = seeded_db()
  local m = assert(backup.dump { url = url, dir = H.tmpdir(), scope = "schema" })
  local r, err, info = backup.restore { file = m.path, url = H.url("migfix_no_such_db") }
  H.eq(r, nil)
  H.contains(err, "migfix_no_such_db")
  H.eq(info.kind, "connect")
  H.contains(info.hint, "must exist")
end

T["pg_dump missing: clear error, nothing left behind"] = function()
  local _, url = seeded_db()
  local dir = H.tmpdir() .. "/b"
  local empty = H.tmpdir()
  local m, err, info = backup.dump { url = url, dir = dir, bindir = empty }
  H.eq(m, nil)
  H.eq(err, 'could not find "pg_dump"')
  H.contains(info.hint, "MIGFIX_PG_BINDIR")
  H.eq(ls(dir), "", "no directory, no file")
  -- the same through the command line: PATH empty, MIGFIX_PG_BINDIR empty dir
  local proj = H.tmpdir()
  local out, errtext, rc = H.migfix({ "backup", "--url", url, "-C", proj },
    { env = { PATH = "", MIGFIX_PG_BINDIR = empty } })
  H.eq(rc, 4, out .. errtext)
  H.contains(errtext, 'migfix: error: could not find "pg_dump"')
  H.contains(errtext, "migfix: hint: MIGFIX_PG_BINDIR is set to")
  H.eq(ls(proj .. "/.migfix/backups/default"), "")
end

T["pg_dump older than the server: clear error before dumping"] = function()
  local _, url = seeded_db()
  local bindir = fake_bindir('if [ "$1" = --version ]; then echo "pg_dump (PostgreSQL) 13.4"; exit 0; fi\n'
    .. 'echo "should not run" >&2; exit 1\n')
  local dir = H.tmpdir()
  local m, err, info = backup.dump { url = url, dir = dir, bindir = bindir }
  H.eq(m, nil)
  H.contains(err, "pg_dump 13.4 is older than the server (PostgreSQL 15)")
  H.contains(info.hint, "postgresql-client-15")
  H.eq(ls(dir), "")
end

T["pg_dump failure (disk full): partial file removed, stderr kept, password redacted"] = function()
  local name = seeded_db()
  local url, pw = pw_url(name)
  local bindir = fake_bindir([[
if [ "$1" = --version ]; then exec "$REAL" --version; fi
for a in "$@"; do case "$a" in --file=*) f=${a#--file=};; esac; done
head -c 5000 /dev/zero > "$f"
echo "pg_dump: error: could not write to output file: No space left on device (password $PGPASSWORD)" >&2
exit 1
]])
  local dir = H.tmpdir()
  local m, err, info = backup.dump { url = url, dir = dir, bindir = bindir }
  H.eq(m, nil)
  H.contains(err, ('could not back up database "%s": pg_dump exited with code 1 (the partial file was removed)'):format(name))
  H.contains(info.detail, "No space left on device")
  H.not_contains(info.detail, pw)
  H.contains(info.detail, "(password ****)")
  H.contains(info.hint, "free some space")
  H.eq(ls(dir), "", "partial file removed")
end

T["unwritable backup directory: clear error"] = function()
  local _, url = seeded_db()
  local base = H.tmpdir()
  H.write(base .. "/file", "x")
  local m, err, info = backup.dump { url = url, dir = base .. "/file/backups" }
  H.eq(m, nil)
  H.contains(err, ('could not create backup directory "%s/file/backups"'):format(base))
  H.contains(info.hint, "backup.dir")
  m, err = backup.dump { url = url, dir = "/proc/self" }
  H.eq(m, nil)
  H.contains(err, 'could not create backup file "/proc/self/')
end

T["the password never reaches argv, manifest or messages"] = function()
  local name = seeded_db()
  local url, pw = pw_url(name)
  local spy = H.tmpdir()
  local bindir = fake_bindir(([[
if [ "$1" != --version ]; then
  printf '%%s\n' "$@" > %s/argv
  cat /proc/$$/cmdline | tr '\0' '\n' > %s/cmdline
  printf '%%s' "${PGPASSWORD:+set}|$PGUSER|$PGHOST|$PGDATABASE" > %s/env
fi
exec "$REAL" "$@"
]]):format(H.shq(spy), H.shq(spy), H.shq(spy)))
  local dir = H.tmpdir()
  local m, err = backup.dump { url = url, dir = dir, bindir = bindir }
  H.ok(m, err)
  H.not_contains(H.read(spy .. "/argv"), pw, "argv")
  H.not_contains(H.read(spy .. "/cmdline"), pw, "cmdline")
  H.eq(H.read(spy .. "/env"), "set|migfix_pw|127.0.0.1|" .. name)
  for _, a in ipairs(backup.last_argv) do H.not_contains(a, pw, "argv built") end
  H.not_contains(H.read(m.path .. ".json"), pw, "manifest")
  H.eq(m.database.user, "migfix_pw")
  -- a wrong password: the failure message does not echo it
  local i = url:find(pw, 1, true)
  local bad = url:sub(1, i - 1) .. "wrong-" .. url:sub(i)
  local m2, err2, info2 = backup.dump { url = bad, dir = dir }
  H.eq(m2, nil)
  H.not_contains(err2, pw)
  H.not_contains(tostring(info2.detail), pw)
  -- the command line: stdout and stderr are clean, and a real pg_dump's argv too
  local proj = H.tmpdir()
  local out, errtext, rc = H.migfix({ "backup", "--url", url, "-C", proj, "--json" })
  H.eq(rc, 0, errtext)
  H.not_contains(out .. errtext, pw)
  local doc = json.decode(out)
  H.eq(doc.database.user, "migfix_pw")
  H.not_contains(H.read(doc.path .. ".json"), pw)
  -- restore with the password URL
  local tname = H.fresh_db()
  local turl = pw_url(tname)
  out, errtext, rc = H.migfix({ "restore", doc.path, "--into", turl, "-C", proj })
  H.eq(rc, 0, errtext)
  H.not_contains(out .. errtext, pw)
end

T["progress on a terminal: bytes written and elapsed, refreshed in place"] = function()
  if H.sh("command -v script") == "" then return end -- util-linux script(1) gives us a TTY
  local _, url = seeded_db()
  H.psql(url, "CREATE TABLE big AS SELECT g, md5(g::text) AS h FROM generate_series(1, 200000) g")
  local proj = H.tmpdir()
  local cmd = ("%s backup --url %s -C %s"):format(H.shq(H.bin), H.shq(url), H.shq(proj))
  local out, rc = H.sh("script -qec " .. H.shq(cmd) .. " /dev/null")
  H.eq(rc, 0, out)
  H.contains(out, "\r\27[Kmigfix: backing up")
  H.ok(out:find("written, %d+%.%d s"), "bytes and elapsed time: " .. out)
  H.contains(out, "backup written:")
  -- not on a terminal: no progress line
  local o2, e2, rc2 = H.migfix({ "backup", "--url", url, "-C", proj })
  H.eq(rc2, 0, e2)
  H.not_contains(o2 .. e2, "backing up")
end

T["list: newest first, unreadable manifests reported"] = function()
  local _, url = seeded_db()
  local dir = H.tmpdir()
  local a = assert(backup.dump { url = url, dir = dir, scope = "schema" })
  local b = assert(backup.dump { url = url, dir = dir, scope = "ledger" })
  -- make a look older
  local ma = json.decode(H.read(a.path .. ".json"))
  ma.created_at = "2000-01-01T00:00:00Z"
  H.write(a.path .. ".json", json.encode(ma))
  H.write(dir .. "/broken.dump.json", "{not json")
  local list, problems = backup.list(dir)
  H.eq(#list, 2)
  H.eq(list[1].file, b.file)
  H.eq(list[2].file, a.file)
  H.eq(list[1].path, b.path)
  H.eq(#problems, 1)
  H.contains(problems[1].error, "broken.dump.json")
  local empty, p2 = backup.list(dir .. "/missing")
  H.eq(#empty, 0)
  H.eq(#p2, 0)
end

T["commands: backup, backups --verify, restore"] = function()
  local name, url = seeded_db()
  local proj = H.tmpdir()
  local out, err, rc = H.migfix({ "backup", "--url", url, "-C", proj, "--scope", "schema", "--reason", "check" })
  H.eq(rc, 0, err)
  H.contains(out, "backup written: " .. proj .. "/.migfix/backups/default/" .. name)
  H.contains(out, "verified with pg_restore --list:")
  out, err, rc = H.migfix({ "backup", "--url", url, "-C", proj, "--json" })
  H.eq(rc, 0, err)
  local m = json.decode(out)
  H.eq(m.scope, "full")
  H.eq(m.migration, "20240102000000_add_post", "the failed migration of the ledger")
  H.eq(m.environment, "default")

  out, err, rc = H.migfix({ "backups", "--url", url, "-C", proj, "--verify" })
  H.eq(rc, 0, err)
  H.contains(out, "2 backups in")
  H.contains(out, m.file)
  out, err, rc = H.migfix({ "backups", "-C", proj, "--json" })
  H.eq(rc, 0, err)
  H.eq(#json.decode(out).backups, 2)

  -- restore into the source: refused (1); into a new database: ok
  out, err, rc = H.migfix({ "restore", m.file, "--into", url, "-C", proj })
  H.eq(rc, 1, out .. err)
  H.contains(err, "migfix: error: refusing to restore into database")
  H.contains(err, "migfix: hint:")
  local tname, turl = H.fresh_db()
  out, err, rc = H.migfix({ "restore", m.file, "--into", turl, "-C", proj, "--url", url })
  H.eq(rc, 0, err)
  H.contains(out, ('into database "%s"'):format(tname))
  -- the project's URL is the source even when the target is named differently
  out, err, rc = H.migfix({ "restore", m.file, "--into", url .. "?schema=public", "-C", proj, "--url", url })
  H.eq(rc, 1, err)

  -- usage errors
  _, err, rc = H.migfix({ "restore", m.file, "-C", proj })
  H.eq(rc, 2)
  H.contains(err, "restore needs --into URL")
  _, err, rc = H.migfix({ "restore", "nope.dump", "--into", turl, "-C", proj })
  H.eq(rc, 2)
  H.contains(err, 'backup "nope.dump" does not exist')
  _, err, rc = H.migfix({ "backup", "--url", url, "-C", proj, "--scope", "data" })
  H.eq(rc, 2)
  H.contains(err, 'unrecognized scope "data"')
  _, err, rc = H.migfix({ "backup", "--url", H.url("migfix_no_such_db"), "-C", proj })
  H.eq(rc, 3, err)

  -- tamper with one archive: backups --verify says so, restore refuses it
  local data = H.read(m.path)
  H.write(m.path, data:sub(1, #data - 1) .. "X")
  out, err, rc = H.migfix({ "backups", "-C", proj, "--verify" })
  H.eq(rc, 1, out .. err)
  H.contains(out, "FAILED")
  H.contains(err, "1 backup failed verification")
  local t2 = select(2, H.fresh_db())
  out, err, rc = H.migfix({ "restore", m.path, "--into", t2, "-C", proj })
  H.eq(rc, 1, out .. err)
  H.contains(err, "does not match its manifest")
end

return T
