-- Run by tests/mpi/test_dp.sh in one process: the grain-summed gradient is
-- the batch gradient. A fit with grains=6 and the ordinary fit (one grain)
-- differ only by float rounding: predictions and effective loss weights
-- (uncertainty weighting's learned ones included) agree to 1e-4 after 12
-- steps, for every weighting and DML the data-parallel fit supports.
tl.threads(1)
local d = tl.datasets.synthetic_pair{rows = 4000, seed = 3}
local worst = 0
for _, cfg in ipairs{{"mmoe", "fixed", false}, {"mmoe", "uncertainty", false}, {"shared_bottom", "uncertainty", true},
                     {"mmoe", "dwa", true}} do
  local runs = {}
  for _, grains in ipairs{1, 6} do
    local bb = cfg[1] == "mmoe" and tl.mmoe{experts = 3, expert = {16}} or tl.shared_bottom{bottom = {16}}
    local m = tl.model{data = d, backbone = bb, tower = tl.mlp{8}, emb = 4, batch = 256, seed = 5,
                       weighting = cfg[2], mutual = cfg[3] and tl.dml{ctfm = true, gkd = true} or nil}
    -- plain SGD: Adam would normalise a wrongly scaled gradient away
    m:fit{data = d.train, epochs = 3, max_steps = 12, grains = grains, verbose = false,
          optim = tl.optim.sgd{lr = 0.2}}
    local h = m:history().steps
    runs[#runs + 1] = {p = m:predict(d.test), w = h[#h].weight}
  end
  local dp, dw, same = 0, 0, true
  for _, t in ipairs{"a", "b"} do
    for i = 1, #runs[1].p[t] do
      local x = math.abs(runs[1].p[t][i] - runs[2].p[t][i])
      dp = math.max(dp, x)
      same = same and x == 0
    end
    dw = math.max(dw, math.abs(runs[1].w[t] - runs[2].w[t]))
  end
  print(string.format("%s %s dml=%s: max |dpred| %.2e  max |dweight| %.2e", cfg[1], cfg[2], tostring(cfg[3]), dp, dw))
  -- grains must not be silently ignored: 6 grains round differently from one
  assert(not same, "grains=6 gave the ordinary fit's bits: the grain path did not run")
  worst = math.max(worst, dp, dw)
end
assert(worst < 1e-4, string.format("grain-summed fit differs from the ordinary fit by %.3g", worst))
print("ok close")
