-- Backups that behave: .migfix/.gitignore when migfix creates .migfix, backups
-- --prune (--keep, --older-than, --dry-run) recorded in the journal file, and
-- progress lines on a non-TTY.
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local backup = require "migfix.backup"
local fs = require "migfix.fs"

local M1 = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' }

local T = {}

local function project_db()
  local dir, mdir = h.project { M1 }
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir)
  return dir, url
end

T[".migfix/ gets a .gitignore of * the first time migfix creates it (backups, journal)"] = function()
  local dir, url = project_db()
  local _, err, rc = h.migfix { "-C", dir, "--url", url, "backup", "--scope", "schema" }
  h.eq(rc, 0, err)
  h.eq(h.read(dir .. "/.migfix/.gitignore"), fs.GITIGNORE)
  h.contains(fs.GITIGNORE, "\n*\n")
  -- git agrees: nothing under .migfix/ is offered for commit
  local out, grc = h.sh(("cd %s && git init -q . && git status --porcelain --untracked-files=all"):format(h.shq(dir)))
  h.eq(grc, 0)
  h.not_contains(out, ".migfix", "git status lists no backup")
  h.contains(out, "prisma/")
  -- created by the journal mirror alone (a plan writes the file only)
  local d2 = h.tmpdir()
  local ok = fs.mkdirs(d2 .. "/.migfix")
  h.ok(ok)
  h.ok(fs.exists(d2 .. "/.migfix/.gitignore"))
  -- an existing .migfix without one is left as the user keeps it
  local d3 = h.tmpdir()
  h.sh("mkdir -p " .. h.shq(d3 .. "/.migfix"))
  h.ok(fs.mkdirs(d3 .. "/.migfix/backups/x"))
  h.eq(fs.exists(d3 .. "/.migfix/.gitignore"), false)
end

--- four fake backups (manifest + archive) created 1, 10, 40 and 100 days ago
local function fake_backups(dir)
  h.sh("mkdir -p " .. h.shq(dir))
  local now = os.time()
  local names = {}
  for i, days in ipairs({ 1, 10, 40, 100 }) do
    local t = now - days * 86400
    local file = ("app_%s_full.dump"):format(os.date("!%Y%m%dT%H%M%SZ", t))
    h.write(dir .. "/" .. file, ("archive %d"):format(i))
    h.write(dir .. "/" .. file .. ".json", json.encode {
      version = 1, file = file, created_at = os.date("!%Y-%m-%dT%H:%M:%SZ", t), sha256 = ("%064d"):format(i),
      size = 9, scope = "full", database = { name = "app" } })
    names[days] = file
  end
  h.write(dir .. "/orphan_full.dump", "no manifest")
  h.write(dir .. "/broken.dump.json", "{ not json")
  return names, now
end

