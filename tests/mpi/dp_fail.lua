-- Run by tests/mpi/test_dp.sh under mpirun -np 3: rank 1 dies (kill -9 of
-- itself, arg "kill") or raises an error (arg "raise") in the middle of a
-- data-parallel fit, or raises outside it while the others train (arg
-- "outside"); every rank must stop within seconds, and the output must name
-- rank 1.
tl.threads(1)
local how = arg[1]
local d = tl.datasets.synthetic_pair{rows = 40000, seed = 3}
local m = tl.model{data = d, backbone = tl.mmoe{experts = 2, expert = {8}}, tower = tl.mlp{4}, emb = 4,
                   batch = 128, seed = 5}
local function progress(p)
  if tl.mpi.rank == 1 and p.step == 20 then
    if how == "kill" then
      local pid = io.open("/proc/self/stat"):read("n")
      os.execute("kill -9 " .. math.tointeger(pid))
    else
      error("boom on rank 1")
    end
  end
end
if how == "outside" and tl.mpi.rank == 1 then error("boom on rank 1 before the fit") end
m:fit{data = d.train, epochs = 1000, verbose = false, progress = progress}
print("rank " .. tl.mpi.rank .. ": finished (should not happen)")
