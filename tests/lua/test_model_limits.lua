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

return T
