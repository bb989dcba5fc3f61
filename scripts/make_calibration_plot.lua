-- The README's calibration picture: the demo model (MMoE on census) and each
-- task's reliability diagram before and after isotonic calibration fitted on
-- the validation split, evaluated on the test split.
--   towerlab scripts/make_calibration_plot.lua [out.svg]
local out = arg[1] or "docs/calibration.svg"
local d = tl.datasets.census()
local m = tl.model{data = d, backbone = tl.mmoe{experts = 8, expert = {64, 32}},
                   tower = tl.mlp{32}, emb = 8, batch = 512, seed = 1}
m:fit{data = d.train, valid = d.valid, epochs = 3, patience = 2,
      optim = tl.optim.adam{lr = 2e-3}, verbose = false}
local r = tl.calibrate(m, d.valid, "isotonic"):evaluate(d.test, {bins = 10})
print(r)
assert(tl.plot.calibration(r, {file = out, width = 900, height = 700,
  title = "MMoE on census (test split): before (dashed) and after isotonic calibration"}))
print("wrote " .. out)
