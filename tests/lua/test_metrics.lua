-- tl.metrics (repl/l_metrics.c): values on hand-computed cases, NaN with a
-- note for undefined metrics, the calibration table, calibrators, and the
-- error messages of misuse.
local T = {}
local M = tl.metrics

local function isnan(x) return x ~= x end

function T.auc_hand_ties_weights_mask()
  local v, note = M.auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1})
  eq(v, 0.75)
  eq(note, nil)
  near(M.auc({0.5, 0.5, 0.5, 0.9}, {0, 1, 0, 1}), 0.75, 1e-12, "ties count half")
  near(M.auc({0.5, 0.5, 0.5, 0.9}, {0, 1, 0, 1}, {weight = {1, 2, 3, 1}}), 8 / 12, 1e-12)
  eq(M.auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}, {mask = {true, true, false, true}}), 1.0)
  eq(M.auc({0.1, 0.4, 0.35, 0.8}, {0, 0, 1, 1}, {mask = {1, 1, 0, 1}}), 1.0)
end

function T.auc_single_class_is_nan_with_note()
  local v, note = M.auc({0.2, 0.3, 0.4}, {1, 1, 1})
  check(isnan(v), "nan")
  check(note:find("one class"), note)
  local e, enote = M.auc({}, {})
  check(isnan(e) and enote:find("no rows"), enote)
end

function T.gauc_skips_single_class_groups()
  local p = {0.3, 0.2, 0.5, 0.6, 0.4, 0.8, 0.9, 0.1}
  local y = {1, 0, 1, 0, 0, 1, 1, 0}
  local g = {2, 1, 3, 2, 4, 1, 2, 4}
  local v, note, used = M.gauc(p, y, g)
  near(v, 0.7, 1e-12)
  eq(used, 2)
  check(note:find("single class"), note)
  local all, note2 = M.gauc(p, y, {1, 2, 3, 4, 5, 6, 7, 8})
  check(isnan(all) and note2:find("one class"), note2)
end

function T.multi_auc_orders()
  local p, a, b = {0.9, 0.7, 0.8, 0.1}, {1, 1, 0, 0}, {1, 0, 1, 0}
  local v, note, pairs = M.multi_auc(p, a, b)
  near(v, 2 / 3, 1e-12)
  eq(note, nil)
  eq(pairs, {1, 0, 1})
  eq(M.multi_auc(p, a, b, {order = "B"}), 1.0)
  eq(M.multi_auc(p, a, b, {order = {"++", "-+", "+-", "--"}}), 1.0)
  near(M.multi_auc(p, a, b, {order = "A_neg"}), 1 / 3, 1e-12)
  local w, wnote = M.multi_auc(p, a, b, {mask = {true, true, false, true}})
  eq(w, 1.0)
  check(wnote:find("empty group"), wnote)
  raises(function() M.multi_auc(p, a, b, {order = {"++", "++", "-+", "--"}}) end,
         "tl.metrics.multi_auc: field 'order' must be a permutation")
end

function T.pointwise()
  near(M.logloss({0.5, 0.9}, {1, 0}), (math.log(2) + math.log(10)) / 2, 1e-6)
  near(M.brier({0.5, 0.9}, {1, 0}), (0.25 + 0.81) / 2, 1e-6)
  near(M.mse({1, 2, 4}, {1, 4, 1}), 13 / 3, 1e-12)
  near(M.rmse({1, 2, 4}, {1, 4, 1}), math.sqrt(13 / 3), 1e-12)
  near(M.mae({1, 2, 4}, {1, 4, 1}, {weight = {1, 1, 2}}), 2.0, 1e-12)
  local t = tl.tensor{1, 2, 4}
  near(M.mse(t, {1, 4, 1}), 13 / 3, 1e-12, "tensors are arrays too")
end

