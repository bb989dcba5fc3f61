-- compare_backbones.lua — every backbone on census and on the ML-1M prefix (when
-- ../shared/data has it), against single-task baselines, under one protocol: up to
-- --epochs epochs, early stopping after --patience epochs without a better mean
-- validation metric (best weights restored, m:fit's default), fixed loss weights,
-- over --seeds seeds (>= 3 for the table). Reports per task the test AUC (MSE for
-- regression) as mean ± std, Δm % (the multi-task gain over the single-task models,
-- as LibMTL reports it: the mean over tasks of (-1)^l_t (M_t - B_t) / B_t x 100, l_t = 1
-- when lower is better, per seed, then mean ± std over seeds), and the wall time per
-- training step (the run's wall time, evaluation included, over its steps) with its
-- ratio to Shared-Bottom's.
--
--   towerlab scripts/compare_backbones.lua [--datasets census,movielens] [--seeds 3]
--       [--epochs 100] [--patience 3] [--backbones stem,adatt] [--jobs 1]
--       [--out results/compare_backbones] [--report-only] [--quick]
--
-- The single-task baseline of task t is the Shared-Bottom model with the other tasks'
-- loss weights 0 (so the shared layers learn from t alone), its towers unchanged.
-- --quick: census only, 2 seeds, 1 epoch of at most 20 steps, out runs/compare_backbones_quick
-- (a smoke test of the script, not a comparison). Rows go to <out>_<dataset>.csv as
-- each run finishes (re-running resumes); the Markdown tables to <out>.md.
local script_dir = arg[0]:match("^(.*)/[^/]*$") or "."
local R = dofile(script_dir .. "/lib/report.lua")
local o = R.options(arg)
local quick = o.quick
local seeds = tonumber(o.seeds) or (quick and 2 or 3)
local epochs = tonumber(o.epochs) or (quick and 1 or 100)
local patience = tonumber(o.patience) or 3
local out = o.out or (quick and "runs/compare_backbones_quick" or "results/compare_backbones")
local dataset_names = o.datasets or (quick and "census" or "census,movielens")

-- One size for all: experts and columns of [64, 32], towers [32], emb 8; STEM's gates have
-- hidden layers [32, 16] (the authors' MLP gates, scaled down as the experts are).
local E = {64, 32}
local BACKBONES = {
  {"shared_bottom", function() return tl.shared_bottom{bottom = E} end},
  {"omoe", function() return tl.omoe{experts = 4, expert = E} end},
  {"mmoe", function() return tl.mmoe{experts = 4, expert = E} end},
  {"ple", function() return tl.ple{levels = 2, shared = 1, specific = 1, expert = E} end},
  {"stem", function() return tl.stem{levels = 1, shared = 1, specific = 1, expert = E, gate = {32, 16}} end},
  {"adatt", function() return tl.adatt{levels = 2, shared = 1, specific = 1, expert = E} end},
  {"cross_stitch", function() return tl.cross_stitch{bottom = E} end},
  {"dselect_k", function() return tl.dselect_k{experts = 4, k = 2, expert = E} end},
}
local backbones = R.select(BACKBONES, o.backbones, "--backbones")
local lines = {}
local function emit(s) print(s); lines[#lines + 1] = s end

-- the mean over tasks of the signed relative gain to the baselines, in percent
local function delta_m(tasks, metrics, base)
  local s = 0
  for _, t in ipairs(tasks) do
    local k = t.name .. "_" .. R.metric_of(t)
    local sign = R.metric_of(t) == "mse" and -1 or 1
    s = s + sign * (metrics[k] - base[k]) / base[k]
  end
  return 100 * s / #tasks
end

local function run_dataset(dname)
  local ok, d, title = pcall(R.dataset, dname)
  if not ok then
    emit(string.format("%s: not run (%s)", dname, tostring(d):gsub("\n.*", "")))
    emit("")
    return
  end
  local tasks = d.tasks
  local models = {}
  for _, b in ipairs(backbones) do models[#models + 1] = b[1] end
  for _, t in ipairs(tasks) do models[#models + 1] = "single_" .. t.name end
  local maker = {}
  for _, b in ipairs(BACKBONES) do maker[b[1]] = b[2] end
  local csv = out .. "_" .. dname
  local results = o["report-only"] and {rows = R.read_csv(csv .. ".csv")} or tl.sweep{
    grid = {model = models}, repeats = seeds, seed = 0, jobs = tonumber(o.jobs) or 1, out = csv,
    verbose = false,
    run = function(cfg, seed)
      local single = cfg.model:match("^single_(.+)$")
      local weights
      if single then
        weights = {}
        for _, t in ipairs(tasks) do weights[t.name] = t.name == single and 1 or 0 end
      end
      local m = tl.model{data = d, backbone = single and tl.shared_bottom{bottom = E} or maker[cfg.model](),
                         tower = tl.mlp{32}, emb = 8, batch = 512, seed = seed, weights = weights}
      -- a single-task model stops on its own task's metric, not on the mean with an untrained task
      local row = R.fit_protocol(m, d, {epochs = epochs, patience = patience, max_steps = quick and 20 or nil,
                                        optim = tl.optim.adam{lr = 1e-3}, monitor = single})
      row.steps = #m:history().steps
      return R.test_metrics(m, d, row)
    end}
  local rows = R.ok_rows(results.rows)
  -- the single-task baseline of each seed: task t's metric from model single_t
  local base = {}
  for _, t in ipairs(tasks) do
    local k = t.name .. "_" .. R.metric_of(t)
    for seed, v in pairs(R.by_seed(rows, {model = "single_" .. t.name}, k)) do
      base[seed] = base[seed] or {}
      base[seed][k] = v
    end
  end
  local function per_step(model)
    local walls, steps, v = R.by_seed(rows, {model = model}, "wall"), R.by_seed(rows, {model = model}, "steps"), {}
    for seed, w in pairs(walls) do if steps[seed] and steps[seed] > 0 then v[#v + 1] = 1000 * w / steps[seed] end end
    return (R.mean_std(v))
  end
  local sb_ms = per_step("shared_bottom")
  emit(string.format("Backbones on %s: test metrics mean ± std over %d seeds (AUC; MSE for regression), "
                     .. "Δm %% over the single-task Shared-Bottom models, wall ms per training step.", title, seeds))
  emit("")
  local head, rule = "| model |", "|---|"
  for _, t in ipairs(tasks) do
    head = head .. " " .. t.name .. " " .. R.metric_of(t) .. " |"
    rule = rule .. "---|"
  end
  emit(head .. " Δm % | ms / step | × shared_bottom | runs | best epoch |")
  emit(rule .. "---|---|---|---|---|")
  for _, model in ipairs(models) do
    local line, n = "| " .. model .. " |", 0
    local per_seed = {}
    for _, t in ipairs(tasks) do
      local k = t.name .. "_" .. R.metric_of(t)
      local v = R.by_seed(rows, {model = model}, k)
      local list = {}
      for seed, x in pairs(v) do
        list[#list + 1] = x
        per_seed[seed] = per_seed[seed] or {}
        per_seed[seed][k] = x
      end
      n = #list
      line = line .. " " .. (n > 0 and R.fmt(R.mean_std(list)) or "not run") .. " |"
    end
    local dm = {}
    if not model:match("^single_") then
      for seed, mt in pairs(per_seed) do
        local complete = base[seed] ~= nil
        for _, t in ipairs(tasks) do
          local k = t.name .. "_" .. R.metric_of(t)
          complete = complete and mt[k] ~= nil and base[seed][k] ~= nil
        end
        if complete then dm[#dm + 1] = delta_m(tasks, mt, base[seed]) end
      end
    end
    local ms = per_step(model)
    local be = R.mean_std((function()
      local l = {}
      for _, x in pairs(R.by_seed(rows, {model = model}, "best_epoch")) do l[#l + 1] = x end
      return l
    end)())
    local dm_mean, dm_sd = R.mean_std(dm)
    line = line .. string.format(" %s | %s | %s | %d | %s |", #dm > 0 and R.fmt(dm_mean, dm_sd, 2) or "",
                                 ms == ms and string.format("%.2f", ms) or "",
                                 (ms == ms and sb_ms == sb_ms) and string.format("%.2f", ms / sb_ms) or "", n,
                                 be == be and string.format("%.1f", be) or "")
    emit(line)
  end
  emit("")
end

for name in dataset_names:gmatch("[^,]+") do run_dataset(name) end
emit(string.format("command: towerlab scripts/compare_backbones.lua --datasets %s --seeds %d --epochs %d "
                   .. "--patience %d%s%s", dataset_names, seeds, epochs, patience,
                   o.backbones and (" --backbones " .. o.backbones) or "", quick and " --quick" or ""))
R.write_text(out .. ".md", lines)
