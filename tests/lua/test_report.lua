-- migfix report against the real test server: the report after the seed
-- resolution (complete -> mark applied, with an after hook), after a
-- rollback-and-redeploy, after refusals (unchanged file; partial), after an
-- undo and after a deploy. Each section is checked against the journal
-- table and the database, never against a stored copy of the text. The
-- Markdown goes through GitHub's parser (cmark-gfm, its AST as XML), the HTML
-- through libxml2 (HTML and XML parsers), the JSON through migfix.json; the
-- HTML and Markdown tables must be the same. Every call uses a password URL:
-- the password must appear nowhere. Also the run id of journal.lua.
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local journal = require "migfix.journal"
local report = require "migfix.report"

local PW = os.getenv("MIGFIX_TEST_PW")
local TICK = h.root .. "/tests/fixtures/ticketing/prisma/migrations"
local CASES = h.root .. "/tests/fixtures/cases"
local INIT, BIG = "20240105093000_init", "20240312141500_sla_kb_forms_email"
local DUP = "20240625130000_org_name_unique"
local DUP_SETUP = [[INSERT INTO "Organization" ("id", "name", "slug", "updatedAt") VALUES
  ('org_acme', 'Acme', 'acme', CURRENT_TIMESTAMP), ('org_acme_eu', 'Acme', 'acme-eu', CURRENT_TIMESTAMP);]]
local UUID = "^%x%x%x%x%x%x%x%x%-%x%x%x%x%-4%x%x%x%-[89ab]%x%x%x%-%x%x%x%x%x%x%x%x%x%x%x%x$"
local SECTIONS = { "Failure", "Root cause", "Approach", "Steps", "Verification", "Database objects of the migration",
                   "Backup", "Prevention", "After hooks", "Timing", "Journal entries" }

local T = {}

-- helpers ---------------------------------------------------------------------

local function pw_url(name)
  h.ok(PW and PW ~= "", "MIGFIX_TEST_PW is set (tests/lib/pg.sh)")
  return (h.url(name):gsub("://[^@/]*@", "://migfix_pw:" .. PW .. "@", 1))
end

local function sh_ok(cmd)
  local out, rc = h.sh(cmd .. " 2>&1")
  if rc ~= 0 then error("command failed: " .. cmd .. "\n" .. out, 2) end
  return out
end

