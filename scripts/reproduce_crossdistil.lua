-- Reproduction of "Cross-Task Knowledge Distillation in Multi-Task
-- Recommendation" (CrossDistil, Yang et al. AAAI 2022) under the protocol of
-- scripts/reproduce_dml.lua: up to 100 epochs, early stop after `patience`
-- epochs without a better validation sum of AUCs, best weights restored,
-- tested once, paired differences to base with 95 % t-intervals. Variants:
--   base        the backbone alone
--   naive_kd    each student distils the other task's raw prediction (1 - p
--               for a negatively related pair)
--   aux_only    teachers + quadruplet ranking loss, no distillation (kd = 0)
--   aux_calib   + calibrated distillation, no error correction
--   full        + error correction by blending towards the label (lambda 0.2)
--   full_clip   + error correction by clipping to the label's side of 0.5
-- each with the teachers reading the shared layers through a stop-gradient
-- (teacher="separate", the default) or training them ("shared").
--
--   towerlab scripts/reproduce_crossdistil.lua [--dataset census|amazon|synthetic] [--path DIR]
--       [--rho 0.6] [--nested] [--rows 200000]   (synthetic: tl.datasets.synthetic_pair)
--       [--seeds 5] [--epochs 100] [--patience 3] [--kd 0.5] [--aux 1] [--teacher separate|shared|both]
--       [--backbones mmoe] [--variants base,full] [--jobs 1] [--out results/crossdistil_<dataset>]
--       [--report-only] [--quick]
--
-- Setup: the papers' small configuration (emb 8; MMoE 3 experts [128]; PLE 2
-- levels; towers [128, 80]; dropout 0.5; batch 512; Adam lr 1e-3, L2 1e-6);
-- warm-up of one epoch before the students distil.
local script_dir = arg[0]:match("^(.*)/[^/]*$") or "."
local R = dofile(script_dir .. "/lib/report.lua")
local o = R.options(arg)
local quick = o.quick
local dataset = o.dataset or "census"
local seeds = tonumber(o.seeds) or (quick and 2 or 5)
local epochs = tonumber(o.epochs) or (quick and 2 or 100)
local patience = tonumber(o.patience) or (dataset == "amazon" and 5 or 3)
local kd, aux = tonumber(o.kd) or 0.5, tonumber(o.aux) or 1
local d, dataset_name, pair
if dataset == "synthetic" then
  local rho, nested = tonumber(o.rho) or 0.6, o.nested and true or false
  d = tl.datasets.synthetic_pair{rho = rho, nested = nested, rows = tonumber(o.rows) or (quick and 20000 or 200000),
                                 seed = tonumber(o["data-seed"]) or 1}
  dataset_name = string.format("synthetic pair (rho %.2f, %s)", rho, nested and "nested" or "not nested")
else
  d, dataset_name = R.dataset(dataset, o.path)
end
local tasks = d.tasks
pair = {{tasks[1].name, tasks[2].name}}
local tag = dataset == "synthetic" and string.format("synthetic_rho%s%s", o.rho or "0.6", o.nested and "_nested" or "") or dataset
local out = o.out or (quick and "runs/reproduce_crossdistil_quick" or ("results/crossdistil_" .. tag))

