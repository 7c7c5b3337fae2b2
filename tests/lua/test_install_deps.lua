-- scripts/install-deps derives its trixie source from the machine's own bookworm
-- entry (same URIs and Signed-By), in both apt formats, on sample files under a
-- fake root: the real apt configuration is never read for these cases nor written.
local h = require "helper"

local SCRIPT = h.root .. "/scripts/install-deps"

--- a fake root with the given files (path relative to the root -> content)
local function root(files)
  local r = h.tmpdir()
  h.sh("mkdir -p " .. h.shq(r .. "/etc/apt/sources.list.d"))
  for path, text in pairs(files) do h.write(r .. "/" .. path, text) end
  return r
end

local function derive(r)
  local errf = os.tmpname()
  local out, rc = h.sh(("%s --print-trixie-source --root %s 2>%s"):format(h.shq(SCRIPT), h.shq(r), h.shq(errf)))
  local err = h.read(errf)
  os.remove(errf)
  return out, rc, err
end

--- the deb822 fields of the derived source (comments dropped)
local function fields(text)
  local f, last = {}, nil
  for line in text:gmatch("[^\n]+") do
    if line:match("^%s") and last then
      f[last] = f[last] .. "\n" .. line
    elseif not line:match("^#") then
      local k, v = line:match("^([%w-]+):%s*(.*)$")
      if k then f[k] = v last = k end
    end
  end
  return f
end

--- apt itself reads the derived file: the URIs `apt-get update` would fetch (no network, no lock)
local function apt_uris(text)
  local d = h.tmpdir()
  h.sh("mkdir -p " .. h.shq(d .. "/parts") .. " " .. h.shq(d .. "/lists/partial"))
  h.write(d .. "/parts/migfix-trixie.sources", text)
  local out, rc = h.sh(("apt-get -o Dir::Etc::SourceList=/dev/null -o Dir::Etc::SourceParts=%s -o Dir::State::Lists=%s " ..
    "-o Debug::NoLocking=1 --print-uris update 2>&1"):format(h.shq(d .. "/parts"), h.shq(d .. "/lists")))
  h.eq(rc, 0, out)
  return out
end

local DEBIAN_SOURCES = [[
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: %s
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
]]

local T = {}

T["deb822 (the Debian 12 image's debian.sources): same URIs and keyring, suite trixie"] = function()
  local out, rc, err = derive(root { ["etc/apt/sources.list.d/debian.sources"] = DEBIAN_SOURCES:format("http://deb.debian.org/debian") })
  h.eq(rc, 0, err)
  local f = fields(out)
  h.eq(f.Types, "deb")
  h.eq(f.URIs, "http://deb.debian.org/debian")
  h.eq(f.Suites, "trixie")
  h.eq(f.Components, "main")
  h.eq(f["Signed-By"], "/usr/share/keyrings/debian-archive-keyring.gpg")
  h.contains(out, "from the bookworm entry of /etc/apt/sources.list.d/debian.sources")
  h.contains(out, "# Undo: rm /etc/apt/sources.list.d/migfix-trixie.sources /etc/apt/preferences.d/migfix-trixie")
  h.contains(apt_uris(out), "'http://deb.debian.org/debian/dists/trixie/InRelease'")
end

T["a mirror, a proxy-style URI and a mirror list are kept as they are"] = function()
  for _, uri in ipairs({ "http://ftp.fr.debian.org/debian", "http://apt-cacher.internal:3142/deb.debian.org/debian",
                         "https://user@artifactory.example.com/artifactory/debian-remote",
                         "mirror+file:/etc/apt/mirrors/debian.list" }) do
    local out, rc, err = derive(root { ["etc/apt/sources.list.d/debian.sources"] = DEBIAN_SOURCES:format(uri) })
    h.eq(rc, 0, err)
    h.eq(fields(out).URIs, uri)
    if not uri:find("^mirror%+") then
      h.contains(apt_uris(out), "'" .. uri .. "/dists/trixie/InRelease'")
    end
    h.not_contains(out, "URIs: http://deb.debian.org", "no archive host of its own")
  end
  -- two URIs in one stanza
  local out = derive(root { ["etc/apt/sources.list.d/d.sources"] = "Types: deb deb-src\nURIs: http://a.example/debian http://b.example/debian\nSuites: bookworm\nComponents: main\n" })
  local f = fields(out)
  h.eq(f.URIs, "http://a.example/debian http://b.example/debian")
  h.eq(f["Signed-By"], nil, "no keyring named: none written (apt's trusted keys apply, as for bookworm)")
end

