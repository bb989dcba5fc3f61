-- Learning-rate schedules from Lua (issue 19 item 15): specs validate, fit
-- follows them, and a checkpoint continues them bit for bit.
local T = {}

local d
local function model()
  d = d or tl.datasets.census()
  return tl.model{data = d, backbone = tl.shared_bottom{bottom = {8}}, tower = tl.mlp{4},
                  emb = 2, batch = 512, seed = 1}
end

local function params_of(m)
  local path = os.tmpname()
  m:save(path)
  local f = assert(io.open(path, "rb"))
  local bytes = f:read("a")
  f:close()
  os.remove(path)
  return bytes
end

function T.specs_are_checked()
  raises(function() tl.optim.adam{schedule = "cosine"} end, "schedule must be a table")
  raises(function() tl.optim.adam{schedule = {"cosine"}} end, "needs steps=")
  raises(function() tl.optim.sgd{schedule = {"step", every = 10, decay = 2}} end, "unknown field 'decay'")
  raises(function() tl.optim.adagrad{schedule = {"linear"}} end, "unknown kind 'linear'")
  check(tl.optim.adamw{schedule = {"warmup", steps = 100}})
end

function T.schedule_changes_training_and_resumes_exactly()
  local sched = tl.optim.adam{lr = 1e-2, schedule = {"cosine", steps = 30, warmup = 5, min_lr = 1e-4}}
  local plain = tl.optim.adam{lr = 1e-2}
  local a, b, c = model(), model(), model()
  a:fit{data = d.train, epochs = 1, max_steps = 20, optim = sched, verbose = false}
  c:fit{data = d.train, epochs = 1, max_steps = 20, optim = plain, verbose = false}
  check(a:evaluate(d.valid).income.logloss ~= c:evaluate(d.valid).income.logloss, "the schedule acts")
  -- 8 steps, save, load, 12 more (the running optimizer kept) == 20 at once
  b:fit{data = d.train, epochs = 1, max_steps = 8, optim = sched, verbose = false}
  local path = os.tmpname()
  b:save(path)
  local b2 = tl.load(path)
  os.remove(path)
  b2:fit{data = d.train, epochs = 1, max_steps = 12, verbose = false}
  eq(b2:evaluate(d.valid).income.logloss, a:evaluate(d.valid).income.logloss)
  eq(params_of(b2) == params_of(a), true, "bit-identical checkpoints")
end

return T
