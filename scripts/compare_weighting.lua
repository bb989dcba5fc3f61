-- compare_weighting.lua — every loss-weighting method (tl.weightings; the
-- Gram methods at='params' and at='rep') on census and, when ../shared has
-- it, the ML-1M prefix, over seeds, under one protocol: MMoE (3 experts
-- [128]), towers [128, 80], emb 8, batch 512, Adam lr 1e-3 with L2 1e-6, up
-- to `epochs` epochs with early stopping after `patience` epochs without a
-- better validation monitor (mean AUC, -MSE for regression), best weights
-- restored, tested once. Single-task baselines: the same model with every
-- other task's weight 0, early-stopped on its own task.
--
-- Reports per method and task the test AUC (MSE) mean ± std over seeds, the
-- multi-task gain over the single-task baselines as LibMTL reports it,
--   Δm % = 100 / T sum_t (-1)^{l_t} (M_t - M_t^STL) / M_t^STL
-- (l_t = 1 where lower is better: MSE), its mean ± std over seeds (each
-- seed against the baselines' mean), and the training time per step relative
-- to fixed weights (wall, mean over seeds; the machine's load moves it).
--
--   towerlab scripts/compare_weighting.lua [--dataset census|movielens|all]
--       [--path DIR] [--seeds 3] [--epochs 100] [--patience 3] [--jobs 1]
--       [--methods fixed,famo,mgda@rep,...] [--out results/weighting] [--report-only] [--quick]
--
-- --quick: 1 epoch of at most 5 steps, 1 seed, the smaller census run only
-- (make test runs it). Rows go to <out>_<dataset>.csv as they finish (a
-- re-run resumes), the table to <out>_<dataset>.md.
local script_dir = arg[0]:match("^(.*)/[^/]*$") or "."
local R = dofile(script_dir .. "/lib/report.lua")
local o = R.options(arg)
local quick = o.quick
local seeds = tonumber(o.seeds) or (quick and 1 or 3)
local epochs = tonumber(o.epochs) or (quick and 1 or 100)
local patience = tonumber(o.patience) or 3
local out = o.out or (quick and "runs/compare_weighting_quick" or "results/weighting")
local which = o.dataset or (quick and "census" or "all")

-- the variants: "name" or "name@rep"
local variants = {}
for _, w in ipairs(tl.weightings) do
  local has_at = false
  for _, opt in ipairs(w.options) do has_at = has_at or opt == "at" end
  variants[#variants + 1] = {w.name, w.name}
  if has_at then variants[#variants + 1] = {w.name .. "@rep", {w.name, at = "rep"}} end
end
variants = R.select(variants, o.methods, "--methods")
local vnames, spec_of = {"single_task"}, {}
for _, v in ipairs(variants) do vnames[#vnames + 1] = v[1]; spec_of[v[1]] = v[2] end

local function run_dataset(name)
  local ok, d, dataset_name = pcall(R.dataset, name, o.path)
  if not ok then
    print(("compare_weighting: %s skipped (%s)"):format(name, tostring(d)))
    return nil
  end
  local tasks = d.tasks
  local file = out .. "_" .. name
  local function build(seed, weighting, weights)
    return tl.model{data = d, backbone = tl.mmoe{experts = 3, expert = {128}},
                    tower = tl.mlp{128, 80}, emb = 8, batch = 512, seed = seed,
                    weighting = weighting, weights = weights}
  end
  local function train(m, monitor)
    local t0 = os.clock()
    local wall0 = os.time()
    m:fit{data = d.train, valid = d.valid, epochs = epochs, patience = patience, monitor = monitor,
          max_steps = quick and 5 or nil, optim = tl.optim.adam{lr = 1e-3, l2 = 1e-6}, verbose = false}
    local h = m:history()
    local best, best_epoch = -math.huge, 0
    for _, e in ipairs(h.epochs) do
      if e.monitor and e.monitor > best then best, best_epoch = e.monitor, e.epoch end
    end
    return {epochs = #h.epochs, best_epoch = best_epoch, steps = #h.steps,
            cpu_ms_per_step = 1e3 * (os.clock() - t0) / math.max(1, #h.steps),
            wall_s = os.time() - wall0}
  end
  local results = o["report-only"] and {rows = R.read_csv(file .. ".csv")} or tl.sweep{
    grid = {variant = vnames}, repeats = seeds, seed = 0, jobs = tonumber(o.jobs) or 1,
    out = file, verbose = false,
    run = function(cfg, seed)
      if cfg.variant == "single_task" then -- one model per task, its own metric
        local row = {}
        for _, t in ipairs(tasks) do
          local weights = {}
          for _, u in ipairs(tasks) do weights[u.name] = u.name == t.name and 1 or 0 end
          local m = build(seed, "fixed", weights)
          local r = train(m, t.name)
          local key = t.name .. "_" .. R.metric_of(t)
          row[key] = m:evaluate(d.test)[t.name][R.metric_of(t)]
          row.cpu_ms_per_step = r.cpu_ms_per_step
        end
        return row
      end
      local m = build(seed, spec_of[cfg.variant])
      local row = train(m)
      return R.test_metrics(m, d, row)
    end}
  local rows = R.ok_rows(results.rows)
  -- baselines: the single-task runs' mean per task
  local stl = {}
  for _, t in ipairs(tasks) do
    local key = t.name .. "_" .. R.metric_of(t)
    stl[key] = R.mean_std(R.values(rows, {variant = "single_task"}, key))
  end
  local fixed_ms = R.mean_std(R.values(rows, {variant = "fixed"}, "cpu_ms_per_step"))
  local lines = {}
  local function emit(s) print(s); lines[#lines + 1] = s end
  emit(("Loss weighting on %s: test %s mean ± std over %d seeds (MMoE, early stopping, patience %d); "
        .. "Δm %% against the single-task models (LibMTL's definition, higher is better); "
        .. "CPU time per training step relative to fixed weights."):format(dataset_name,
        "AUC (MSE for regression)", seeds, patience))
  emit("")
  local head, rule = "| method |", "|---|"
  for _, t in ipairs(tasks) do
    head = head .. " " .. t.name .. " " .. R.metric_of(t) .. " |"
    rule = rule .. "---|"
  end
  emit(head .. " Δm % | best epoch | ms / step | vs fixed |")
  emit(rule .. "---|---|---|---|")
  for _, v in ipairs(vnames) do
    local line = "| " .. v .. " |"
    local n_seeds = #R.values(rows, {variant = v}, tasks[1].name .. "_" .. R.metric_of(tasks[1]))
    for _, t in ipairs(tasks) do
      local key = t.name .. "_" .. R.metric_of(t)
      local vals = R.values(rows, {variant = v}, key)
      line = line .. " " .. (#vals > 0 and R.fmt(R.mean_std(vals)) or "not run") .. " |"
    end
    local dm = {}
    for s = 1, n_seeds do
      local acc = 0
      for _, t in ipairs(tasks) do
        local key = t.name .. "_" .. R.metric_of(t)
        local mt, base = R.values(rows, {variant = v}, key)[s], stl[key]
        local sign = R.metric_of(t) == "mse" and -1 or 1
        acc = acc + sign * (mt - base) / base
      end
      dm[s] = 100 * acc / #tasks
    end
    local ms = R.mean_std(R.values(rows, {variant = v}, "cpu_ms_per_step"))
    local be = R.mean_std(R.values(rows, {variant = v}, "best_epoch"))
    local dm_m, dm_s = R.mean_std(dm)
    line = line .. " " .. (v == "single_task" and "0 (baseline)" or (#dm > 0 and R.fmt(dm_m, dm_s, 2) or "-"))
      .. " | " .. (v == "single_task" and "-" or string.format("%.1f", be or 0))
      .. " | " .. string.format("%.1f", ms or 0)
      .. " | " .. ((ms and fixed_ms and fixed_ms > 0) and string.format("%.2fx", ms / fixed_ms) or "-") .. " |"
    emit(line)
  end
  emit("")
  emit(("command: towerlab scripts/compare_weighting.lua --dataset %s --seeds %d --epochs %d --patience %d%s%s")
       :format(name, seeds, epochs, patience, o.methods and (" --methods " .. o.methods) or "", quick and " --quick" or ""))
  R.write_text(file .. ".md", lines)
  return lines
end

local done = {}
for _, name in ipairs(which == "all" and {"census", "movielens"} or {which}) do
  done[name] = run_dataset(name)
end
return done
