-- The container and CI recipes, checked as far as a machine without a Docker
-- engine allows: Dockerfile structure and install-script modes, the runtime
-- packages against the libraries the binary links, the build stage's install
-- steps, and the GitHub Actions example parsed by python3-yaml with each migfix
-- command line accepted by migfix's own option parser.
local h = require "helper"
local json = require "migfix.json"

local DOCKERFILE = h.root .. "/Dockerfile"
local WORKFLOW = h.root .. "/docs/ci/github-actions.yml"
local DEPS = h.root .. "/scripts/install-deps"

--- Dockerfile instructions: {{op, args, line}}, continuation lines joined
local function instructions(text)
  local out, buf, start, n = {}, nil, nil, 0
  for line in (text .. "\n"):gmatch("(.-)\n") do
    n = n + 1
    if not line:match("^%s*#") and line:match("%S") then
      if buf then buf = buf .. " " .. line else buf, start = line, n end
      if buf:sub(-1) == "\\" then
        buf = buf:sub(1, -2)
      else
        local op, args = buf:match("^%s*(%u+)%s+(.*)$")
        out[#out + 1] = { op = op, args = args, line = start }
        buf = nil
      end
    end
  end
  return out
end

local function lines_of(s)
  local t = {}
  for l in s:gmatch("[^\n]+") do t[#t + 1] = l end
  return t
end

local T = {}

T["Dockerfile: bookworm base, the project's install script, non-root user, installed entry point"] = function()
  local ins = instructions(h.read(DOCKERFILE))
  local froms, runs, user, entry, stages = {}, {}, nil, nil, 0
  for _, i in ipairs(ins) do
    if i.op == "FROM" then
      stages = stages + 1
      froms[#froms + 1] = i.args
      user = nil
    elseif i.op == "RUN" then
      runs[#runs + 1] = i.args
    elseif i.op == "USER" then
      user = i.args
    elseif i.op == "ENTRYPOINT" then
      entry = json.decode(i.args)
    end
  end
  h.eq(stages, 2, "a build stage and a final stage")
  for _, f in ipairs(froms) do h.ok(f:match("^debian:bookworm"), "base is Debian bookworm: " .. f) end
  h.ok(user and user ~= "root" and user ~= "0", "the final stage runs as a non-root user")
  h.eq(entry[1], "/usr/local/bin/migfix", "the path make install PREFIX=/usr/local writes")
  local modes = {}
  for _, r in ipairs(runs) do
    for mode in r:gmatch("install%-deps (%-%-[%w-]+)") do modes[#modes + 1] = mode end
    h.not_contains(r, "apt-get install", "packages come from scripts/install-deps, not a second list")
    h.not_contains(r, "curl ", "nothing downloaded beside the Debian archive")
  end
  h.same(modes, { "--build", "--runtime" })
  -- the modes exist: their package lists print
  for _, m in ipairs(modes) do
    local out, rc = h.sh(("%s --list-packages %s"):format(h.shq(DEPS), m))
    h.eq(rc, 0, out)
    h.contains(out, "lua-posix")
  end
  local joined = table.concat(runs, "\n")
  h.contains(joined, "make install PREFIX=/usr/local DESTDIR=/out")
  h.contains(joined, "useradd")
end

T["runtime packages: every library the binary links, and pg_dump; each known to apt"] = function()
  local runtime = {}
  for _, p in ipairs(lines_of((h.sh(h.shq(DEPS) .. " --list-packages --runtime")))) do runtime[p] = true end
  h.ok(runtime["postgresql-client-15"], "pg_dump for backups")
  local needed = h.sh("readelf -d " .. h.shq(h.bin) .. " | sed -n 's/.*NEEDED.*\\[\\(.*\\)\\]/\\1/p'")
  local n = 0
  for lib in needed:gmatch("[^\n]+") do
    if not lib:match("^libc%.so") and not lib:match("^libm%.so") then
      local path = h.sh(("ldd %s | awk '$1 == \"%s\" { print $3 }'"):format(h.shq(h.bin), lib)):gsub("%s+$", "")
      h.ok(path ~= "", "ldd resolves " .. lib)
      local real = h.sh("readlink -f " .. h.shq(path)):gsub("%s+$", "")
      local pkg = h.sh(("dpkg -S %s 2>/dev/null || dpkg -S %s 2>/dev/null"):format(h.shq(real), h.shq(path))):match("^([^:]+):")
      local pgq_root = os.getenv("PGQ_ROOT")
      if not pkg and pgq_root and pgq_root ~= "" and real:sub(1, #pgq_root) == pgq_root then
        -- built against a private libpg_query tree (make PGQ_ROOT=, dpkg -x of the trixie
        -- packages): the Debian package of its soname, libpg_query.so.1706.0 -> libpg-query1706.0
        local maj, min = lib:match("^libpg_query%.so%.(%d+)%.(%d+)$")
        if maj then pkg = ("libpg-query%s.%s"):format(maj, min) end
      end
      h.ok(pkg, "a package owns " .. real)
      h.ok(runtime[pkg], ("%s (%s) is installed by install-deps --runtime"):format(pkg, lib))
      n = n + 1
    end
  end
  h.ok(n >= 6, "found the linked libraries")
  -- luaposix's modules, which the scripts load at run time
  local posix = h.sh("dpkg -S /usr/lib/x86_64-linux-gnu/lua/5.4/posix/unistd.so 2>/dev/null"):match("^([^:]+):")
  h.eq(posix, "lua-posix")
  for p in pairs(runtime) do
    local out, rc = h.sh("apt-cache show --no-all-versions " .. h.shq(p) .. " >/dev/null 2>&1")
    h.eq(rc, 0, "apt knows " .. p .. out)
  end
end

T["the build stage's steps: make install PREFIX=/usr/local DESTDIR=... gives a working tree"] = function()
  local out_dir = h.tmpdir() .. "/out"
  local out, rc = h.sh(("make -s -C %s install PREFIX=/usr/local DESTDIR=%s 2>&1"):format(h.shq(h.root), h.shq(out_dir)))
  h.eq(rc, 0, out)
  local bin = out_dir .. "/usr/local/bin/migfix"
  local v, vrc = h.sh(("cd / && env -u MIGFIX_HOME %s --version 2>&1"):format(h.shq(bin)))
  h.eq(vrc, 0, v)
  local hout, hrc = h.sh(("env -u MIGFIX_HOME %s help check 2>&1"):format(h.shq(bin)))
  h.eq(hrc, 0, hout)
  h.contains(hout, "Exit codes")
end

T["CI example: valid YAML, runs lint --format github and check on pull requests"] = function()
  local py = [[
import json, sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
# YAML 1.1 reads the key "on" as true
on = doc.get("on", doc.get(True))
runs = []
for name, job in doc["jobs"].items():
    for step in job.get("steps", []):
        if "run" in step:
            runs.append(step["run"])
print(json.dumps({"on": on, "runs": runs, "jobs": list(doc["jobs"])}))
]]
  local f = os.tmpname()
  h.write(f, py)
  local out, rc = h.sh(("/usr/bin/python3 %s %s 2>&1"):format(h.shq(f), h.shq(WORKFLOW)))
  os.remove(f)
  h.eq(rc, 0, out)
  local doc = assert(json.decode(out), out)
  h.ok(doc.on.pull_request, "runs on pull requests")
  local all = table.concat(doc.runs, "\n")
  h.contains(all, "migfix lint")
  h.contains(all, "--format github")
  h.contains(all, "migfix check")
  -- each migfix command line is accepted by migfix's option parser (--help stops before any connection)
  local n = 0
  for _, run in ipairs(doc.runs) do
    for line in run:gmatch("[^\n]+") do
      local args = line:match("^%s*migfix%s+(.*)$")
      if args then
        n = n + 1
        local hout, hrc = h.sh(("%s %s --help 2>&1"):format(h.shq(h.bin), args))
        h.eq(hrc, 0, "migfix " .. args .. ": " .. hout)
        h.contains(hout, "Usage: migfix")
      end
    end
  end
  h.ok(n >= 3, "found the migfix steps")
end

return T
