-- migfix.ui: the aligned table (measured once, written in one piece) and widths
local H = require "helper"
local ui = require "migfix.ui"

local T = {}

local function capture(fn)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  local so = io.stdout
  io.stdout = f
  local ok, err = pcall(fn)
  io.stdout = so
  f:close()
  local text = H.read(path)
  os.remove(path)
  if not ok then error(err, 0) end
  return text
end

T["table: columns aligned by display width, last column unpadded, trailing blanks cut"] = function()
  local text = capture(function()
    ui.table({ { key = "name", title = "NAME" }, { key = "n", title = "N" }, { key = "note", title = "NOTE" } }, {
      { name = "ä_é", n = 1, note = "x" },
      { name = "abcdef", n = 22 },
      { name = "日本", n = nil, note = "" },
    }, "  ")
  end)
  H.eq(text, table.concat({
    "  NAME    N   NOTE",
    "  ä_é     1   x",
    "  abcdef  22",
    "  日本",
  }, "\n") .. "\n")
end

T["table: 10,000 rows come out in order, each once"] = function()
  local rows = {}
  for i = 1, 10000 do rows[i] = { a = ("m%05d"):format(i), b = i % 7 == 0 and "seven" or "" } end
  local text = capture(function() ui.table({ { key = "a", title = "A" }, { key = "b", title = "B" } }, rows) end)
  local n = 0
  for line in text:gmatch("[^\n]+") do
    if n > 0 then H.eq(line:sub(1, 6), ("m%05d"):format(n)) end
    n = n + 1
  end
  H.eq(n, 10001)
end

T["width counts code points"] = function()
  H.eq(ui.width("abc"), 3)
  H.eq(ui.width("ä日b"), 3)
  H.eq(ui.width(""), 0)
  H.eq(ui.width(12), 2)
end

return T
