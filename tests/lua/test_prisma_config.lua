-- prisma.config.* read without running it (scripts/migfix/prisma_config.lua),
-- package.json's prisma.schema, multi-file schema folders, monorepos (-C), and
-- a Prisma 7-style project that works with zero flags.
local h = require "helper"
local L = require "prisma_ledger"
local json = require "migfix.json"
local pc = require "migfix.prisma_config"

local M1 = { "20240101000000_init", 'CREATE TABLE "User" ("id" SERIAL NOT NULL, CONSTRAINT "User_pkey" PRIMARY KEY ("id"));\n' }
local M2 = { "20240102000000_second", 'ALTER TABLE "User" ADD COLUMN "name" TEXT;\n' }

local function values(src)
  local r, err = pc.extract(src, "/proj")
  if not r then error("extract failed: " .. tostring(err)) end
  return r.values, r.spreads
end

local function str(v) return v and v.kind == "string" and v.value or nil end

local T = {}

T["extract: the Prisma 7 config of the docs (defineConfig, env(), migrations.path)"] = function()
  local v = values([[
import 'dotenv/config'
import { defineConfig, env } from "prisma/config";

// the database URL lives here now
export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: {
    path: "db/migrations", /* custom */
    seed: `tsx prisma/seed.ts`,
  },
  datasource: {
    url: env("APP_DATABASE_URL"),
  },
});
]])
  h.eq(str(v["schema"]), "prisma/schema.prisma")
  h.eq(str(v["migrations.path"]), "db/migrations")
  h.eq(str(v["migrations.seed"]), "tsx prisma/seed.ts")
  h.eq(v["datasource.url"].kind, "env")
  h.eq(v["datasource.url"].name, "APP_DATABASE_URL")
  h.eq(v["datasource.url"].line, 12)
end

T["extract: quotes, escapes, process.env, path.join, TypeScript, module.exports"] = function()
  local v = values([[
import path from "node:path";
import type { PrismaConfig } from "prisma";
export default {
  'schema': path.join("prisma", 'schema'),
  migrations: { path: path.resolve(__dirname, "db", "mig rations") },
  datasource: { url: process.env.DATABASE_URL_2 },
  "weird\"key": 'it\'s \u00e9',
} satisfies PrismaConfig;
]])
  h.eq(str(v["schema"]), "prisma/schema")
  h.eq(str(v["migrations.path"]), "/proj/db/mig rations")
  h.eq(v["datasource.url"].name, "DATABASE_URL_2")
  h.eq(str(v['weird"key']), "it's é")
  local v2 = values([[
const { defineConfig } = require("prisma/config");
module.exports = defineConfig({ datasource: { url: process.env["PG_URL"] }, migrations: { path: `prisma/m` } });
]])
  h.eq(v2["datasource.url"].name, "PG_URL")
  h.eq(str(v2["migrations.path"]), "prisma/m")
  local v3 = values([[
const config: PrismaConfig = { schema: "a/b.prisma", datasource: { url: "postgresql://u@h:5432/db?schema=app" } };
export default config;
]])
  h.eq(str(v3["schema"]), "a/b.prisma")
  h.eq(str(v3["datasource.url"]), "postgresql://u@h:5432/db?schema=app")
end

