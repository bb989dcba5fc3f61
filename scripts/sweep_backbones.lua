-- sweep_backbones.lua — backbones × loss weighting strategies on census
-- (small models, short training), with repeats, in 2 worker processes.
--
--   towerlab scripts/sweep_backbones.lua [epochs] [repeats] [out] [max_steps]
--
-- Defaults: 1 epoch capped at 100 steps, 2 repeats (seeds 1, 2), out =
-- runs/sweep_backbones: rows in runs/sweep_backbones.csv (re-running resumes),
-- the plot (mean test AUC over both tasks by weighting, one line per backbone)
-- in runs/sweep_backbones.svg. Prints the Markdown summary table.
local epochs = math.tointeger(tonumber(arg and arg[1] or nil)) or 1
local repeats = math.tointeger(tonumber(arg and arg[2] or nil)) or 2
local out = arg and arg[3] or "runs/sweep_backbones"
local max_steps = math.tointeger(tonumber(arg and arg[4] or nil)) or 100

local d = tl.datasets.census() -- loaded once; the workers share it (fork)

local backbones = {
  shared_bottom = function() return tl.shared_bottom{bottom = {32, 16}} end,
  mmoe = function() return tl.mmoe{experts = 4, expert = {32, 16}} end,
  ple = function() return tl.ple{levels = 1, shared = 2, specific = 1, expert = {32, 16}} end,
}

local results = tl.sweep{
  grid = {backbone = {"shared_bottom", "mmoe", "ple"},
          weighting = {"fixed", "uncertainty", "dwa", "gradnorm", "pcgrad"}},
  repeats = repeats,
  seed = 0,
  jobs = 2,
  out = out,
  run = function(cfg, seed)
    local m = tl.model{data = d, backbone = backbones[cfg.backbone](), tower = tl.mlp{16},
                       emb = 8, batch = 512, seed = seed, weighting = cfg.weighting}
    m:fit{data = d.train, valid = d.valid, epochs = epochs, max_steps = max_steps,
          seed = seed, verbose = false}
    local r = m:evaluate(d.test)
    return {income_auc = r.income.auc, never_married_auc = r.never_married.auc,
            mean_auc = (r.income.auc + r.never_married.auc) / 2}
  end,
}

local svg = out .. ".svg"
local ok, err = tl.plot.compare(results.rows, {x = "weighting", y = "mean_auc", group = "backbone",
                                               file = svg, title = "mean test AUC"})
if ok then print("plot in " .. svg) else print("no plot: " .. tostring(err)) end
return results
