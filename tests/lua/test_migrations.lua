-- migfix.migrations: listing and order exactly as Prisma's CLI, read,
-- checksum, tolerant match, lock file.
local H = require "helper"
local M = require "migfix.migrations"
local T = {}

local ODD = {
  "01_init", "10_x", "2_y", "0_init", "20230101000000_init", "20230101000000_init copy",
  "20230101000000_x.sql", "20231027", "20230102000000_Users", "20230102000000_users",
  "20230102000000_add", "20230102000000_Add", "20240101_a", "2024010100_b", "1-x", "1_x",
  "20230101270000_hour27", "\xc3\xa9t\xc3\xa9", "zeta", "Zeta",
}

local function shell_names(names)
  local q = {}
  for i, n in ipairs(names) do q[i] = ("%q"):format(n) end
  return "[" .. table.concat(q, ",") .. "]"
end

local function odd_folder()
  local dir, mdir = H.project({}, { lock = true })
  for _, n in ipairs(ODD) do H.write(mdir .. "/" .. n .. "/migration.sql", "SELECT 1;\n") end
  H.sh("mkdir -p " .. H.shq(mdir .. "/20220101000000_nosql"))
  H.sh("mkdir -p " .. H.shq(dir .. "/elsewhere"))
  H.write(dir .. "/elsewhere/migration.sql", "SELECT 2;\n")
  H.sh("ln -s " .. H.shq(dir .. "/elsewhere") .. " " .. H.shq(mdir .. "/20200101000000_symlink"))
  H.write(mdir .. "/20200101000000_plainfile", "not a folder\n")
  H.write(mdir .. "/README.md", "notes\n")
  return dir, mdir
end

