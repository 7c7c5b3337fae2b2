-- migfix.proc: child processes without a shell.
local H = require "helper"
local proc = require "migfix.proc"

local T = {}

local function globals()
  local g = {}
  for k in pairs(_G) do g[k] = true end
  return g
end

T["module leaves globals alone"] = function()
  local before = globals()
  package.loaded["migfix.proc"] = nil
  local p = require "migfix.proc"
  for k in pairs(_G) do H.ok(before[k], "new global " .. tostring(k)) end
  H.eq(type(p.spawn), "function")
  for _, f in ipairs { "run", "spawn", "which" } do
    H.eq(type(p[f]), "function", f)
  end
end

T["run captures stdout, stderr and the exit code"] = function()
  local r = assert(proc.run { argv = { "sh", "-c", "printf out; printf err >&2; exit 3" } })
  H.eq(r.code, 3)
  H.eq(r.exited, true)
  H.eq(r.signal, nil)
  H.eq(r.stdout, "out")
  H.eq(r.stderr, "err")
end

T["no shell: arguments reach the program verbatim"] = function()
  local r = assert(proc.run { argv = { "printf", "%s|", "a b", "$HOME", "'q'", ";ls" } })
  H.eq(r.code, 0)
  H.eq(r.stdout, "a b|$HOME|'q'|;ls|")
end

T["env is added for the child only"] = function()
  local r = assert(proc.run { argv = { "sh", "-c", 'printf "%s/%s" "$MIGFIX_T_VAR" "$HOME"' },
                              env = { MIGFIX_T_VAR = "secret value" } })
  H.eq(r.stdout, "secret value/" .. (os.getenv("HOME") or ""))
  H.eq(os.getenv("MIGFIX_T_VAR"), nil, "parent environment unchanged")
  -- numbers are converted, false removes an inherited name
  r = assert(proc.run { argv = { "sh", "-c", 'printf "%s/%s" "$N" "${HOME-unset}"' }, env = { N = 42, HOME = false } })
  H.eq(r.stdout, "42/unset")
end

T["clear_env replaces the environment"] = function()
  local r = assert(proc.run { argv = { "/usr/bin/env" }, clear_env = true, env = { ONLY = "1" } })
  H.eq(r.stdout, "ONLY=1\n")
end

T["missing program gives nil, message, {kind, errno}"] = function()
  local h, err, info = proc.spawn { argv = { "migfix-no-such-program" } }
  H.eq(h, nil)
  H.eq(err, 'could not start "migfix-no-such-program": No such file or directory')
  H.same(info, { kind = "spawn", errno = 2 })
  local r, err2, info2 = proc.run { argv = { "/nonexistent/bin/x" } }
  H.eq(r, nil)
  H.contains(err2, 'could not start "/nonexistent/bin/x"')
  H.eq(info2.kind, "spawn")
end

T["unopenable redirection gives nil, message"] = function()
  local h, err = proc.spawn { argv = { "true" }, stdout = "/nonexistent-dir/out" }
  H.eq(h, nil)
  H.eq(err, 'could not open "/nonexistent-dir/out": No such file or directory')
end

T["bad arguments raise and quote the expected call"] = function()
  H.raises(function() proc.spawn { argv = { "true" }, shell = true } end, 'unrecognized option "shell" (expected proc.spawn{argv')
  H.raises(function() proc.spawn { argv = {} } end, 'option "argv" must be a non-empty list of strings')
  H.raises(function() proc.spawn { argv = { "true", 3 } } end, "argv[2] must be a string")
  H.raises(function() proc.spawn { argv = { "true" }, env = { ["A=B"] = "x" } } end, 'invalid environment variable name "A=B"')
  H.raises(function() proc.spawn { argv = { "true" }, stdin = "pipe" } end, 'option "stdin" cannot be "pipe"')
  H.raises(function() proc.spawn { argv = { "true" }, umask = 4096 } end, 'option "umask" must be between 0 and 0777')
  H.raises(function() proc.spawn("true") end, "bad argument #1 to 'spawn' (table expected, got string)")
  H.raises(function() proc.spawn({ argv = { "true" } }, 2) end, "too many arguments")
  H.raises(function() proc.run { argv = { "true" }, bogus = 1 } end, 'unrecognized option "bogus"')
