-- Run by tests/mpi/test_dp.sh under mpirun -np 3: tl.sweep hands its runs to
-- ranks 1 and 2 (rank 0 schedules and writes the CSV). arg[1]: out path;
-- arg[2] = "kill": the run with w = 3 kills its own process (a forked worker of
-- its rank) the first time, so only that row fails and a second sweep (the
-- resume) runs it again. Every rank prints the rows it got back.
tl.threads(1)
local out, kill = arg[1], arg[2] == "kill"
local d = tl.datasets.synthetic_pair{rows = 2000, seed = 3}
local res = tl.sweep{
  grid = {w = {1, 2, 3, 4}}, repeats = 2, out = out, verbose = false,
  run = function(cfg, seed)
    if kill and cfg.w == 3 and seed == 1 then
      local f = io.open(out .. ".killed")
      if not f then
        io.open(out .. ".killed", "w"):close()
        os.execute("kill -9 " .. math.tointeger(io.open("/proc/self/stat"):read("n")))
      end
    end
    local m = tl.model{data = d, backbone = tl.mmoe{experts = 2, expert = {8}}, tower = tl.mlp{4}, emb = 4,
                       batch = 128, seed = seed, weights = {a = cfg.w}}
    m:fit{data = d.train, max_steps = 5, verbose = false}
    return {auc = m:evaluate(d.test).a.auc, pid = tl.mpi.rank}
  end}
local ok, bad = 0, 0
for _, r in ipairs(res.rows) do
  if r.status == "ok" then ok = ok + 1 else bad = bad + 1 end
end
print(string.format("rank %d: %d ok %d error", tl.mpi.rank, ok, bad))
