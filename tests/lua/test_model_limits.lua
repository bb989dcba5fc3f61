-- Limits checked before allocating (issue 25 items 4, 7) and the fit options
-- users expect to work (issue 19 items 7-9).
local T = {}

local d
local function census()
  d = d or tl.datasets.census()
  return d
end

local function small(extra)
  local o = {data = census(), backbone = tl.shared_bottom{bottom = {8}}, tower = tl.mlp{4},
             emb = 2, batch = 256, seed = 1}
  for k, v in pairs(extra or {}) do o[k] = v end
  return tl.model(o)
end

function T.tensor_product_overflow_is_refused()
  raises(function() tl.tensor.zeros(2^32, 2^32) end, "more than 2^60 elements")
  raises(function() tl.tensor.zeros{2^21, 2^20, 2^20} end, "2^60")
  eq(tl.tensor.zeros(3, 4):numel(), 12)
end

function T.model_above_max_memory_is_refused_with_numbers()
  local e = raises(function() small{max_memory = "10k"} end, "the limit is 10.0 kB %(max_memory%)")
  check(e:find("needs [%d.]+ kB"), e)
  raises(function() small{max_memory = "lots"} end, "max_memory")
  raises(function() small{max_memory = -1} end, "max_memory")
  check(small{max_memory = "1G"}:params() > 0)
end

function T.fit_batch_above_the_models_batch()
  local m = small()
  m:fit{data = d.train, epochs = 1, batch = 1024, verbose = false}
  local steps = #m:history().steps
  eq(steps, math.ceil(#d.train / 1024))
  local r = m:evaluate(d.valid)
  check(r.income.auc > 0.5, "trained with the larger batch")
end

function T.towers_spec_applies_to_every_task()
  local m = small{towers = tl.mlp{12, 6}}
  local s = tostring(m)
  local _, n = s:gsub("tower %[12, 6%]", "")
  eq(n, 2, s)
  raises(function() small{towers = {12, 6}} end, "tower=tl.mlp")
  raises(function() small{towers = tl.mmoe{}} end, "keyed by task name")
  local m2 = small{towers = {income = tl.mlp{3}}}
  check(tostring(m2):find("income%s+binary%s+tower %[3%]"), tostring(m2))
end

local BIN = os.getenv("TL_TEST_BIN") or "./towerlab"

function T.huge_loss_weight_warns()
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write([[
local d = tl.datasets.census()
local m = tl.model{data = d, backbone = tl.shared_bottom{bottom = {4}}, tower = tl.mlp{2},
                   emb = 2, seed = 1, weights = {never_married = 5e4}}
m.weights.income = 100
m.weights.income = 1e38
print("weight", m.weights.income)
]])
  f:close()
  local p = io.popen("'" .. BIN .. "' '" .. script .. "' 2>&1")
  local out = p:read("a")
  p:close()
  os.remove(script)
  check(out:find("tl.model: warning: loss weight 50000 of task 'never_married' is above 10000", 1, true), out)
  check(out:find("m.weights: warning: loss weight 1e+38 of task 'income' is above 10000", 1, true), out)
  local _, n = out:gsub("warning", "")
  eq(n, 2, "weight 100 draws no warning: " .. out)
  check(out:find("weight\t1e%+38") or out:find("weight\t9.99"), out)
end

function T.fit_prints_one_line_per_epoch_when_not_a_tty()
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write([[
local d = tl.datasets.census()
local m = tl.model{data = d, backbone = tl.shared_bottom{bottom = {4}}, tower = tl.mlp{2},
                   emb = 2, batch = 4096, seed = 1}
m:fit{data = d.valid, valid = d.test, epochs = 2}
m:fit{data = d.valid, epochs = 1, verbose = false}
print("end")
]])
  f:close()
  local p = io.popen("'" .. BIN .. "' '" .. script .. "' 2>/dev/null | cat")
  local out = p:read("a")
  p:close()
  os.remove(script)
  local lines = {}
  for l in out:gmatch("[^\n]+") do lines[#lines + 1] = l end
  eq(#lines, 3, out)
  check(lines[1]:find("^epoch 1/2  step %d+  loss income"), lines[1])
  check(lines[1]:find("| valid income auc"), lines[1])
  check(lines[2]:find("^epoch 2/2"), lines[2])
  check(not out:find("\r", 1, true), "no carriage returns in a pipe")
  eq(lines[3], "end")
end

return T