function T.calibration_table()
  local p, y = {}, {}
  for i = 1, 10 do p[i], y[i] = 0.25, (i <= 3) and 1 or 0 end
  p[11], y[11] = 0.5, 0
  p[12], y[12] = 0.05, 0
  p[13], y[13] = 0.95, 1
  local r = M.calibration(p, y, {bins = 10, strategy = "uniform"})
  eq(#r.bins, 10)
  eq(r.bins[3].count, 10)
  near(r.bins[3].rate, 0.3, 1e-12)
  near(r.bins[3].mean_pred, 0.25, 1e-7)
  near(r.bins[3].ci_lo, 0.10779126740630149, 1e-6, "Wilson interval")
  near(r.bins[3].ci_hi, 0.60322185093652198, 1e-6)
  eq(r.bins[5].count, 1, "0.5 lies on an edge: lower bin")
  eq(r.bins[6].count, 0, "empty bins are reported")
  check(isnan(r.bins[6].rate))
  near(r.bins[6].lo, 0.5, 1e-12)
  near(r.bins[6].hi, 0.6, 1e-12)
  check(r.notes:find("empty"), r.notes)
  for _, k in ipairs{"ece", "mce", "pcoc", "brier", "slope", "intercept", "ne", "logloss", "auc"} do
    check(type(r[k]) == "number", k)
  end
  near(r.ece, (10 * 0.05 + 0.5 + 0.05 + 0.05) / 13, 1e-6)
  near(r.mce, 0.5, 1e-6)
  local sum = 0
  for i = 1, 13 do sum = sum + p[i] end
  near(r.pcoc, sum / 4, 1e-6)
  local q = M.calibration(p, y, {bins = 4, strategy = "quantile", field = {1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3, 3}})
  eq(#q.bins, 4)
  eq(q.strategy, "quantile")
  check(type(q.field_ce) == "number")
  local n = 0
  for _, b in ipairs(q.bins) do n = n + b.count end
  eq(n, 13)
end

function T.calibrators()
  local p = {0.1, 0.3, 0.35, 0.6, 0.8, 0.2, 0.7, 0.9}
  local y = {0, 0, 1, 0, 1, 1, 1, 1}
  for _, kind in ipairs{"platt", "isotonic", "temperature"} do
    local c = M.calibrator(p, y, kind)
    check(tostring(c):find("calibrator " .. kind, 1, true), tostring(c))
    local one = c:apply(0.4)
    check(one >= 0 and one <= 1)
    local arr = c:apply({0.1, 0.4, 0.9})
    eq(#arr, 3)
    near(arr[2], one, 1e-6)
    eq(c:params().kind, kind)
    local c2 = M.load_calibrator(c:serialize())
    eq(c2:apply({0.1, 0.4, 0.9}), arr, "serialise round trip is exact")
  end
  local iso = M.calibrator({0.4, 0.1, 0.3, 0.2}, {1, 0, 0, 1}, "isotonic")
  near(iso:apply(0.15), 0.25, 1e-6)
  near(iso:apply(0.25), 0.5, 1e-6)
  near(iso:params().x, {0.1, 0.2, 0.3, 0.4}, 1e-7)
  near(iso:params().y, {0, 0.5, 0.5, 1}, 1e-7)
  raises(function() M.calibrator(p, y, "plat") end,
         'tl.metrics.calibrator: argument 3 must be "platt", "isotonic" or "temperature"')
  raises(function() M.calibrator({0.2, 0.3}, {1, 1}, "platt") end, "both classes")
  raises(function() M.load_calibrator({7, 0, 2, 1, 0}) end, "tl.metrics.load_calibrator:")
end

function T.argument_errors_name_function_and_argument()
  local e = raises(function() M.auc({1, 2, 3, 4, 5}, {1, 0, 1, 0, 1, 1, 1}) end)
  check(e:find("tl.metrics.auc: argument 2 must be an array of numbers the same length as argument 1 (got 7 vs 5)", 1, true), e)
  raises(function() M.auc("x", {}) end, "tl.metrics.auc: argument 1 must be an array of numbers, got string")
  raises(function() M.auc({0.1, "a"}, {0, 1}) end, "element 2 is a string")
  raises(function() M.auc({0.1, 0.2}, {0, 1}, {wieght = {1, 1}}) end, "unknown field 'wieght'")
  raises(function() M.auc({0.1, 0.2}, {0, 1}, {weight = {1}}) end,
         "field 'weight' must be an array of numbers the same length as argument 1")
  local msg = raises(function() M.auc({0.1, 0.2}, {0, 0.5}) end)
  check(msg:find("tl.metrics.auc: label at element 2 is 0.5, expected 0 or 1", 1, true), msg)
  raises(function() M.gauc({0.1, 0.2}, {0, 1}, {1.5, 2}) end, "argument 3 must be an array of integers")
  raises(function() M.calibration({0.1}, {1}, {strategy = "equal"}) end, "field 'strategy' must be one of")
  raises(function() M.calibration({0.1}, {1}, {bins = 0}) end, "field 'bins'")
  raises(function() M.logloss({1.5}, {1}) end, "expected a probability")
end

return T
