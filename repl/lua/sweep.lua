-- sweep.lua — tl.sweep (scripted experiment sweeps) and tl.compare.
--
-- tl.sweep expands a grid or a random search into configurations, runs each
-- `repeats` times (seeds seed+1..seed+repeats) through run(cfg, seed), in
-- worker processes (private.sweep_exec, repl/l_sweep.c), appends one CSV row
-- per finished run, resumes from that CSV, and summarises mean ± std per
-- configuration as a Markdown table.
--
-- Worker → parent line format (our own, one line per run):
--   ok<TAB>key=<t><value><TAB>...     t: n number, s string, b boolean (t/f)
--   error<TAB>message
-- with \ TAB LF CR = escaped as \\ \t \n \r \q (l_sweep.c writes error lines
-- itself when a worker cannot produce one).
local tl, _, _, private = ...

local RESERVED = { seed = true, status = true, wall = true, message = true, run_hash = true }
local RESERVED_LIST = "seed, status, wall, message, run_hash"
local SWEEP_FIELDS = { "grid", "random", "repeats", "seed", "run", "jobs", "out", "verbose", "baseline" }
local COMPARE_FIELDS = { "by", "print", "baseline", "metrics" }
local rows_fields = setmetatable({}, { __mode = "k" }) -- results.rows -> config fields

-- ---- values and cells ------------------------------------------------------

-- Shortest decimal text that reads back as the same number.
local function fmt_num(v)
  if math.type(v) == "integer" then return tostring(v) end
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" end
  if v == -math.huge then return "-inf" end
  local s = string.format("%.15g", v)
  if tonumber(s) ~= v then s = string.format("%.17g", v) end
  return s
end

local function cell(v)
  if type(v) == "number" then return fmt_num(v) end
  if v == nil then return "" end
  return tostring(v)
end

-- A CSV cell back to a Lua value: "" -> nil, true/false, numbers (nan, inf).
local function typed(s)
  if s == nil or s == "" then return nil end
  if s == "true" then return true end
  if s == "false" then return false end
  if s == "nan" or s == "-nan" then return 0 / 0 end
  if s == "inf" then return math.huge end
  if s == "-inf" then return -math.huge end
  if s:match("^[-+]?%.?%d") then
    local v = tonumber(s)
    if v then return v end
  end
  return s
end

local function is_scalar(v)
  local t = type(v)
  return t == "number" or t == "string" or t == "boolean"
end

-- ---- the run function's hash -----------------------------------------------

-- 64-bit FNV-1a of a string, as 16 hex digits.
local function fnv1a(text)
  local h = -3750763034362895579 -- 0xcbf29ce484222325
  for i = 1, #text do
    h = (h ~ text:byte(i)) * 0x100000001b3
  end
  return string.format("%016x", h)
end

