-- tl.crossdistil in the REPL (repl/l_spec.c): order="auto" resolved by the
-- first m:fit and shown by print(m) and m:teachers, and calib_every (option,
-- help text, refits before the first epoch ends). On the shipped census data,
-- whose pair income / never_married is negatively related.
local T = {}

local d
local function census()
  d = d or tl.datasets.census()
  return d
end

local function model(distill)
  return tl.model{data = census(), backbone = tl.shared_bottom{bottom = {16}}, tower = tl.mlp{8},
                  emb = 4, batch = 256, seed = 3, distill = distill}
end

local pair = {{"income", "never_married"}}

function T.order_auto_is_resolved_by_the_first_fit()
  local m = model(tl.crossdistil{pairs = pair})
  local s = tostring(m)
  check(s:find("negative relation on the data's train labels; auto, fixed by the first fit", 1, true),
        "before the fit print(m) shows the sign the fit will take: " .. s)
  local t = m:teachers(d.test)
  eq(t.income.order, "auto")
  eq(t.never_married.order, "auto")
  check(t.income.multi_auc > 0 and t.income.multi_auc < 1, "Multi-AUC from the split's label sign")
  local path = os.tmpname()
  m:save(path)
  local unfitted = tl.load(path)
  check(tostring(unfitted):find("relation auto, fixed by the first fit", 1, true),
        "without data: " .. tostring(unfitted))
  m:fit{data = d.train, epochs = 1, max_steps = 2, verbose = false}
  s = tostring(m)
  check(s:find("negative relation, from label correlation", 1, true), "after the fit: " .. s)
  t = m:teachers(d.test)
  eq(t.income.order, "negative")
  eq(t.never_married.order, "negative")
  m:save(path)
  local loaded = tl.load(path)
  os.remove(path)
  eq(loaded:teachers(d.test).income.order, "negative", "a checkpoint keeps the resolved order")
  eq(loaded:teachers(d.test).income.multi_auc, t.income.multi_auc)
end

function T.explicit_order_is_known_before_a_fit()
  local m = model(tl.crossdistil{pairs = pair, order = "positive"})
  local s = tostring(m)
  check(s:find("(positive relation)", 1, true), s)
  eq(m:teachers(d.test).income.order, "positive")
  m:fit{data = d.train, epochs = 1, max_steps = 1, verbose = false}
  eq(m:teachers(d.test).never_married.order, "positive")
end

-- Two models, the same but for calib_every = 5: after 5 steps their
-- parameters are the same (the refit follows step 5), so the teachers rank
-- alike (AUC), while only the one with calib_every has a fitted calibrator
-- (calibration differs).
function T.calib_every_refits_before_the_epoch_ends()
  local opts = {pairs = pair, calibrate = "isotonic", calib_data = "valid"}
  local a = model(tl.crossdistil(opts))
  opts.calib_every = 5
  local b = model(tl.crossdistil(opts))
  check(tostring(b):find("isotonic calibrator on valid (refit every 5 steps)", 1, true), tostring(b))
  check(not tostring(a):find("refit every", 1, true), tostring(a))
  for _, m in ipairs{a, b} do
    m:fit{data = d.train, valid = d.valid, epochs = 1, max_steps = 5, verbose = false}
  end
  local ta, tb = a:teachers(d.test), b:teachers(d.test)
  eq(tb.income.auc, ta.income.auc, "same parameters after 5 steps")
  check(tb.income.ece ~= ta.income.ece and tb.never_married.ece ~= ta.never_married.ece,
        "a calibrator exists only with calib_every")
  check(tb.income.ece < ta.income.ece, "the isotonic calibrator calibrates: " .. tb.income.ece ..
        " vs sigmoid " .. ta.income.ece)
end

function T.calib_every_is_checked_and_documented()
  raises(function() tl.crossdistil{pairs = pair, calib_every = -1} end, "calib_every")
  raises(function() tl.crossdistil{pairs = pair, calib_every = 1.5} end, "calib_every")
  raises(function()
    model(tl.crossdistil{pairs = pair, calibrate = "platt", calib_data = "train", calib_every = 10})
  end, "calib_every refits calibrators fitted outside the graph")
  local out = {}
  local print0 = print
  print = function(s) out[#out + 1] = tostring(s) end
  local ok, err = pcall(help, tl.crossdistil)
  print = print0
  check(ok, tostring(err))
  local text = table.concat(out, "\n")
  check(text:find("calib_every=0", 1, true) and text:find("every N steps", 1, true), text)
end

-- tl.dml{gkd_tasks=...}: GKD on a subset of the tasks (names checked against
-- the data by tl.model); the task left out has no GKD parameters; the model
-- trains.
function T.dml_gkd_tasks_subset()
  raises(function() tl.dml{gkd_tasks = {}} end, "non-empty list of task names")
  raises(function() tl.dml{gkd_tasks = "income"} end, "gkd_tasks")
  raises(function() tl.dml{gkd = false, gkd_tasks = {"income"}} end, "gkd is off")
  raises(function()
    tl.model{data = census(), tower = tl.mlp{8}, mutual = tl.dml{gkd_tasks = {"nope"}}}
  end, "unknown task 'nope'")
  local function dml(spec)
    return tl.model{data = census(), backbone = tl.mmoe{experts = 2, expert = {8}}, tower = tl.mlp{8},
                    emb = 4, batch = 256, seed = 3, mutual = spec}
  end
  local all, one = dml(tl.dml{}), dml(tl.dml{gkd_tasks = {"income"}})
  check(one:params() < all:params(), "fewer parameters without never_married's GKD")
  one:fit{data = d.train, epochs = 1, max_steps = 2, verbose = false}
  check(one:evaluate(d.test).income.auc > 0, "trains and evaluates")
  check(tostring(one):find("gkd on (tasks income)", 1, true), "print(m) names the GKD tasks")
  -- the subset is kept in checkpoints: the reloaded model predicts the same bits
  local path = os.tmpname()
  one:save(path)
  local back = tl.load(path)
  os.remove(path)
  check(back:params() == one:params(), "same parameter count after load")
  local a, b = one:predict(d.test), back:predict(d.test)
  for i = 1, #a.income, 997 do check(a.income[i] == b.income[i], "same prediction after load, row " .. i) end
end

return T
