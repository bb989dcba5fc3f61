-- Run by tests/mpi/test_dp.sh under mpirun -np 2 and 3 (and in one process):
-- PCGrad / GradNorm / MGDA (arg[1]) under data parallelism. Their backward
-- hook runs one backward pass per task; each pass must be reduced over the
-- ranks (hooks.h: reduce_grads) before the method combines them; every rank
-- must stay bit-identical (checksum every step) and the predictions must match
-- one process's ordinary fit within 1e-5.
-- arg[2]: file for rank 0's predictions (one process writes the reference).
tl.threads(1)
local d = tl.datasets.synthetic_pair{rows = 4000, seed = 3}
local m = tl.model{data = d, backbone = tl.mmoe{experts = 3, expert = {16}}, tower = tl.mlp{8}, emb = 4,
                   batch = 256, seed = 5, weighting = arg[1]}
local ok, err = pcall(m.fit, m, {data = d.train, max_steps = 12, verbose = false, check_every = 1,
                                 optim = tl.optim.sgd{lr = 0.2}})
if not ok then
  print("rank " .. tl.mpi.rank .. ": error " .. err)
  return
end
local p = m:predict(d.test)
if tl.mpi.rank ~= 0 then return end
if tl.mpi.size == 1 then
  local f = assert(io.open(arg[2], "w"))
  for i = 1, #p.a do f:write(string.format("%.9g %.9g\n", p.a[i], p.b[i])) end
  f:close()
  print("rank 0: reference")
  return
end
local worst, i = 0, 0
for line in io.lines(arg[2]) do
  i = i + 1
  local a, b = line:match("(%S+) (%S+)")
  worst = math.max(worst, math.abs(tonumber(a) - p.a[i]), math.abs(tonumber(b) - p.b[i]))
end
assert(i == #p.a, "reference rows")
print(string.format("rank 0: %s", worst <= 1e-5 and "matches" or ("differs by " .. worst)))
