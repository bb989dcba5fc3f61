-- Run by tests/mpi/test_dp_crossdistil.sh in one process and under mpirun
-- -np 2 and 3: CrossDistil under data parallelism. The quadruplet ranking
-- loss pairs rows across the whole batch: every rank gathers every grain's
-- teacher scores, labels and weights in grain order and computes the loss
-- and its per-row gradients over the whole batch, then backpropagates its
-- own rows; the distillation and calibration losses divide by the batch's
-- weight sum; the calibrators fitted outside the graph are fitted by every
-- rank on the same rows. Prints a hash of the test predictions, the
-- history's losses and the teachers' calibrated outputs.
-- arg[1]: the variant: "valid" (the default: Platt fitted on valid at epoch
--         ends), "ingraph" (in-graph Platt, teacher_grad, clip, BCE on the
--         teacher), "isotonic" (on train, refit every 5 steps, max_pairs=40:
--         the pairs are sampled; teacher="shared"), "naive", "nested" (the
--         default on nested tasks: b only where a, so the quadruplet groups
--         chain over the empty (-,+) one), "aitm" (refused)
-- arg[2]: grains (0: the ordinary fit, no data parallelism); arg[3]: dropout
-- arg[4]: "close": one process only, the grains=6 fit against the ordinary
--         fit (dropout 0, pairs not sampled): predictions within 1e-5;
--         "write" / "against" FILE (arg[5]): write the test predictions, or
--         print the largest difference from them (rank 0)
-- arg[6]: a weighting method (default "fixed")
tl.threads(1)
local bits = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/bits.lua")
local variant, grains, dropout = arg[1], tonumber(arg[2] or "0"), tonumber(arg[3] or "0")
local d = tl.datasets.synthetic_pair{rows = 4000, seed = 3, nested = variant == "nested"}
local cd = {pairs = {{"a", "b"}}, aux = 0.5, kd = 0.5}
if variant == "ingraph" then
  cd.calibrate, cd.calib_data, cd.teacher_grad, cd.correct, cd.bce_on_aux = "platt", "train", true, "clip", true
elseif variant == "isotonic" then
  cd.calibrate, cd.calib_data, cd.calib_every, cd.max_pairs, cd.teacher = "isotonic", "train", 5, 40, "shared"
elseif variant == "naive" then
  cd.naive = true
end

local function fit(g, drop)
  local bb = variant == "aitm" and tl.aitm{} or tl.mmoe{experts = 3, expert = {16}, dropout = drop}
  local m = tl.model{data = d, backbone = bb, tower = tl.mlp{8}, emb = 4, batch = 256, seed = 5,
                     distill = tl.crossdistil(cd), weighting = arg[6] or "fixed"}
  local ok, err = pcall(m.fit, m, {data = d.train, valid = d.valid, epochs = 3, max_steps = 30,
                                   verbose = false, check_every = 1, grains = g > 0 and g or nil,
                                   dp = g > 0 or tl.mpi.size > 1, optim = tl.optim.sgd{lr = 0.2}})
  return m, ok, err
end

if arg[4] == "close" then
  cd.max_pairs = nil -- sampled pairs are drawn from other generators with and without grains
  local a = fit(0, 0)
  local b = fit(6, 0)
  local pa, pb, worst, same = a:predict(d.test), b:predict(d.test), 0, true
  for _, t in ipairs{"a", "b"} do
    for i = 1, #pa[t] do
      local x = math.abs(pa[t][i] - pb[t][i])
      worst, same = math.max(worst, x), same and x == 0
    end
  end
  print(string.format("%s: grains=6 against the ordinary fit: max |dpred| %.3g", variant, worst))
  assert(not same, "grains=6 gave the ordinary fit's bits: the grain path did not run")
  assert(worst < 1e-5, "too far")
  print("ok close")
  return
end

local m, ok, err = fit(grains, dropout)
if not ok then
  print("rank " .. tl.mpi.rank .. ": error " .. tostring(err))
  return
end
local p = m:predict(d.test)
local parts = {}
bits.add_predictions(parts, p)
local h = m:history()
for _, r in ipairs(h.steps) do
  for _, t in ipairs{"a", "b"} do parts[#parts + 1] = string.format("%a", r.loss[t]) end
end
for _, r in ipairs(h.epochs) do parts[#parts + 1] = string.format("%a", r.monitor or 0) end
bits.print_hash(parts, string.format(" steps %d", #h.steps))
if tl.mpi.rank ~= 0 or not arg[5] then return end
if arg[4] == "write" then bits.write_reference(arg[5], p)
elseif arg[4] == "against" then bits.print_worst(arg[5], p) end
