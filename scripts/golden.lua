-- golden.lua — golden predictions: the exact test-set predictions of a fixed
-- set of short runs, so that a refactoring can show it kept every bit.
--
--   towerlab scripts/golden.lua record OUT [PLATFORM]  write the golden text to OUT
--   towerlab scripts/golden.lua check FILE             compare this build with FILE
--   towerlab scripts/golden.lua compare A B            compare two golden files
--   towerlab scripts/golden.lua list                   the runs' names
-- (scripts/golden.sh wraps these: platform key, gzip, building another commit.)
--
-- Every run is trained on the shipped census data (tl.datasets.census(), train
-- split, a few dozen steps, seed 1, one thread) and predicts the whole test split
-- (9,976 rows x 2 tasks). The file holds, per run, one line per test row with the
-- IEEE-754 bits of each task's float32 prediction (8 hex digits), and a 64-bit
-- FNV-1a checksum of those bits. The bits depend on the CPU (OpenBLAS picks its
-- kernels per CPU model), the compiler and its flags, and the thread count: the
-- engine is bit-identical run to run at a fixed thread count, not across counts.
-- So a golden file is keyed by a platform string (scripts/golden.sh platform) and
-- always recorded and checked at one thread.
--
-- Loaded as a library (loadfile("scripts/golden.lua")("--lib")) it returns the
-- functions below, for tests/lua/test_golden.lua.
local mode = ...

local G = {}
G.THREADS = 1
G.FORMAT = "towerlab golden predictions v1"

-- The fixed set of runs. Each builds its model from the census dataset d and
-- returns (model, predictions of d.test); names are stable keys of the file.
local function adam() return tl.optim.adam{lr = 2e-3} end

local function fit(m, d, steps, extra)
  local o = {data = d.train, epochs = 1, max_steps = steps, optim = adam(), verbose = false}
  for k, v in pairs(extra or {}) do o[k] = v end
  m:fit(o)
  return m
end

local function model(d, o)
  o.data = d
  o.emb = o.emb or 4
  o.batch = o.batch or 256
  o.seed = o.seed or 1
  o.tower = o.tower or tl.mlp{8}
  return tl.model(o)
end

local STEPS = 100

local function plain(backbone, opts)
  return function(d)
    local o = {backbone = backbone()}
    for k, v in pairs(opts or {}) do o[k] = v end
    return fit(model(d, o), d, STEPS)
  end
end

local function mmoe() return tl.mmoe{experts = 3, expert = {16}} end

-- A resume run: new(d) builds the model; trained straight through, and in two
-- halves with m:save / tl.load between them; both must predict the same bits.
-- how.valid: fit with d.valid; how.epochs: halves of whole epochs (1 + 2)
-- instead of max_steps (STEPS + STEPS).
local function resume(new, how)
  how = how or {}
  return function(d)
    local function go(m, part)
      local o = {data = d.train, optim = adam(), verbose = false, valid = how.valid and d.valid or nil}
      if how.epochs then o.epochs = part
      else o.epochs, o.max_steps = 1, part end
      m:fit(o)
      return m
    end
    local straight = go(new(d), how.epochs and 3 or 2 * STEPS)
    local half = go(new(d), how.epochs and 1 or STEPS)
    local path = os.tmpname()
    half:save(path)
    local resumed = tl.load(path)
    os.remove(path)
    go(resumed, how.epochs and 2 or STEPS)
    local a, b = straight:predict(d.test), resumed:predict(d.test)
    local w = G.first_difference({a}, {b})
    if w then error("fit, save, load, fit differs from fitting straight through: " .. w) end
    return resumed, b
  end
end