-- The text of lines a..b of `text`.
local function line_range(text, a, b)
  local out, n = {}, 0
  for l in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    if n >= a and n <= b then out[#out + 1] = l end
    if n > b then break end
  end
  return #out > 0 and table.concat(out, "\n") or nil
end

-- A hash of run's own source text (its lines in the script file or chunk).
-- Text, not string.dump: the bytecode changes with the Lua build. A function
-- typed at the prompt ("=stdin") has no text to read: its stripped bytecode
-- stands in (stable for one build). Functions that run calls and upvalues
-- are not covered.
local function run_hash(run)
  local info = debug.getinfo(run, "S")
  local src, text = info.source or "", nil
  if info.what == "Lua" and info.linedefined > 0 then
    if src:sub(1, 1) == "@" then
      local f = io.open(src:sub(2), "rb")
      if f then
        local all = f:read("a")
        f:close()
        text = all and line_range(all, info.linedefined, info.lastlinedefined)
      end
    elseif src:sub(1, 1) ~= "=" then
      text = line_range(src, info.linedefined, info.lastlinedefined)
    end
  end
  if not text then
    local ok, dump = pcall(string.dump, run, true)
    text = ok and dump or tostring(info.what)
  end
  return fnv1a(text)
end

-- ---- the worker line -------------------------------------------------------

local ESC = { ["\\"] = "\\\\", ["\t"] = "\\t", ["\n"] = "\\n", ["\r"] = "\\r", ["="] = "\\q" }
local UNESC = { ["\\"] = "\\", t = "\t", n = "\n", r = "\r", q = "=" }
local function esc(s) return (s:gsub("[\\\t\n\r=]", ESC)) end
local function unesc(s) return (s:gsub("\\(.)", UNESC)) end

local function encode_ok(res, keys)
  local out = { "ok" }
  for _, k in ipairs(keys) do
    local v, t = res[k], type(res[k])
    local x
    if t == "number" then x = "n" .. fmt_num(v)
    elseif t == "boolean" then x = "b" .. (v and "t" or "f")
    else x = "s" .. esc(v) end
    out[#out + 1] = esc(k) .. "=" .. x
  end
  return table.concat(out, "\t")
end

-- Returns the result table, or nil and the error message.
local function decode(line)
  local status, rest = line:match("^(%a+)\t?(.*)$")
  if status == "error" then return nil, unesc(rest) end
  if status ~= "ok" then
    return nil, "unreadable worker result: " .. line:sub(1, 80)
  end
  local res = {}
  for item in rest:gmatch("[^\t]+") do
    local k, t, v = item:match("^([^=]*)=(.)(.*)$")
    if not k then return nil, "unreadable worker result item: " .. item:sub(1, 80) end
    k = unesc(k)
    if t == "n" then res[k] = typed(v) or 0 / 0
    elseif t == "b" then res[k] = (v == "t")
    else res[k] = unesc(v) end
  end
  return res
end

-- ---- CSV -------------------------------------------------------------------

local function csv_quote(s)
  if s:find('[,"\r\n]') or s:match("^%s") or s:match("%s$") then
    return '"' .. s:gsub('"', '""') .. '"'
  end
  return s
end

local function csv_line(cols, cells)
  local out = {}
  for i, c in ipairs(cols) do out[i] = csv_quote(cells[c] or "") end
  return table.concat(out, ",") .. "\n"
end

-- Records of a CSV text (quoted fields may hold commas, quotes, newlines).
-- A last record without its newline (a write cut short) is dropped.
local function parse_csv(text)
  local recs, rec, pos, n = {}, {}, 1, #text
  while pos <= n do
    local val
    if text:sub(pos, pos) == '"' then
      local buf, p = {}, pos + 1
      while true do
        local q = text:find('"', p, true)
        if not q then return recs end -- unterminated: drop the tail
        buf[#buf + 1] = text:sub(p, q - 1)
        if text:sub(q + 1, q + 1) == '"' then
          buf[#buf + 1] = '"'
          p = q + 2
        else
          pos = q + 1
          break
        end
      end
      local e = text:find("[,\r\n]", pos) or n + 1 -- lenient: text after the quote
      buf[#buf + 1] = text:sub(pos, e - 1)
      pos = e
      val = table.concat(buf)
    else
      local e = text:find("[,\r\n]", pos) or n + 1
      val = text:sub(pos, e - 1)
      pos = e
    end
    rec[#rec + 1] = val
    local c = text:sub(pos, pos)
    if c == "," then
      pos = pos + 1
    elseif c == "\r" or c == "\n" then
      if c == "\r" and text:sub(pos + 1, pos + 1) == "\n" then pos = pos + 1 end
      pos = pos + 1
      recs[#recs + 1] = rec
      rec = {}
    else
      break -- end of text without a newline: incomplete record
    end
  end
  return recs
end

local function read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The CSV writer: a wide union of result columns; when a new result key
-- appears the file is rewritten (temporary file + rename) with the new header.
local Writer = {}
Writer.__index = Writer

local function new_writer(path, fields, rcols, kept)
  local w = setmetatable({ path = path, fields = fields, rset = {}, rows = kept or {} }, Writer)
  for _, k in ipairs(rcols) do w.rset[k] = true end
  w:rewrite()
  return w
end

function Writer:columns()
  local r = {}
  for k in pairs(self.rset) do r[#r + 1] = k end
  table.sort(r)
  local cols = {}
  for _, f in ipairs(self.fields) do cols[#cols + 1] = f end
  cols[#cols + 1] = "seed"
  cols[#cols + 1] = "status"
  for _, k in ipairs(r) do cols[#cols + 1] = k end
  cols[#cols + 1] = "wall"
  cols[#cols + 1] = "message"
  cols[#cols + 1] = "run_hash"
  return cols
end

function Writer:rewrite()
  if self.f then self.f:close(); self.f = nil end
  self.cols = self:columns()
  local tmp = self.path .. ".tmp"
  local f, err = io.open(tmp, "wb")
  if not f then error("tl.sweep: cannot write " .. self.path .. ": " .. tostring(err), 0) end
  local parts = { csv_line(self.cols, setmetatable({}, { __index = function(_, k) return k end })) }
  for _, cells in ipairs(self.rows) do parts[#parts + 1] = csv_line(self.cols, cells) end
  local ok, werr = f:write(table.concat(parts))
  f:close()
  if not ok then error("tl.sweep: cannot write " .. self.path .. ": " .. tostring(werr), 0) end
  local rok, rerr = os.rename(tmp, self.path)
  if not rok then error("tl.sweep: cannot write " .. self.path .. ": " .. tostring(rerr), 0) end
  self.f, err = io.open(self.path, "ab")
  if not self.f then error("tl.sweep: cannot append to " .. self.path .. ": " .. tostring(err), 0) end
end

function Writer:add(cells)
  self.rows[#self.rows + 1] = cells
  local new = false
  for k in pairs(cells) do
    if not self.rset[k] and not RESERVED[k] and not self.is_field[k] then
      self.rset[k] = true
      new = true
    end
  end
  if new then
    self:rewrite()
  else
    local ok, err = self.f:write(csv_line(self.cols, cells))
    if not ok then error("tl.sweep: cannot write " .. self.path .. ": " .. tostring(err), 0) end
    self.f:flush()
  end
end

function Writer:close()
  if self.f then self.f:close(); self.f = nil end
end

-- ---- option checking -------------------------------------------------------

local function fail(msg) error(msg, 0) end

local function check_fields(t, allowed, fn, what)
  local ok = {}
  for _, k in ipairs(allowed) do ok[k] = true end
  for k in pairs(t) do
    if not ok[k] then
      fail(string.format("%s: unknown %s '%s' (expected one of: %s)", fn,
        what or "field", tostring(k), table.concat(allowed, ", ")))
    end
  end
end

local function opt_int(o, key, def, min, max)
  local v = o[key]
  if v == nil then return def end
  if type(v) ~= "number" or v ~= math.floor(v) or v < min or v > max then
    fail(string.format("tl.sweep: field '%s' must be an integer in %d..%d, got %s", key, min, max,
      type(v) == "number" and fmt_num(v) or type(v)))
  end
  return math.tointeger(v)
end

local function check_name(k, where)
  if type(k) ~= "string" or k == "" then
    fail(string.format("tl.sweep: %s keys must be field names (strings), got %s", where, type(k)))
  end
  if RESERVED[k] then
    fail(string.format("tl.sweep: %s field '%s' clashes with a column of the results (" .. RESERVED_LIST .. ")", where, k))
  end
end

local function sorted_keys(t, skip)
  local ks = {}
  for k in pairs(t) do if k ~= skip then ks[#ks + 1] = k end end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

local function check_list(v, where, k)
  if type(v) ~= "table" or #v == 0 then
    fail(string.format("tl.sweep: %s field '%s' must be a non-empty list of values, got %s", where, k,
      type(v) == "table" and "an empty table" or type(v)))
  end
  for i = 1, #v do
    if not is_scalar(v[i]) then
      fail(string.format("tl.sweep: %s field '%s' value %d must be a number, string or boolean, got %s",
        where, k, i, type(v[i])))
    end
  end
  for kk in pairs(v) do
    if math.type(kk) ~= "integer" or kk < 1 or kk > #v then
      fail(string.format("tl.sweep: %s field '%s' must be a list of values, has key '%s'", where, k, tostring(kk)))
    end
  end
end

-- ---- configurations ----------------------------------------------------------

local function expand_grid(g)
  local fields = sorted_keys(g)
  for _, k in ipairs(fields) do
    check_name(k, "grid")
    check_list(g[k], "grid", k)
  end
  local configs = { {} }
  -- the first field varies slowest
  for fi = #fields, 1, -1 do
    local k, out = fields[fi], {}
    for _, v in ipairs(g[k]) do
      for _, c in ipairs(configs) do
        local n = { [k] = v }
        for kk, vv in pairs(c) do n[kk] = vv end
        out[#out + 1] = n
      end
    end
    configs = out
  end
  -- out was built with the new field outermost: configs are in order
  return configs, fields
end

-- splitmix64: a small, fixed generator so random sweeps do not depend on (or
-- disturb) math.random.
local function rng(seed)
  local s = seed
  return function()
    s = s + 0x9E3779B97F4A7C15
    local z = s
    z = (z ~ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ~ (z >> 27)) * 0x94D049BB133111EB
    z = z ~ (z >> 31)
    return (z >> 11) * 2.0 ^ -53
  end
end

local function expand_random(r, seed)
  local n = r.n
  if math.type(n) ~= "integer" or n < 1 then
    fail("tl.sweep: field 'random' needs n= (the number of configurations, a positive integer), got " ..
      (type(n) == "number" and fmt_num(n) or type(n)))
  end
  local fields = sorted_keys(r, "n")
  local spec = {}
  for _, k in ipairs(fields) do
    check_name(k, "random")
    local v = r[k]
    if type(v) == "table" and (v.min ~= nil or v.max ~= nil) then
      check_fields(v, { "min", "max", "log" }, "tl.sweep", "key of random field '" .. k .. "':")
      if type(v.min) ~= "number" or type(v.max) ~= "number" or not (v.min <= v.max) then
        fail(string.format("tl.sweep: random field '%s' needs numbers min <= max, got min=%s, max=%s",
          k, tostring(v.min), tostring(v.max)))
      end
      if v.log ~= nil and type(v.log) ~= "boolean" then
        fail(string.format("tl.sweep: random field '%s': log must be a boolean, got %s", k, type(v.log)))
      end
      if v.log and not (v.min > 0) then
        fail(string.format("tl.sweep: random field '%s': log=true needs min > 0, got %s", k, fmt_num(v.min)))
      end
      spec[k] = v
    else
      check_list(v, "random", k)
      spec[k] = v
    end
  end
  local u = rng(seed)
  local configs = {}
  for i = 1, n do
    local c = {}
    for _, k in ipairs(fields) do
      local v, x = spec[k], u()
      if v.min ~= nil then
        local lo, hi = v.min + 0.0, v.max + 0.0
        if v.log then
          c[k] = math.exp(math.log(lo) + x * (math.log(hi) - math.log(lo)))
        else
          c[k] = lo + x * (hi - lo)
        end
      else
        c[k] = v[math.min(#v, math.floor(x * #v) + 1)]
      end
    end
    configs[i] = c
  end
  return configs, fields
end

local function config_key(cfg, fields)
  local parts = {}
  for i, k in ipairs(fields) do parts[i] = cell(cfg[k]) end
  return table.concat(parts, "\31")
end

local function describe(cfg, fields)
  local parts = {}
  for i, k in ipairs(fields) do parts[i] = k .. "=" .. cell(cfg[k]) end
  return table.concat(parts, " ")
end

-- ---- summaries ---------------------------------------------------------------

-- two-sided 97.5 % quantiles of Student's t for df 1..30 (then the normal's),
-- as scripts/lib/report.lua uses for the README's tables
local T975 = { 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
  2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
  2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042 }

local function mean_std(v)
  local sum = 0.0
  for _, x in ipairs(v) do sum = sum + x end
  local mean, ss = sum / #v, 0.0
  for _, x in ipairs(v) do ss = ss + (x - mean) ^ 2 end
  return mean, #v > 1 and math.sqrt(ss / (#v - 1)) or 0.0
end

-- Group rows by `fields` (first-appearance order); mean and sample std
-- (n - 1; 0 when n = 1) of every numeric field of the ok rows. Each summary
-- entry keeps its ok rows in groups_of[entry] (for paired differences).
local groups_of = setmetatable({}, { __mode = "k" })

local function summarize(rows, fields)
  local is_field = {}
  for _, f in ipairs(fields) do is_field[f] = true end
  local groups, order, mset = {}, {}, {}
  for _, row in ipairs(rows) do
    local key = config_key(row, fields)
    local g = groups[key]
    if not g then
      g = { row = row, ok = {}, errors = 0 }
      groups[key] = g
      order[#order + 1] = g
    end
    if row.status == "error" then
      g.errors = g.errors + 1
    else
      g.ok[#g.ok + 1] = row
      for k, v in pairs(row) do
        if type(v) == "number" and not is_field[k] and k ~= "seed" and type(k) == "string" then
          mset[k] = true
        end
      end
    end
  end
  -- a metric is numeric in every ok row that has it
  for _, g in ipairs(order) do
    for _, row in ipairs(g.ok) do
      for k in pairs(mset) do
        if row[k] ~= nil and type(row[k]) ~= "number" then mset[k] = nil end
      end
    end
  end
  local metrics = {}
  for k in pairs(mset) do if k ~= "wall" then metrics[#metrics + 1] = k end end
  table.sort(metrics)
  if mset.wall then metrics[#metrics + 1] = "wall" end
  local summary = {}
  for _, g in ipairs(order) do
    local s = {}
    for _, f in ipairs(fields) do s[f] = g.row[f] end
    s.n, s.errors = #g.ok, g.errors
    for _, m in ipairs(metrics) do
      local v = {}
      for _, row in ipairs(g.ok) do
        if type(row[m]) == "number" then v[#v + 1] = row[m] end
      end
      if #v > 0 then s[m .. "_mean"], s[m .. "_std"] = mean_std(v) end
    end
    summary[#summary + 1] = s
    groups_of[s] = g.ok
  end
  return summary, metrics
end

local function describe_value(v)
  return type(v) == "string" and string.format("%q", v) or cell(v)
end

-- The summary entry that `baseline` names: a {field=value} table, or a value
-- of the single grouping field.
local function find_baseline(summary, fields, baseline, fn)
  local want = baseline
  if type(baseline) ~= "table" then
    if #fields ~= 1 then
      fail(string.format("%s: baseline=%s is a value, but the groups have %d fields (%s); give " ..
        "baseline={field=value, ...}", fn, describe_value(baseline), #fields,
        #fields > 0 and table.concat(fields, ", ") or "none"))
    end
    want = { [fields[1]] = baseline }
  end
  local is_field = {}
  for _, f in ipairs(fields) do is_field[f] = true end
  for k in pairs(want) do
    if not is_field[k] then
      fail(string.format("%s: baseline names field '%s', which is not a grouping field (%s)", fn,
        tostring(k), #fields > 0 and table.concat(fields, ", ") or "none"))
    end
  end
  for _, s in ipairs(summary) do
    local ok = true
    for k, v in pairs(want) do if s[k] ~= v then ok = false end end
    if ok then return s end
  end
  local have = {}
  for i, s in ipairs(summary) do
    if i > 8 then have[#have + 1] = "..."; break end
    local parts = {}
    for _, f in ipairs(fields) do parts[#parts + 1] = f .. "=" .. describe_value(s[f]) end
    have[#have + 1] = table.concat(parts, " ")
  end
  local parts = {}
  for _, f in ipairs(fields) do
    if want[f] ~= nil then parts[#parts + 1] = f .. "=" .. describe_value(want[f]) end
  end
  fail(string.format("%s: no group matches baseline %s (groups: %s)", fn, table.concat(parts, " "),
    table.concat(have, "; ")))
end

-- Paired differences against the baseline entry: for every other entry and
-- metric, the mean of (run - baseline run) over the seeds both have, and the
-- half-width of its 95 % t-interval (nan with fewer than 2 pairs). Stored as
-- s[m .. "_delta"], s[m .. "_delta_ci"], s[m .. "_pairs"].
local function paired_deltas(summary, metrics, base, fn)
  local brows = groups_of[base] or {}
  local by_seed = {}
  for i, r in ipairs(brows) do
    if r.seed == nil then
      fail(string.format("%s: baseline= pairs runs by their seed; baseline row %d has no seed field", fn, i))
    end
    by_seed[r.seed] = r
  end
  for _, s in ipairs(summary) do
    s.baseline = (s == base) or nil
    if s ~= base then
      for _, m in ipairs(metrics) do
        local d = {}
        for i, r in ipairs(groups_of[s] or {}) do
          if r.seed == nil then
            fail(string.format("%s: baseline= pairs runs by their seed; a row (%d of its group) has no seed field", fn, i))
          end
          local b = by_seed[r.seed]
          if b and type(r[m]) == "number" and type(b[m]) == "number" then d[#d + 1] = r[m] - b[m] end
        end
        if #d > 0 then
          local mean, sd = mean_std(d)
          s[m .. "_delta"] = mean
          s[m .. "_delta_ci"] = #d > 1 and (T975[#d - 1] or 1.960) * sd / math.sqrt(#d) or 0 / 0
          s[m .. "_pairs"] = #d
        end
      end
    end
  end
end

-- Decimals for one column: four significant digits of its largest value,
-- so every cell of the column (mean, std, difference) has the same format.
local function column_decimals(values)
  local big = 0
  for _, v in ipairs(values) do
    if type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge then
      big = math.max(big, math.abs(v))
    end
  end
  if big == 0 then return 4 end
  return math.max(0, math.min(12, 3 - math.floor(math.log(big, 10))))
end

local function fixed(v, d, sign)
  if type(v) ~= "number" then return cell(v) end
  if v ~= v or v == math.huge or v == -math.huge then return fmt_num(v) end
  local s = string.format("%" .. (sign and "+" or "") .. "." .. d .. "f", v)
  if s:match("^[-+]0%.?0*$") then s = string.format("%." .. d .. "f", 0.0) end -- no -0.000
  if sign and not s:match("^[-+]") then s = "+" .. s end
  return s
end

local function markdown(summary, fields, metrics)
  local errors = false
  for _, s in ipairs(summary) do if (s.errors or 0) > 0 then errors = true end end
  local with_delta = summary.base ~= nil
  local head = {}
  for _, f in ipairs(fields) do head[#head + 1] = f end
  local dec = {}
  for _, m in ipairs(metrics) do
    head[#head + 1] = m
    local vals = {}
    for _, s in ipairs(summary) do vals[#vals + 1] = s[m .. "_mean"] end
    dec[m] = column_decimals(vals)
    if with_delta and m ~= "wall" then head[#head + 1] = "Δ " .. m end
  end
  head[#head + 1] = "n"
  if errors then head[#head + 1] = "errors" end
  local body = {}
  for _, s in ipairs(summary) do
    local r = {}
    for _, f in ipairs(fields) do r[#r + 1] = cell(s[f]) end
    for _, m in ipairs(metrics) do
      local mean, sd, d = s[m .. "_mean"], s[m .. "_std"], dec[m]
      if mean == nil then
        r[#r + 1] = "-"
      elseif s.n > 1 then
        r[#r + 1] = fixed(mean, d) .. " ± " .. fixed(sd, d)
      else
        r[#r + 1] = fixed(mean, d)
      end
      if with_delta and m ~= "wall" then
        local dm, ci = s[m .. "_delta"], s[m .. "_delta_ci"]
        if s == summary.base then
          r[#r + 1] = "baseline"
        elseif dm == nil then
          r[#r + 1] = "-"
        elseif ci ~= ci then
          r[#r + 1] = fixed(dm, d, true)
        else
          local mark = (dm - ci > 0 and " ▲") or (dm + ci < 0 and " ▼") or ""
          r[#r + 1] = fixed(dm, d, true) .. " ± " .. fixed(ci, d) .. mark
        end
      end
    end
    r[#r + 1] = tostring(s.n)
    if errors then r[#r + 1] = tostring(s.errors) end
    body[#body + 1] = r
  end
  -- widths in characters (± is two bytes in UTF-8)
  local function len(s) return utf8.len(s) or #s end
  local w = {}
  for i, h in ipairs(head) do w[i] = math.max(3, len(h)) end
  for _, r in ipairs(body) do
    for i, c in ipairs(r) do w[i] = math.max(w[i], len(c)) end
  end
  local function line(cells)
    local out = {}
    for i, c in ipairs(cells) do out[i] = c .. string.rep(" ", w[i] - len(c)) end
    return "| " .. table.concat(out, " | ") .. " |"
  end
  local lines = { line(head) }
  local dash = {}
  for i = 1, #head do dash[i] = string.rep("-", w[i]) end
  lines[2] = "|-" .. table.concat(dash, "-|-") .. "-|"
  for _, r in ipairs(body) do lines[#lines + 1] = line(r) end
  if with_delta then
    lines[#lines + 1] = "Δ: paired difference to the baseline over common seeds, ± the 95 % " ..
      "t-interval's half-width (▲/▼: the interval excludes 0)"
  end
  return table.concat(lines, "\n")
end

local Results = { __name = "tl.sweep.results" }
Results.__index = Results
Results.__tostring = function(r) return markdown(r.summary, r.fields, r.metrics) end

local Summary = { __name = "tl.sweep.summary" }
Summary.__tostring = function(s) return markdown(s, s.fields or {}, s.metrics or {}) end

-- ---- tl.sweep ------------------------------------------------------------------

function tl.sweep(o)
  if type(o) ~= "table" then
    error("tl.sweep: argument must be a table of options {grid= or random=, run=, ...}, got " .. type(o), 0)
  end
  check_fields(o, SWEEP_FIELDS, "tl.sweep")
  if type(o.run) ~= "function" then
    fail("tl.sweep: field 'run' must be a function, got " .. type(o.run))
  end
  if o.grid ~= nil and o.random ~= nil then
    fail("tl.sweep: give either 'grid' or 'random', not both")
  end
  if o.grid == nil and o.random == nil then
    fail("tl.sweep: one of the fields 'grid' (field -> list of values) or 'random' ({field=..., n=}) is required")
  end
  local what = o.grid ~= nil and "grid" or "random"
  if type(o[what]) ~= "table" then
    fail(string.format("tl.sweep: field '%s' must be a table, got %s", what, type(o[what])))
  end
  local repeats = opt_int(o, "repeats", 1, 1, 1000000)
  local seed = opt_int(o, "seed", 0, math.mininteger // 2, math.maxinteger // 2)
  local jobs = opt_int(o, "jobs", 1, 1, 1024)
  if o.out ~= nil and (type(o.out) ~= "string" or o.out == "") then
    fail("tl.sweep: field 'out' must be a file name (string), got " .. type(o.out))
  end
  if o.verbose ~= nil and type(o.verbose) ~= "boolean" then
    fail("tl.sweep: field 'verbose' must be a boolean, got " .. type(o.verbose))
  end
  -- under mpirun (more than one rank): rank 0 schedules and writes, the others run
  -- (private.sweep_exec_mpi, repl/l_mpi.c)
  local mpi = private.sweep_exec_mpi and tl.mpi.size > 1
  local verbose = o.verbose ~= false and (not mpi or tl.mpi.rank == 0)
  if not private.sweep_exec then error("tl.sweep: not available in this build (repl/l_sweep.c)", 0) end

  local configs, fields
  if o.grid ~= nil then
    configs, fields = expand_grid(o.grid)
  else
    configs, fields = expand_random(o.random, seed)
  end
  local is_field = {}
  for _, f in ipairs(fields) do is_field[f] = true end
  local run = o.run
  if o.baseline ~= nil then find_baseline(configs, fields, o.baseline, "tl.sweep") end -- before any run

  -- every (configuration, seed) pair, in order
  local all, by_key = {}, {}
  for ci, cfg in ipairs(configs) do
    local ck = config_key(cfg, fields)
    for r = 1, repeats do
      local j = { index = #all + 1, config = ci, cfg = cfg, seed = seed + r, ckey = ck }
      j.key = ck .. "\31" .. fmt_num(j.seed)
      all[#all + 1] = j
      if not by_key[j.key] then by_key[j.key] = j end
    end
  end
  local total = #all
  local rows = {} -- by job index

  -- the CSV: resume from the rows already finished with status ok by the
  -- same run function (run_hash)
  local hash = run_hash(run)
  local path, writer, stale = nil, nil, 0
  if o.out then
    path = o.out:match("%.csv$") and o.out or (o.out .. ".csv")
    local dir = path:match("^(.*)/[^/]*$")
    if dir and dir ~= "" then
      local ok, err = private.mkdirs(dir)
      if not ok then error("tl.sweep: " .. err, 0) end
    end
    local rcols, kept = {}, {}
    if mpi and tl.mpi.rank ~= 0 then tl.mpi.barrier() end -- rank 0 has rewritten the file
    local text = read_file(path)
    if text and text ~= "" then
      local recs = parse_csv(text)
      local header = recs[1] or {}
      -- files written before the run_hash column end with "message"
      local last = header[#header] == "run_hash" and #header - 1 or #header
      local nf, good = #fields, last >= #fields + 4
      for i, f in ipairs(fields) do if header[i] ~= f then good = false end end
      good = good and header[nf + 1] == "seed" and header[nf + 2] == "status" and
        header[last - 1] == "wall" and header[last] == "message"
      if not good then
        error(string.format("tl.sweep: %s was written by a different sweep (columns %s; this sweep's " ..
          "fields are %s); use another out= or remove the file", path, table.concat(header, ","),
          #fields > 0 and table.concat(fields, ",") or "(none)"), 0)
      end
      for i = nf + 3, last - 2 do rcols[#rcols + 1] = header[i] end
      for ri = 2, #recs do
        local rec = recs[ri]
        if #rec == #header and rec[nf + 2] == "ok" then
          local cells = {}
          for i, h in ipairs(header) do if rec[i] ~= "" then cells[h] = rec[i] end end
          local parts = {}
          for i = 1, nf do parts[i] = rec[i] end
          parts[nf + 1] = rec[nf + 1]
          local j = by_key[table.concat(parts, "\31")]
          -- a row without a hash (an older file) is taken as this run's
          local other_run = cells.run_hash ~= nil and cells.run_hash ~= hash
          if j and other_run then
            stale = stale + 1
            kept[#kept + 1] = cells -- kept in the file, run again
          elseif j and not rows[j.index] then
            local row = {}
            for k, v in pairs(j.cfg) do row[k] = v end
            row.seed, row.status = j.seed, "ok"
            for i = nf + 3, last do
              if rec[i] ~= "" then row[header[i]] = typed(rec[i]) end
            end
            row.message = nil
            rows[j.index] = row
            kept[#kept + 1] = cells
          elseif not j then
            kept[#kept + 1] = cells -- a run of another grid: kept in the file
          end
        end
      end
    end
    if not mpi or tl.mpi.rank == 0 then
      writer = new_writer(path, fields, rcols, kept)
      writer.is_field = is_field
    end
    if mpi and tl.mpi.rank == 0 then tl.mpi.barrier() end
  end

  local todo = {}
  for _, j in ipairs(all) do if not rows[j.index] then todo[#todo + 1] = j end end
  local resumed = total - #todo
  if verbose and stale > 0 then
    print(string.format("tl.sweep: %d row%s in %s came from a different run function (its source " ..
      "changed); running %s again (the old rows stay in the file)", stale, stale == 1 and "" or "s",
      path, stale == 1 and "it" or "them"))
  end
  if verbose and resumed > 0 then
    print(string.format("tl.sweep: %d of %d runs already in %s; running %d", resumed, total, path, #todo))
  end

  -- one run (in a worker process when jobs > 1): returns the encoded line
  local function job(i)
    local j = todo[i]
    local cfg = {}
    for k, v in pairs(j.cfg) do cfg[k] = v end
    -- os.exit inside a run would end the sweep (with jobs=1, the whole
    -- program with status 0): the row fails instead.
    local exit = os.exit
    os.exit = function(code)
      error(string.format("tl.sweep: run called os.exit(%s); a run must return its results",
        code == nil and "" or tostring(code)), 2)
    end
    local ok, res = pcall(run, cfg, j.seed)
    os.exit = exit
    if not ok then return "error\t" .. esc(tostring(res)) end
    if type(res) ~= "table" then
      return "error\t" .. esc("tl.sweep: run must return a table of results, got " .. type(res))
    end
    local keys = {}
    for k, v in pairs(res) do
      if type(k) ~= "string" then
        return "error\t" .. esc("tl.sweep: run returned a result key of type " .. type(k) .. " (expected field names)")
      end
      if not is_scalar(v) then
        return "error\t" .. esc(string.format("tl.sweep: run result field '%s' must be a number, string or boolean, got %s", k, type(v)))
      end
      if is_field[k] then
        if v ~= j.cfg[k] then
          return "error\t" .. esc(string.format("tl.sweep: run result field '%s' clashes with the configuration field of that name", k))
        end
      elseif RESERVED[k] then
        return "error\t" .. esc(string.format("tl.sweep: run result field '%s' clashes with a column of the results (" .. RESERVED_LIST .. ")", k))
      else
        keys[#keys + 1] = k
      end
    end
    table.sort(keys)
    return encode_ok(res, keys)
  end

  local finished = 0
  local function done(i, line, err, wall)
    local j = todo[i]
    local row = {}
    for k, v in pairs(j.cfg) do row[k] = v end
    row.seed = j.seed
    local res, msg
    if line then res, msg = decode(line) else msg = err end
    if res then
      row.status = "ok"
      for k, v in pairs(res) do row[k] = v end
    else
      row.status = "error"
      row.message = msg or "unknown error"
    end
    row.wall = wall
    rows[j.index] = row
    finished = finished + 1
    if writer then
      local cells = {}
      for k, v in pairs(row) do
        if k ~= "wall" then cells[k] = cell(v) end
      end
      cells.wall = string.format("%.3f", wall)
      cells.run_hash = hash
      writer:add(cells)
    end
    if verbose then
      local s = row.status
      if s == "error" then s = "error: " .. (row.message:match("^[^\n]*") or "") end
      print(string.format("[%d/%d] %s%sseed=%s %s (%.2f s)", resumed + finished, total,
        describe(j.cfg, fields), #fields > 0 and " " or "", fmt_num(j.seed), s, wall))
    end
  end

  local status = "done"
  if #todo > 0 then
    local ok, r = pcall(mpi and private.sweep_exec_mpi or private.sweep_exec, #todo, jobs, job, done)
    if writer then writer:close() end
    if not ok then error(r, 0) end
    status = r
  elseif writer then
    writer:close()
  end
  if mpi then -- every rank returns rank 0's rows
    local b = tl.mpi.broadcast({ rows = rows, status = status })
    rows, status = b.rows, b.status
  end
  if status == "interrupted" then
    error(string.format("tl.sweep: interrupted after %d of %d runs (%s)", resumed + finished, total,
      path and ("rows kept in " .. path) or "no out= file: rows not kept"), 0)
  end

  -- results: rows in (configuration, seed) order
  local list = {}
  for _, j in ipairs(all) do if rows[j.index] then list[#list + 1] = rows[j.index] end end
  local summary, metrics = summarize(list, fields)
  -- error rows get nan for the numeric metrics (tl.plot.compare skips them)
  for _, row in ipairs(list) do
    if row.status == "error" then
      for _, m in ipairs(metrics) do if row[m] == nil then row[m] = 0 / 0 end end
    end
  end
  rows_fields[list] = fields
  summary.fields, summary.metrics = fields, metrics
  if o.baseline ~= nil then
    summary.base = find_baseline(summary, fields, o.baseline, "tl.sweep")
    paired_deltas(summary, metrics, summary.base, "tl.sweep")
  end
  setmetatable(summary, Summary)
  local results = setmetatable({ rows = list, summary = summary, csv = path, fields = fields,
    metrics = metrics }, Results)
  if verbose then
    print(tostring(results))
    if path then print("rows in " .. path) end
  end
  return results
end

-- ---- tl.compare ----------------------------------------------------------------

function tl.compare(x, opts)
  if opts ~= nil and type(opts) ~= "table" then
    error("tl.compare: argument 2 must be a table of options {by=, print=}, got " .. type(opts), 0)
  end
  opts = opts or {}
  check_fields(opts, COMPARE_FIELDS, "tl.compare")
  local rows, fields
  if getmetatable(x) == Results then
    rows, fields = x.rows, x.fields
  elseif type(x) == "table" then
    rows, fields = x, rows_fields[x]
  else
    error("tl.compare: argument 1 must be sweep results or a list of result rows, got " .. type(x), 0)
  end
  for i, r in ipairs(rows) do
    if type(r) ~= "table" then
      error(string.format("tl.compare: row %d must be a table, got %s", i, type(r)), 0)
    end
  end
  if opts.by ~= nil then
    if type(opts.by) == "string" then
      fields = { opts.by }
    elseif type(opts.by) == "table" then
      fields = {}
      for i, f in ipairs(opts.by) do
        if type(f) ~= "string" then error("tl.compare: field 'by' must list field names, item " .. i .. " is " .. type(f), 0) end
        fields[i] = f
      end
    else
      error("tl.compare: field 'by' must be a field name or a list of them, got " .. type(opts.by), 0)
    end
  elseif not fields then
    -- group by the non-numeric fields (other than status and message)
    local set = {}
    for _, r in ipairs(rows) do
      for k, v in pairs(r) do
        if type(k) == "string" and type(v) ~= "number" and k ~= "status" and k ~= "message" then set[k] = true end
      end
    end
    fields = sorted_keys(set)
  end
  local summary, metrics = summarize(rows, fields)
  if opts.metrics ~= nil then
    local want = type(opts.metrics) == "string" and { opts.metrics } or opts.metrics
    if type(want) ~= "table" then
      error("tl.compare: field 'metrics' must be a metric name or a list of them, got " .. type(opts.metrics), 0)
    end
    local have = {}
    for _, m in ipairs(metrics) do have[m] = true end
    for i, m in ipairs(want) do
      if not have[m] then
        error(string.format("tl.compare: field 'metrics' item %d names '%s', which is not a numeric " ..
          "result (metrics: %s)", i, tostring(m), table.concat(metrics, ", ")), 0)
      end
    end
    metrics = want
  end
  summary.fields, summary.metrics = fields, metrics
  if opts.baseline ~= nil then
    summary.base = find_baseline(summary, fields, opts.baseline, "tl.compare")
    paired_deltas(summary, metrics, summary.base, "tl.compare")
  end
  setmetatable(summary, Summary)
  if opts.print == false then return summary end
  print(tostring(summary))
end

-- ---- help ------------------------------------------------------------------------

tl.doc("tl.sweep", [[
tl.sweep{grid= | random=, run=function(cfg, seed) ... return {metric=...} end,
         repeats=1, seed=0, jobs=1, out="runs/name", baseline=, verbose=true} -> results
Run an experiment over configurations and summarise it.
  grid={lr={1e-3,1e-2}, backbone={"mmoe","ple"}}: the cartesian product, field
    names sorted, the first field varying slowest, values in list order.
  random={lr={min=1e-4, max=1e-1, log=true}, layers={1,2,3}, n=8}: n configurations
    drawn from `seed` (lists: uniform pick; {min=,max=[,log=true]}: uniform or
    log-uniform number). 'n' is reserved there.
  Each configuration runs `repeats` times with seeds seed+1 .. seed+repeats;
  run(cfg, seed) returns a flat table of numbers, strings and booleans (a
  field named like a configuration field must hold the same value).
  jobs=k: up to k worker processes (fork; each with 1 engine thread); jobs=1
    runs in this process (debugging).
  A run that raises, calls os.exit or whose worker dies gives a row with
  status="error" and the message; the sweep goes on. Workers die with the
  sweeping process (kill -9 included).
  out="runs/x": one CSV row per finished run in runs/x.csv (directories are
    created), flushed as each run ends. Columns: configuration fields (sorted),
    seed, status, result keys (sorted; the union over all runs: the file is
    rewritten when a new key appears), wall (seconds), message, run_hash.
    Re-running with the same out resumes: (configuration, seed) pairs already
    there with status ok and the same run_hash are not run again (error rows
    are dropped and re-run; rows of other configurations are kept in the file).
    run_hash is a hash of the text of run's own lines: edit run (epochs 2 -> 5)
    and its old rows are run again (they stay in the file, with their hash);
    functions that run calls and upvalues are not covered. Rows of files
    written before the run_hash column count as this run's.
  Ctrl-C stops launching runs, stops the running workers, keeps the finished
  rows and raises "tl.sweep: interrupted after N of M runs (rows kept in ...)".
Returns {rows=, summary=, csv=, fields=, metrics=}; printing it (or the end of
the sweep, unless verbose=false) shows a Markdown table: per configuration the
mean ± sample std of every numeric result over its runs, and n; with
baseline= (as in tl.compare) also the paired difference to that configuration.
results.rows (one table per run, in configuration/seed order; error rows have
nan metrics) works with tl.plot.compare(results.rows, {x=, y=, group=}).]], tl.sweep)

tl.doc("tl.compare", [[
tl.compare(results_or_rows [, {by={fields}, baseline=, metrics={names}, print=true}])
Print the Markdown summary table: mean ± std and n of every numeric field per
group. Groups: the configuration fields of sweep results (or of their .rows);
for other lists of rows the non-numeric fields (or by=). Rows with
status="error" are counted, not averaged. With print=false the summary list
is returned instead of printed.
baseline={field=value, ...} (or a value when there is one grouping field)
adds a column "Δ metric" per metric: the mean paired difference to that
group over the seeds both have, ± the half-width of its 95 % Student t
interval (▲/▼ when the interval excludes 0); entries get <metric>_delta,
<metric>_delta_ci and <metric>_pairs. Every cell of a column has the same
number of decimals (four significant digits of the column's largest value).]], tl.compare)