T["list: real folders only, in localeCompare order"] = function()
  local _, mdir = odd_folder()
  local list = assert(M.list(mdir))
  local names = {}
  for i, m in ipairs(list) do names[i] = m.name end
  local all = { table.unpack(ODD) }
  all[#all + 1] = "20220101000000_nosql"
  H.eq(#list, #all, "count (symlink, plain files and migration_lock.toml skipped)")
  for _, n in ipairs(names) do
    H.ok(n ~= "20200101000000_symlink" and n ~= "20200101000000_plainfile"
      and n ~= "migration_lock.toml" and n ~= "README.md", "skipped " .. n)
  end
  -- order is the one migrations.compare gives, which is total here
  for i = 2, #names do
    H.eq(M.compare(names[i - 1], names[i]), -1, names[i - 1] .. " < " .. names[i])
  end
  local pos = {}
  for i, n in ipairs(names) do pos[n] = i end
  H.ok(pos["10_x"] < pos["2_y"], "10_x before 2_y")
  H.ok(pos["20240101_a"] < pos["2024010100_b"], "_ sorts before digits")
  H.ok(pos["1_x"] < pos["1-x"], "_ sorts before - (bytewise the other way)")
  H.ok(pos["20230102000000_users"] < pos["20230102000000_Users"], "lower case first")
  H.ok(pos["zeta"] < pos["Zeta"] and pos["Zeta"] < pos["\xc3\xa9t\xc3\xa9"] == false, "Zeta after \xc3\xa9t\xc3\xa9")
  H.ok(pos["20230101000000_init"] < pos["20230101000000_init copy"], "prefix first")
end

T["list: same order as node's localeCompare"] = function()
  local _, rc = H.sh("command -v node >/dev/null")
  if rc ~= 0 then return end -- node not installed: nothing to compare with
  local _, mdir = odd_folder()
  local list = assert(M.list(mdir))
  local got = {}
  for i, m in ipairs(list) do got[i] = m.name end
  local js = "const n=" .. shell_names(got) ..
    ";n.sort((a,b)=>a.localeCompare(b));process.stdout.write(n.join('\\n'))"
  local out, nrc = H.sh("node -e " .. H.shq(js))
  H.eq(nrc, 0, "node ran")
  H.eq(table.concat(got, "\n"), out, "order")
end

T["list: entry fields and has_sql"] = function()
  local _, mdir = odd_folder()
  local list = assert(M.list(mdir .. "/"))
  local by = {}
  for _, m in ipairs(list) do by[m.name] = m end
  local m = by["01_init"]
  H.same(m, { name = "01_init", path = mdir .. "/01_init", sql_path = mdir .. "/01_init/migration.sql", has_sql = true })
  H.eq(by["20220101000000_nosql"].has_sql, false, "folder without migration.sql is listed")
  H.eq(by["20230101000000_init copy"].has_sql, true)
end

T["list: empty folder and missing folder"] = function()
  local _, mdir = H.project({}, {})
  H.same(assert(M.list(mdir)), {})
  local ok, msg, info = M.list(mdir .. "/nope")
  H.eq(ok, nil)
  H.eq(msg, ('migrations directory "%s/nope" does not exist'):format(mdir))
  H.same(info, { kind = "os", errno = 2, missing = true })
  ok, msg, info = M.list(mdir .. "/migration_lock.toml")
  H.eq(ok, nil)
  H.contains(msg, ('could not open migrations directory "%s/migration_lock.toml": '):format(mdir))
  H.eq(info.missing, true, "ENOTDIR")
end

T["read: bytes as is, BOM and CRLF kept"] = function()
  local _, mdir = H.project({ { "1_a", "\xef\xbb\xbfSELECT 1;\r\n-- caf\xc3\xa9 \xf0\x9f\x98\x80\n" } })
  H.eq(M.read(mdir .. "/1_a/migration.sql"), "\xef\xbb\xbfSELECT 1;\r\n-- caf\xc3\xa9 \xf0\x9f\x98\x80\n")
  local ok, msg, info = M.read(mdir .. "/2_b/migration.sql")
  H.eq(ok, nil)
  H.eq(msg, ('could not read migration file "%s/2_b/migration.sql": No such file or directory'):format(mdir))
  H.eq(info.missing, true)
  ok, msg, info = M.read(mdir .. "/1_a")
  H.eq(ok, nil)
  H.contains(msg, "Is a directory")
  H.eq(info.missing, false)
end

T["read: a NUL byte or invalid UTF-8 is refused with file:line:byte, the bytes in info.text"] = function()
  local _, mdir = H.project({ { "1_a", "SELECT 1;\n\0SELECT 2;\n" }, { "2_b", "-- ok\n-- caf\xe9\nSELECT 1;\n" },
                              { "3_c", "SELECT 1;\n\xed\xa0\x80" } })
  local ok, msg, info = M.read(mdir .. "/1_a/migration.sql")
  H.eq(ok, nil)
  H.eq(msg, mdir .. "/1_a/migration.sql:2:1: a NUL byte (0x00)")
  H.same({ info.kind, info.line, info.byte, info.offset, info.value, info.text }, { "nul", 2, 1, 10, 0, "SELECT 1;\n\0SELECT 2;\n" })
  ok, msg, info = M.read(mdir .. "/2_b/migration.sql")
  H.eq(ok, nil)
  H.eq(msg, mdir .. "/2_b/migration.sql:2:7: invalid UTF-8 (byte 0xE9)")
  H.same({ info.kind, info.line, info.byte, info.value }, { "utf8", 2, 7, 0xE9 })
  ok, msg = M.read(mdir .. "/3_c/migration.sql")
  H.eq(msg, mdir .. "/3_c/migration.sql:2:1: invalid UTF-8 (byte 0xED)", "a surrogate is not UTF-8")
end

T["check: the first NUL or ill-formed UTF-8 sequence (Unicode D92)"] = function()
  H.eq(M.check("plain\n\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"), nil)
  local function at(s) local p = M.check(s); return p and (p.kind .. "@" .. p.offset) end
  H.eq(at("a\0"), "nul@1")
  H.eq(at("\xc0\xaf"), "utf8@0", "overlong")
  H.eq(at("\xe0\x80\x80"), "utf8@0", "overlong 3-byte")
  H.eq(at("ab\xe2\x82"), "utf8@2", "truncated at the end")
  H.eq(at("\xf4\x90\x80\x80"), "utf8@0", "above U+10FFFF")
  H.eq(at("\x80"), "utf8@0", "lone continuation byte")
  H.raises(function() M.check(1, 2) end, "too many arguments")
end

T["prisma_text: invalid UTF-8 read as Node's fs.readFile(path, 'utf-8') does (U+FFFD per maximal subpart)"] = function()
  -- the expected bytes are what node 18 prints for Buffer.from(hex, 'hex').toString('utf-8')
  local function hx(h) return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end)) end
  local cases = {
    { "636166E9", "636166EFBFBD" }, { "E282", "EFBFBD" }, { "C0AF", "EFBFBDEFBFBD" },
    { "F4908080", "EFBFBDEFBFBDEFBFBDEFBFBD" }, { "E0808061", "EFBFBDEFBFBDEFBFBD61" },
    { "EDBFBF", "EFBFBDEFBFBDEFBFBD" }, { "6F6B0AF09F988020EDA08078", "6F6B0AF09F988020EFBFBDEFBFBDEFBFBD78" },
  }
  for _, c in ipairs(cases) do H.eq(M.prisma_text(hx(c[1])), hx(c[2]), c[1]) end
  H.eq(M.prisma_text("a\0b"), "a\0b", "a NUL is valid UTF-8")
  H.eq(M.prisma_text("caf\xc3\xa9"), "caf\xc3\xa9")
