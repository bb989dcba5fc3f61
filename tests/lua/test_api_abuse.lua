-- API abuse: every function in the tl table tree and every method of the
-- tensor, dataset, split, model, calibrator, calibrated-predictor and live
-- plot objects, called with wrong types, nil, huge and non-finite numbers,
-- empty and nested tables, odd strings and objects of the wrong kind. Each
-- call runs in pcall. The test passes when the process survives (it runs
-- inside the towerlab binary: a crash fails the harness) and every failure
-- is a Lua error string. Nothing trains for more than one step (a tiny data
-- set, max_steps = 1), nothing is drawn (figures go to SVG strings) and
-- nothing is written outside a scratch directory.
local T = {}

local TMP = os.tmpname()
os.remove(TMP)
assert(os.execute("mkdir -p '" .. TMP .. "'"))

local NAN, INF = 0 / 0, math.huge
local selfref = {}
selfref[1], selfref.self = selfref, selfref

-- The garbage values; G.n counts them because G[1] is nil.
local G = {n = 0}
local function add(v) G.n = G.n + 1; G[G.n] = v end
for _, v in ipairs{true, false, 0, -1, 0.5, 3, 1e308, -1e308, math.maxinteger, math.mininteger,
                   -math.maxinteger, INF, -INF, "", "zz", TMP .. "/f.svg", string.rep("x", 4000),
                   "a\0b", "script", {}, {1, 2, 3}, {{}}, {NAN, INF, -INF}, {a = {b = {c = {}}}},
                   {1, "x", {}, true, n = -1}, {[1e308] = 1, [-1] = 2, [0] = 3}, selfref,
                   setmetatable({}, {__index = function() error("index boom") end}),
                   coroutine.create(function() end), print} do
  add(v)
end
add(nil)
add(NAN)
local SMALL = {n = 6, nil, NAN, -1, "", {}, math.maxinteger}

local failures, calls = {}, 0

