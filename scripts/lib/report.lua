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

-- mean of a - b over paired seeds and its 95 % confidence half-width (a and
-- b in the same seed order, as R.values gives them)
function R.paired(a, b)
  local d = {}
  for i = 1, math.min(#a, #b) do d[i] = a[i] - b[i] end
  local m, s = R.mean_std(d)
  if #d < 2 then return m, 0 / 0 end
  return m, (T975[#d - 1] or 1.960) * s / math.sqrt(#d)
end

-- the same over seed -> value maps (R.by_seed): only the seeds present in
-- both are paired, so a missing run never shifts the pairing
function R.paired_seeds(a, b)
  local keys = {}
  for seed in pairs(a) do if b[seed] ~= nil then keys[#keys + 1] = seed end end
  table.sort(keys)
  local av, bv = {}, {}
  for i, seed in ipairs(keys) do av[i], bv[i] = a[seed], b[seed] end
  return R.paired(av, bv)
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

-- seed -> rows[key] of the runs matching (field = value, ...)
function R.by_seed(rows, match, key)
  local v = {}
  for _, r in ipairs(rows) do
    local ok = true
    for k, want in pairs(match) do if r[k] ~= want then ok = false end end
    if ok and type(r[key]) == "number" then v[r.seed] = r[key] end
  end
  return v
end

local function list_of(map)
  local v = {}
  for _, x in pairs(map) do v[#v + 1] = x end
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

-- ---- the papers' protocol ----------------------------------------------------

-- The datasets the reproductions run on, by name; path overrides where the
-- shared ones are read from. Returns the dataset and its name for titles.
local DATASETS = {
  census = {"census-income (KDD)", function() return tl.datasets.census() end},
  movielens = {"ML-1M prefix (users 1-2999)", function(path) return tl.datasets.movielens(path and {path = path} or nil) end},
  amazon = {"Amazon Video Games (the DML authors' val+test files, re-split 8:1:1)",
            function(path) return tl.datasets.amazon_video_games(path and {path = path} or nil) end},
}

function R.dataset(name, path)
  local e = DATASETS[name]
  if not e then error("unknown --dataset '" .. tostring(name) .. "' (census, movielens, amazon)") end
  return e[2](path), e[1]
end

-- keep the entries {name, ...} of list named in a comma list (all when nil)
function R.select(list, names, flag)
  if not names then return list end
  local keep = {}
  for _, x in ipairs(list) do
    if ("," .. names .. ","):find("," .. x[1] .. ",", 1, true) then keep[#keep + 1] = x end
  end
  if #keep == 0 then
    local all = {}
    for i, x in ipairs(list) do all[i] = x[1] end
    error(flag .. " names none of " .. table.concat(all, ", "))
  end
  return keep
end

-- Train under the protocol: up to opt.epochs epochs, early stop after
-- opt.patience epochs without a better validation monitor (mean of AUC for
-- binary tasks and -MSE for regression), best weights restored (m:fit's
-- default). Returns the row fields epochs (run) and best_epoch, and the best
-- validation monitor.
function R.fit_protocol(m, d, opt)
  m:fit{data = d.train, valid = d.valid, epochs = opt.epochs, patience = opt.patience,
        max_steps = opt.max_steps, optim = opt.optim, monitor = opt.monitor, verbose = false}
  local ep = m:history().epochs
  local best, best_epoch = -math.huge, 0
  for _, e in ipairs(ep) do
    if e.monitor and e.monitor > best then best, best_epoch = e.monitor, e.epoch end
  end
  return {epochs = #ep, best_epoch = best_epoch}, best
end

function R.metric_of(t) return t.type == "binary" and "auc" or "mse" end

-- test metrics of every task into row: <task>_auc (binary) or <task>_mse
function R.test_metrics(m, d, row, extra)
  local r = m:evaluate(d.test)
  for _, t in ipairs(d.tasks) do
    row[t.name .. "_" .. R.metric_of(t)] = r[t.name][R.metric_of(t)]
    for _, k in ipairs(extra or {}) do
      if t.type == "binary" then row[t.name .. "_" .. k] = r[t.name][k] end
    end
  end
  return row
end

function R.ok_rows(rows)
  local ok = {}
  for _, r in ipairs(rows) do if r.status == "ok" then ok[#ok + 1] = r end end
  return ok
end

-- A Markdown table: one line per (group, variant), per task the test metric
-- (mean ± std) and its paired difference to variant "base" of the same
-- group, then the epoch of the best checkpoint and the wall time per run.
-- spec: title, rows, groups, group_field, variants, tasks, seeds, command,
-- metrics (optional list of {task, key, label, diff}).
function R.table_vs_base(spec)
  local lines = {}
  local function emit(s) print(s); lines[#lines + 1] = s end
  local cols = spec.metrics
  if not cols then
    cols = {}
    for _, t in ipairs(spec.tasks) do
      local k = R.metric_of(t)
      cols[#cols + 1] = {key = t.name .. "_" .. k, label = t.name .. " " .. k, diff = true}
    end
  end
  emit(spec.title)
  emit("")
  local head, rule = "| " .. spec.group_field .. " | variant |", "|---|---|"
  for _, c in ipairs(cols) do
    head = head .. " " .. c.label .. " |" .. (c.diff and (" Δ " .. c.label .. " |") or "")
    rule = rule .. "---|" .. (c.diff and "---|" or "")
  end
  emit(head .. " runs | best epoch | s / run |")
  emit(rule .. "---|---|---|")
  local total, n_rows = 0, 0
  for _, g in ipairs(spec.groups) do
    for _, var in ipairs(spec.variants) do
      local match = {[spec.group_field] = g, variant = var}
      local line = string.format("| %s | %s |", g, var)
      for _, c in ipairs(cols) do
        local v = R.by_seed(spec.rows, match, c.key)
        local m, sd = R.mean_std(list_of(v))
        line = line .. " " .. (next(v) and R.fmt(m, sd) or "not run") .. " |"
        if c.diff then
          local base = R.by_seed(spec.rows, {[spec.group_field] = g, variant = "base"}, c.key)
          local dm, dh = R.paired_seeds(v, base)
          line = line .. " " .. ((var == "base" or not next(v)) and "" or R.fmt_diff(dm, dh)) .. " |"
        end
      end
      local n = 0
      for _ in pairs(R.by_seed(spec.rows, match, "wall")) do n = n + 1 end
      local be = R.mean_std(list_of(R.by_seed(spec.rows, match, "best_epoch")))
      local wall = R.mean_std(list_of(R.by_seed(spec.rows, match, "wall")))
      for _, w in pairs(R.by_seed(spec.rows, match, "wall")) do total = total + w end
      n_rows = n_rows + n
      line = line .. string.format(" %d | %s | %s |", n, n > 0 and string.format("%.1f", be) or "",
                                   n > 0 and string.format("%.0f", wall) or "")
      emit(line)
    end
  end
  emit("")
  emit(string.format("%d of %d runs finished; %.0f s of run time (wall, summed over runs); command: %s",
                     n_rows, #spec.groups * #spec.variants * spec.seeds, total, spec.command))
  return lines
end

return R
