-- Run by tests/mpi/test_dp.sh: a checkpoint written by a data-parallel fit
-- (rank 0 writes) resumes at any rank count. arg: mode path steps
--   save:   fit `steps` steps with checkpoint=path (every 3 steps and at the end)
--   resume: tl.load(path) on every rank, fit `steps` more steps
--   full:   fit `steps` steps at once
-- Rank 0 prints the bits of the test predictions: save N + resume M must equal full N+M
-- at every rank count, with grains=6.
tl.threads(1)
local mode, path, steps = arg[1], arg[2], tonumber(arg[3])
local d = tl.datasets.synthetic_pair{rows = 4000, seed = 3}
local m
if mode == "resume" then
  m = tl.load(path)
else
  m = tl.model{data = d, backbone = tl.mmoe{experts = 3, expert = {16}, dropout = 0.1}, tower = tl.mlp{8},
               emb = 4, batch = 256, seed = 5, weighting = "uncertainty"}
end
local opt = {data = d.train, epochs = 3, max_steps = steps, grains = 6, verbose = false,
             optim = tl.optim.adam{lr = 3e-3}}
if mode == "save" then opt.checkpoint, opt.every = path, 3 end
m:fit(opt)
if mode == "save" and tl.mpi.rank == 0 then m:save(path) end -- the state after the last step
local p = m:predict(d.test)
if tl.mpi.rank == 0 then
  local out = {string.format("step %d", m:history().steps[#m:history().steps].step)}
  for _, t in ipairs{"a", "b"} do
    for i = 1, #p[t] do out[#out + 1] = string.format("%a", p[t][i]) end
  end
  print(table.concat(out, " "))
end
