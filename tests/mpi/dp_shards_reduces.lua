-- Run by tests/mpi/test_dp_shards_reduces.sh under mpirun -np 2 and 3: a
-- weighting method under data-parallel m:fit over shards gives the bits of
-- the same fit on the in-memory split, when both walk the same batches:
-- shuffling off, shard files of c rows and a batch of c rows per rank, so
-- that grain j's stream (files j, j + G, ...) reads the rows the in-memory
-- batch cuts into grain j. Every rank prints a hash of its test
-- predictions, of the history (losses, weights) and of the diagnostics.
-- arg: "make" dir: the shards (one process, before mpirun)
--      "fit" dir weighting source ("memory" or "shards") [diag] [epoch]: 12 steps,
--            with diagnostics=3 when arg[5] is "diag"; the whole epoch when arg[6]
--            is "epoch" (over shards the grains then run out at different batches:
--            the ranks must agree, the in-memory batches are other ones)
local bits = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/bits.lua")
local what, dir = arg[1], arg[2]
local C = 60
tl.threads(1)
local d = tl.datasets.synthetic_pair{rows = 4000, seed = 3}
if what == "make" then
  tl.data.convert(d, dir, {rows_per_shard = C, verbose = false})
  return
end
local weighting = assert(load("return " .. arg[3]))()
local sh = tl.data.shards{dir = dir, shuffle = false}
local m = tl.model{data = d, backbone = tl.mmoe{experts = 3, expert = {16}, dropout = 0.1}, tower = tl.mlp{8},
                   emb = 4, batch = C * tl.mpi.size, seed = 5, weighting = weighting}
local opt = {data = arg[4] == "shards" and sh or d.train, valid = d.valid, epochs = 1,
             max_steps = arg[6] ~= "epoch" and 12 or nil,
             verbose = false, check_every = 1, diagnostics = arg[5] == "diag" and 3 or nil,
             optim = tl.optim.sgd{lr = 0.2}}
if arg[4] ~= "shards" then opt.shuffle = false end
local ok, err = pcall(m.fit, m, opt)
if not ok then
  print("rank " .. tl.mpi.rank .. ": error " .. tostring(err))
  return
end
local p = m:predict(d.test)
local parts = {}
bits.add_predictions(parts, p)
local h = m:history()
for _, r in ipairs(h.steps) do
  for _, t in ipairs{"a", "b"} do parts[#parts + 1] = string.format("%a %a", r.loss[t], r.weight[t]) end
end
bits.add_diagnostics(parts, h)
bits.print_hash(parts, string.format(" steps %d diagnostics %d", #h.steps, #(h.diagnostics or {})))
