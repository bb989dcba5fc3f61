-- Reproduction of "Deep Mutual Learning across Task Towers" (Ren et al. 2023)
-- on the shipped census data (and on MovieLens, the paper's own dataset, with
-- --movielens when ../shared/data has it): backbones Shared-Bottom, MMoE and
-- PLE, each as base / CTFM only / GKD only / DML / DML-nostop, over seeds,
-- with early stopping on validation. Reports mean ± std of test AUC (MSE for
-- regression tasks) and the paired difference to the base model with a 95 %
-- t-interval over seeds.
--
--   towerlab scripts/reproduce_dml.lua [--seeds 5] [--epochs 20] [--out runs/reproduce_dml]
--                                      [--movielens [path]] [--quick] [--jobs 2]
--                                      [--report-only]   (tables from the runs finished so far)
--                                      [--backbones mmoe,ple]
-- Setup of the paper (PAPERS.md): emb 8, expert layers [128], 3 experts, PLE 2
-- levels, towers [128, 80], dropout 0.5, batch 512, Adam lr 1e-3 with L2 1e-6,
-- patience 3.
local script_dir = arg[0]:match("^(.*)/[^/]*$") or "."
local R = dofile(script_dir .. "/lib/report.lua")
local o = R.options(arg)
local quick = o.quick
local seeds = tonumber(o.seeds) or (quick and 2 or 5)
local epochs = tonumber(o.epochs) or 20
local out = o.out or (quick and "runs/reproduce_dml_quick" or "runs/reproduce_dml")

local d, dataset_name
if o.movielens then
  d = tl.datasets.movielens(type(o.movielens) == "string" and {path = o.movielens} or nil)
  dataset_name = "ML-1M prefix (users 1-2999)"
else
  d = tl.datasets.census()
  dataset_name = "census-income (KDD)"
end

local drop = 0.5
local backbones = {
  {"shared_bottom", function() return tl.shared_bottom{bottom = {128}, dropout = drop} end},
  {"mmoe", function() return tl.mmoe{experts = 3, expert = {128}, dropout = drop} end},
  {"ple", function() return tl.ple{levels = 2, shared = 1, specific = 1, expert = {128}, dropout = drop} end},
}
local variants = {
  {"base", nil},
  {"ctfm", function() return tl.dml{gkd = false, dropout = drop} end},
  {"gkd", function() return tl.dml{ctfm = false, dropout = drop} end},
  {"dml", function() return tl.dml{dropout = drop} end},
  {"dml_nostop", function() return tl.dml{stop_grad = false, dropout = drop} end},
}
if quick then backbones = {backbones[2]} end
if o.backbones then -- e.g. --backbones mmoe,ple
  local keep = {}
  for _, b in ipairs(backbones) do
    if ("," .. o.backbones .. ","):find("," .. b[1] .. ",", 1, true) then table.insert(keep, b) end
  end
  assert(#keep > 0, "--backbones names none of shared_bottom, mmoe, ple")
  backbones = keep
end

local tasks = {}
for i, t in ipairs(d.tasks) do tasks[i] = t end
local function metric_of(t) return t.type == "binary" and "auc" or "mse" end

-- Every run is one row of a tl.sweep: written to <out>.csv as it finishes, so
-- an interrupted reproduction resumes where it stopped.
local by_name = {}
for _, b in ipairs(backbones) do by_name[b[1]] = b[2] end
local variant_of = {}
for _, v in ipairs(variants) do variant_of[v[1]] = v[2] end
local bnames, vnames = {}, {}
for i, b in ipairs(backbones) do bnames[i] = b[1] end
for i, v in ipairs(variants) do vnames[i] = v[1] end
local results = o["report-only"] and {rows = R.read_csv(out .. ".csv")} or tl.sweep{
  grid = {backbone = bnames, variant = vnames}, repeats = seeds, seed = 0,
  jobs = tonumber(o.jobs) or 1, out = out, verbose = false,
  run = function(cfg, seed)
    local mutual = variant_of[cfg.variant]
    local m = tl.model{data = d, backbone = by_name[cfg.backbone](), tower = tl.mlp{128, 80, dropout = drop},
                       emb = 8, batch = 512, seed = seed, mutual = mutual and mutual() or nil}
    m:fit{data = d.train, valid = d.valid, epochs = quick and 1 or epochs, patience = 3,
          max_steps = quick and 20 or nil, optim = tl.optim.adam{lr = 1e-3, l2 = 1e-6}, verbose = false}
    local r = m:evaluate(d.test)
    local row = {epochs = #m:history().epochs}
    for _, t in ipairs(tasks) do row[t.name .. "_" .. metric_of(t)] = r[t.name][metric_of(t)] end
    return row
  end}
local rows = {}
for _, r in ipairs(results.rows) do if r.status == "ok" then table.insert(rows, r) end end

local lines = {}
local function emit(s) print(s); table.insert(lines, s) end
emit(string.format("DML on %s: test %s, mean ± std over %d seeds (seeds 1..%d); Δ = paired difference to base with 95 %% t-interval (▲/▼: interval excludes 0).",
                   dataset_name, "AUC (MSE for regression)", seeds, seeds))
emit("")
local head, rule = "| backbone | variant |", "|---|---|"
for _, t in ipairs(tasks) do
  head = head .. string.format(" %s %s | Δ %s |", t.name, metric_of(t), t.name)
  rule = rule .. "---|---|"
end
emit(head)
emit(rule)
for _, bb in ipairs(backbones) do
  for _, var in ipairs(variants) do
    local line = string.format("| %s | %s |", bb[1], var[1])
    for _, t in ipairs(tasks) do
      local key = t.name .. "_" .. metric_of(t)
      local v = R.values(rows, {backbone = bb[1], variant = var[1]}, key)
      local base = R.values(rows, {backbone = bb[1], variant = "base"}, key)
      local m, sd = R.mean_std(v)
      local dm, dh = R.paired(v, base)
      line = line .. string.format(" %s | %s |", R.fmt(m, sd), var[1] == "base" and "" or R.fmt_diff(dm, dh))
    end
    emit(line)
  end
end
emit("")
local run_seconds = 0
for _, r in ipairs(rows) do run_seconds = run_seconds + (tonumber(r.wall) or 0) end
emit(string.format("%d of %d runs finished; %.0f s of run time (wall, summed over runs); command: "
                   .. "towerlab scripts/reproduce_dml.lua --seeds %d --epochs %d%s%s%s",
                   #rows, #backbones * #variants * seeds, run_seconds, seeds, epochs,
                   o.movielens and " --movielens" or "",
                   o.backbones and (" --backbones " .. o.backbones) or "",
                   quick and " --quick" or ""))
R.write_text(out .. ".md", lines)