G.RUNS = {
  {"shared_bottom", plain(function() return tl.shared_bottom{bottom = {16, 8}} end)},
  {"omoe", plain(function() return tl.omoe{experts = 3, expert = {16}} end)},
  {"mmoe", plain(mmoe)},
  {"ple", plain(function() return tl.ple{levels = 2, shared = 2, specific = 1, expert = {16}} end)},
  {"esmm", plain(function() return tl.esmm{} end)},
  {"aitm", plain(function() return tl.aitm{} end)},
  {"weighting_fixed", plain(mmoe, {weighting = "fixed", weights = {income = 2, never_married = 0.5}})},
  {"weighting_uncertainty", plain(mmoe, {weighting = "uncertainty"})},
  {"weighting_gradnorm", plain(mmoe, {weighting = "gradnorm", alpha = 1.5})},
  {"weighting_dwa", function(d)
    -- DWA changes its weights at epoch ends: two whole epochs of 20 batches
    local m = model(d, {backbone = mmoe(), weighting = "dwa", temperature = 2, batch = 4096})
    m:fit{data = d.train, epochs = 2, optim = adam(), verbose = false}
    return m
  end},
  {"weighting_pcgrad", plain(mmoe, {weighting = "pcgrad"})},
  {"dml", plain(mmoe, {mutual = tl.dml{}})},
  {"dml_nostop_ple", plain(function() return tl.ple{levels = 1, shared = 1, specific = 1, expert = {16}} end,
                           {mutual = tl.dml{stop_grad = false, gkd_layers = 2}})},
  {"crossdistil_platt_blend", function(d)
    local m = model(d, {backbone = tl.shared_bottom{bottom = {16}},
                        distill = tl.crossdistil{pairs = {{"income", "never_married"}}, aux = 1, kd = 0.5,
                                                 calibrate = "platt", correct = "blend", warmup = 10}})
    return fit(m, d, STEPS, {valid = d.valid})
  end},
  {"crossdistil_isotonic_clip", function(d)
    local m = model(d, {backbone = mmoe(),
                        distill = tl.crossdistil{pairs = {{"income", "never_married"}}, aux = 1, kd = 0.5,
                                                 calibrate = "isotonic", calib_data = "valid", calib_every = 10,
                                                 correct = "clip", warmup = 5}})
    return fit(m, d, STEPS, {valid = d.valid})
  end},
  {"calibrated_isotonic", function(d)
    local m = fit(model(d, {backbone = mmoe()}), d, STEPS)
    local cp = tl.calibrate(m, d.valid, "isotonic")
    return m, cp:predict(d.test)
  end},
  {"calibrated_platt_temperature", function(d)
    local m = fit(model(d, {backbone = tl.shared_bottom{bottom = {16}}}), d, STEPS)
    local p = tl.calibrate(m, d.valid, "platt"):predict(d.test)
    local t = tl.calibrate(m, d.valid, "temperature"):predict(d.test)
    return m, {income = p.income, never_married = p.never_married,
               ["temperature:income"] = t.income, ["temperature:never_married"] = t.never_married}
  end},
  {"crossdistil_naive", function(d)
    local m = model(d, {backbone = tl.shared_bottom{bottom = {16}},
                        distill = tl.crossdistil{pairs = {{"income", "never_married"}}, naive = true, kd = 0.3}})
    return fit(m, d, STEPS)
  end},
  {"dropout", plain(function() return tl.shared_bottom{bottom = {16, 8}, dropout = 0.2} end,
                    {tower = tl.mlp{8, dropout = 0.3}})},
  {"optim_sgd_nesterov", function(d)
    return fit(model(d, {backbone = mmoe()}), d, STEPS, {optim = tl.optim.sgd{lr = 0.05, momentum = 0.9, nesterov = true}})
  end},
  {"optim_adamw_clip", function(d)
    return fit(model(d, {backbone = mmoe()}), d, STEPS, {optim = tl.optim.adamw{lr = 2e-3, weight_decay = 0.01, clip = 1}})
  end},
  {"optim_adagrad", function(d)
    return fit(model(d, {backbone = mmoe()}), d, STEPS, {optim = tl.optim.adagrad{lr = 0.05}})
  end},
  -- validation, early stopping with restore of the best epoch, mid-epoch evaluations
  -- and gradient diagnostics (which must not change training)
  {"valid_patience_diagnostics", function(d)
    local m = model(d, {backbone = mmoe(), batch = 4096})
    m:fit{data = d.train, valid = d.valid, epochs = 3, patience = 1, eval_every = 7, diagnostics = 5,
          optim = adam(), verbose = false}
    return m
  end},
  -- two regression tasks (MSE losses and metrics): the MMoE paper's synthetic data
  {"synthetic_regression", function()
    local s = tl.datasets.synthetic{n = 3000, dim = 16, corr = 0.5, m = 4, seed = 3}
    local m = tl.model{data = s, backbone = tl.mmoe{experts = 3, expert = {16}}, tower = tl.mlp{8},
                       batch = 128, seed = 1}
    m:fit{data = s.train, epochs = 2, optim = adam(), verbose = false}
    return m, m:predict(s.test)
  end},
  -- fit, save, load, fit more: must equal fitting straight through (checked
  -- here, every time, not only against the golden file). Mid-epoch cuts, and
  -- an epoch-boundary cut for DWA's epoch-end weights.
  {"resume", resume(function(d) return model(d, {backbone = mmoe(), weighting = "uncertainty"}) end)},
  {"resume_gradnorm_ple", resume(function(d)
    return model(d, {backbone = tl.ple{levels = 2, shared = 1, specific = 1, expert = {8}}, weighting = "gradnorm"})
  end)},
  {"resume_dml", resume(function(d) return model(d, {backbone = mmoe(), mutual = tl.dml{}}) end)},
  {"resume_crossdistil_isotonic", resume(function(d)
    return model(d, {backbone = tl.shared_bottom{bottom = {16}},
                     distill = tl.crossdistil{pairs = {{"income", "never_married"}}, calibrate = "isotonic",
                                              calib_data = "valid", calib_every = 15, correct = "blend", warmup = 5}})
  end, {valid = true})},
  {"resume_dwa_epoch_boundary", resume(function(d)
    return model(d, {backbone = mmoe(), weighting = "dwa", batch = 4096})
  end, {epochs = true})},
}

