-- temporary bootstrap (replaced by the full CLI): `migfix exec FILE [ARGS]`
local M = {}
function M.main(argv, info)
  if argv[1] == "exec" and argv[2] then
    local chunk = assert(loadfile(argv[2]))
    arg = { [0] = argv[2], table.unpack(argv, 3) }
    local ok, r = xpcall(chunk, debug.traceback, table.unpack(argv, 3))
    if not ok then io.stderr:write("migfix: error: ", tostring(r), "\n") return 4 end
    return math.type(r) == "integer" and r or 0
  end
  print("migfix " .. info.version)
  return 0
end
return M