local drop = 0.5
local backbones = {
  {"shared_bottom", function() return tl.shared_bottom{bottom = {128}, dropout = drop} end},
  {"mmoe", function() return tl.mmoe{experts = 3, expert = {128}, dropout = drop} end},
  {"ple", function() return tl.ple{levels = 2, shared = 1, specific = 1, expert = {128}, dropout = drop} end},
}
local warmup = quick and 5 or math.ceil(#d.train / 512)
local function cd(t) return function(teacher)
  local spec = {pairs = pair, warmup = warmup, teacher = teacher}
  for k, v in pairs(t) do spec[k] = v end
  return tl.crossdistil(spec)
end end
local variants = {
  {"base", nil},
  {"naive_kd", cd{naive = true, kd = kd}},
  {"aux_only", cd{kd = 0, aux = aux}},
  {"aux_calib", cd{kd = kd, aux = aux, correct = "none"}},
  {"full", cd{kd = kd, aux = aux, correct = "blend", lambda = 0.2}},
  {"full_clip", cd{kd = kd, aux = aux, correct = "clip"}},
}
-- MMoE unless --backbones says otherwise (a CrossDistil run costs ~1.5 base runs)
backbones = R.select(backbones, o.backbones or "mmoe", "--backbones")
variants = R.select(variants, o.variants or (quick and "base,naive_kd,full" or "base,naive_kd,aux_only,aux_calib,full"),
                    "--variants")
-- a variant with teachers runs once per teacher placement: "full" reads the
-- shared layers through a stop-gradient, "full@shared" trains them
local teachers = ({separate = {"separate"}, shared = {"shared"}, both = {"separate", "shared"}})[o.teacher or "separate"]
assert(teachers, "--teacher is separate, shared or both")
local runs, vnames = {}, {}
for _, v in ipairs(variants) do
  local with_teacher = v[2] and v[1] ~= "naive_kd"
  for _, t in ipairs(with_teacher and teachers or {"separate"}) do
    local name = v[1] .. ((with_teacher and t == "shared") and "@shared" or "")
    runs[name] = v[2] and function() return v[2](t) end or false
    vnames[#vnames + 1] = name
  end
end
local by_name, bnames = {}, {}
for i, b in ipairs(backbones) do by_name[b[1]] = b[2]; bnames[i] = b[1] end

local results = o["report-only"] and {rows = R.read_csv(out .. ".csv")} or tl.sweep{
  grid = {backbone = bnames, variant = vnames}, repeats = seeds, seed = 0,
  jobs = tonumber(o.jobs) or 1, out = out, verbose = false,
  run = function(cfg, seed)
    local distill = runs[cfg.variant]
    local m = tl.model{data = d, backbone = by_name[cfg.backbone](), tower = tl.mlp{128, 80, dropout = drop},
                       emb = 8, batch = 512, seed = seed, distill = distill and distill() or nil}
    local row = R.fit_protocol(m, d, {epochs = epochs, patience = patience, max_steps = quick and 24 or nil,
                                      optim = tl.optim.adam{lr = 1e-3, l2 = 1e-6}})
    return R.test_metrics(m, d, row, {"multi_auc", "logloss", "ece"})
  end}

local metrics = {}
for _, t in ipairs(tasks) do
  metrics[#metrics + 1] = {key = t.name .. "_auc", label = t.name .. " AUC", diff = true}
  metrics[#metrics + 1] = {key = t.name .. "_multi_auc", label = t.name .. " Multi-AUC", diff = true}
  metrics[#metrics + 1] = {key = t.name .. "_ece", label = t.name .. " ECE"}
end
local command = string.format("towerlab scripts/reproduce_crossdistil.lua --dataset %s%s%s --seeds %d --epochs %d "
                              .. "--patience %d --kd %g --aux %g --teacher %s%s%s%s",
                              dataset, o.rho and (" --rho " .. o.rho) or "", o.nested and " --nested" or "",
                              seeds, epochs, patience, kd, aux, o.teacher or "separate",
                              o.backbones and (" --backbones " .. o.backbones) or "",
                              o.variants and (" --variants " .. o.variants) or "", quick and " --quick" or "")
local lines = R.table_vs_base{
  title = string.format("CrossDistil on %s, pair (%s, %s): test metrics, mean ± std over %d seeds; Δ = paired "
                        .. "difference to base (same seed) with 95 %% t-interval (▲/▼: interval excludes 0).",
                        dataset_name, pair[1][1], pair[1][2], seeds),
  rows = R.ok_rows(results.rows), groups = bnames, group_field = "backbone", variants = vnames,
  tasks = tasks, seeds = seeds, command = command, metrics = metrics}
R.write_text(out .. ".md", lines)