end

T["read: a large file"] = function()
  local big = ("x"):rep(100000) .. "\n"
  local _, mdir = H.project({ { "1_a", big } })
  H.eq(M.read(mdir .. "/1_a/migration.sql"), big)
end

T["checksum: Prisma's vectors"] = function()
  H.eq(M.checksum("hello"), "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824")
  local a, b = M.checksum("SELECT 1;\n"), M.checksum("SELECT 1;\r\n")
  H.eq(a:sub(1, 8), "b4e04978"); H.eq(a:sub(-7), "4085dcd")
  H.eq(b:sub(1, 8), "d3cd5042"); H.eq(b:sub(-6), "44b0e4")
end

T["matches: tolerant like Prisma"] = function()
  H.eq(M.matches("SELECT 1;\n", M.checksum("SELECT 1;\n")), true)
  H.eq(M.matches("SELECT 1;\n", M.checksum("SELECT 1;\r\n")), true)
  H.eq(M.matches("SELECT 1;\r\n", M.checksum("SELECT 1;\n")), true)
  H.eq(M.matches("SELECT 1;", M.checksum("SELECT 1;\n")), false)
  H.eq(M.matches("a\rb", M.checksum("a\nb")), false)
  H.eq(M.matches("hello", ""), false)
  -- legacy (not zero-padded) checksum
  H.eq(M.matches("hello", "2cf24dba5fb0a3e26e83b2ac5b9e29e1b161e5c1fa7425e7343362938b9824"), true)
  H.eq(M.matches("hello", M.checksum("hello"):upper()), false)
end

T["lock_provider: like Prisma's parser"] = function()
  local _, mdir = H.project({}, {})
  H.eq(M.lock_provider(mdir), "postgresql")
  local _, m2 = H.project({}, { lock = false })
  local p, msg = M.lock_provider(m2)
  H.eq(p, nil); H.eq(msg, nil, "no lock file: no message")
  H.write(m2 .. "/migration_lock.toml", '# x\r\nprovider = "mysql"\r\nprovider = "sqlite"\r\n')
  H.eq(M.lock_provider(m2), "mysql")
  H.write(m2 .. "/migration_lock.toml", 'providers="x"')
  H.eq(M.lock_provider(m2), 'providers="x', "only `provider = ` and quotes are stripped")
  H.write(m2 .. "/migration_lock.toml", '# nothing\n')
  H.eq(M.lock_provider(m2), "<PROVIDER NOT FOUND>")
  H.sh("rm -f " .. H.shq(m2 .. "/migration_lock.toml") .. " && mkdir " .. H.shq(m2 .. "/migration_lock.toml"))
  local r, err = M.lock_provider(m2)
  H.eq(r, nil)
  H.contains(err, 'could not read lock file "' .. m2 .. '/migration_lock.toml": Is a directory')
end

T["compare: -1/0/1"] = function()
  H.eq(M.compare("a", "a"), 0)
  H.eq(M.compare("10_x", "2_y"), -1)
  H.eq(M.compare("b", "A"), 1)
  H.eq(M.compare("a", "A"), -1)
end

T["bad arguments raise"] = function()
  H.raises(function() M.list() end, "bad argument #1 to 'list'")
  H.raises(function() M.list("a", "b") end, "expected migrations.list(dir)")
  H.raises(function() M.checksum({}) end, "bad argument #1 to 'checksum'")
  H.raises(function() M.matches("a") end, "bad argument #2 to 'matches'")
  H.raises(function() M.compare("a", "b", "c") end, "expected migrations.compare(a, b)")
  H.raises(function() M.read(nil) end, "bad argument #1 to 'read'")
  H.raises(function() M.lock_provider() end, "bad argument #1 to 'lock_provider'")
end

T["no leaked globals"] = function()
  local before = {}
  for k in pairs(_G) do before[k] = true end
  package.loaded["migfix.migrations"] = nil
  require "migfix.migrations"
  for k in pairs(_G) do H.ok(before[k], "new global " .. tostring(k)) end
end

return T