T["one-line sources.list: URI and signed-by= option of the bookworm line"] = function()
  local out, rc, err = derive(root { ["etc/apt/sources.list"] = [[
# deb cdrom:[Debian GNU/Linux 12.5.0 _Bookworm_]/ bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/corp-debian.gpg] http://mirror.corp.example/debian bookworm main contrib non-free-firmware # local
deb-src http://mirror.corp.example/debian bookworm main
deb http://security.debian.org/debian-security bookworm-security main
deb http://mirror.corp.example/debian bookworm-updates main
]] })
  h.eq(rc, 0, err)
  local f = fields(out)
  h.eq(f.URIs, "http://mirror.corp.example/debian")
  h.eq(f["Signed-By"], "/usr/share/keyrings/corp-debian.gpg")
  h.contains(out, "bookworm entry of /etc/apt/sources.list:")
  h.contains(apt_uris(out), "'http://mirror.corp.example/debian/dists/trixie/InRelease'")
  -- a plain line without options: no Signed-By
  local out2 = derive(root { ["etc/apt/sources.list"] = "deb http://ftp.de.debian.org/debian/ bookworm main\n" })
  h.eq(fields(out2).URIs, "http://ftp.de.debian.org/debian/")
  h.eq(fields(out2)["Signed-By"], nil)
  -- only in sources.list.d/*.list
  local out3 = derive(root { ["etc/apt/sources.list.d/mirror.list"] = "deb [signed-by=/k.gpg] http://m.example/debian bookworm main\n" })
  h.eq(fields(out3).URIs, "http://m.example/debian")
end

T["deb822 wins over sources.list; disabled stanzas and migfix's own file are skipped; inline keys kept"] = function()
  local key = "Signed-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBGPL0BUBEADmW5NdOOHwPIJlgPu6JDcKw/NZJPR8lsD3K87ZM18gzyQZJD+w\n -----END PGP PUBLIC KEY BLOCK-----\n"
  local out, rc, err = derive(root {
    ["etc/apt/sources.list"] = "deb http://old.example/debian bookworm main\n",
    ["etc/apt/sources.list.d/a-off.sources"] = "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nComponents: main\nEnabled: no\n",
    ["etc/apt/sources.list.d/migfix-trixie.sources"] = "Types: deb\nURIs: http://stale.example/debian\nSuites: bookworm\nComponents: main\n",
    ["etc/apt/sources.list.d/z.sources"] = "Types: deb\nURIs: http://new.example/debian\nSuites: bookworm\nComponents: main\n" .. key,
  })
  h.eq(rc, 0, err)
  local f = fields(out)
  h.eq(f.URIs, "http://new.example/debian")
  h.contains(f["Signed-By"], "-----BEGIN PGP PUBLIC KEY BLOCK-----")
  h.contains(out, "\n .\n", "the key block's continuation lines are kept")
  h.contains(out, "-----END PGP PUBLIC KEY BLOCK-----")
end

T["no bookworm entry: exit 1, nothing printed on stdout, the hint says what to write"] = function()
  local out, rc, err = derive(root { ["etc/apt/sources.list"] = "deb http://archive.ubuntu.com/ubuntu jammy main\n" })
  h.eq(rc, 1)
  h.eq(out, "")
  h.contains(err, "found no enabled 'deb' entry for suite bookworm")
  h.contains(err, "hint:")
  local _, rc2, err2 = derive(root {})
  h.eq(rc2, 1)
  h.contains(err2, "bookworm")
end

T["the script: POSIX sh syntax, usage error, and the installer says how to undo"] = function()
  local out, rc = h.sh("sh -n " .. h.shq(SCRIPT) .. " 2>&1")
  h.eq(rc, 0, out)
  local _, rc2 = h.sh(h.shq(SCRIPT) .. " --bogus 2>/dev/null")
  h.eq(rc2, 2)
  local text = h.read(SCRIPT)
  h.contains(text, "to undo: rm $src_file $pin_file && apt-get update")
  h.not_contains(text, "URIs: http://deb.debian.org", "no archive host written by the script itself")
  h.contains(text, "python3-prometheus-client", "the metrics tests' parser is installed")
end

T["from trixie: lua-posix and libpg_query 17 only, installed with -t trixie; nothing of libpg_query 15"] = function()
  local function list(mode)
    local out, rc = h.sh(h.shq(SCRIPT) .. " --list-packages" .. (mode and (" " .. mode) or ""))
    h.eq(rc, 0, out)
    local set = {}
    for p in out:gmatch("[^\n]+") do set[p] = true end
    return set, out
  end
  local trixie, tout = list("--trixie")
  h.same(trixie, { ["lua-posix"] = true, ["libpg-query-dev"] = true, ["libpg-query1706.0"] = true })
  local build, runtime, all = list("--build"), list("--runtime"), list()
  h.ok(build["libpg-query-dev"] and build["libpg-query1706.0"] and build["lua-posix"], "build: the parser's headers")
  h.ok(runtime["libpg-query1706.0"] and runtime["lua-posix"] and not runtime["libpg-query-dev"], "runtime: the library only")
  for p in pairs(trixie) do h.ok(all[p], p .. " in the full list") end
  for _, set in ipairs({ build, runtime, all }) do
    for p in pairs(set) do h.ok(not p:find("1504", 1, true), "no libpg_query 15 package: " .. p) end
  end
  local text = h.read(SCRIPT)
  h.contains(text, "-t trixie $trixie_pkgs", "the trixie packages are installed by name with -t trixie")
  h.contains(text, "Pin-Priority: 100", "and the pin keeps every other trixie package out")
  -- on this machine's apt (when it knows trixie): installing exactly those from trixie
  -- pulls nothing else from there (a simulation: nothing is installed)
  local policy = h.sh("apt-cache policy libpg-query1706.0 2>/dev/null")
  if not policy:find("trixie", 1, true) then
    print("# skip: this machine's apt has no trixie source (scripts/install-deps writes it)")
    return
  end
  local sim, rc = h.sh("apt-get install -s -qq --no-install-recommends -t trixie " .. tout:gsub("\n", " ") .. " 2>&1")
  h.eq(rc, 0, sim)
  for pkg in ("\n" .. sim):gmatch("\nInst (%S+)") do h.ok(trixie[pkg], "only the named packages come from trixie: " .. pkg) end
end

return T