-- One run: its predictions {task = {p1, ...}} and the task names in model order.
function G.run(entry, d)
  local m, p = entry[2](d)
  if type(p) ~= "table" then p = m:predict(d.test) end
  local tasks = {}
  for name in pairs(p) do tasks[#tasks + 1] = name end
  table.sort(tasks)
  return p, tasks
end

local function bits(x)
  local s = string.pack("<f", x)
  if string.unpack("<f", s) ~= x and x == x then
    error(string.format("prediction %a is not a float32", x))
  end
  return string.unpack("<I4", s)
end

-- FNV-1a 64 over the little-endian bits, row-major (row, then task in order).
local FNV_OFFSET, FNV_PRIME = -3750763034362895579, 1099511628211
local function fnv(h, u)
  for _ = 1, 4 do
    h = (h ~ (u & 0xff)) * FNV_PRIME
    u = u >> 8
  end
  return h
end

-- The section text of one run: a header, one line per row, the checksum.
function G.section(name, p, tasks)
  local n = #p[tasks[1]]
  local out, h = {}, FNV_OFFSET
  out[1] = string.format("run %s rows %d tasks %s", name, n, table.concat(tasks, ","))
  for i = 1, n do
    local row = {}
    for k, t in ipairs(tasks) do
      local u = bits(p[t][i])
      h = fnv(h, u)
      row[k] = string.format("%08x", u)
    end
    out[#out + 1] = table.concat(row, " ")
  end
  out[#out + 1] = string.format("checksum %s %016x", name, h)
  return table.concat(out, "\n") .. "\n", h
end

-- Parse golden text into {platform=, threads=, order={names}, runs={name = {tasks=, rows={lines}, checksum=}}}.
function G.parse(text, where)
  where = where or "golden"
  local g = {order = {}, runs = {}}
  local cur, ln = nil, 0
  for line in text:gmatch("([^\n]*)\n") do
    ln = ln + 1
    if ln == 1 then
      if line ~= "# " .. G.FORMAT then error(where .. ":1: not a golden file (expected '# " .. G.FORMAT .. "')") end
    elseif cur then
      local nm, ck = line:match("^checksum (%S+) (%x+)$")
      if nm then
        if nm ~= cur.name then error(string.format("%s:%d: checksum of %s inside run %s", where, ln, nm, cur.name)) end
        cur.checksum = ck
        if #cur.rows ~= cur.n then
          error(string.format("%s:%d: run %s has %d rows, its header says %d", where, ln, nm, #cur.rows, cur.n))
        end
        cur = nil
      else
        cur.rows[#cur.rows + 1] = line
      end
    else
      local k, v = line:match("^(%w+) (.*)$")
      if k == "platform" then g.platform = v
      elseif k == "threads" then g.threads = tonumber(v)
      elseif k == "run" then
        local nm, n, ts = v:match("^(%S+) rows (%d+) tasks (%S+)$")
        if not nm then error(string.format("%s:%d: bad run header '%s'", where, ln, line)) end
        local tasks = {}
        for t in ts:gmatch("[^,]+") do tasks[#tasks + 1] = t end
        cur = {name = nm, n = tonumber(n), tasks = tasks, rows = {}}
        g.runs[nm] = cur
        g.order[#g.order + 1] = nm
      elseif line ~= "" and not line:match("^#") then
        error(string.format("%s:%d: unexpected line '%s'", where, ln, line))
      end
    end
  end
  if cur then error(where .. ": run " .. cur.name .. " has no checksum line (truncated?)") end
  return g
end

local function row_text(r, tasks)
  local parts = {}
  local k = 0
  for hex in r:gmatch("%x+") do
    k = k + 1
    local u = tonumber(hex, 16)
    parts[#parts + 1] = string.format("%s %s (%.9g)", tasks[k] or "?", hex,
                                      (string.unpack("<f", string.pack("<I4", u))))
  end
  return table.concat(parts, ", ")
end

-- The first difference between two parsed golden files (expected, actual), as
-- "run R row I: expected ..., got ..." or nil when they agree on every run of
-- expected. Runs of actual missing from expected are ignored (a new run).
function G.diff(want, got)
  for _, name in ipairs(want.order) do
    local w, a = want.runs[name], got.runs[name]
    if not a then return "run " .. name .. ": missing from the current build's predictions" end
    if table.concat(w.tasks, ",") ~= table.concat(a.tasks, ",") then
      return string.format("run %s: tasks %s, expected %s", name, table.concat(a.tasks, ","), table.concat(w.tasks, ","))
    end
    if w.n ~= a.n then return string.format("run %s: %d rows, expected %d", name, a.n, w.n) end
    for i = 1, w.n do
      if w.rows[i] ~= a.rows[i] then
        return string.format("run %s row %d (1-based, test split): expected %s; got %s", name, i,
                             row_text(w.rows[i], w.tasks), row_text(a.rows[i], a.tasks))
      end
    end
    if w.checksum ~= a.checksum then
      return string.format("run %s: checksum %s, expected %s (rows agree: the file was edited?)", name, a.checksum, w.checksum)
    end
  end
  return nil
end

-- The names of the runs of `want` whose predictions differ in `got` (or are
-- missing there), in want's order.
function G.differing_runs(want, got)
  local out = {}
  for _, name in ipairs(want.order) do
    local one = {order = {name}, runs = {[name] = want.runs[name]}}
    if G.diff(one, got) then out[#out + 1] = name end
  end
  return out
end

-- First difference between two prediction sets, as "task t row i: a vs b".
function G.first_difference(a, b)
  for idx = 1, #a do
    local pa, pb = a[idx], b[idx]
    local tasks = {}
    for t in pairs(pa) do tasks[#tasks + 1] = t end
    table.sort(tasks)
    for _, t in ipairs(tasks) do
      if not pb[t] then return "task " .. t .. " missing" end
      for i = 1, math.max(#pa[t], #pb[t]) do
        if pa[t][i] ~= pb[t][i] then
          return string.format("task %s row %d: %a vs %s", t, i, pa[t][i] or 0 / 0,
                               pb[t][i] and string.format("%a", pb[t][i]) or "missing")
        end
      end
    end
  end
  return nil
end

-- The golden text of this build: every run (or those whose name matches
-- `only`), at G.THREADS threads. progress(name, seconds) is called per run.
function G.produce(platform, only, progress)
  local old = tl.threads()
  tl.threads(G.THREADS)
  local ok, res = pcall(function()
    local d = tl.datasets.census()
    local out = {"# " .. G.FORMAT, "platform " .. (platform or "unknown"), "threads " .. G.THREADS, ""}
    for _, e in ipairs(G.RUNS) do
      if not only or e[1]:find(only) then
        local t0 = os.clock()
        local p, tasks = G.run(e, d)
        out[#out + 1] = G.section(e[1], p, tasks)
        if progress then progress(e[1], os.clock() - t0) end
      end
    end
    return table.concat(out, "\n")
  end)
  tl.threads(old)
  if not ok then error(res, 0) end
  return res
end

local function slurp(path)
  local f, err = io.open(path, "rb")
  if not f then error(err, 0) end
  local s = f:read("a")
  f:close()
  return s
end
G.slurp = slurp

if mode == "--lib" then return G end

local function usage()
  io.stderr:write("usage: towerlab scripts/golden.lua record OUT [PLATFORM] [RUN-PATTERN]\n" ..
                  "       towerlab scripts/golden.lua check FILE [RUN-PATTERN]\n" ..
                  "       towerlab scripts/golden.lua compare EXPECTED ACTUAL\n" ..
                  "       towerlab scripts/golden.lua list\n")
  os.exit(2)
end

local function say(name, s) io.stderr:write(string.format("  %-28s %.2f s\n", name, s)) end

if mode == "list" then
  for _, e in ipairs(G.RUNS) do print(e[1]) end
elseif mode == "record" then
  local out = arg[2] or usage()
  local text = G.produce(arg[3], arg[4], say)
  local f = assert(io.open(out, "wb"))
  f:write(text)
  f:close()
  print("golden: wrote " .. out)
elseif mode == "check" or mode == "compare" then
  local want = G.parse(slurp(arg[2] or usage()), arg[2])
  local got
  if mode == "compare" then
    got = G.parse(slurp(arg[3] or usage()), arg[3])
  else
    got = G.parse(G.produce(want.platform, arg[3], say), "current build")
    if arg[3] then  -- only the selected runs
      local order = {}
      for _, n in ipairs(want.order) do if n:find(arg[3]) then order[#order + 1] = n end end
      want.order = order
    end
  end
  local w = G.diff(want, got)
  if w then
    local runs = G.differing_runs(want, got)
    print("golden: DIFFERENT: " .. w)
    print(string.format("golden: %d of %d runs differ: %s", #runs, #want.order, table.concat(runs, ", ")))
    os.exit(1)
  end
  print(string.format("golden: identical: %d runs, every prediction bit-identical", #want.order))
else
  usage()
end
