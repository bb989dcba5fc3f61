-- pretty.lua — the pretty printer behind the REPL's result printing.
-- tl.pretty(v [, {depth=, width=, items=}]) -> string; tl.show(...) prints.
-- Tables: sorted keys, array part first, a depth limit, cycles marked;
-- userdata through their __tostring; a table of per-task tables with the same
-- scalar fields (evaluate() results) prints as a grid.
local tl, names, values = ...

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  keywords[w] = true
end

local type_order = { number = 1, string = 2, boolean = 3 }

local function key_less(a, b)
  local ta, tb = type(a), type(b)
  if ta ~= tb then
    return (type_order[ta] or 9) < (type_order[tb] or 9) or
      ((type_order[ta] or 9) == (type_order[tb] or 9) and ta < tb)
  end
  if ta == "number" or ta == "string" then return a < b end
  return tostring(a) < tostring(b)
end

local function fmt_number(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  local s = string.format("%.6g", v)
  if not s:find("[%.en]") then s = s .. ".0" end
  return s
end

local function with_tostring(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and mt.__tostring then
    local ok, s = pcall(tostring, v)
    if ok then return s end
    return "<" .. type(v) .. ": __tostring failed: " .. tostring(s) .. ">"
  end
  return nil
end

local function scalar(v, quote)
  local t = type(v)
  if t == "string" then return quote and string.format("%q", v):gsub("\\\n", "\\n") or v end
  if t == "number" then return fmt_number(v) end
  if t == "userdata" or t == "table" then
    local s = with_tostring(v)
    if s then return s end
  end
  return tostring(v)
end

local function fmt_key(k)
  if type(k) == "string" and k:match("^[%a_][%w_]*$") and not keywords[k] then return k end
  return "[" .. scalar(k, true) .. "]"
end

local function is_scalar(v)
  local t = type(v)
  return t == "number" or t == "string" or t == "boolean"
end

-- A results table: string keys -> tables whose scalar fields are the same
-- set in every row (at least one). Returns rows, columns, skipped fields.
local function as_grid(t)
  local rows, cols, skipped = {}, nil, {}
  for k, v in pairs(t) do
    if type(k) ~= "string" or type(v) ~= "table" or getmetatable(v) then return nil end
    local c = {}
    for f, x in pairs(v) do
      if type(f) ~= "string" then return nil end
      if is_scalar(x) then c[#c + 1] = f else skipped[f] = true end
    end
    if #c == 0 then return nil end
    table.sort(c)
    if cols then
      if #cols ~= #c then return nil end
      for i = 1, #c do if cols[i] ~= c[i] then return nil end end
    else
      cols = c
    end
    rows[#rows + 1] = k
  end
  if #rows == 0 or #cols > 12 then return nil end
  table.sort(rows)
  local sk = {}
  for f in pairs(skipped) do sk[#sk + 1] = f end
  table.sort(sk)
  return rows, cols, sk
end

local function grid(t, rows, cols, skipped)
  local cells, widths = {}, { 0 }
  for i, r in ipairs(rows) do
    widths[1] = math.max(widths[1], #r)
    cells[i] = {}
    for j, c in ipairs(cols) do
      local v = t[r][c]
      local s = type(v) == "number" and math.type(v) == "float" and string.format("%.4f", v)
        or scalar(v, false)
      cells[i][j] = s
      widths[j + 1] = math.max(widths[j + 1] or #c, #s)
    end
  end
  local out = {}
  local head = { string.rep(" ", widths[1]) }
  for j, c in ipairs(cols) do head[#head + 1] = string.format("%" .. widths[j + 1] .. "s", c) end
  out[1] = table.concat(head, "  ")
  for i, r in ipairs(rows) do
    local line = { string.format("%-" .. widths[1] .. "s", r) }
    for j = 1, #cols do line[#line + 1] = string.format("%" .. widths[j + 1] .. "s", cells[i][j]) end
    out[#out + 1] = table.concat(line, "  ")
  end
  if #skipped > 0 then
    out[#out + 1] = "(also in each row: " .. table.concat(skipped, ", ") .. ")"
  end
  return table.concat(out, "\n")
end

local render

local function render_table(t, opts, depth, indent, path)
  if path[t] then return "<cycle>" end
  local s = with_tostring(t)
  if s then return s end
  if depth >= opts.depth then
    return next(t) == nil and "{}" or "{...}"
  end
  path[t] = true
  local n = #t
  local items, keys = {}, {}
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then keys[#keys + 1] = k end
  end
  table.sort(keys, key_less)
  local sub = indent .. "  "
  local shown = 0
  for i = 1, n do
    shown = shown + 1
    if shown > opts.items then break end
    items[#items + 1] = render(t[i], opts, depth + 1, sub, path)
  end
  for _, k in ipairs(keys) do
    shown = shown + 1
    if shown > opts.items then break end
    items[#items + 1] = fmt_key(k) .. " = " .. render(t[k], opts, depth + 1, sub, path)
  end
  if shown > opts.items then
    items[#items + 1] = string.format("... (%d more)", n + #keys - opts.items)
  end
  path[t] = nil
  if #items == 0 then return "{}" end
  local one = "{" .. table.concat(items, ", ") .. "}"
  if #one + #indent <= opts.width and not one:find("\n") then return one end
  return "{\n" .. sub .. table.concat(items, ",\n" .. sub) .. "\n" .. indent .. "}"
end

function render(v, opts, depth, indent, path)
  if type(v) == "table" then return render_table(v, opts, depth, indent, path) end
  local s = scalar(v, true)
  if s:find("\n") then s = s:gsub("\n", "\n" .. indent .. "  ") end
  return s
end

local function pretty(v, opts)
  opts = opts or {}
  local o = { depth = opts.depth or 4, width = opts.width or 78, items = opts.items or 100 }
  if type(v) == "table" and not getmetatable(v) then
    local rows, cols, skipped = as_grid(v)
    if rows then return grid(v, rows, cols, skipped) end
  end
  if type(v) == "string" and not opts.quote then return v end
  return render(v, o, 0, "", {})
end

tl.pretty = pretty

-- tl.show(...): print each value pretty; single-line values share a line.
function tl.show(...)
  local n = select("#", ...)
  local parts, multi = {}, false
  for i = 1, n do
    parts[i] = pretty((select(i, ...)))
    if parts[i]:find("\n") then multi = true end
  end
  io.write(table.concat(parts, multi and "\n" or "\t"), "\n")
end

names["tl.pretty"] = "tl.pretty(v [, {depth=4, width=78, items=100}]) -> string: how the REPL\n" ..
  "prints values (sorted keys, cycles marked, per-task result tables as grids)."
values[pretty] = "tl.pretty"
names["tl.show"] = "tl.show(...): print values with tl.pretty."
values[tl.show] = "tl.show"
