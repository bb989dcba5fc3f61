-- Run by tests/mpi/test_dp.sh under mpirun -np 1, 2, 3: a data-parallel fit of
-- a fixed number of steps with a fixed grain count; rank 0 prints the bits of
-- every test prediction (%a) and the summed task losses of the history, which
-- must be the same text at every rank count (validation every 5 steps runs
-- distributed: each rank scores its chunks).
-- arg: backbone (shared_bottom|mmoe) weighting (fixed|uncertainty|dwa) dml (0|1) grains steps [dropout]
local backbone, weighting, dml = arg[1] or "mmoe", arg[2] or "fixed", arg[3] == "1"
local grains, steps, dropout = tonumber(arg[4] or "6"), tonumber(arg[5] or "12"), tonumber(arg[6] or "0")
tl.threads(1)
local d = tl.datasets.synthetic_pair{rows = 4000, seed = 3}
local bb = backbone == "mmoe" and tl.mmoe{experts = 3, expert = {16}, dropout = dropout}
           or tl.shared_bottom{bottom = {16}, dropout = dropout}
local m = tl.model{data = d, backbone = bb, tower = tl.mlp{8, dropout = dropout}, emb = 4,
                   batch = 256, seed = 5, weighting = weighting,
                   mutual = dml and tl.dml{ctfm = true, gkd = true} or nil}
m:fit{data = d.train, valid = d.valid, eval_every = 5, epochs = 2, max_steps = steps, grains = grains, verbose = false,
      optim = tl.optim.adam{lr = 3e-3}, check_every = 4}
local p = m:predict(d.test)
if tl.mpi.rank == 0 then
  local out = {}
  for _, t in ipairs{"a", "b"} do
    for i = 1, #p[t] do out[#out + 1] = string.format("%a", p[t][i]) end
  end
  local h = m:history()
  local s = 0
  for _, r in ipairs(h.steps or h) do
    if type(r) == "table" and r.loss then for _, v in pairs(r.loss) do s = s + v end end
  end
  local mon = {}
  for _, e in ipairs(h.evals) do mon[#mon + 1] = string.format("%a", e.monitor) end
  print("steps " .. #out .. " " .. string.format("%a", s) .. " evals " .. table.concat(mon, ","))
  print(table.concat(out, " "))
end
