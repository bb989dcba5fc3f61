-- Run by tests/mpi/test_dp.sh under mpirun -np 2: what data-parallel fit
-- cannot do yet is refused on every rank with an error naming it.
-- arg[1]: "checksum", "mismatch" or "record"
tl.threads(1)
local d = tl.datasets.synthetic_pair{rows = 2000, seed = 3}
local what = arg[1]
local spec = {data = d, backbone = tl.mmoe{experts = 2, expert = {8}}, tower = tl.mlp{4}, emb = 4,
              batch = 128, seed = 5}
local m = tl.model(spec)
local opt = {data = d.train, max_steps = 6, verbose = false, check_every = 2,
             optim = tl.optim.adam{lr = 1e-3}}
-- a rank-dependent option (the bug the checksum is there for): parameters drift apart
if what == "checksum" then opt.optim = tl.optim.adam{lr = tl.mpi.rank == 1 and 2e-3 or 1e-3} end
-- ranks that would walk different batches (here: another batch size) are refused at once
if what == "mismatch" and tl.mpi.rank == 1 then opt.batch = 64 end
-- rank 1 validates on other rows (d.test: a rank-dependent valid split): the parameters stay equal, early
-- stopping's record (best score, its weights) drifts apart at the first epoch's end
if what == "record" then
  local v = tl.mpi.rank == 1 and d.test or d.valid
  opt.valid, opt.epochs, opt.max_steps, opt.check_every = v, 2, nil, 1
end
local ok, err = pcall(m.fit, m, opt)
print(string.format("rank %d: %s", tl.mpi.rank, ok and "ok" or err))