-- Call fn(...) in pcall; a failure must be a string.
local function try(where, fn, ...)
  calls = calls + 1
  local ok, err = pcall(fn, ...)
  if not ok and type(err) ~= "string" then
    failures[#failures + 1] = where .. ": error value is a " .. type(err) .. " (" .. tostring(err) .. ")"
  end
  return ok, err
end

local function report()
  if #failures > 0 then
    error(#failures .. " calls failed without a string error:\n  " ..
          table.concat(failures, "\n  ", 1, math.min(#failures, 20)), 2)
  end
end

-- Shared fixtures: a tiny binary-task data set, a model trained one step,
-- its calibrated predictor, a calibrator, a tensor.
local D, M, CP, CAL, TEN
local function fixtures()
  if D then return end
  D = tl.data.csv{path = "tests/data/rechub_mtl_samples/ali_ccp_train_sample.csv",
                  categorical = {"101", "121", "205"}, numeric = {"D508", "D509"},
                  labels = {click = {column = "click", positive = "1"},
                            purchase = {column = "purchase", positive = "1"}},
                  split = {train = 0.6, valid = 0.2, test = 0.2}}
  M = tl.model{data = D, backbone = tl.shared_bottom{bottom = {4}}, tower = tl.mlp{2}, emb = 2, batch = 16}
  M:fit{data = D.train, epochs = 1, max_steps = 1, verbose = false}
  CP = tl.calibrate(M, D.all, "isotonic")
  CAL = tl.metrics.calibrator({0.1, 0.9, 0.4, 0.7, 0.5, 0.2}, {0, 1, 1, 0, 0, 1}, "platt")
  TEN = tl.tensor.zeros(2, 3)
end

local function objects()
  fixtures()
  return {D, D.train, D.all, M, CP, CAL, TEN, M.weights, M:history(), tl.mmoe{}, tl.optim.adam{}}
end

-- Calls that must not happen: they would load big data, block, or write
-- outside TMP. Returns true to skip.
local function unsafe(name, args)
  local a = args[1]
  if name:find("^tl%.datasets%.") then
    -- loading with the defaults takes seconds (census, MovieLens-1M, 10000 x 100
    -- synthetic rows): only options that name a field, which then must be checked
    if type(a) == "table" then
      for k in pairs(a) do if type(k) == "string" then return false end end
      return true
    end
    return a == nil
  end
  if name == "tl.sweep" then  -- never with something it could run
    for i = 1, args.n do if type(args[i]) == "function" then return true end end
  end
  if name == "tl.data.convert" then  -- writes a directory of shards at its second argument
    local dir = args[2]
    if type(dir) == "number" or (type(dir) == "string" and dir:sub(1, #TMP) ~= TMP) then return true end
  end
  if name:find("save$") or name == "tl.sweep" then  -- relative paths (numbers too) would land in the source tree
    for i = 1, args.n do
      local t = type(args[i])
      if (t == "string" and args[i]:sub(1, #TMP) ~= TMP) or t == "number" then return true end
    end
  end
  return false
end

local function abuse(name, fn, first)
  local objs = objects()
  local function call(...)
    local args = table.pack(...)
    if not unsafe(name, args) then try(name, fn, ...) end
  end
  if first ~= nil then
    call(first)
    for i = 1, G.n do call(first, G[i]) end
    for i = 1, G.n do call(first, G[i], G[(i % G.n) + 1]) end
    for _, o in ipairs(objs) do call(first, o, G[1]) end
  else
    call()
  end
  for i = 1, G.n do call(G[i]) end
  for i = 1, G.n do for j = 1, SMALL.n do call(G[i], SMALL[j]) end end
  for _, o in ipairs(objs) do
    for i = 1, G.n do call(o, G[i]) end
  end
end

-- Every function under tl, depth first, with its dotted name.
local function functions()
  local out, seen = {}, {}
  local function walk(t, path)
    if seen[t] then return end
    seen[t] = true
    local keys = {}
    for k in pairs(t) do if type(k) == "string" then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = t[k]
      if type(v) == "function" then out[#out + 1] = {path .. "." .. k, v}
      elseif type(v) == "table" then walk(v, path .. "." .. k) end
    end
  end
  walk(tl, "tl")
  return out
end

local function methods(obj)
  local mt = getmetatable(obj)
  local out = {}
  if type(mt) ~= "table" then return out end
  for _, t in ipairs{mt.__methods, mt.methods, type(mt.__index) == "table" and mt.__index or nil} do
    if type(t) == "table" then
      for k, v in pairs(t) do if type(v) == "function" then out[k] = v end end
    end
  end
  for _, k in ipairs{"__index", "__newindex", "__len", "__tostring", "__pairs", "__call"} do
    if type(mt[k]) == "function" then out[k] = mt[k] end
  end
  out.close = nil  -- it would close the shared fixtures (see closed_objects)
  return out
end

function T.functions_of_the_tl_tree()
  fixtures()
  local threads = tl.threads()
  local term = tl.plot.terminal()
  tl.plot.terminal("svg")  -- figures come back as strings: nothing is drawn
  local list = functions()
  check(#list >= 50, "found only " .. #list .. " functions under tl")
  for _, f in ipairs(list) do
    local name, fn = f[1], f[2]
    if not name:find("kernel") then abuse(name, fn) end
    if name == "tl.plot.terminal" then tl.plot.terminal("svg") end
    if name == "tl.threads" then tl.threads(threads) end
  end
  tl.threads(threads)
  tl.plot.terminal(term)
  report()
end

function T.methods_with_good_and_bad_self()
  fixtures()
  local term = tl.plot.terminal()
  tl.plot.terminal("svg")
  local live = tl.plot.live{file = TMP .. "/live.svg"}
  local targets = {tensor = TEN, dataset = D, split = D.train, model = M, calibrated = CP,
                   calibrator = CAL, weights = M.weights, live = live}
  local n = 0
  for tname, obj in pairs(targets) do
    for mname, fn in pairs(methods(obj)) do
      n = n + 1
      local name = tname .. ":" .. mname
      if mname == "fit" then
        -- training calls: bad options, and good ones bounded to one step
        abuse(name, fn, obj)
        for i = 1, G.n do
          try(name, fn, obj, {data = D.train, epochs = G[i], max_steps = 1, verbose = false})
          try(name, fn, obj, {data = D.train, batch = G[i], max_steps = 1, verbose = false})
          try(name, fn, obj, {data = D.train, lr = G[i], max_steps = 1, verbose = false})
          try(name, fn, obj, {data = G[i], max_steps = 1, verbose = false})
          try(name, fn, obj, {data = D.train, valid = G[i], max_steps = 1, verbose = false})
        end
      else
        abuse(name, fn, obj)
      end
    end
  end
  check(n >= 30, "found only " .. n .. " methods")
  tl.plot.terminal(term)
  report()
end

-- Options tables of the constructors with each field replaced by garbage.
function T.option_fields()
  fixtures()
  local function fields(name, fn, base)
    for k in pairs(base) do
      for i = 1, G.n do
        local o = {}
        for k2, v2 in pairs(base) do o[k2] = v2 end
        o[k] = G[i]
        try(name .. "." .. k, fn, o)
      end
    end
  end
  fields("tl.model", tl.model, {data = D, backbone = tl.mmoe{experts = 2, expert = {3}}, tower = tl.mlp{2},
                                emb = 2, batch = 16, seed = 1, weighting = "gradnorm", alpha = 1.5})
  fields("tl.mmoe", tl.mmoe, {experts = 2, expert = {3}, dropout = 0})
  fields("tl.ple", tl.ple, {levels = 1, shared = 1, specific = 1, expert = {3}})
  fields("tl.mlp", tl.mlp, {4, 2, dropout = 0.1})
  fields("tl.dml", tl.dml, {ctfm = true, gkd = true, stop_grad = true, gkd_layers = 1, dropout = 0})
  fields("tl.crossdistil", tl.crossdistil, {pairs = {{"click", "purchase"}}, aux = 1, kd = 0.5,
                                            calibrate = "platt", lambda = 0.2, warmup = 0, max_pairs = 16})
  fields("tl.optim.adam", tl.optim.adam, {lr = 0.01, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0})
  fields("tl.datasets.synthetic", tl.datasets.synthetic, {n = 50, dim = 3, corr = 0.5, m = 2, scale = 1,
                                                          noise = 0.1, seed = 1})
  fields("tl.data.csv", tl.data.csv, {path = "tests/data/rechub_mtl_samples/ali_ccp_test_sample.csv",
                                      categorical = {"101"}, numeric = {"D508"}, skip = 0,
                                      labels = {click = {column = "click", positive = "1"}},
                                      split = {train = 0.8, valid = 0.1, test = 0.1}})
  fields("tl.metrics.calibration", function(o) return tl.metrics.calibration({0.1, 0.8}, {0, 1}, o) end,
         {bins = 4, strategy = "quantile"})
  local function with_model(o)
    local m = tl.model{data = D, backbone = o.backbone, tower = tl.mlp{2}, emb = 2, batch = 8,
                       mutual = o.mutual, distill = o.distill}
    return m:fit{data = D.train, epochs = 1, max_steps = 1, verbose = false}
  end
  fields("dml model", with_model, {backbone = tl.shared_bottom{bottom = {3}}, mutual = tl.dml{}})
  report()
end

-- Closed and collected objects: methods on them raise, they do not crash.
function T.closed_objects()
  fixtures()
  local d = tl.data.csv{path = "tests/data/rechub_mtl_samples/ali_ccp_test_sample.csv",
                        categorical = {"101"}, numeric = {"D508"},
                        labels = {click = {column = "click", positive = "1"}}}
  local s = d.all
  local m = tl.model{data = d, backbone = tl.shared_bottom{bottom = {3}}, tower = tl.mlp{2}, emb = 2, batch = 8}
  local t = tl.tensor.ones(3)
  local c = tl.metrics.calibrator({0.1, 0.9, 0.4, 0.7, 0.5, 0.2}, {0, 1, 1, 0, 0, 1}, "isotonic")
  for _, o in ipairs{d, m, t, c} do
    local mt = getmetatable(o)
    if mt.__close then try("__close", mt.__close, o) try("__close twice", mt.__close, o) end
    if mt.__gc then try("__gc", mt.__gc, o) try("__gc twice", mt.__gc, o) end
  end
  for _, o in ipairs{d, s, m, t, c} do
    for name, fn in pairs(methods(o)) do
      if name ~= "fit" then abuse("closed " .. name, fn, o)
      else try("closed fit", fn, o, {data = s, max_steps = 1, verbose = false}) end
    end
    try("tostring", tostring, o)
  end
  try("evaluate closed split", M.evaluate, M, s)
  try("predict closed split", M.predict, M, s)
  try("fit on closed split", M.fit, M, {data = s, max_steps = 1, verbose = false})
  collectgarbage()
  report()
end

function T.zz_cleanup_and_count()
  os.execute("rm -rf '" .. TMP .. "'")
  check(calls > 10000, "made only " .. calls .. " calls")
  print(string.format("# %d calls", calls))
end

return T