--- migfix in dir with --url; no password in anything it prints
local function mf(dir, url, args, opts)
  local full = { "-C", dir, "--url", url }
  for _, a in ipairs(args) do full[#full + 1] = a end
  local out, err, rc = h.migfix(full, opts)
  h.not_contains(out .. err, PW, "password in the output of migfix " .. table.concat(args, " "))
  return out, err, rc
end

--- one value from psql (trimmed)
local function q1(url, sql) return (h.psql(url, sql):gsub("%s+$", "")) end

local function tick_project(names)
  local dir = h.tmpdir()
  local mdir = dir .. "/prisma/migrations"
  sh_ok("mkdir -p " .. h.shq(mdir) .. " && cp " .. h.shq(TICK .. "/migration_lock.toml") .. " " .. h.shq(mdir))
  for _, n in ipairs(names) do sh_ok("cp -r " .. h.shq(TICK .. "/" .. n) .. " " .. h.shq(mdir .. "/")) end
  return dir, mdir
end

local seed_template
--- ticketing init + the big migration executed in full, its row failed with
--- logs NULL (the demo's state)
local function seed_db()
  if not seed_template then
    local dir, mdir = tick_project { INIT, BIG }
    local name, url = h.fresh_db()
    local r = L.deploy(url, nil, mdir)
    h.ok(r.ok, "seed deploy: " .. tostring(r.error))
    h.psql(url, ("UPDATE _prisma_migrations SET finished_at = NULL, applied_steps_count = 0, logs = NULL WHERE migration_name = '%s'"):format(BIG))
    seed_template = name
    sh_ok("rm -rf " .. h.shq(dir))
  end
  local name = h.fresh_db(seed_template)
  return name, pw_url(name), h.url(name)
end

--- absent_dup_key: init, duplicate rows, the unique index failed for real (23505)
local function dup_case()
  local dir = h.tmpdir()
  sh_ok("mkdir -p " .. h.shq(dir .. "/prisma") .. " && cp -rL " .. h.shq(CASES .. "/absent_dup_key/migrations") .. " " .. h.shq(dir .. "/prisma/"))
  local mdir = dir .. "/prisma/migrations"
  local name, aurl = h.fresh_db()
  h.ok(L.deploy(aurl, nil, mdir, INIT).ok)
  h.psql(aurl, DUP_SETUP)
  h.eq(L.deploy(aurl, nil, mdir).code, "P3018", "the unique index fails")
  return dir, pw_url(name), aurl, mdir
end

--- a journal column of one entry as JSON text decoded
local function jcol(aurl, col, where)
  local t = q1(aurl, ("SELECT %s::text FROM migfix.journal WHERE %s ORDER BY seq DESC LIMIT 1"):format(col, where))
  if t == "" then return nil end
  return json.decode(t)
end

local function ts(col) return ("to_char(%s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"):format(col) end

--- milliseconds between two ISO times, computed by PostgreSQL
local function pg_ms(aurl, a, b)
  return tonumber(q1(aurl, ("SELECT round(extract(epoch FROM ('%s'::timestamptz - '%s'::timestamptz)) * 1000)"):format(b, a)))
end

-- a tiny XML reader for cmark-gfm's AST and migfix's (well-formed) HTML --------

local ENT = { lt = "<", gt = ">", amp = "&", quot = '"', apos = "'" }
local function unent(s)
  return (s:gsub("&(#?%w+);", function(e)
    if e:sub(1, 1) == "#" then
      local n = e:sub(2, 2) == "x" and tonumber(e:sub(3), 16) or tonumber(e:sub(2))
      return n and utf8.char(n) or ("&" .. e .. ";")
    end
    return ENT[e] or ("&" .. e .. ";")
  end))
end

local function parse_xml(text)
  text = text:gsub("<%?.-%?>", ""):gsub("<!DOCTYPE[^>]*>", ""):gsub("<!%-%-.-%-%->", "")
  local root = { tag = "#root", kids = {} }
  local stack = { root }
  local pos = 1
  while pos <= #text do
    local a, b, close, tag, attrs, selfclose = text:find("<(/?)([%w_:%-]+)(.-)(/?)>", pos)
    if not a then
      local t = text:sub(pos)
      if t:match("%S") then table.insert(stack[#stack].kids, unent(t)) end
      break
    end
    if a > pos then table.insert(stack[#stack].kids, unent(text:sub(pos, a - 1))) end
    if close == "/" then
      local top = table.remove(stack)
      if top.tag ~= tag then error(("XML: </%s> closes <%s>"):format(tag, top.tag)) end
    else
      local node = { tag = tag, attrs = attrs, kids = {} }
      table.insert(stack[#stack].kids, node)
      if selfclose ~= "/" then stack[#stack + 1] = node end
    end
    pos = b + 1
  end
  if #stack ~= 1 then error("XML: unclosed <" .. stack[#stack].tag .. ">") end
  return root
end

local function walk(node, fn)
  for _, k in ipairs(node.kids or {}) do
    if type(k) == "table" then
      if fn(k) ~= false then walk(k, fn) end
    end
  end
end

-- cmark's XML is indented: its text is in text/code leaves only (a break is a space)
local CMARK_TEXT = { text = true, code = true, code_block = true, softbreak = true, linebreak = true }
local function text_of(node, cmark)
  local parts = {}
  local function rec(n, inside)
    for _, k in ipairs(n.kids) do
      if type(k) == "string" then
        if inside or not cmark then parts[#parts + 1] = k end
      elseif cmark and (k.tag == "softbreak" or k.tag == "linebreak") then
        parts[#parts + 1] = " "
      else
        rec(k, inside or CMARK_TEXT[k.tag])
      end
    end
  end
  rec(node, cmark and CMARK_TEXT[node.tag] or false)
  return (table.concat(parts):gsub("%s+", " "):gsub("^ ", ""):gsub(" $", ""))
end

local function kids(node, tag)
  local out = {}
  for _, k in ipairs(node.kids) do if type(k) == "table" and k.tag == tag then out[#out + 1] = k end end
  return out
end

--- the tables of a cmark-gfm AST: {head = {...}, rows = {{...}}} of cell texts
local function md_tables(ast)
  local out = {}
  walk(ast, function(n)
    if n.tag == "table" then
      local t = { rows = {} }
      for _, r in ipairs(n.kids) do
        if type(r) == "table" then
          local cells = {}
          for _, c in ipairs(kids(r, "table_cell")) do cells[#cells + 1] = text_of(c, true) end
          if r.tag == "table_header" then t.head = cells else t.rows[#t.rows + 1] = cells end
        end
      end
      out[#out + 1] = t
      return false
    end
  end)
  return out
end

local function html_tables(dom)
  local out = {}
  walk(dom, function(n)
    if n.tag == "table" then
      local t = { rows = {} }
      walk(n, function(r)
        if r.tag == "tr" then
          local cells, head = {}, false
          for _, c in ipairs(r.kids) do
            if type(c) == "table" and (c.tag == "th" or c.tag == "td") then
              cells[#cells + 1] = text_of(c)
              head = head or c.tag == "th"
            end
          end
          if head then t.head = cells else t.rows[#t.rows + 1] = cells end
          return false
        end
      end)
      out[#out + 1] = t
      return false
    end
  end)
  return out
end

--- Markdown through cmark-gfm (GitHub's parser): the AST, no raw HTML
--- (everything escaped), headings and tables
local function check_markdown(md)
  h.ok(io.open("/usr/bin/cmark-gfm") ~= nil, "cmark-gfm is installed (scripts/install-deps)")
  local path = os.tmpname()
  h.write(path, md)
  local xml, rc = h.sh("/usr/bin/cmark-gfm -e table --to xml " .. h.shq(path) .. " 2>&1")
  os.remove(path)
  h.eq(rc, 0, "cmark-gfm: " .. xml)
  local ast = parse_xml(xml)
  local headings, raw, codes = {}, 0, {}
  walk(ast, function(n)
    if n.tag == "heading" then headings[#headings + 1] = { level = tonumber(n.attrs:match('level="(%d)"')), text = text_of(n, true) } end
    if n.tag == "html_block" or n.tag == "html_inline" then raw = raw + 1 end
    if n.tag == "code_block" then codes[#codes + 1] = { info = n.attrs:match('info="([^"]*)"'), text = text_of(n, true) } end
  end)
  h.eq(raw, 0, "no raw HTML in the Markdown (everything escaped)")
  h.ok(#headings > 0 and headings[1].level == 1, "the report starts with a level-1 heading")
  for i = 2, #headings do
    h.ok(headings[i].level <= headings[i - 1].level + 1, ("heading levels step by one: %s"):format(headings[i].text))
  end
  return { tables = md_tables(ast), headings = headings, codes = codes }
end

--- HTML through libxml2's HTML parser (no message) and its XML parser
--- (well-formed); self-contained; the same tables as the Markdown
local function check_html(html, md)
  local path = os.tmpname()
  h.write(path, html)
  local out, rc = h.sh("xmllint --html --noout " .. h.shq(path) .. " 2>&1")
  h.eq(rc, 0, "xmllint --html: " .. out)
  h.eq(out, "", "xmllint --html reports nothing")
  out, rc = h.sh("xmllint --noout " .. h.shq(path) .. " 2>&1")
  os.remove(path)
  h.eq(rc, 0, "xmllint (XML): " .. out)
  h.ok(html:match("^<!DOCTYPE html>"), "doctype")
  h.contains(html, "<style>")
  for _, bad in ipairs({ "<script", "<link", "src=", "href=", "url(", "@import" }) do
    h.not_contains(html, bad, "self-contained page")
  end
  local tables = html_tables(parse_xml(html))
  h.eq(#tables, #md.tables, "as many tables in the HTML as in the Markdown")
  for i, t in ipairs(tables) do h.same(t, md.tables[i], "table " .. i .. " of the HTML equals the Markdown's") end
end

--- the table whose header is `head` and whose first column has `key`: that row
local function row_of(tables, head1, key)
  for _, t in ipairs(tables) do
    if t.head and t.head[1] == head1 then
      for _, r in ipairs(t.rows) do if r[1] == key then return r end end
    end
  end
  return nil
end

--- migfix report in all three formats; checks them; returns doc, md, markdown text
local function reports(dir, url, args)
  args = args or {}
  local function run(fmt)
    local a = { "report", "--format", fmt }
    for _, x in ipairs(args) do a[#a + 1] = x end
    local out, err, rc = mf(dir, url, a)
    h.eq(rc, 0, "report --format " .. fmt .. ":\n" .. out .. err)
    return out
  end
  local jtext, mdtext, html = run("json"), run("markdown"), run("html")
  local doc = json.decode(jtext)
  h.ok(type(doc) == "table", "report --format json is JSON: " .. jtext:sub(1, 200))
  h.same(json.decode(json.encode(doc)), doc, "the JSON round-trips through migfix.json")
  h.eq(doc.report, "migfix resolution report")
  h.eq(doc.version, 1)
  local md = check_markdown(mdtext)
  check_html(html, md)
  -- --output writes the same text
  local outf = h.tmpdir() .. "/report.md"
  local a = { "report", "--output", outf }
  for _, x in ipairs(args) do a[#a + 1] = x end
  local o2, e2, rc2 = mf(dir, url, a)
  h.eq(rc2, 0, o2 .. e2)
  h.eq(o2, "", "nothing on stdout with --output")
  local written = h.read(outf)
  h.not_contains(written, PW)
  local function untimed(t) return (t:gsub("\nGenerated [^\n]*", "")) end
  h.ok(untimed(written) == untimed(mdtext), "--output writes the Markdown (but for the time it was generated)")
  return doc, md, mdtext
end

local function headings_have(md, names)
  local have = {}
  for _, hd in ipairs(md.headings) do have[hd.text] = true end
  for _, n in ipairs(names) do h.ok(have[n], "section \"" .. n .. "\" in the Markdown") end
end

local function step(sec, action)
  for _, s in ipairs(sec.steps) do if s.action == action then return s end end
  return nil
end

local function status_doc(dir, url)
  local out, err = mf(dir, url, { "status", "--json" })
  local d = json.decode(out)
  h.ok(d, "status --json: " .. out .. err)
  return d
end

local function same_list(got, want, what)
  h.eq(#got, #want, what .. ": count")
  for i = 1, #want do h.eq(got[i], want[i], what .. " " .. i) end
end

-- the run id -----------------------------------------------------------------------

T["run id: one v4 uuid per process in details.run, database and file; set_run; the caller's details untouched"] = function()
  local id = journal.run_id()
  h.ok(id:match(UUID), "v4 uuid: " .. id)
  h.eq(journal.run_id(), id, "the same id for the whole process")
  local name, aurl = h.fresh_db()
  local conn <close> = assert(require("migfix.db").connect(aurl))
  local det = { note = "x" }
  local tx = assert(conn:begin())
  local e1 = assert(journal.append(conn, "migfix", { action = "diagnosis", outcome = "ok", details = det }))
  local e2 = assert(journal.append(conn, "migfix", { action = "backup", outcome = "ok" }))
  assert(tx:commit())
  h.eq(det.run, nil, "the caller's details table is not changed")
  h.eq(e1.details.run, id)
  h.eq(e1.details.note, "x")
  h.eq(e2.details.run, id, "an entry without details gets {run = id}")
  local rows = q1(aurl, "SELECT string_agg(details->>'run', ',' ORDER BY seq) FROM migfix.journal")
  h.eq(rows, id .. "," .. id)
  local ok, problems = journal.verify(assert(journal.read(conn, "migfix")))
  h.ok(ok, "the chain verifies with the run ids: " .. json.encode(problems))
  local dir = h.tmpdir()
  local fe = assert(journal.append_file(dir .. "/j.jsonl", { action = "plan", outcome = "planned" }))
  h.eq(fe.details.run, id, "file-only entries carry it too")
  local m = assert(journal.mirror(conn, "migfix", dir .. "/j.jsonl", e1))
  h.eq(m.details.run, id, "a mirror is the database entry")
  -- an entry may name its own run (a fleet sets the id once for all targets)
  local other = "6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f"
  local fe2 = assert(journal.append_file(dir .. "/j.jsonl", { action = "plan", outcome = "planned", details = { run = other } }))
  h.eq(fe2.details.run, other)
  h.raises(function() journal.set_run("not-a-uuid") end, "bad argument #1 to 'set_run' (uuid expected")
  h.raises(function() journal.set_run(42) end, "uuid expected, got number")
  h.eq(journal.set_run(other:upper()), other, "set_run lower-cases")
  h.eq(journal.run_id(), other)
  local fe3 = assert(journal.append_file(dir .. "/j.jsonl", { action = "plan", outcome = "planned" }))
  h.eq(fe3.details.run, other, "entries after set_run carry the outer id")
  journal.set_run(id)
  h.ok(journal.verify(assert(journal.read_file(dir .. "/j.jsonl"))), "the file chain verifies")
  h.ok(name:match("^t_"))
end

T["run id: every entry of one migfix command shares one id, each command its own"] = function()
  local dir = tick_project { INIT, BIG }
  local _, url, aurl = seed_db()
  local _, _, rc = mf(dir, url, { "run" })
  h.eq(rc, 0)
  local _, _, rc2 = mf(dir, url, { "undo", "--yes" })
  h.eq(rc2, 0)
  h.eq(q1(aurl, "SELECT count(*) FROM migfix.journal WHERE details->>'run' IS NULL"), "0", "every entry has a run id")
  local ids = h.psql(aurl, "SELECT command || ' ' || count(DISTINCT details->>'run') || ' ' || count(*) FROM migfix.journal GROUP BY command ORDER BY command")
  h.eq(ids, "run 1 4\nundo 1 1\n", "one id per command (run: diagnosis, backup, mark_applied, check)")
  local a = q1(aurl, "SELECT details->>'run' FROM migfix.journal WHERE command = 'run' LIMIT 1")
  local b = q1(aurl, "SELECT details->>'run' FROM migfix.journal WHERE command = 'undo' LIMIT 1")
  h.ok(a:match(UUID) and b:match(UUID) and a ~= b, "two v4 uuids: " .. a .. " " .. b)
  -- the file mirror has the same ids
  local file = h.read(dir .. "/.migfix/journal.jsonl")
  h.contains(file, '"run":"' .. a .. '"')
  h.contains(file, '"run":"' .. b .. '"')
end

-- the seed story ---------------------------------------------------------------------

T["report after the seed resolution (complete -> mark applied): every section from the journal and the database"] = function()
  local dir = tick_project { INIT, BIG }
  local _, url, aurl = seed_db()
  local failed_id = q1(aurl, ("SELECT id FROM _prisma_migrations WHERE migration_name = '%s'"):format(BIG))
  local failed_at = q1(aurl, ("SELECT %s FROM _prisma_migrations WHERE id = '%s'"):format(ts("started_at"), failed_id))
  -- an after hook whose text holds a password URL: the report masks it
  h.write(dir .. "/migfix.lua", ('return { default_environment = "dev", environments = { dev = {\n'
    .. '  after = { "true", "echo postgresql://app:%s@db.internal/x >/dev/null" } } } }\n'):format(PW))
  local out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 0, out .. err)
  local doc, md, mdtext = reports(dir, url)
  h.eq(#doc.runs, 1)
  local r = doc.runs[1]
  local run_id = q1(aurl, "SELECT DISTINCT details->>'run' FROM migfix.journal WHERE command = 'run'")
  h.eq(r.run, run_id, "the run of `migfix run`, by its journal id")
  h.eq(r.command, "run")
  h.eq(r.environment, "dev")
  h.eq(r.outcome, "resolved")
  h.eq(r.os_user, q1(aurl, "SELECT DISTINCT os_user FROM migfix.journal WHERE command = 'run'"))
  h.contains(r.headline, BIG .. " resolved by `migfix run` with policy apply-if-complete")
  h.eq(#r.migrations, 1)
  local s = r.migrations[1]
  h.eq(s.name, BIG)
  h.eq(s.outcome, "resolved")

  -- failure: the failed row as the database has it
  h.eq(s.failure.migration, BIG)
  h.eq(s.failure.row.id, failed_id)
  h.eq(s.failure.failed_at, failed_at)
  h.eq(s.failure.error.no_logs, true, "logs NULL")
  h.eq(s.failure.error.class, "transient")
  h.contains(s.failure.detected_by, "`migfix run`")
  h.contains(s.failure.detected_by, "P3009")

  -- root cause: the diagnosis entry
  local diag = jcol(aurl, "details", "action = 'diagnosis'")
  h.eq(s.root_cause.verdict, "complete")
  h.eq(s.root_cause.verdict, diag.verdict)
  h.same(s.root_cause.counts, diag.counts, "counts as journaled")
  h.eq(s.root_cause.counts.missing, 0)
  h.eq(s.root_cause.file_changed, false)
  h.eq(s.root_cause.file_checksum, L.file_checksum(dir .. "/prisma/migrations/" .. BIG .. "/migration.sql"))
  h.eq(s.root_cause.failed_checksum, q1(aurl, ("SELECT checksum FROM _prisma_migrations WHERE id = '%s'"):format(failed_id)))
  h.eq(s.root_cause.execution.all_or_nothing, true)
  h.eq(s.root_cause.explanation, "The schema is complete: the connection was lost after the commit (Prisma never recorded finished_at).")

  -- approach: the policy, why, and nobody declined before it (first in the chain)
  h.eq(s.approach.policy, "apply-if-complete")
  h.eq(s.approach.policy, q1(aurl, "SELECT policy FROM migfix.journal WHERE action = 'mark_applied'"))
  h.eq(#s.approach.declined, 0)
  h.contains(s.approach.why[1], "verifiable effects of " .. BIG .. " are in the database")

  -- steps: backup, mark applied with its SQL, check
  local b, m, c = step(s, "backup"), step(s, "mark_applied"), step(s, "check")
  h.ok(b and m and c, "three steps")
  for _, st in ipairs({ b, m, c }) do
    h.eq(st.outcome, "ok")
    h.ok(math.type(st.duration_ms) == "integer" and st.duration_ms >= 0, "a duration: " .. tostring(st.duration_ms))
  end
  local mark_seq = q1(aurl, "SELECT seq FROM migfix.journal WHERE action = 'mark_applied'")
  same_list(m.journal, { "seq " .. mark_seq }, "mark_applied journal")
  local jsql = jcol(aurl, "details->'sql'", "action = 'mark_applied'")
  same_list(m.sql, jsql, "the SQL of mark_applied as journaled")
  local new_id = q1(aurl, ("SELECT id FROM _prisma_migrations WHERE migration_name = '%s' AND finished_at IS NOT NULL"):format(BIG))
  h.contains(m.sql[1], "UPDATE \"public\".\"_prisma_migrations\" SET rolled_back_at = ")
  h.contains(m.sql[1], failed_id)
  h.contains(m.sql[2], "INSERT INTO")
  h.contains(m.sql[2], new_id)
  h.eq(m.message, "1 row(s) before, 2 after")

  -- verification: the check step (journal), the ledger now (database), Prisma's status as migfix computes it
  h.eq(s.verification.after_write.outcome, "ok")
  h.eq(s.verification.after_write.state, "applied")
  h.eq(s.verification.after_write.prisma_status.says, "Database schema is up to date!")
  h.eq(s.verification.now.state, "applied")
  h.eq(s.verification.now.changed_since_run, false)
  local db_rows = h.psql(aurl, ("SELECT id || ' ' || coalesce(%s, '-') FROM _prisma_migrations WHERE migration_name = '%s' ORDER BY started_at, id"):format(ts("finished_at"), BIG))
  local got = {}
  for _, row in ipairs(s.verification.now.rows) do got[#got + 1] = row.id .. " " .. (row.finished_at == json.null and "-" or row.finished_at) end
  h.eq(table.concat(got, "\n") .. "\n", db_rows, "the ledger rows now, as the database has them")
  local st = status_doc(dir, url)
  h.same(r.now.prisma_status, st.prisma_status, "prisma migrate status as `migfix status` computes it")
  h.eq(r.now.deploy.refuses, false)

  -- objects by kind: the migration's CREATEs, each in the database
  local sql = h.read(dir .. "/prisma/migrations/" .. BIG .. "/migration.sql")
  local function count_of(kind)
    for _, k in ipairs(s.objects.by_kind) do if k.kind == kind then return k.count, k.present end end
    return 0, 0
  end
  local tables, enums, indexes, fks = {}, {}, {}, {}
  for n in sql:gmatch('CREATE TABLE "([^"]+)"') do tables[#tables + 1] = n end
  for n in sql:gmatch('CREATE TYPE "([^"]+)" AS ENUM') do enums[#enums + 1] = n end
  for n in sql:gmatch('CREATE [UNIQUE ]*INDEX "([^"]+)"') do indexes[#indexes + 1] = n end
  for n in sql:gmatch('ADD CONSTRAINT "([^"]+)" FOREIGN KEY') do fks[#fks + 1] = n end
  local function in_db(sqlf, names)
    local lits = {}
    for _, n in ipairs(names) do lits[#lits + 1] = "'" .. n .. "'" end
    return tonumber(q1(aurl, sqlf:format(table.concat(lits, ","))))
  end
  local nt = in_db("SELECT count(*) FROM pg_class WHERE relkind = 'r' AND relname IN (%s)", tables)
  local ne = in_db("SELECT count(*) FROM pg_type WHERE typtype = 'e' AND typname IN (%s)", enums)
  local ni = in_db("SELECT count(*) FROM pg_class WHERE relkind = 'i' AND relname IN (%s)", indexes)
  local nf = in_db("SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conname IN (%s)", fks)
  h.ok(nt > 0 and ne > 0 and ni > 0 and nf > 0, "the fixture creates tables, enums, indexes and foreign keys")
  for _, x in ipairs({ { "table", #tables, nt }, { "enum", #enums, ne }, { "index", #indexes, ni }, { "constraint:f", #fks, nf } }) do
    local count, present = count_of(x[1])
    h.eq(count, x[2], x[1] .. ": as many as the file creates")
    h.eq(present, x[3], x[1] .. ": present as the database has them")
  end
  h.contains(s.objects.summary, ("%d tables"):format(#tables))
  h.contains(s.objects.summary, ("%d enums"):format(#enums))
  h.contains(s.objects.summary, ("%d indexes"):format(#indexes))
  h.contains(s.objects.summary, ("%d foreign keys"):format(#fks))

  -- backup: the archive on disk and the journal's backup column
  local jb = jcol(aurl, "backup", "action = 'backup'")
  h.eq(s.backup.path, jb.path)
  h.eq(s.backup.sha256, jb.sha256)
  h.eq(s.backup.sha256, require("migfix.crypto").sha256_file(jb.path), "the SHA-256 of the archive")
  h.eq(s.backup.size, tonumber(sh_ok("stat -c %s " .. h.shq(jb.path)):match("%d+")), "the size of the archive")
  h.eq(s.backup.scope, "full")
  h.contains(s.backup.verified, "pg_restore --list")

  -- after hooks
  h.eq(#r.hooks, 2)
  h.eq(r.hooks[1].command, "true")
  h.eq(r.hooks[1].exit, 0)
  h.eq(r.hooks[1].outcome, "ok")
  h.contains(r.hooks[2].command, "postgresql://app:****@db.internal/x", "the hook's password is masked")
  h.ok(math.type(r.hooks[1].duration_ms) == "integer")

  -- timing: from the failed row's started_at to the check, computed by PostgreSQL
  local check_at = q1(aurl, ("SELECT %s FROM migfix.journal WHERE action = 'check'"):format(ts("at")))
  h.eq(r.timing.failed_at, failed_at)
  h.eq(r.timing.resolved_at, check_at)
  local want = pg_ms(aurl, failed_at, check_at)
  h.ok(math.abs(r.timing.failure_to_resolution_ms - want) <= 1, ("failure to resolution %s ms, PostgreSQL says %s"):format(r.timing.failure_to_resolution_ms, want))
  local last_at = q1(aurl, ("SELECT %s FROM migfix.journal WHERE command = 'run' ORDER BY seq DESC LIMIT 1"):format(ts("at")))
  h.eq(r.timing.migfix_ended_at, last_at)
  h.eq(r.timing.migfix_started_at, diag.started_at, "migfix's start, as the diagnosis entry records it")
  h.ok(math.abs(r.timing.migfix_ms - pg_ms(aurl, diag.started_at, last_at)) <= 1)

  -- prevention: the lint evidence journaled with the diagnosis
  h.eq(#s.prevention.lint.findings, #diag.lint.findings)
  for i, f in ipairs(diag.lint.findings) do h.eq(s.prevention.lint.findings[i].rule, f.rule) end

  -- the journal entries of the run
  local seqs = h.psql(aurl, "SELECT string_agg('seq ' || seq, ',' ORDER BY seq) FROM migfix.journal WHERE command = 'run'")
  local refs = {}
  for _, e in ipairs(r.journal) do refs[#refs + 1] = e.ref end
  h.eq(table.concat(refs, ",") .. "\n", seqs)
  h.eq(doc.journal.verify.ok, true)

  -- the Markdown: every section; the tables say what the document says
  headings_have(md, SECTIONS)
  h.eq(md.headings[1].text, "migfix report: " .. BIG .. " resolved")
  h.eq(row_of(md.tables, "Field", "SHA-256")[2], jb.sha256)
  h.eq(row_of(md.tables, "Field", "Path")[2], jb.path)
  h.eq(row_of(md.tables, "Field", "Ledger row")[2]:match("^(%S+)"), failed_id)
  h.eq(row_of(md.tables, "Kind", "tables")[2], tostring(#tables))
  h.eq(row_of(md.tables, "Kind", "foreign keys")[2], tostring(#fks))
  h.eq(row_of(md.tables, "Field", "Verdict")[2], "complete")
  h.eq(row_of(md.tables, "Command", "true")[2], "0")
  h.contains(row_of(md.tables, "#", tostring(m.step))[3], "ok: 1 row(s) before, 2 after")
  local sqlblock
  for _, cb in ipairs(md.codes) do if cb.info == "sql" then sqlblock = cb.text end end
  h.ok(sqlblock and sqlblock:find(new_id, 1, true), "the SQL block holds the new row's id")
  h.contains(mdtext, "The schema is complete: the connection was lost after the commit")
  h.not_contains(mdtext, PW)
end

-- rollback and redeploy ----------------------------------------------------------------

T["report after a rollback-and-redeploy: declined policies, the fixed file, the redeploy's SQL and the new row"] = function()
  local dir, url, aurl, mdir = dup_case()
  local old_id = q1(aurl, ("SELECT id FROM _prisma_migrations WHERE migration_name = '%s'"):format(DUP))
  local old_checksum = q1(aurl, ("SELECT checksum FROM _prisma_migrations WHERE id = '%s'"):format(old_id))
  local path = mdir .. "/" .. DUP .. "/migration.sql"
  local fixed = h.read(path):gsub("CREATE UNIQUE INDEX", "CREATE INDEX")
  h.write(path, fixed)
  local out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 0, out .. err)
  local doc, md = reports(dir, url, { "--last" })
  local r = doc.runs[1]
  h.eq(r.outcome, "resolved")
  local s = r.migrations[1]
  h.eq(s.name, DUP)
  h.eq(s.failure.error.sqlstate, "23505")
  h.contains(q1(aurl, ("SELECT logs FROM _prisma_migrations WHERE id = '%s'"):format(old_id)), "Database error code: 23505")
  h.eq(s.failure.row.id, old_id)
  h.eq(s.root_cause.verdict, "absent")
  h.eq(s.root_cause.error_class, "data")
  h.eq(s.root_cause.file_changed, true)
  h.eq(s.root_cause.file_checksum, L.checksum(fixed))
  h.eq(s.root_cause.failed_checksum, old_checksum)
  h.contains(s.root_cause.explanation, "Nothing was applied: the transaction rolled back (23505")
  h.eq(s.approach.policy, "rollback-and-redeploy")
  local declined = jcol(aurl, "details->'declined'", "action = 'diagnosis'")
  h.eq(#s.approach.declined, #declined)
  h.ok(#declined >= 2, "apply-if-complete and split-large-migration declined before it")
  for i, d in ipairs(declined) do
    h.eq(s.approach.declined[i].policy, d.policy)
    h.eq(s.approach.declined[i].why, d.why)
  end
  h.eq(s.approach.declined[1].policy, "apply-if-complete")
  h.eq(s.approach.declined[1].why, "verdict is absent, not complete")
  h.contains(s.approach.why[1], "migration.sql changed since the failed attempt")
  -- the redeploy step: two journal entries, the SQL with the rows' values
  local rd = step(s, "redeploy")
  h.ok(rd, "a redeploy step")
  h.eq(rd.outcome, "ok")
  local seqs = h.psql(aurl, "SELECT string_agg('seq ' || seq, ', ' ORDER BY seq) FROM migfix.journal WHERE details->>'part_of' = 'redeploy'")
  h.eq(table.concat(rd.journal, ", ") .. "\n", seqs)
  local new_id = q1(aurl, ("SELECT id FROM _prisma_migrations WHERE migration_name = '%s' AND finished_at IS NOT NULL"):format(DUP))
  local finished = q1(aurl, ("SELECT %s FROM _prisma_migrations WHERE id = '%s'"):format(ts("finished_at"), new_id))
  local all = table.concat(rd.sql, "\n")
  h.contains(all, ("SET rolled_back_at = '%s'"):format(q1(aurl, ("SELECT %s FROM _prisma_migrations WHERE id = '%s'"):format(ts("rolled_back_at"), old_id))))
  h.contains(all, ("WHERE id = '%s'"):format(old_id))
  h.contains(all, ("VALUES ('%s', '%s'"):format(new_id, L.checksum(fixed)))
  h.contains(all, ("SET finished_at = '%s' WHERE id = '%s'"):format(finished, new_id))
  h.contains(all, "2 statement(s) sent as ONE query")
  -- verification and objects
  h.eq(s.verification.now.state, "applied")
  h.eq(#s.verification.now.rows, tonumber(q1(aurl, ("SELECT count(*) FROM _prisma_migrations WHERE migration_name = '%s'"):format(DUP))))
  h.eq(s.verification.after_write.outcome, "ok")
  h.eq(s.objects.deployed_by, q1(aurl, "SELECT 'seq ' || seq FROM migfix.journal WHERE action = 'deploy' AND outcome = 'ok'"))
  h.eq(q1(aurl, "SELECT count(*) FROM pg_class WHERE relname = 'Organization_name_key'"), "1", "the index the redeploy made")
  h.eq(s.backup.sha256, jcol(aurl, "backup", "action = 'backup'").sha256)
  headings_have(md, SECTIONS)
  h.eq(row_of(md.tables, "Policy", "apply-if-complete")[2], "verdict is absent, not complete")
  h.eq(row_of(md.tables, "Field", "Error code")[2], "23505")
end

-- refusals ---------------------------------------------------------------------------------

T["report after a refusal: why nothing was done and what the team must fix; the ledger still refuses"] = function()
  local dir, url, aurl = dup_case()
  local before = L.rows(aurl)
  local out, err, rc = mf(dir, url, { "run" })
  h.eq(rc, 1, out .. err)
  local doc, md, mdtext = reports(dir, url)
  local r = doc.runs[1]
  h.eq(r.outcome, "refused")
  local s = r.migrations[1]
  h.eq(s.outcome, "refused")
  local refusal = jcol(aurl, "details", "action = 'refusal'")
  h.eq(s.approach.refusal.reason, refusal.reason)
  h.eq(s.approach.refusal.hint, refusal.hint)
  h.contains(s.approach.refusal.reason, "remove or merge them, then run again")
  h.eq(s.approach.policy, "rollback-and-redeploy")
  h.eq(#s.steps, 1)
  h.eq(s.steps[1].action, "refuse")
  h.eq(s.steps[1].outcome, "refused")
  h.eq(s.backup, json.null, "no backup for a refusal")
  h.eq(r.timing.resolved_at, json.null)
  h.eq(s.verification.now.state, "failed")
  h.eq(s.verification.after_write, json.null, "no write, no check")
  local st = status_doc(dir, url)
  h.eq(r.now.deploy.refuses, st.deploy.refuses)
  h.eq(r.now.deploy.refuses, true)
  h.same(L.rows(aurl), before, "report wrote nothing")
  h.contains(mdtext, "**What the team must fix:**")
  headings_have(md, SECTIONS)
  local dep
  for _, t in ipairs(md.tables) do
    for _, row in ipairs(t.rows) do if row[1] == "prisma migrate deploy now" then dep = row[2] end end
  end
  h.ok(dep and dep:find("refuses with P3009", 1, true), "the Markdown says deploy still refuses: " .. tostring(dep))
end

T["report after a refusal of a partial migration names the missing objects"] = function()
  local M1 = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' }
  local MP = { "20240102000000_two", 'CREATE TABLE "A" ("id" INTEGER NOT NULL, CONSTRAINT "A_pkey" PRIMARY KEY ("id"));\nCREATE TABLE "B" ("id" INTEGER NOT NULL, CONSTRAINT "B_pkey" PRIMARY KEY ("id"));\n' }
  local dir, mdir = h.project { M1, MP }
  local name, aurl = h.fresh_db()
  L.deploy(aurl, nil, mdir, M1[1])
  h.psql(aurl, 'CREATE TABLE "A" ("id" INTEGER NOT NULL, CONSTRAINT "A_pkey" PRIMARY KEY ("id"))')
  L.failed(aurl, MP[1], L.checksum(MP[2]), nil)
  local url = pw_url(name)
  local _, _, rc = mf(dir, url, { "run" })
  h.eq(rc, 1)
  local doc, md = reports(dir, url)
  local s = doc.runs[1].migrations[1]
  h.eq(s.root_cause.verdict, "partial")
  h.eq(s.approach.policy, "refuse-partial-or-drifted")
  h.contains(s.root_cause.explanation, "Part of the migration is in the database")
  local missing = {}
  for _, o in ipairs(s.objects.not_as_expected) do missing[#missing + 1] = o.kind .. " " .. tostring(o.name) .. " " .. o.state end
  table.sort(missing)
  h.eq(q1(aurl, "SELECT to_regclass('\"B\"') IS NULL"), "t", "B is not in the database")
  h.contains(table.concat(missing, ","), "table B missing")
  h.eq(row_of(md.tables, "Kind", "tables")[2], "B")
  h.eq(row_of(md.tables, "Kind", "tables")[3], "missing")
end

-- undo ------------------------------------------------------------------------------------------

T["report after an undo: what was undone, the rows restored, the ledger failed again"] = function()
  local dir = tick_project { INIT, BIG }
  local _, url, aurl = seed_db()
  local before = L.rows(aurl)
  local _, _, rc = mf(dir, url, { "run" })
  h.eq(rc, 0)
  local new_id = q1(aurl, ("SELECT id FROM _prisma_migrations WHERE migration_name = '%s' AND finished_at IS NOT NULL"):format(BIG))
  local out, err, rc2 = mf(dir, url, { "undo", "--yes" })
  h.eq(rc2, 0, out .. err)
  h.same(L.rows(aurl), before, "the ledger as before the run")
  local doc, md = reports(dir, url)
  local r = doc.runs[1]
  h.eq(r.command, "undo")
  h.eq(r.outcome, "undone")
  local s = r.migrations[1]
  local undone = q1(aurl, "SELECT seq FROM migfix.journal WHERE action = 'mark_applied'")
  h.eq(tostring(s.approach.undoes.seq), undone)
  h.eq(s.approach.undoes.action, "mark_applied")
  h.eq(s.approach.undoes.run, q1(aurl, "SELECT details->>'run' FROM migfix.journal WHERE action = 'mark_applied'"))
  local u = step(s, "undo")
  h.eq(u.outcome, "ok")
  local ud = jcol(aurl, "details", "action = 'undo'")
  h.eq(u.message, ("deleted %d inserted row(s), restored %d, re-inserted %d"):format(ud.deleted, ud.restored, ud.reinserted))
  local all = table.concat(u.sql, "\n")
  h.contains(all, ("DELETE FROM \"public\".\"_prisma_migrations\" WHERE id = '%s';"):format(new_id))
  h.contains(all, "SET rolled_back_at = NULL WHERE id = '" .. before[2].id .. "'")
  h.eq(s.verification.now.state, "failed")
  h.eq(#s.verification.now.rows, 1)
  h.eq(s.verification.now.rows[1].id, before[2].id)
  h.eq(r.now.deploy.refuses, true, "P3009 again")
  h.eq(s.failure.row.id, before[2].id, "the failure the repair had resolved")
  h.eq(s.backup, json.null, "undo takes no backup")
  h.eq(md.headings[1].text, "migfix report: undo of " .. BIG)
  -- --since: both runs, a summary by outcome
  local since = q1(aurl, ("SELECT %s FROM migfix.journal ORDER BY seq LIMIT 1"):format(ts("(at - interval '1 second')")))
  local doc2, md2 = reports(dir, url, { "--since", since })
  h.eq(#doc2.runs, 2)
  h.eq(doc2.summary.by_outcome.resolved, 1)
  h.eq(doc2.summary.by_outcome.undone, 1)
  h.eq(doc2.runs[1].command, "run")
  h.eq(doc2.runs[2].command, "undo")
  h.eq(row_of(md2.tables, "Outcome", "undone")[2], "1")
  -- --run: the first one by id (and by a prefix)
  local run_id = doc2.runs[1].run
  local doc3 = reports(dir, url, { "--run", run_id:sub(1, 8) })
  h.eq(doc3.runs[1].run, run_id)
  h.eq(doc3.runs[1].outcome, "resolved")
end

-- deploy, plan, the file, errors ----------------------------------------------------------------

T["report after migfix deploy: the migrations applied, or the one that failed (P3018) and its error class"] = function()
  local dir = h.tmpdir()
  sh_ok("mkdir -p " .. h.shq(dir .. "/prisma/migrations") .. " && cp -rL " .. h.shq(CASES .. "/absent_dup_key/migrations/migration_lock.toml") .. " "
    .. h.shq(CASES .. "/absent_dup_key/migrations/" .. INIT) .. " " .. h.shq(dir .. "/prisma/migrations/"))
  local name, aurl = h.fresh_db()
  local url = pw_url(name)
  local _, _, rc = mf(dir, url, { "deploy" })
  h.eq(rc, 0)
  local doc = reports(dir, url)
  h.eq(doc.runs[1].command, "deploy")
  h.eq(doc.runs[1].outcome, "deployed")
  h.eq(doc.runs[1].migrations[1].name, INIT)
  h.eq(doc.runs[1].migrations[1].steps[1].outcome, "ok")
  h.eq(doc.runs[1].migrations[1].failure, json.null)
  h.psql(aurl, DUP_SETUP)
  sh_ok("cp -rL " .. h.shq(CASES .. "/absent_dup_key/migrations/" .. DUP) .. " " .. h.shq(dir .. "/prisma/migrations/"))
  local _, _, rc2 = mf(dir, url, { "deploy" })
  h.eq(rc2, 1)
  local doc2, md2 = reports(dir, url)
  local r = doc2.runs[1]
  h.eq(r.outcome, "failed")
  local s = r.migrations[1]
  h.eq(s.name, DUP)
  h.eq(s.failure.error.sqlstate, "23505")
  h.eq(s.failure.row.id, q1(aurl, ("SELECT id FROM _prisma_migrations WHERE migration_name = '%s'"):format(DUP)))
  h.eq(s.root_cause.error_class, "data")
  h.contains(s.root_cause.explanation, "Not diagnosed yet")
  h.contains(s.failure.detected_by, "`migfix deploy`")
  h.eq(s.steps[1].outcome, "failed")
  h.eq(r.now.deploy.refuses, true)
  h.contains(row_of(md2.tables, "Field", "Error code")[2], "23505")
  -- the next run's report says migfix deploy recorded the failure
  local _, _, rc3 = mf(dir, url, { "run" })
  h.eq(rc3, 1)
  local doc3 = reports(dir, url)
  h.contains(doc3.runs[1].migrations[1].failure.detected_by, "`migfix deploy`")
  h.contains(doc3.runs[1].migrations[1].failure.detected_by, "recorded the failure (P3018)")
end

T["report from the file: a plan (file only) by run id, and the whole report when the database is unreachable"] = function()
  local dir = tick_project { INIT, BIG }
  local _, url = seed_db()
  local _, _, rc = mf(dir, url, { "plan" })
  h.eq(rc, 0)
  local plan_run
  for line in h.read(dir .. "/.migfix/journal.jsonl"):gmatch("[^\n]+") do
    local e = json.decode(line)
    if e.action == "plan" then plan_run = e.details.run end
  end
  h.ok(plan_run, "the plan entry has a run id")
  local out, err, rcn = mf(dir, url, { "report" })
  h.eq(rcn, 1, "a plan is not a resolution run: " .. out .. err)
  h.contains(err, "no resolution run in the journal")
  local doc = reports(dir, url, { "--run", plan_run })
  h.eq(doc.runs[1].outcome, "planned")
  local s = doc.runs[1].migrations[1]
  h.eq(s.root_cause.verdict, "complete")
  local acts = {}
  for _, st in ipairs(s.steps) do acts[#acts + 1] = st.action .. ":" .. st.outcome end
  h.eq(table.concat(acts, ","), "backup:planned,mark_applied:planned,check:planned")
  local _, _, rc2 = mf(dir, url, { "run" })
  h.eq(rc2, 0)
  -- the server is not there: the file mirror stands in
  local down = "postgresql://migfix_pw:" .. PW .. "@127.0.0.1:1/nowhere"
  local out3, err3, rc3 = mf(dir, down, { "report", "--format", "json" })
  h.eq(rc3, 0, out3 .. err3)
  h.contains(err3, "the database cannot be reached")
  local d3 = json.decode(out3)
  h.eq(d3.runs[1].outcome, "resolved")
  h.eq(d3.runs[1].now, json.null, "no ledger state without the database")
  h.eq(d3.runs[1].journal[1].source, "file mirror")
  h.eq(d3.database, json.null)
  local sec = d3.runs[1].migrations[1]
  h.eq(sec.root_cause.verdict, "complete")
  h.eq(step(sec, "mark_applied").outcome, "ok")
end

T["report: no resolution run, bad options, and the read-only connection"] = function()
  local dir = h.project { { "20240101000000_init", "CREATE TABLE a (id int);\n" } }
  local name, aurl = h.fresh_db()
  local url = pw_url(name)
  local out, err, rc = mf(dir, url, { "report" })
  h.eq(rc, 1, out .. err)
  h.contains(err, "migfix: error: no resolution run in the journal")
  h.contains(err, "migfix: hint:")
  h.eq(q1(aurl, "SELECT count(*) FROM pg_namespace WHERE nspname = 'migfix'"), "0", "report created no journal schema")
  for _, c in ipairs({
    { { "report", "--last", "--run", "x" }, "give at most one of --run, --last and --since" },
    { { "report", "--format", "pdf" }, "unrecognized format \"pdf\"" },
    { { "report", "--since", "yesterday-ish" }, "invalid time \"yesterday-ish\"" },
    { { "report", "extra" }, "unexpected argument \"extra\"" },
  }) do
    local o, e, r2 = mf(dir, url, c[1])
    h.eq(r2, 2, table.concat(c[1], " ") .. ": " .. o .. e)
    h.contains(e, c[2])
  end
  local o, e, r3 = mf(dir, url, { "report", "--run", "0123456789abcdef" })
  h.eq(r3, 1, o .. e)
  h.contains(e, "no run \"0123456789abcdef\" in the journal")
  local help = mf(dir, url, { "help", "report" })
  h.contains(help, "Usage: migfix report [--run ID | --last | --since TIME] [--format markdown|json|html] [--output FILE]")
end

-- the library ------------------------------------------------------------------------------------

T["report library: times, durations, legacy runs, escaping, bad arguments"] = function()
  h.eq(report.iso_ms("1970-01-01T00:00:01.5Z"), 1500)
  h.eq(report.iso_ms("2025-01-02T03:04:05Z"), report.iso_ms("2025-01-02 05:04:05+02:00"))
  h.eq(report.iso_ms("2025-01-02"), report.iso_ms("2025-01-02T00:00:00Z"))
  h.eq(report.iso_ms("2025-13-02"), nil)
  h.eq(report.iso(report.iso_ms("2025-01-02T03:04:05.123456Z")), "2025-01-02T03:04:05.123Z")
  h.eq(report.parse_time("2h", 10 * 3600000), 8 * 3600000)
  h.eq(report.parse_time("30min", 3600000), 1800000)
  h.eq(select(2, report.parse_time("soon")), "invalid time \"soon\"")
  h.raises(function() report.parse_time(5) end, "bad argument #1 to 'parse_time'")
  h.eq(report.duration_text(250), "250 ms")
  h.eq(report.duration_text(4200), "4.2 s")
  h.eq(report.duration_text(192000), "3 min 12 s")
  h.eq(report.duration_text(2 * 86400000 + 3600000), "2 d 1 h 0 min")
  -- entries before run ids: grouped by command, user, host; a diagnosis starts a run
  local function e(seq, action, command, at)
    return { seq = seq, action = action, command = command, os_user = "u", host = "h", environment = "dev", outcome = "ok",
             at = at, details = json.null }
  end
  local entries = report.collect({ e(1, "deploy", "deploy", "2025-01-01T00:00:00Z"), e(2, "diagnosis", "run", "2025-01-01T00:01:00Z"),
                                   e(3, "backup", "run", "2025-01-01T00:01:01Z"), e(4, "diagnosis", "run", "2025-01-01T00:02:00Z") }, nil)
  local runs = report.runs(entries)
  h.eq(#runs, 3)
  h.eq(runs[1].id, "legacy-seq-1")
  h.eq(#runs[2].entries, 2)
  h.eq(runs[3].id, "legacy-seq-4")
  h.ok(runs[2].legacy)
  local sel = assert(report.select(runs, {}))
  h.eq(sel[1].id, "legacy-seq-4", "the last resolution run")
  local none, msg, info = report.select({}, {})
  h.eq(none, nil)
  h.eq(msg, "no resolution run in the journal")
  h.ok(info.hint)
  h.raises(function() report.select(runs, { bogus = 1 }) end, "unrecognized option \"bogus\"")
  h.raises(function() report.render({}, "pdf") end, "bad argument #2 to 'render'")
  -- Markdown escaping: a message with markup stays text; | in a cell stays in the cell
  local doc = report.document(runs, { entries = entries })
  doc.runs[3].headline = "a | b <script> *x* [y](z) _u_ snake_case `code`"
  local md = report.render(doc, "markdown")
  h.contains(md, "A \\| b \\<script> \\*x\\* \\[y\\](z) \\_u\\_ snake_case `code`")
  local html = report.render(doc, "html")
  h.contains(html, "A | b &lt;script&gt; *x* [y](z) _u_ snake_case <code>code</code>")
  -- secrets are masked in every format
  doc.runs[3].headline = "postgresql://app:s3cr3t@db/x"
  for _, f in ipairs({ "markdown", "json", "html" }) do h.not_contains(report.render(doc, f), "s3cr3t", f) end
end

return T
