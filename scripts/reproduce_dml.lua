-- Reproduction of "Deep Mutual Learning across Task Towers" (Ren et al. 2023)
-- under the authors' protocol: backbones Shared-Bottom, MMoE and PLE, each as
-- base / CTFM only / GKD only / DML / DML-nostop, over seeds. Every run trains
-- up to 100 epochs, stops after `patience` epochs without improvement of the
-- validation sum of task metrics (AUC for binary tasks, -MSE for regression),
-- restores the best weights and is tested once. Reports mean ± std of the
-- test metric, the paired difference to the base model with a 95 %
-- t-interval over seeds, the epoch of the best checkpoint and the wall time.
--
--   towerlab scripts/reproduce_dml.lua [--dataset census|movielens|amazon] [--path DIR]
--       [--seeds 5] [--epochs 100] [--patience 3] [--jobs 1] [--out results/dml_<dataset>]
--       [--backbones mmoe,ple] [--variants base,dml] [--report-only] [--quick]
--
-- Datasets: census (shipped; income, never_married), movielens (the ML-1M
-- prefix in ../shared/data: like = rating >= 4, and rating as a regression),
-- amazon (the DML authors' own Video Games files in ../shared/data, tasks
-- rated and like, re-split 8:1:1 by a fixed seed; patience 5 as the authors'
-- script). On a dataset with a regression task the extra variant gkd_binary
-- applies GKD to the binary tasks only.
--
-- Setup of the paper (PAPERS.md, the authors' run script): emb 8, expert
-- layers [128], 3 experts, PLE 2 levels, towers [128, 80], dropout 0.5,
-- batch 512, Adam lr 1e-3 with L2 1e-6.
local script_dir = arg[0]:match("^(.*)/[^/]*$") or "."
local R = dofile(script_dir .. "/lib/report.lua")
local o = R.options(arg)
local quick = o.quick
local dataset = o.dataset or (o.movielens and "movielens") or "census"
local seeds = tonumber(o.seeds) or (quick and 2 or 5)
local epochs = tonumber(o.epochs) or (quick and 1 or 100)
local patience = tonumber(o.patience) or (dataset == "amazon" and 5 or 3)
local out = o.out or (quick and "runs/reproduce_dml_quick" or ("results/dml_" .. dataset))

local path = o.path or (type(o.movielens) == "string" and o.movielens) or nil
local d, dataset_name = R.dataset(dataset, path)

local drop = 0.5
local backbones = {
  {"shared_bottom", function() return tl.shared_bottom{bottom = {128}, dropout = drop} end},
  {"mmoe", function() return tl.mmoe{experts = 3, expert = {128}, dropout = drop} end},
  {"ple", function() return tl.ple{levels = 2, shared = 1, specific = 1, expert = {128}, dropout = drop} end},
}
local binary = {}
for _, t in ipairs(d.tasks) do if t.type == "binary" then binary[#binary + 1] = t.name end end
local variants = {
  {"base", nil},
  {"ctfm", function() return tl.dml{gkd = false, dropout = drop} end},
  {"gkd", function() return tl.dml{ctfm = false, dropout = drop} end},
  {"dml", function() return tl.dml{dropout = drop} end},
  {"dml_nostop", function() return tl.dml{stop_grad = false, dropout = drop} end},
}
if #binary < #d.tasks then
  variants[#variants + 1] = {"gkd_binary", function() return tl.dml{ctfm = false, gkd_tasks = binary, dropout = drop} end}
end
if quick then backbones = {backbones[2]} end
backbones = R.select(backbones, o.backbones, "--backbones")
variants = R.select(variants, o.variants, "--variants")

local tasks = d.tasks
local by_name, variant_of = {}, {}
local bnames, vnames = {}, {}
for i, b in ipairs(backbones) do by_name[b[1]] = b[2]; bnames[i] = b[1] end
for i, v in ipairs(variants) do variant_of[v[1]] = v[2]; vnames[i] = v[1] end

-- Every run is one row of a tl.sweep: written to <out>.csv as it finishes, so
-- an interrupted reproduction resumes where it stopped.
local results = o["report-only"] and {rows = R.read_csv(out .. ".csv")} or tl.sweep{
  grid = {backbone = bnames, variant = vnames}, repeats = seeds, seed = 0,
  jobs = tonumber(o.jobs) or 1, out = out, verbose = false,
  run = function(cfg, seed)
    local mutual = variant_of[cfg.variant]
    local m = tl.model{data = d, backbone = by_name[cfg.backbone](), tower = tl.mlp{128, 80, dropout = drop},
                       emb = 8, batch = 512, seed = seed, mutual = mutual and mutual() or nil}
    local row = R.fit_protocol(m, d, {epochs = epochs, patience = patience, max_steps = quick and 20 or nil,
                                      optim = tl.optim.adam{lr = 1e-3, l2 = 1e-6}})
    R.test_metrics(m, d, row)
    return row
  end}

local command = string.format("towerlab scripts/reproduce_dml.lua --dataset %s --seeds %d --epochs %d --patience %d%s%s%s",
                              dataset, seeds, epochs, patience,
                              o.backbones and (" --backbones " .. o.backbones) or "",
                              o.variants and (" --variants " .. o.variants) or "", quick and " --quick" or "")
local lines = R.table_vs_base{
  title = string.format("DML on %s: test %s, mean ± std over %d seeds; Δ = paired difference to base "
                        .. "(same seed) with 95 %% t-interval (▲/▼: interval excludes 0; for MSE lower is better).",
                        dataset_name, "AUC (MSE for regression)", seeds),
  rows = R.ok_rows(results.rows), groups = bnames, group_field = "backbone", variants = vnames,
  tasks = tasks, seeds = seeds, command = command}
R.write_text(out .. ".md", lines)
