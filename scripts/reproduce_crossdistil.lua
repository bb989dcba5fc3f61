-- Reproduction of "Cross-Task Knowledge Distillation in Multi-Task
-- Recommendation" (CrossDistil, Yang et al. AAAI 2022) on the shipped census
-- data, with income and never_married as the task pair (they are negatively
-- related; order="auto" flips the partner label, see PAPERS.md). Backbones
-- Shared-Bottom, MMoE and PLE, each as:
--   base        the backbone alone
--   naive_kd    each student distils the other task's raw prediction
--   aux_only    teachers + quadruplet ranking loss, no distillation (kd = 0)
--   aux_calib   + calibrated distillation, no error correction
--   full_blend  + error correction by blending towards the label (lambda 0.2)
--   full_clip   + error correction by clipping to the label's side of 0.5
-- Reports test AUC, Multi-AUC, logloss and ECE per task, mean ± std over seeds,
-- and paired differences to base with 95 % t-intervals.
--
--   towerlab scripts/reproduce_crossdistil.lua [--seeds 5] [--epochs 10] [--out runs/reproduce_crossdistil] [--quick]
local script_dir = arg[0]:match("^(.*)/[^/]*$") or "."
local R = dofile(script_dir .. "/lib/report.lua")
local o = R.options(arg)
local quick = o.quick
local seeds = tonumber(o.seeds) or (quick and 2 or 5)
local epochs = tonumber(o.epochs) or 10
local out = o.out or (quick and "runs/reproduce_crossdistil_quick" or "runs/reproduce_crossdistil")

local d = tl.datasets.census()
local pair = {{"income", "never_married"}}
local steps_per_epoch = math.ceil(#d.train / 512)

local backbones = {
  {"shared_bottom", function() return tl.shared_bottom{bottom = {128, 64}} end},
  {"mmoe", function() return tl.mmoe{experts = 4, expert = {128, 64}} end},
  {"ple", function() return tl.ple{levels = 1, shared = 2, specific = 1, expert = {128, 64}} end},
}
local warmup = quick and 5 or steps_per_epoch
local variants = {
  {"base", nil},
  {"naive_kd", function() return tl.crossdistil{pairs = pair, naive = true, kd = 0.5, warmup = warmup} end},
  {"aux_only", function() return tl.crossdistil{pairs = pair, kd = 0, aux = 1} end},
  {"aux_calib", function() return tl.crossdistil{pairs = pair, kd = 0.5, aux = 1, correct = "none", warmup = warmup} end},
  {"full_blend", function() return tl.crossdistil{pairs = pair, kd = 0.5, aux = 1, correct = "blend", lambda = 0.2, warmup = warmup} end},
  {"full_clip", function() return tl.crossdistil{pairs = pair, kd = 0.5, aux = 1, correct = "clip", warmup = warmup} end},
}
if quick then backbones = {backbones[2]} end
local tasks = {"income", "never_married"}
local metrics = {"auc", "multi_auc", "logloss", "ece"}

local rows, t0 = {}, os.time()
for _, bb in ipairs(backbones) do
  for _, var in ipairs(variants) do
    for seed = 1, seeds do
      local started = os.clock()
      local m = tl.model{data = d, backbone = bb[2](), tower = tl.mlp{64}, emb = 8, batch = 512,
                         seed = seed, distill = var[2] and var[2]() or nil}
      m:fit{data = d.train, valid = d.valid, epochs = quick and 2 or epochs, patience = 2,
            max_steps = quick and 24 or nil, optim = tl.optim.adam{lr = 1e-3}, verbose = false}
      local r = m:evaluate(d.test)
      local row = {backbone = bb[1], variant = var[1], seed = seed,
                   epochs = #m:history().epochs, seconds = os.clock() - started}
      for _, t in ipairs(tasks) do
        for _, k in ipairs(metrics) do row[t .. "_" .. k] = r[t][k] end
      end
      table.insert(rows, row)
      io.stderr:write(string.format("%s %s seed %d done\n", bb[1], var[1], seed))
    end
  end
end

local columns = {"backbone", "variant", "seed"}
for _, t in ipairs(tasks) do
  for _, k in ipairs(metrics) do table.insert(columns, t .. "_" .. k) end
end
table.insert(columns, "epochs")
table.insert(columns, "seconds")
R.write_csv(out .. ".csv", rows, columns)

local lines = {}
local function emit(s) print(s); table.insert(lines, s) end
emit(string.format("CrossDistil on census-income (KDD), pair (income, never_married): test metrics, mean ± std over %d seeds (1..%d); Δ AUC / Δ Multi-AUC = paired difference to base with 95 %% t-interval (▲/▼: interval excludes 0).", seeds, seeds))
for _, t in ipairs(tasks) do
  emit("")
  emit("Task " .. t .. ":")
  emit("")
  emit("| backbone | variant | AUC | Δ AUC | Multi-AUC | Δ Multi-AUC | logloss | ECE |")
  emit("|---|---|---|---|---|---|---|---|")
  for _, bb in ipairs(backbones) do
    for _, var in ipairs(variants) do
      local cells = {}
      for _, k in ipairs(metrics) do
        local key = t .. "_" .. k
        local v = R.values(rows, {backbone = bb[1], variant = var[1]}, key)
        local m, s = R.mean_std(v)
        cells[k] = R.fmt(m, s)
        if k == "auc" or k == "multi_auc" then
          local dm, dh = R.paired(v, R.values(rows, {backbone = bb[1], variant = "base"}, key))
          cells["d" .. k] = var[1] == "base" and "" or R.fmt_diff(dm, dh)
        end
      end
      emit(string.format("| %s | %s | %s | %s | %s | %s | %s | %s |", bb[1], var[1], cells.auc, cells.dauc,
                         cells.multi_auc, cells.dmulti_auc, cells.logloss, cells.ece))
    end
  end
end
emit("")
emit(string.format("wall time %d s; command: towerlab scripts/reproduce_crossdistil.lua%s", os.time() - t0,
                   quick and " --quick" or (" --seeds " .. seeds)))
R.write_text(out .. ".md", lines)
