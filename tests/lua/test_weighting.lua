-- Loss weighting from Lua (issue 23): every method of the engine's table
-- (tl.weightings) trains census for one epoch with finite losses and logs
-- its per-task weights in m:history(); the Gram methods at both at= options;
-- m:set_weighting switches between fits (state reset, checkpoint keeps the
-- method and its options); help(tl.model) lists every method; bad options
-- are refused with the field named.
local T = {}

local d
local function model(w, seed)
  d = d or tl.datasets.census()
  return tl.model{data = d, backbone = tl.shared_bottom{bottom = {16}}, tower = tl.mlp{8},
                  emb = 4, batch = 1024, seed = seed or 1, weighting = w}
end

local function capture(fn, ...)
  local out, old = {}, print
  print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    out[#out + 1] = table.concat(parts, "\t")
  end
  local ok, err = pcall(fn, ...)
  print = old
  if not ok then error(err, 0) end
  return table.concat(out, "\n")
end

local function finite(x) return type(x) == "number" and x == x and x > -math.huge and x < math.huge end

-- every step's weights finite; returns the distinct weight vectors seen
local function logged_weights(m, from)
  local h, seen, n = m:history(), {}, 0
  check(#h.steps > from, "steps recorded")
  for i = from + 1, #h.steps do
    local s = h.steps[i]
    local key = {}
    for _, t in ipairs(m.tasks) do
      check(finite(s.weight[t]), ("step %d: weight of %s is %s"):format(s.step, t, tostring(s.weight[t])))
      check(finite(s.loss[t]), ("step %d: loss of %s"):format(s.step, t))
      key[#key + 1] = ("%.6g"):format(s.weight[t])
    end
    key = table.concat(key, " ")
    if not seen[key] then seen[key] = true; n = n + 1 end
  end
  return n
end

function T.every_method_trains_one_epoch()
  check(#tl.weightings >= 20, "the engine lists the methods")
  for _, w in ipairs(tl.weightings) do
    local variants = { w.name }
    for _, o in ipairs(w.options) do
      if o == "at" then variants = { { w.name, at = "params" }, { w.name, at = "rep" } } end
    end
    for _, spec in ipairs(variants) do
      local m = model(spec)
      eq(m.weighting, w.name)
      m:fit{data = d.train, valid = d.valid, epochs = 1, verbose = false}
      local e = m:history().epochs[1]
      for _, t in ipairs(m.tasks) do
        check(finite(e.train_loss[t]), w.name .. ": finite epoch loss of " .. t)
        check(finite(e.valid[t].auc), w.name .. ": finite valid AUC of " .. t)
      end
      local distinct = logged_weights(m, 0)
      -- the methods that change weights every step show it in the history
      if w.name ~= "fixed" and w.name ~= "dwa" and w.name ~= "pcgrad" then
        check(distinct > 1, w.name .. ": the logged weights change between steps")
      end
    end
  end
end

function T.rlw_same_seed_same_weights()
  local a, b, c = model("rlw", 3), model("rlw", 3), model("rlw", 4)
  for _, m in ipairs{ a, b, c } do m:fit{data = d.train, epochs = 1, max_steps = 5, verbose = false} end
  local wa, wb, wc = a:history().steps, b:history().steps, c:history().steps
  eq(wa[5].weight, wb[5].weight)
  check(wa[5].weight.income ~= wc[5].weight.income, "another seed, other weights")
  near(wa[5].weight.income + wa[5].weight.never_married, 1, 1e-6)
end

function T.switch_between_fits_and_checkpoint()
  local m = model("fixed")
  m:fit{data = d.train, epochs = 1, max_steps = 10, verbose = false}
  check(m:set_weighting("famo") == m, "returns the model")
  eq(m.weighting, "famo")
  m:fit{data = d.train, epochs = 1, max_steps = 10, verbose = false}
  local s = m:history().steps
  check(s[20].weight.income ~= 1, "famo's weights after the switch")
  eq(s[5].weight.income, 1)
  m:set_weighting{ "mgda", at = "rep" }
  m:fit{data = d.train, epochs = 1, max_steps = 5, verbose = false}
  m:set_weighting("cagrad", { c = 0.2, at = "rep" })
  eq(m.weighting, "cagrad")
  local path = os.tmpname()
  m:save(path)
  local m2 = tl.load(path)
  os.remove(path)
  eq(m2.weighting, "cagrad")
  -- same state, same next steps (the options came back with the checkpoint)
  m:fit{data = d.train, epochs = 1, max_steps = 3, verbose = false}
  m2:fit{data = d.train, epochs = 1, max_steps = 3, verbose = false}
  eq(m:history().steps[#m:history().steps].weight, m2:history().steps[#m2:history().steps].weight)
  raises(function() m:set_weighting("uncertainty") end, "loss scales")
  raises(function() model("imtl_l"):set_weighting("fixed") end, "loss scales")
  model("imtl_l"):set_weighting("imtl") -- the same scales: allowed
end

function T.bad_options_are_refused()
  raises(function() model("nope") end, "unknown weighting 'nope'")
  raises(function() model{ "famo", mu = 1 } end, "unknown field 'mu'")
  raises(function() model{ "stch", mu = -1 } end, "mu")
  raises(function() model{ "mgda", at = "middle" } end, "must be one of")
  raises(function() model{ 3 } end, "method name")
  raises(function() model("fixed"):set_weighting{ "graddrop", leak = 2 } end, "leak")
end

function T.help_lists_every_method()
  local s = capture(tl.help, tl.model)
  for _, w in ipairs(tl.weightings) do
    check(s:find("\n  " .. w.name, 1, true), "help(tl.model) lists " .. w.name)
  end
  check(capture(tl.help, "m:set_weighting"):find("afresh", 1, true), "m:set_weighting documented")
end

-- scripts/compare_weighting.lua --quick: every method a row of the table
function T.compare_script_quick()
  local out = os.tmpname()
  local saved = arg
  arg = { [0] = "scripts/compare_weighting.lua", "--quick", "--out", out,
          "--methods", "fixed,famo,mgda@rep" }
  local ok, done = pcall(dofile, "scripts/compare_weighting.lua")
  arg = saved
  check(ok, tostring(done))
  local f = assert(io.open(out .. "_census.md"))
  local md = f:read("a")
  f:close()
  for _, row in ipairs{ "| single_task |", "| fixed |", "| famo |", "| mgda@rep |" } do
    check(md:find(row, 1, true), "table row " .. row)
  end
  check(md:find("Δm %", 1, true) and md:find("vs fixed", 1, true), "Δm and time columns")
  check(not md:find("| pcgrad |", 1, true), "--methods selects")
  for _, ext in ipairs{ "", "_census.md", "_census.csv" } do os.remove(out .. ext) end
end

return T
