local M = {}
function M.main(argv, info) print("migfix " .. info.version) return 0 end
return M
