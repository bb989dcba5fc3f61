-- scripts/lib/report.lua — shared by the reproduction scripts: option parsing,
-- CSV rows, mean ± std tables and paired differences with 95 % t-intervals.
local R = {}

-- "--quick --seeds 3 --out runs/x" -> {quick=true, seeds="3", out="runs/x"}
function R.options(argv)
  local o, i = {}, 1
  while argv[i] do
    local k = argv[i]:match("^%-%-(.+)$")
    if not k then error("unexpected argument " .. argv[i]) end
    if argv[i + 1] and not argv[i + 1]:match("^%-%-") then
      o[k] = argv[i + 1]; i = i + 2
    else
      o[k] = true; i = i + 1
    end
  end
  return o
end

function R.mean_std(v)
  local s, ss = 0, 0
  for _, x in ipairs(v) do s = s + x end
  local m = s / #v
  for _, x in ipairs(v) do ss = ss + (x - m) ^ 2 end
  return m, #v > 1 and math.sqrt(ss / (#v - 1)) or 0 / 0
end

-- two-sided 97.5 % quantiles of Student's t for df 1..30 (then the normal's)
local T975 = {12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
              2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
              2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042}

-- mean of a - b over paired seeds and its 95 % confidence half-width
function R.paired(a, b)
  local d = {}
  for i = 1, math.min(#a, #b) do d[i] = a[i] - b[i] end
  local m, s = R.mean_std(d)
  if #d < 2 then return m, 0 / 0 end
  return m, (T975[#d - 1] or 1.960) * s / math.sqrt(#d)
end

function R.mkdir_for(path)
  local dir = path:match("^(.*)/[^/]*$")
  if dir then os.execute("mkdir -p '" .. dir .. "'") end
end

-- rows: list of flat tables; columns: ordered list of keys
function R.write_csv(path, rows, columns)
  R.mkdir_for(path)
  local f = assert(io.open(path, "w"))
  f:write(table.concat(columns, ","), "\n")
  for _, r in ipairs(rows) do
    local cells = {}
    for i, c in ipairs(columns) do
      local v = r[c]
      cells[i] = type(v) == "number" and string.format("%.6g", v) or tostring(v == nil and "" or v)
    end
    f:write(table.concat(cells, ","), "\n")
  end
  f:close()
end

-- Rows of a CSV written by tl.sweep or R.write_csv (no quoted commas in our
-- data): numbers converted, the header's names as keys.
function R.read_csv(path)
  local f = io.open(path)
  if not f then return {} end
  local header, rows = nil, {}
  for line in f:lines() do
    local cells = {}
    for c in (line .. ","):gmatch("([^,]*),") do table.insert(cells, c) end
    if not header then
      header = cells
    else
      local r = {}
      for i, k in ipairs(header) do r[k] = tonumber(cells[i]) or cells[i] end
      table.insert(rows, r)
    end
  end
  f:close()
  return rows
end

function R.write_text(path, lines)
  R.mkdir_for(path)
  local f = assert(io.open(path, "w"))
  f:write(table.concat(lines, "\n"), "\n")
  f:close()
end

-- collect rows[key] values of the runs matching (group field = value, ...), ordered by seed
function R.values(rows, match, key)
  local sel = {}
  for _, r in ipairs(rows) do
    local ok = true
    for k, v in pairs(match) do if r[k] ~= v then ok = false end end
    if ok then table.insert(sel, r) end
  end
  table.sort(sel, function(x, y) return x.seed < y.seed end)
  local v = {}
  for i, r in ipairs(sel) do v[i] = r[key] end
  return v
end

function R.fmt(m, s, digits)
  digits = digits or 4
  if m ~= m then return "not run" end
  if s ~= s then return string.format("%." .. digits .. "f", m) end
  return string.format("%." .. digits .. "f ± %." .. digits .. "f", m, s)
end

function R.fmt_diff(m, h)
  if m ~= m then return "" end
  if h ~= h then return string.format("%+.4f", m) end
  local mark = (m - h > 0 and " ▲") or (m + h < 0 and " ▼") or ""
  return string.format("%+.4f ± %.4f%s", m, h, mark)
end

return R
