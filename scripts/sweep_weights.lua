-- sweep_weights.lua — how the loss weight of `income` changes both tasks on
-- census (MMoE, short training), with repeats, in 2 worker processes.
--
--   towerlab scripts/sweep_weights.lua [epochs] [repeats] [out] [max_steps]
--
-- Defaults: 1 epoch capped at 150 steps, 2 repeats (seeds 1, 2), out =
-- runs/sweep_weights: rows in runs/sweep_weights.csv (re-running resumes),
-- the plot in runs/sweep_weights.svg. Prints the Markdown summary table.
local epochs = math.tointeger(tonumber(arg and arg[1] or nil)) or 1
local repeats = math.tointeger(tonumber(arg and arg[2] or nil)) or 2
local out = arg and arg[3] or "runs/sweep_weights"
local max_steps = math.tointeger(tonumber(arg and arg[4] or nil)) or 150

local d = tl.datasets.census() -- loaded once; the workers share it (fork)

local results = tl.sweep{
  grid = {income_weight = {0.25, 0.5, 1, 2, 4}},
  repeats = repeats,
  seed = 0,
  jobs = 2,
  out = out,
  run = function(cfg, seed)
    local m = tl.model{data = d, backbone = tl.mmoe{experts = 4, expert = {32, 16}},
                       tower = tl.mlp{16}, emb = 8, batch = 512, seed = seed,
                       weights = {income = cfg.income_weight, never_married = 1}}
    m:fit{data = d.train, valid = d.valid, epochs = epochs, max_steps = max_steps,
          seed = seed, verbose = false}
    local r = m:evaluate(d.test)
    return {income_auc = r.income.auc, income_logloss = r.income.logloss,
            never_married_auc = r.never_married.auc,
            never_married_logloss = r.never_married.logloss}
  end,
}

local svg = out .. ".svg"
local ok, err = tl.plot.compare(results.rows, {x = "income_weight", y = "income_auc", file = svg,
                                               title = "income AUC by income loss weight"})
if ok then print("plot in " .. svg) else print("no plot: " .. tostring(err)) end
return results
