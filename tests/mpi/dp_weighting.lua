-- Run by tests/mpi/test_dp_weighting.sh in one process and under mpirun -np 2
-- and 3: one weighting method under data parallelism (losses/weighting.h,
-- tl_weighting_dp). Every rank fits 30 steps (two epochs: DWA's and STCH's
-- epoch-level state takes part) with the parameters compared across the ranks
-- at every step (check_every = 1), then prints a hash of its test predictions
-- and of its history's weights: the ranks must print the same line.
-- arg[1]: the weighting, a Lua expression ('"rlw"', '{"mgda", at="rep"}')
-- arg[2]: file of the reference predictions; "write" (arg[3]) writes it (in
--         one process), else rank 0 prints the largest difference from it
-- arg[4]: grains (0: the default, one per rank); arg[5]: "diag" adds
--         diagnostics=5, whose records enter the hash; "local": the model is
--         distributed for evaluation (tl.mpi.distribute) and fits with
--         dp=false, each rank alone (nothing may be summed over the ranks);
--         arg[6]: a backbone other than MMoE ("aitm", "dselect": DSelect-k
--         with its entropy regulariser)
local bits = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/bits.lua")
local weighting = assert(load("return " .. arg[1]))()
local ref, mode, grains, diag, alone = arg[2], arg[3], tonumber(arg[4] or "0"), arg[5] == "diag", arg[5] == "local"
tl.threads(1)
local d = tl.datasets.synthetic_pair{rows = 4000, seed = 3}
local bb = arg[6] == "aitm" and tl.aitm{} or arg[6] == "dselect" and tl.dselect_k{experts = 4, entropy = 1e-3}
           or tl.mmoe{experts = 3, expert = {16}}
local m = tl.model{data = d, backbone = bb, tower = tl.mlp{8}, emb = 4, batch = 256, seed = 5,
                   weighting = weighting}
if alone then tl.mpi.distribute(m) end
local ok, err = pcall(m.fit, m, {data = d.train, epochs = 3, max_steps = 30, verbose = false, check_every = 1,
                                 dp = not alone,
                                 grains = grains > 0 and grains or nil, diagnostics = diag and 5 or nil,
                                 optim = tl.optim.sgd{lr = 0.2}})
if not ok then
  print("rank " .. tl.mpi.rank .. ": error " .. tostring(err))
  return
end
local p = m:predict(d.test)
local parts = {}
bits.add_predictions(parts, p)
local h = m:history()
for _, r in ipairs(h.steps) do
  for _, t in ipairs{"a", "b"} do parts[#parts + 1] = string.format("%a", r.weight[t]) end
end
bits.add_diagnostics(parts, h)
bits.print_hash(parts, string.format(" steps %d diagnostics %d", #h.steps, #(h.diagnostics or {})))
if tl.mpi.rank ~= 0 then return end
if mode == "write" then bits.write_reference(ref, p) else bits.print_worst(ref, p) end