end

T["stdin and stdout files, umask applies to the child"] = function()
  local dir = H.tmpdir()
  H.write(dir .. "/in", "hello\n")
  local h = assert(proc.spawn { argv = { "sh", "-c", 'cat; touch "$D/made"' }, stdin = dir .. "/in", stdout = dir .. "/out",
                                env = { D = dir }, umask = tonumber("077", 8) })
  H.eq(h:wait().code, 0)
  H.eq(H.read(dir .. "/out"), "hello\n")
  H.eq(H.sh("stat -c %a " .. H.shq(dir .. "/made")), "600\n", "file created by the child")
  H.eq(H.sh("stat -c %a " .. H.shq(dir .. "/out")), "600\n")
  local cur = H.sh("umask")
  H.ok(not cur:find("0077"), "parent umask restored")
end

T["handle: poll while running, wait, kill by signal"] = function()
  local h <close> = assert(proc.spawn { argv = { "sleep", "5" } })
  H.ok(h:pid() > 0)
  H.eq(h:poll(), nil, "still running")
  H.eq(h:kill(15), true)
  local st = h:wait()
  H.eq(st.exited, false)
  H.eq(st.signal, 15)
  H.eq(st.code, 128 + 15)
  H.same(h:poll(), st, "poll after exit")
  local ok, err = h:kill(9)
  H.eq(ok, nil)
  H.contains(err, "already exited")
end

T["large outputs on both pipes do not deadlock"] = function()
  local h = assert(proc.spawn { argv = { "sh", "-c", "head -c 300000 /dev/zero; head -c 200000 /dev/zero >&2; exit 5" },
                                stdout = "pipe", stderr = "pipe" })
  local st = h:wait()
  H.eq(st.code, 5)
  H.eq(#h:read_stdout(), 300000)
  H.eq(#h:read_stderr(), 200000)
  H.raises(function()
    local g = assert(proc.spawn { argv = { "true" } })
    g:read_stdout()
  end, 'stdout is not a pipe (spawn it with stdout = "pipe")')
end

T["read_stdout before wait reads to the end"] = function()
  local h = assert(proc.spawn { argv = { "sh", "-c", "echo one; sleep 0.1; echo two" }, stdout = "pipe" })
  H.eq(h:read_stdout(), "one\ntwo\n")
  H.eq(h:wait().code, 0)
end

T["__close kills and reaps a running child"] = function()
  local pid
  do
    local h <close> = assert(proc.spawn { argv = { "sleep", "30" } })
    pid = h:pid()
  end
  local out = H.sh("ps -o stat= -p " .. pid)
  H.eq(out, "", "no process (not even a zombie) left")
  -- closing twice is harmless; methods on a closed handle raise
  local h = assert(proc.spawn { argv = { "true" } })
  local mt = getmetatable(h)
  mt.__close(h)
  mt.__close(h)
  H.raises(function() h:wait() end, "attempt to use a closed process handle")
end

T["garbage collection reaps too"] = function()
  local pid = assert(proc.spawn { argv = { "sleep", "30" } }):pid()
  collectgarbage()
  collectgarbage()
  H.eq(H.sh("ps -o stat= -p " .. pid), "")
end

T["which"] = function()
  H.eq(proc.which("sh"):sub(-3), "/sh")
  H.eq(proc.which("migfix-no-such-program"), nil)
  H.eq(proc.which("/bin/sh"), "/bin/sh")
  H.eq(proc.which(""), nil)
end

T["clocks, sleeping and terminals come from luaposix (migfix.sys), not from proc"] = function()
  local sys = require "migfix.sys"
  H.eq(proc.now, nil); H.eq(proc.sleep, nil); H.eq(proc.isatty, nil)
  local t0 = sys.now_ms()
  sys.sleep_ms(50)
  local dt = sys.now_ms() - t0
  H.ok(dt >= 49 and dt < 1000, "slept about 50 ms, got " .. dt)
  H.eq(type(sys.isatty(0)), "boolean")
  H.eq(sys.isatty(99), false)
end

return T
