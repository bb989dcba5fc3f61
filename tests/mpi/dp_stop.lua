-- Run by tests/mpi/test_dp.sh: a long data-parallel fit that SIGUSR1 to mpirun
-- stops; every rank prints the step it stopped at, rank 0 saves arg[1].
tl.threads(1)
local d = tl.datasets.synthetic_pair{rows = 40000, seed = 3}
local m = tl.model{data = d, backbone = tl.mmoe{experts = 3, expert = {32}}, tower = tl.mlp{8}, emb = 4,
                   batch = 256, seed = 5}
local said = false
local ok, err = pcall(m.fit, m, {data = d.train, epochs = 100000, verbose = false, checkpoint = arg[1],
  progress = function(p) if not said and p.step >= 50 then said = true; print("started"); io.flush() end end})
print(string.format("rank %d: steps %d %s", tl.mpi.rank, m:history().steps[#m:history().steps].step,
                    ok and "finished" or err))