T["extract: computed values are dynamic, with their text and line; spreads are reported"] = function()
  local v, spreads = values([[
const base = "prisma";
export default defineConfig({
  schema: base + "/schema.prisma",
  migrations: { path: `${base}/migrations` },
  datasource: { url: process.env.DATABASE_URL ?? "postgresql://localhost/dev" },
  ...shared,
});
]])
  h.eq(v["schema"].kind, "dynamic")
  h.eq(v["schema"].line, 3)
  h.contains(v["schema"].text, "base")
  h.eq(v["migrations.path"].kind, "dynamic")
  h.eq(v["datasource.url"].kind, "dynamic")
  h.eq(v["datasource.url"].line, 5)
  h.eq(#spreads, 1)
  h.contains(spreads[1].text, "shared")
  -- comments and strings that look like code are not code
  local v2 = values([[
// export default { schema: "wrong" }
/* datasource: { url: env("WRONG") } */
export default defineConfig({ schema: "right // not a comment", regex: /}{/g, n: 1 });
]])
  h.eq(str(v2["schema"]), "right // not a comment")
  h.eq(v2["datasource.url"], nil)
end

T["extract: bad input gives nil and a message with the line"] = function()
  local r, err = pc.extract('export default { schema: "unterminated }\n')
  h.eq(r, nil)
  h.contains(err, "line 1: unterminated string")
  local r2, err2 = pc.extract("const x = 1;\n")
  h.eq(r2, nil)
  h.contains(err2, "no exported configuration")
  local r3, err3 = pc.extract("export default makeConfig();\n")
  h.eq(r3, nil)
  h.contains(err3, "line 1: the exported configuration is not an object literal")
end

T["locate: package.json prisma.schema, the prisma/schema folder, defaults kept"] = function()
  local root = h.tmpdir()
  h.write(root .. "/package.json", '{ "name": "x", "prisma": { "schema": "db/schema.prisma" } }')
  h.write(root .. "/db/schema.prisma", "datasource db { provider = \"postgresql\" }\n")
  local l = pc.locate(root)
  h.eq(l.schema, root .. "/db/schema.prisma")
  h.eq(l.migrations, root .. "/db/migrations")
  h.contains(l.migrations_source, "package.json")
  -- multi-file folder: migrations inside it, when they exist there
  local r2 = h.tmpdir()
  h.write(r2 .. "/prisma/schema/schema.prisma", "datasource db { provider = \"postgresql\" }\n")
  h.write(r2 .. "/prisma/schema/models.prisma", "model A { id Int @id }\n")
  h.eq(pc.locate(r2).migrations, nil, "no prisma/schema/migrations: keep the default")
  h.sh("mkdir -p " .. h.shq(r2 .. "/prisma/schema/migrations"))
  h.eq(pc.locate(r2).migrations, r2 .. "/prisma/schema/migrations")
  -- the plain layout: nothing to override
  local r3 = h.tmpdir()
  h.write(r3 .. "/prisma/schema.prisma", "x")
  h.sh("mkdir -p " .. h.shq(r3 .. "/prisma/migrations"))
  local l3 = pc.locate(r3)
  h.eq(l3.migrations, r3 .. "/prisma/migrations")
  h.eq(l3.config, nil)
  -- a broken package.json is reported, not fatal
  local r4 = h.tmpdir()
  h.write(r4 .. "/package.json", "{ not json")
  local l4 = pc.locate(r4)
  h.eq(#l4.problems, 1)
  h.contains(l4.problems[1], "package.json")
end

--- a Prisma 7-style project: prisma.config.ts, no .env, migrations in db/migrations
local function prisma7(url_var)
  local root = h.tmpdir()
  h.write(root .. "/prisma.config.ts", ([[
import "dotenv/config";
import { defineConfig, env } from "prisma/config";

export default defineConfig({
  schema: "prisma/schema.prisma",
  migrations: {
    path: "db/migrations",
  },
  datasource: {
    url: env("%s"),
  },
});
]]):format(url_var))
  h.write(root .. "/prisma/schema.prisma", 'generator client {\n  provider = "prisma-client"\n}\n\ndatasource db {\n  provider = "postgresql"\n}\n')
  local mdir = root .. "/db/migrations"
  h.write(mdir .. "/migration_lock.toml", 'provider = "postgresql"\n')
  for _, m in ipairs({ M1, M2 }) do h.write(mdir .. "/" .. m[1] .. "/migration.sql", m[2]) end
  return root, mdir
end

T["a Prisma 7-style project works with zero flags (config file, no .env, custom migrations path)"] = function()
  local root, mdir = prisma7("APP_DATABASE_URL")
  local _, url = h.fresh_db()
  L.deploy(url, nil, mdir, M1[1])
  local out, err, rc = h.migfix({ "status", "--json" }, { cwd = root, env = { APP_DATABASE_URL = url, DATABASE_URL = "" } })
  h.eq(rc, 1, "one pending: " .. err)
  local doc = assert(json.decode(out), out .. err)
  h.eq(doc.status, "pending")
  h.eq(doc.deploy.pending[1], M2[1])
  h.eq(doc.migrations[1]["local"].path, mdir .. "/" .. M1[1])
  local text = h.migfix({ "status" }, { cwd = root, env = { APP_DATABASE_URL = url } })
  h.contains(text, root .. "/db/migrations")
  -- deploy and check with zero flags too
  local _, derr, drc = h.migfix({ "deploy" }, { cwd = root, env = { APP_DATABASE_URL = url } })
  h.eq(drc, 0, derr)
  local _, _, crc = h.migfix({ "check" }, { cwd = root, env = { APP_DATABASE_URL = url } })
  h.eq(crc, 0)
  -- the variable is missing: the error names it, and where it was named
  local _, err2, rc2 = h.migfix({ "status" }, { cwd = root, env = { APP_DATABASE_URL = "" } })
  h.eq(rc2, 2)
  h.contains(err2, "APP_DATABASE_URL")
  -- the variable from .env, as Prisma's dotenv import would load it
  h.write(root .. "/.env", "APP_DATABASE_URL=" .. url .. "\n")
  local _, err3, rc3 = h.migfix({ "check" }, { cwd = root, env = { APP_DATABASE_URL = "" } })
  h.eq(rc3, 0, err3)
end

T["monorepo: -C packages/db finds that package's prisma.config.ts"] = function()
  local mono = h.tmpdir()
  local root, mdir = prisma7("DB_URL")
  h.sh(("mkdir -p %s && mv %s %s"):format(h.shq(mono .. "/packages"), h.shq(root), h.shq(mono .. "/packages/db")))
  h.write(mono .. "/package.json", '{ "name": "mono", "private": true, "workspaces": ["packages/*"] }')
  local _, url = h.fresh_db()
  L.deploy(url, nil, mono .. "/packages/db/db/migrations")
  local out, err, rc = h.migfix({ "-C", "packages/db", "check", "--json" }, { cwd = mono, env = { DB_URL = url } })
  h.eq(rc, 0, err)
  h.eq(json.decode(out).counts.applied, 2)
  local _, err2, rc2 = h.migfix({ "check" }, { cwd = mono, env = { DB_URL = url } })
  h.eq(rc2, 2, "from the monorepo root there is no project")
  h.contains(err2, "prisma/migrations")
  local _ = mdir
end

T["computed values in prisma.config.ts: exit 2 naming file:line, --url/--migrations override"] = function()
  local root = h.tmpdir()
  h.write(root .. "/prisma.config.ts", [[
import { defineConfig } from "prisma/config";
const dir = process.env.MIG_DIR;
export default defineConfig({
  migrations: { path: dir },
  datasource: { url: `postgresql://${process.env.USER}@localhost/app` },
});
]])
  local mdir = root .. "/elsewhere"
  h.write(mdir .. "/" .. M1[1] .. "/migration.sql", M1[2])
  local _, err, rc = h.migfix({ "status" }, { cwd = root })
  h.eq(rc, 2)
  h.contains(err, "prisma.config.ts:5")
  h.contains(err, "datasource.url is computed")
  h.contains(err, "--url")
  local _, url = h.fresh_db()
  local _, err2, rc2 = h.migfix({ "--url", url, "status" }, { cwd = root })
  h.eq(rc2, 2)
  h.contains(err2, "prisma.config.ts:4")
  h.contains(err2, "migrations.path is computed")
  h.contains(err2, "--migrations")
  local _, err3, rc3 = h.migfix({ "--url", url, "--migrations", mdir, "status" }, { cwd = root })
  h.eq(rc3, 1, "one pending, read with the flags: " .. err3)
end

T["migfix.lua still wins over prisma.config.*, and the old layout is unchanged"] = function()
  local root, mdir = prisma7("NOPE_URL")
  local _, url = h.fresh_db()
  h.write(root .. "/migfix.lua", ('return { default_environment = "dev", environments = { dev = { url = %q, migrations = "db/migrations" } } }\n'):format(url))
  local out, err, rc = h.migfix({ "check", "--json" }, { cwd = root })
  h.eq(rc, 15, err)
  h.eq(json.decode(out).counts.pending, 2)
  local _ = mdir
  -- a classic project next to a package.json without prisma settings
  local dir = h.project { M1 }
  h.write(dir .. "/package.json", '{ "name": "classic", "dependencies": { "prisma": "6.19.3" } }')
  local _, url2 = h.fresh_db()
  local _, err2, rc2 = h.migfix({ "check" }, { cwd = dir, env = { DATABASE_URL = url2 } })
  h.eq(rc2, 15, err2)
end

return T