T["backup.prune: keep N, older than, both, dry run; orphans and bad manifests untouched"] = function()
  local dir = h.tmpdir() .. "/b"
  local names, now = fake_backups(dir)
  local r = assert(backup.prune(dir, { keep = 2, dry_run = true, now = now }))
  h.eq(#r.removed, 2)
  h.eq(#r.kept, 2)
  h.ok(fs.exists(dir .. "/" .. names[100]), "dry run deletes nothing")
  r = assert(backup.prune(dir, { older_than = 30 * 86400, keep = 3, now = now }))
  h.eq(#r.removed, 1, "both rules: only what both let go")
  h.eq(r.removed[1].file, names[100])
  h.eq(fs.exists(dir .. "/" .. names[100]), false)
  h.eq(fs.exists(dir .. "/" .. names[100] .. ".json"), false)
  r = assert(backup.prune(dir, { older_than = 5 * 86400, now = now }))
  h.eq(#r.removed, 2)
  h.eq(#r.kept, 1)
  h.eq(r.kept[1].file, names[1])
  h.eq(#r.problems, 1, "the unreadable manifest is reported")
  h.ok(fs.exists(dir .. "/orphan_full.dump"), "an archive without a manifest is never touched")
  h.ok(fs.exists(dir .. "/broken.dump.json"))
  h.raises(function() backup.prune(dir, { keep = 0 }) end, "keep must be an integer >= 1")
  h.raises(function() backup.prune(dir, {}) end, "needs keep or older_than")
  h.raises(function() backup.prune(dir, { keep = 1, bogus = true }) end, "unrecognized option")
end

T["backups --prune: the command, its JSON, and the journal entry"] = function()
  local dir, url = project_db()
  local bdir = dir .. "/.migfix/backups/default"
  local names = fake_backups(bdir)
  local out, err, rc = h.migfix { "-C", dir, "--url", url, "backups", "--prune", "--keep", "3", "--dry-run" }
  h.eq(rc, 0, err)
  h.contains(out, "would remove 1 backup")
  h.contains(out, names[100])
  h.eq(fs.exists(dir .. "/.migfix/journal.jsonl"), false, "a dry run journals nothing")
  out, err, rc = h.migfix { "-C", dir, "--url", url, "backups", "--prune", "--older-than", "30d", "--json" }
  h.eq(rc, 0, err)
  local doc = assert(json.decode(out), out)
  h.eq(#doc.removed, 2)
  h.eq(doc.kept, 2)
  h.eq(doc.dry_run, false)
  local lines = {}
  for l in h.read(dir .. "/.migfix/journal.jsonl"):gmatch("[^\n]+") do lines[#lines + 1] = json.decode(l) end
  local e = lines[#lines]
  h.eq(e.action, "backup_prune")
  h.eq(e.outcome, "ok")
  h.eq(e.environment, "default")
  h.eq(#e.details.removed, 2)
  local removed = {}
  for _, m in ipairs(e.details.removed) do removed[m.file] = m end
  h.ok(removed[names[100]] and removed[names[40]], "the journal names every removed file")
  h.eq(removed[names[100]].sha256, ("%064d"):format(4))
  local _, verr, vrc = h.migfix { "-C", dir, "--url", url, "journal", "--file", "--verify" }
  h.eq(vrc, 0, "the file chain stays valid: " .. verr)
  local listing = h.migfix { "-C", dir, "--url", url, "journal", "--file" }
  h.contains(listing, "backup_prune")
  -- usage errors
  for _, bad in ipairs({ { "--prune" }, { "--prune", "--keep", "0" }, { "--prune", "--older-than", "old" }, { "--keep", "2" } }) do
    local args = { "-C", dir, "--url", url, "backups" }
    for _, a in ipairs(bad) do args[#args + 1] = a end
    local _, berr, brc = h.migfix(args)
    h.eq(brc, 2, table.concat(bad, " "))
    h.contains(berr, "migfix: error:")
  end
end

T["backup on a non-TTY prints progress lines (bytes, rate, elapsed)"] = function()
  local dir, url = project_db()
  h.psql(url, "CREATE TABLE filler AS SELECT g AS id, repeat(md5(g::text), 8) AS t FROM generate_series(1, 50000) g")
  local _, err, rc = h.migfix({ "-C", dir, "--url", url, "backup" }, { env = { MIGFIX_PROGRESS_INTERVAL = "0.05" } })
  h.eq(rc, 0, err)
  local n = 0
  for line in err:gmatch("[^\n]+") do
    if line:find("^migfix: backing up") then
      n = n + 1
      h.ok(line:match('^migfix: backing up "t_[%w_]+" %(full%): [%d.]+ %a+ written, [%d.]+ %a+/s, %d+ s elapsed'), "progress line: " .. line)
      local pct = line:match(", (%d+)%% of the table data %(")
      if pct then h.ok(tonumber(pct) <= 100, line) end
    end
  end
  h.ok(n >= 1, "at least one progress line in:\n" .. err)
  h.not_contains(err, "\r", "no carriage returns without a terminal")
  local _, err2, rc2 = h.migfix({ "-C", dir, "--url", url, "backup", "--json" }, { env = { MIGFIX_PROGRESS_INTERVAL = "0.05" } })
  h.eq(rc2, 0)
  h.not_contains(err2, "backing up", "--json stays quiet")
end

T["progress percentage: tables before the one pg_dump copies, plus the COPY's bytes"] = function()
  local polls = 0
  local fake_h = { poll = function() polls = polls + 1; if polls > 2 then return { code = 0 } end end }
  local conn = {
    server_version = function() return 150000 end,
    query = function(_, sql)
      if sql:find("pg_class", 1, true) then
        return { { s = "public", t = "A", bytes = 100 }, { s = "public", t = "B", bytes = 300 }, { s = "z", t = "C", bytes = 600 } }
      end
      return { { query = 'COPY public."B" (id, t) TO stdout;', copied = 100 } }
    end,
  }
  local path = os.tmpname()
  local lines = {}
  local real = io.stderr
  io.stderr = { write = function(_, ...) for _, s in ipairs({ ... }) do lines[#lines + 1] = s end end, flush = function() end }
  local ok, st = pcall(backup.watch, fake_h, { path = path, conn = conn, dbname = "app", scope = "full", appname = "x",
                                               t0 = require("migfix.sys").now_ms() - 1000, interval = 0 })
  io.stderr = real
  os.remove(path)
  h.ok(ok, tostring(st))
  h.eq(st.code, 0)
  local text = table.concat(lines)
  h.contains(text, "20% of the table data (public.B)", "(100 + 100) / 1000")
end

T["backups --verify reports archives without a manifest and manifests without an archive (exit 1)"] = function()
  local dir, url = project_db()
  local out, err, rc = h.migfix { "-C", dir, "--url", url, "backup", "--scope", "schema", "--json" }
  h.eq(rc, 0, err)
  local m = json.decode(out)
  out, err, rc = h.migfix { "-C", dir, "backups", "--verify" }
  h.eq(rc, 0, out .. err)
  -- a stray archive (copied in by hand, or a manifest deleted): reported, never verified as good
  local bdir = dir .. "/.migfix/backups/default"
  h.write(bdir .. "/stray_20240101T000000Z_full.dump", "PGDMP not really")
  out, err, rc = h.migfix { "-C", dir, "backups", "--verify" }
  h.eq(rc, 1, out .. err)
  h.contains(err, bdir .. "/stray_20240101T000000Z_full.dump\" has no manifest")
  out, err, rc = h.migfix { "-C", dir, "backups", "--verify", "--json" }
  h.eq(rc, 1, err)
  local doc = json.decode(out)
  h.eq(#doc.orphans, 1)
  h.eq(doc.orphans[1].kind, "no_manifest")
  -- without --verify: listed as a warning, exit 0
  _, err, rc = h.migfix { "-C", dir, "backups" }
  h.eq(rc, 0)
  h.contains(err, "has no manifest")
  -- a manifest whose archive is gone
  os.remove(bdir .. "/stray_20240101T000000Z_full.dump")
  os.remove(m.path)
  out, err, rc = h.migfix { "-C", dir, "backups", "--verify", "--json" }
  h.eq(rc, 1, err)
  doc = json.decode(out)
  h.eq(#doc.orphans, 1)
  h.eq(doc.orphans[1].kind, "no_dump")
  h.eq(doc.orphans[1].path, m.path .. ".json")
  _, err = h.migfix { "-C", dir, "backups", "--verify" }
  h.contains(err, "has no archive")
  -- prune still leaves a stray archive alone
  h.write(bdir .. "/stray.dump", "x")
  h.migfix { "-C", dir, "backups", "--prune", "--keep", "1" }
  h.ok(fs.exists(bdir .. "/stray.dump"))
end

return T
