-- Tests for migfix.journal (the hash-chained audit journal and its file
-- mirror) and the `journal` / `undo` commands, on a real PostgreSQL.
local H = require "helper"
local L = require "prisma_ledger"
local db = require "migfix.db"
local journal = require "migfix.journal"

local T = {}

local JS = "migfix"

local function connect(url)
  return assert(db.connect(url, {}))
end

local function entry(n, extra)
  local e = { action = "mark_rolled_back", outcome = "ok", environment = "test", command = "resolve",
              policy = "manual", migration = ("2024010100000%d_m"):format(n), ledger_schema = "public",
              before = {}, after = {}, details = { n = n, note = "entry " .. n } }
  for k, v in pairs(extra or {}) do e[k] = v end
  return e
end

-- append entries, each in its own transaction
local function append_n(conn, n, file)
  local out = {}
  local txn = require "migfix.txn"
  for i = 1, n do
    out[i] = txn.run(conn, function() return assert(journal.record(conn, JS, file, entry(i))) end)
  end
  return out
end

local function kinds(problems)
  local k = {}
  for _, p in ipairs(problems) do k[#k + 1] = p.kind .. "@" .. tostring(p.seq) end
  table.sort(k)
  return table.concat(k, ",")
end

local function mode_of(path)
  local out = H.sh("stat -c %a " .. H.shq(path))
  return (out:gsub("%s+$", ""))
end

T["module: leaves globals alone"] = function()
  local before = {}
  for k in pairs(_G) do before[k] = true end
  package.loaded["migfix.journal"] = nil
  require "migfix.journal"
  for k in pairs(_G) do H.ok(before[k], "no new global " .. tostring(k)) end
end

T["append: bad arguments and unknown fields raise"] = function()
  local conn = connect(select(2, H.fresh_db()))
  H.raises(function() journal.append(conn, JS, { action = "nope", outcome = "ok" }) end, 'unrecognized journal action "nope"')
  H.raises(function() journal.append(conn, JS, { action = "plan", outcome = "maybe" }) end, 'unrecognized journal outcome "maybe"')
  H.raises(function() journal.append(conn, JS, { action = "plan", outcome = "ok", colour = "red" }) end, 'unrecognized entry field "colour"')
  H.raises(function() journal.append(conn, JS, { action = "plan", outcome = "ok", before = "x" }) end, 'entry field "before" must be a table')
  H.raises(function() journal.append(conn, JS, { action = "plan", outcome = "ok" }, { bogus = 1 }) end, 'unrecognized option "bogus"')
  H.raises(function() journal.append(conn, nil, entry(1)) end, "bad argument #2 to 'append'")
  H.raises(function() journal.verify(nil) end, "bad argument #1 to 'verify'")
end

T["ensure: idempotent, refuses the ledger's schema"] = function()
  local _, url = H.fresh_db()
  local conn = connect(url)
  H.ok(journal.ensure(conn, JS))
  H.ok(journal.ensure(conn, JS))
  H.eq(H.psql(url, "SELECT count(*) FROM migfix.journal"), "0\n")
  local ok, err = journal.ensure(conn, "public", { ledger_schema = "public" })
  H.eq(ok, nil)
  H.contains(err, 'schema "public": Prisma manages it')
  H.same(journal.read(conn, "nowhere"), {}, "no table: no entries")
end

T["append x3: chained, read back in order, verify ok"] = function()
  local _, url = H.fresh_db()
  local conn = connect(url)
  local got = append_n(conn, 3)
  H.eq(got[1].seq, 1)
  H.eq(got[1].prev_hash, journal.ZERO)
  H.eq(got[2].prev_hash, got[1].hash)
  H.eq(got[3].seq, 3)
  H.ok(got[1].at:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$"), "ISO UTC at: " .. got[1].at)
  H.ok(got[1].os_user ~= nil and got[1].host ~= nil, "user and host")
  local entries = assert(journal.read(conn, JS))
  H.eq(#entries, 3)
  for i = 1, 3 do
    H.eq(entries[i].hash, got[i].hash, "hash of seq " .. i .. " survives jsonb")
    H.eq(entries[i].at, got[i].at, "at survives timestamptz")
  end
  H.eq(entries[2].details.note, "entry 2")
  local ok, problems = journal.verify(entries)
  H.ok(ok, "verify: " .. kinds(problems or {}))
end

T["verify: an edited outcome names its seq"] = function()
  local _, url = H.fresh_db()
  local conn = connect(url)
  append_n(conn, 3)
  H.psql(url, "UPDATE migfix.journal SET outcome = 'failed' WHERE seq = 2")
  local ok, problems = journal.verify(assert(journal.read(conn, JS)))
  H.eq(ok, false)
  H.eq(kinds(problems), "edited@2")
  H.contains(problems[1].message, "seq 2")
  -- a jsonb edit as well
  H.psql(url, [[UPDATE migfix.journal SET details = jsonb_set(details, '{note}', '"forged"') WHERE seq = 3]])
  ok, problems = journal.verify(assert(journal.read(conn, JS)))
  H.eq(kinds(problems), "edited@2,edited@3")
end

T["verify: a deleted middle entry names the gap"] = function()
  local _, url = H.fresh_db()
  local conn = connect(url)
  append_n(conn, 3)
  H.psql(url, "DELETE FROM migfix.journal WHERE seq = 2")
  local ok, problems = journal.verify(assert(journal.read(conn, JS)))
  H.eq(ok, false)
  H.eq(kinds(problems), "deleted@3")
  H.contains(problems[1].message, "seq 2 is missing before seq 3")
end

T["verify: a reordered chain (seq swapped, hashes recomputed) is seen"] = function()
  local _, url = H.fresh_db()
  local conn = connect(url)
  append_n(conn, 3)
  local entries = assert(journal.read(conn, JS))
  -- swap 2 and 3 and re-hash both: content is consistent, the chain is not
  entries[2].seq, entries[3].seq = 3, 2
  entries[2].hash = journal.hash(entries[2])
  entries[3].hash = journal.hash(entries[3])
  local swapped = { entries[1], entries[3], entries[2] }
  local ok, problems = journal.verify(swapped)
  H.eq(ok, false)
  H.contains(kinds(problems), "reordered@")
end

T["file mirror: mode 0600 in a 0700 directory, chained, redacted"] = function()
  local dir = H.tmpdir()
  local path = dir .. "/sub/.migfix/journal.jsonl"
  local a = assert(journal.append_file(path, entry(1, { action = "plan", outcome = "planned",
    details = { url = "postgresql://app:hunter2@db:5432/x" } })))
  local b = assert(journal.append_file(path, entry(2, { action = "simulate", outcome = "ok" })))
  H.eq(mode_of(path), "600")
  H.eq(mode_of(dir .. "/sub/.migfix"), "700")
  H.eq(a.seq, 1)
  H.eq(a.prev_hash, journal.ZERO)
  H.eq(b.seq, 2)
  H.eq(b.prev_hash, a.hash)
  local text = H.read(path)
  H.not_contains(text, "hunter2")
  local lines = 0
  for _ in text:gmatch("[^\n]+\n") do lines = lines + 1 end
  H.eq(lines, 2, "one JSON object per line")
  local entries = assert(journal.read_file(path))
  H.eq(#entries, 2)
  H.ok(journal.verify(entries), "file chain verifies")
  -- edit a line: verify names it
  H.write(path, text:gsub('"simulate"', '"plan"', 1))
  local ok, problems = journal.verify(assert(journal.read_file(path)))
  H.eq(ok, false)
  H.eq(kinds(problems), "edited@2")
  H.same(journal.read_file(dir .. "/missing.jsonl"), {}, "missing file: no entries")
end

T["file anchor: tail truncation of the database journal is detected"] = function()
  local _, url = H.fresh_db()
  local conn = connect(url)
  local path = H.tmpdir() .. "/journal.jsonl"
  append_n(conn, 4, path)
  local file = assert(journal.read_file(path))
  H.eq(#file, 4)
  H.eq(file[4].db.seq, 4)
  H.ok(journal.verify(assert(journal.read(conn, JS)), { anchor = file }), "intact")
  H.psql(url, "DELETE FROM migfix.journal WHERE seq >= 3")
  local entries = assert(journal.read(conn, JS))
  H.ok(journal.verify(entries), "the truncated chain alone looks fine (the documented limit)")
  local ok, problems = journal.verify(entries, { anchor = file })
  H.eq(ok, false)
  H.eq(kinds(problems), "truncated@3,truncated@4")
  H.contains(problems[1].message, "ends at seq 2")
end

T["append inside a rolled-back transaction leaves no entry"] = function()
  local _, url = H.fresh_db()
  local conn = connect(url)
  append_n(conn, 1)
  do
    local tx <close> = assert(conn:begin())
    assert(journal.append(conn, JS, entry(2)))
    -- no commit: __close rolls back
  end
  H.eq(H.psql(url, "SELECT count(*) FROM migfix.journal"), "1\n")
  local e = assert((function()
    local tx <close> = assert(conn:begin())
    local r = assert(journal.append(conn, JS, entry(3)))
    assert(tx:commit())
    return r
  end)())
  H.eq(e.seq, 2, "the rolled-back seq is reused")
  H.ok(journal.verify(assert(journal.read(conn, JS))))
end

T["last_repair: skips undone repairs and non-repairs"] = function()
  local es = {
    { seq = 1, action = "mark_rolled_back", outcome = "ok" },
    { seq = 2, action = "mark_applied", outcome = "ok" },
    { seq = 3, action = "diagnosis", outcome = "ok" },
    { seq = 4, action = "deploy", outcome = "failed" },
  }
  H.eq(journal.last_repair(es).seq, 2)
  es[5] = { seq = 5, action = "undo", outcome = "ok", details = { undoes = 2 } }
  H.eq(journal.last_repair(es).seq, 1)
  H.eq(journal.last_repair(es, { redo = true }).seq, 5)
  es[6] = { seq = 6, action = "undo", outcome = "ok", details = { undoes = 1 } }
  H.eq(journal.last_repair(es), nil)
end

-- ------------------------------------------------------------------ undo

local NAME = "20240101000000_init"

-- a failed row, then a simulated `resolve --applied` (rolled_back_at on the
-- failed row + a new stamped row) journaled with before/after images
local function ledger_dump(url)
  return H.psql(url, [[SELECT string_agg(concat_ws('|', id, checksum, finished_at, migration_name, logs, rolled_back_at,
    started_at, applied_steps_count), E'\n' ORDER BY started_at, id) FROM _prisma_migrations]])
end

local function simulated_repair(url)
  L.create_table(url)
  L.applied(url, "20231201000000_base", L.checksum("SELECT 1;\n"))
  local failed_id = L.failed(url, NAME, L.checksum("SELECT 2;\n"), "ERROR: boom")
  local pre = ledger_dump(url)
  local conn = connect(url)
  local before = assert(journal.capture(conn, "public", { NAME }))
  H.eq(#before, 1)
  local tx <close> = assert(conn:begin())
  local new_id = L.uuid4()
  assert(conn:query([[UPDATE _prisma_migrations SET rolled_back_at = '2024-02-02T10:00:00.123456Z' WHERE id = $1]], failed_id))
  assert(conn:query([[INSERT INTO _prisma_migrations (id, checksum, started_at, finished_at, migration_name, logs)
                      VALUES ($1, $2, '2024-02-02T10:00:00.234567Z', '2024-02-02T10:00:00.234567Z', $3, '')]],
                    new_id, L.checksum("SELECT 2;\n"), NAME))
  local after = assert(journal.capture(conn, "public", { NAME }))
  H.eq(#after, 2)
  local e = assert(journal.append(conn, JS, { action = "mark_applied", outcome = "ok", environment = "default",
    command = "resolve", migration = NAME, ledger_schema = "public", before = before, after = after, details = {} }))
  assert(tx:commit())
  conn:close()
  return e, pre, failed_id, new_id
end

T["undo: restores the ledger exactly after a mark_applied"] = function()
  local _, url = H.fresh_db()
  local e, pre, failed_id, new_id = simulated_repair(url)
  H.ok(ledger_dump(url) ~= pre, "the repair changed the ledger")
  local project = H.project({})
  local out, err, rc = H.migfix({ "--url", url, "--migrations", project .. "/prisma/migrations", "undo", "--yes" }, { cwd = project })
  H.eq(rc, 0, "undo exit code; stderr: " .. err .. "\nstdout: " .. out)
  H.eq(ledger_dump(url), pre, "the ledger is exactly as before the repair")
  local rows = H.psql(url, "SELECT id || '|' || coalesce(rolled_back_at::text, 'NULL') FROM _prisma_migrations WHERE migration_name = '" .. NAME .. "'")
  H.eq(rows, failed_id .. "|NULL\n", "the failed row is back, the stamped row is gone")
  H.not_contains(rows, new_id)
  local conn = connect(url)
  local entries = assert(journal.read(conn, JS))
  H.eq(#entries, 2)
  H.eq(entries[2].action, "undo")
  H.eq(entries[2].details.undoes, e.seq)
  H.eq(#entries[2].before, 2, "undo's before = the rows it found")
  H.eq(#entries[2].after, 1, "undo's after = the restored rows")
  H.same(entries[2].after, e.before, "restored rows equal the repair's before-image")
  H.ok(journal.verify(entries))
  -- the local mirror was written too
  local file = assert(journal.read_file(project .. "/.migfix/journal.jsonl"))
  H.eq(file[#file].action, "undo")
  H.eq(file[#file].db.seq, 2)
  -- nothing left to undo
  out, err, rc = H.migfix({ "--url", url, "--migrations", project .. "/prisma/migrations", "undo", "--yes" }, { cwd = project })
  H.eq(rc, 1, "nothing to undo: " .. err)
  H.contains(err, "nothing to undo")
end

T["undo: refuses when the ledger changed since the repair"] = function()
  local _, url = H.fresh_db()
  local _, _, _, new_id = simulated_repair(url)
  H.psql(url, "UPDATE _prisma_migrations SET applied_steps_count = 1 WHERE id = '" .. new_id .. "'")
  L.applied(url, "20240301000000_next", L.checksum("SELECT 3;\n"))
  local dump = ledger_dump(url)
  local project = H.project({})
  local out, err, rc = H.migfix({ "--url", url, "--migrations", project .. "/prisma/migrations", "undo", "--yes" }, { cwd = project })
  H.eq(rc, 1, "refused; stdout: " .. out)
  H.contains(err, "the ledger changed since")
  H.contains(err, new_id)
  H.contains(err, "applied_steps_count")
  H.contains(err, "20240301000000_next")
  H.eq(ledger_dump(url), dump, "the ledger is untouched")
end

T["undo: no TTY and no --yes refuses with a hint"] = function()
  local _, url = H.fresh_db()
  simulated_repair(url)
  local dump = ledger_dump(url)
  local project = H.project({})
  local _, err, rc = H.migfix({ "--url", url, "--migrations", project .. "/prisma/migrations", "undo" }, { cwd = project })
  H.eq(rc, 1)
  H.contains(err, "--yes")
  H.eq(ledger_dump(url), dump)
end

-- ------------------------------------------------------------------ journal command

T["journal command: lists, --json, --verify names the seq, --file"] = function()
  local _, url = H.fresh_db()
  local project = H.project({})
  local conn = connect(url)
  append_n(conn, 3, project .. "/.migfix/journal.jsonl")
  local args = { "--url", url, "--migrations", project .. "/prisma/migrations" }
  local function run(...)
    local a = table.move(args, 1, #args, 1, {})
    for _, x in ipairs({ ... }) do a[#a + 1] = x end
    return H.migfix(a, { cwd = project })
  end
  local out, err, rc = run("journal")
  H.eq(rc, 0, err)
  H.contains(out, "SEQ")
  H.contains(out, "20240101000003_m")
  out, err, rc = run("journal", "-n", "1")
  H.eq(rc, 0, err)
  H.not_contains(out, "20240101000001_m")
  out, err, rc = run("journal", "--json")
  H.eq(rc, 0, err)
  local doc = assert(require("migfix.json").decode(out))
  H.eq(#doc.entries, 3)
  out, err, rc = run("journal", "--verify")
  H.eq(rc, 0, err .. out)
  H.contains(out, "intact")
  H.psql(url, "UPDATE migfix.journal SET outcome = 'failed' WHERE seq = 2")
  out, err, rc = run("journal", "--verify")
  H.eq(rc, 1)
  H.contains(err, "seq 2")
  H.psql(url, "DELETE FROM migfix.journal WHERE seq = 3")
  out, err, rc = run("journal", "--verify")
  H.eq(rc, 1)
  H.contains(err .. out, "seq 3")
  -- the file alone, without the database
  out, err, rc = H.migfix({ "--url", "postgresql://nobody@127.0.0.1:1/none", "journal", "--file", "--verify" }, { cwd = project })
  H.eq(rc, 0, err)
  H.contains(out, "20240101000003_m")
end

return T
