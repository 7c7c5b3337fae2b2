---@meta migfix.proc
--- Child processes without a shell (engine/proc.c), plus clock and tty helpers.

---@class migfix.proc.status
---@field exited boolean true when the child called exit, false when a signal ended it
---@field code integer exit status, or 128 + signal number
---@field signal integer|nil the terminating signal

---@class migfix.proc.result: migfix.proc.status
---@field stdout string|nil captured stdout (when it was a pipe)
---@field stderr string|nil captured stderr (when it was a pipe)

---@class migfix.proc.spawn_opts
---@field argv string[] program and arguments; the program is looked up on $PATH unless it contains a slash
---@field env? table<string, string|number|false> added to (or, with clear_env, replacing) the child's environment; false removes a name
---@field clear_env? boolean start the child with env only
---@field stdin? string file to read stdin from (default: inherited)
---@field stdout? string|"pipe" file (created/truncated) or "pipe" (default: inherited)
---@field stderr? string|"pipe" file (created/truncated) or "pipe" (default: inherited)
---@field umask? integer umask of the child (and of the files opened for it), e.g. 63 (octal 077)

---@class migfix.proc.handle
local handle = {}

---@return integer pid 0 once closed
function handle:pid() end

--- nil while the child runs; drains ready pipe data without blocking.
---@return migfix.proc.status|nil
function handle:poll() end

--- Wait for the child, draining its pipes meanwhile (no deadlock).
---@return migfix.proc.status
function handle:wait() end

--- Everything written to the stdout pipe (reads to end of file). Raises unless stdout = "pipe".
---@return string
function handle:read_stdout() end

--- Everything written to the stderr pipe (reads to end of file). Raises unless stderr = "pipe".
---@return string
function handle:read_stderr() end

--- Signal the child (default SIGTERM).
---@param sig? integer
---@return true|nil ok
---@return string|nil err
function handle:kill(sig) end

local proc = {}

--- Start a program. Collecting or closing (<close>) the handle kills a
--- running child (SIGTERM, 200 ms, SIGKILL) and reaps it.
---@param opts migfix.proc.spawn_opts
---@return migfix.proc.handle|nil handle
---@return string|nil err 'could not start "prog": No such file or directory'
function proc.spawn(opts) end

--- spawn + wait; stdout and stderr default to "pipe" and are captured.
---@param opts migfix.proc.spawn_opts
---@return migfix.proc.result|nil result
---@return string|nil err
function proc.run(opts) end

--- Path of an executable on $PATH (or name itself when it contains a slash).
---@param name string
---@return string|nil
function proc.which(name) end

return proc
