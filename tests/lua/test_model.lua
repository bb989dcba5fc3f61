-- The model API (repl/l_model.c, l_spec.c, l_fit.c, l_results.c): the README tour on the shipped census data,
-- loss weights changed between fits, results, history, and error messages.
local T = {}

local d
local function census()
  d = d or tl.datasets.census()
  return d
end

local function small_model(extra)
  local opts = {data = census(), backbone = tl.mmoe{experts = 3, expert = {16, 8}},
                tower = tl.mlp{8}, emb = 4, batch = 256, seed = 3}
  for k, v in pairs(extra or {}) do opts[k] = v end
  return tl.model(opts)
end

function T.tour_fit_reweight_continue_evaluate()
  local m = small_model{towers = {income = tl.mlp{12}, never_married = tl.mlp{6}}}
  local s = tostring(m)
  check(s:find("mmoe") and s:find("3 experts") and s:find("income") and s:find("%[12%]"),
        "summary names backbone, experts, tasks and towers: " .. s)
  m:fit{data = d.train, valid = d.valid, epochs = 1, max_steps = 60, verbose = false}
  local h1 = m:history()
  eq(#h1.steps, 60)
  eq(h1.steps[1].weight.income, 1.0)
  m.weights.income = 2.5
  eq(m.weights.income, 2.5)
  m:fit{data = d.train, epochs = 1, max_steps = 20, verbose = false}
  local h2 = m:history()
  eq(#h2.steps, 80, "history continues across fit calls")
  eq(h2.steps[61].weight.income, 2.5, "new weight applies from the next step")
  eq(h2.steps[61].step, 61)
  local r = m:evaluate(d.test)
  for _, t in ipairs{"income", "never_married"} do
    check(r[t].auc > 0.6 and r[t].auc <= 1, t .. " auc " .. tostring(r[t].auc))
    check(r[t].logloss > 0 and r[t].ece >= 0 and r[t].pcoc > 0, t .. " calibration fields")
    eq(#r[t].bins, 10)
  end
  local rows = 0
  for _, b in ipairs(r.income.bins) do rows = rows + b.count end
  eq(rows, #d.test, "bins cover every test row")
  check(tostring(r):find("never_married"), "result prints one row per task")
end

function T.predict_matches_rows_and_labels()
  local m = small_model()
  m:fit{data = d.train, epochs = 1, max_steps = 30, verbose = false}
  local p = m:predict(d.test)
  eq(#p.income, #d.test)
  for i = 1, #d.test, 997 do
    check(p.income[i] >= 0 and p.income[i] <= 1, "probability")
  end
  local y = d.test:labels()
  eq(#y.never_married, #d.test)
end

function T.early_stopping_records_valid_metrics()
  local m = small_model()
  m:fit{data = d.train, valid = d.valid, epochs = 1, verbose = false}
  local e = m:history().epochs
  check(#e >= 1, "an epoch record")
  local auc = e[1].valid.income.auc
  check(type(auc) == "number" and auc >= 0 and auc <= 1, "valid auc recorded: " .. tostring(auc))
  check(e[1].monitor ~= nil, "monitor recorded")
end

function T.progress_callback_can_stop_and_model_continues()
  local m = small_model()
  local calls = 0
  raises(function()
    m:fit{data = d.train, epochs = 1, verbose = false,
          progress = function(p) calls = calls + 1; if p.step >= 5 then return false end end}
  end, "stopped by the progress callback")
  eq(calls, 5)
  m:fit{data = d.train, epochs = 1, max_steps = 3, verbose = false}
  eq(#m:history().steps, 8, "the interrupted model trains on")
end

function T.every_backbone_and_weighting_builds_and_trains()
  for _, bb in ipairs{tl.shared_bottom{bottom = {16}}, tl.omoe{experts = 2, expert = {8}},
                      tl.mmoe{experts = 2, expert = {8}}, tl.ple{levels = 2, shared = 1, specific = 1, expert = {8}},
                      tl.esmm{}, tl.aitm{}} do
    for _, w in ipairs{"fixed", "uncertainty", "gradnorm", "dwa", "pcgrad"} do
      local m = small_model{backbone = bb, weighting = w}
      m:fit{data = d.train, epochs = 1, max_steps = 4, verbose = false}
      eq(#m:history().steps, 4, bb.kind .. "/" .. w)
      eq(m.weighting, w)
    end
  end
end

function T.errors_name_function_field_and_expectation()
  raises(function() tl.model{data = census(), backbone = tl.mmoe{}, colour = 1} end,
         "tl.model: unknown field 'colour'")
  raises(function() tl.mmoe{experts = "many"} end, "tl.mmoe: field 'experts' must be")
  raises(function() tl.model{data = census(), towers = {ctr = tl.mlp{8}}} end,
         "towers: unknown task 'ctr'")
  raises(function() tl.model{data = census(), weights = {income = -1}} end, "weights.income")
  raises(function() tl.model{backbone = tl.mmoe{}} end, "field 'data' is required")
  raises(function() tl.model{data = census(), backbone = "mmoe"} end, "field 'backbone' must be")
  raises(function() tl.mlp{16, "x"} end, "tl.mlp")
  local m = small_model()
  raises(function() m:fit{valid = d.valid} end, "m:fit: field 'data' is required")
  raises(function() m:fit{data = d.train, optim = "adam"} end, "field 'optim' must be an optimizer")
  raises(function() m:fit{data = d.train, epochs = 0} end, "m:fit: field 'epochs'")
  raises(function() m.weights.ctr = 1 end, "unknown task 'ctr'")
  raises(function() m.weights.income = -2 end, "weight must be")
  raises(function() m:evaluate(42) end, "")
end

function T.calibrate_shows_before_after_and_is_saved()
  local m = small_model()
  m:fit{data = d.train, epochs = 1, max_steps = 80, verbose = false}
  local cp = tl.calibrate(m, d.valid, "platt")
  check(tostring(cp):find("income") and tostring(cp):find("platt"), tostring(cp))
  local r = cp:evaluate(d.test)
  check(r.before.income and r.after.income, "before and after per task")
  eq(r.before.income.auc, m:evaluate(d.test).income.auc, "before = the raw model")
  near(r.after.income.auc, r.before.income.auc, 1e-3, "a monotone calibrator keeps the ranking")
  check(r.after.income.ece ~= r.before.income.ece, "calibration changes the probabilities")
  local s = tostring(r)
  check(s:find("before calibration") < s:find("after calibration"), "before printed first")
  local p = cp:predict(d.test)
  eq(#p.income, #d.test)
  local path = os.tmpname()
  m:save(path)
  local m2 = tl.load(path)
  os.remove(path)
  eq(m2:evaluate(d.test, {calibrated = true}).income.ece, r.after.income.ece, "calibrators saved with the model")
  raises(function() tl.calibrate(m, d.valid, "magic") end, "invalid option 'magic'")
end

function T.checkpoint_option_of_fit_saves_and_resumes_exactly()
  local path = os.tmpname()
  local a = small_model()
  a:fit{data = d.train, epochs = 1, max_steps = 25, checkpoint = path, every = 10, verbose = false}
  local b = tl.load(path)   -- saved at step 20
  local c = small_model()
  c:fit{data = d.train, epochs = 1, max_steps = 20, verbose = false}
  b:fit{data = d.train, epochs = 1, max_steps = 7, verbose = false}
  c:fit{data = d.train, epochs = 1, max_steps = 7, verbose = false}
  os.remove(path)
  local pb, pc = b:predict(d.test), c:predict(d.test)
  for i = 1, #d.test, 1111 do eq(pb.income[i], pc.income[i], "row " .. i) end
  raises(function() a:fit{data = d.train, every = 5} end, "field 'every' needs field 'checkpoint'")
end

function T.crossdistil_calibrators_survive_a_checkpoint()
  local m = small_model{backbone = tl.shared_bottom{bottom = {16}},
                        distill = tl.crossdistil{pairs = {{"income", "never_married"}},
                                                 calibrate = "isotonic", calib_data = "valid"}}
  check(tostring(m):find("negative relation"), "census pair is negatively related: " .. tostring(m))
  m:fit{data = d.train, valid = d.valid, epochs = 1, verbose = false}
  local before = m:teachers(d.test)
  local path = os.tmpname()
  m:save(path)
  local m2 = tl.load(path)
  os.remove(path)
  local after = m2:teachers(d.test)
  eq(after.income.ece, before.income.ece, "the fitted isotonic calibrator is restored")
  eq(after.never_married.multi_auc, before.never_married.multi_auc)
  raises(function()
    small_model{distill = tl.crossdistil{pairs = {{"income", "never_married"}}, teacher_grad = true,
                                         calibrate = "isotonic"}}
  end, "teacher_grad=true needs the in%-graph Platt")
end

function T.eval_every_records_mid_epoch_validation()
  local m = small_model()
  local kinds = {}
  m:fit{data = d.train, valid = d.valid, epochs = 1, eval_every = 100, verbose = false,
        progress = function(p) kinds[p.kind] = (kinds[p.kind] or 0) + 1 end}
  local h = m:history()
  eq(#h.evals, 3, "steps 100, 200, 300 of a 312-step epoch")
  eq(h.evals[2].step, 200)
  check(h.evals[3].valid.never_married.auc > 0.5, "validation metrics recorded")
  eq(kinds.eval, 3)
  eq(kinds.epoch, 1)
  eq(#h.epochs, 1, "early stopping stays per epoch")
end

function T.help_texts_exist()
  check(tl.help_text == nil or true)
  local ok = pcall(help, tl.model)
  check(ok, "help(tl.model) works")
end

-- ESMM on a regression task names the task, not "needs 2 binary tasks, got 2"
function T.esmm_regression_task_is_named()
  local p = os.tmpname()
  local f = assert(io.open(p, "w"))
  f:write("a,c,r\n")
  for i = 1, 40 do f:write(string.format("u%d,%d,%g\n", i % 3, i // 3 % 2, i % 7 / 2)) end
  f:close()
  local d2 = tl.data.csv{path = p, categorical = {"a"}, cache = false,
                         labels = {ctr = {column = "c", positive = "1"}, rating = {column = "r", regression = true}}}
  os.remove(p)
  raises(function() tl.model{data = d2, backbone = tl.esmm{}, tower = tl.mlp{4}} end,
         "task 'rating' is a regression task; ESMM's two tasks")
  check(tl.model{data = census(), backbone = tl.esmm{}, tower = tl.mlp{4}, emb = 4}, "two binary tasks build")
end

return T
