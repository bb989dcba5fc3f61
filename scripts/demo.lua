-- make demo: train an MMoE on the shipped census data, show per-task metrics
-- and each task's reliability diagram.
--   towerlab scripts/demo.lua [epochs]
local epochs = tonumber(arg and arg[1]) or 3

print("loading census-income (KDD) from data/census_income_kdd ...")
local d = tl.datasets.census()
print(d)

local m = tl.model{data = d, backbone = tl.mmoe{experts = 8, expert = {64, 32}},
                   tower = tl.mlp{32}, emb = 8, batch = 512, seed = 1}
print(m)

m:fit{data = d.train, valid = d.valid, epochs = epochs, patience = 2,
      optim = tl.optim.adam{lr = 2e-3}, verbose = true}

local r = m:evaluate(d.test, {bins = 10})
print("\ntest split, per task:")
print(r)
for _, t in ipairs(m.tasks) do
  print(string.format("  %-14s auc %.4f  logloss %.4f  ece %.4f  pcoc %.3f", t,
                      r[t].auc, r[t].logloss, r[t].ece, r[t].pcoc))
end

if tl.plot then
  local file = "demo_calibration.svg"
  local ok = tl.plot.calibration(r, {file = file, title = "MMoE on census: reliability"})
  if ok then print("\ncalibration plot written to " .. file) end
  tl.plot.calibration(r, {terminal = "dumb", title = "reliability (test split)"})
end
