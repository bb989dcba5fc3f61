-- Run by tests/mpi/test_dp_shards_resume.sh: a data-parallel fit on a stream of
-- shards, stopped mid-epoch and resumed from its checkpoint at another rank count.
-- arg: "make" dir [rows]: write the shards (one process, before mpirun)
--      "full" dir: 2 epochs at once
--      "stop" dir path step: 2 epochs, the progress callback stops at `step`; rank 0
--            saves path at the stop
--      "every" dir path step: 2 epochs, checkpoint every `step` steps, max_steps step + 3
--      "signal" dir path: 2 epochs, slowed down after step 20 (prints "started") for
--            SIGUSR1 to stop it; rank 0 saves path at the stop
--      "resume" dir path [grains]: tl.load(path) on every rank, finish the 2 epochs
-- With grains=6 rank 0 prints the bits of the test predictions and of the history:
-- stop + resume must equal full at every rank count.
local what, dir, path = arg[1], arg[2], arg[3]
tl.threads(1)
if what == "make" then
  local d = tl.datasets.synthetic_pair{rows = tonumber(path) or 4000, seed = 3}
  tl.data.convert(d, dir, {rows_per_shard = 300, verbose = false})
  return
end
local sh = tl.data.shards{dir = dir, seed = 7, buffer = 200}
local m
if what == "resume" then
  m = tl.load(path)
else
  m = tl.model{data = sh.data, backbone = tl.mmoe{experts = 3, expert = {16}, dropout = 0.1},
               tower = tl.mlp{8}, emb = 4, batch = 128, seed = 5, weighting = "uncertainty"}
end
local opt = {data = sh, valid = sh.valid, epochs = 2 - #m:history().epochs, grains = tonumber(arg[4]) or 6,
             verbose = false, check_every = 3, optim = tl.optim.adam{lr = 3e-3}}
local step = tonumber(arg[4])
if what == "stop" then
  opt.grains, opt.checkpoint = 6, path
  opt.progress = function(p) if p.step == step then return false end end
elseif what == "signal" then
  opt.grains, opt.checkpoint = 6, path
  opt.progress = function(p)
    if p.step == 20 then print("started"); io.flush() end
    local t = os.clock() + 0.004
    while p.step >= 20 and os.clock() < t do end
  end
elseif what == "every" then
  opt.grains, opt.checkpoint, opt.every, opt.max_steps = 6, path, step, step + 3
end
local ok, err = pcall(m.fit, m, opt)
if what ~= "full" and what ~= "resume" or not ok then
  print(string.format("rank %d: step %d %s", tl.mpi.rank, m:history().steps[#m:history().steps].step,
                      ok and "ok" or err))
  return
end
local p = m:predict(sh.test)
if tl.mpi.rank == 0 then
  local out = {}
  for _, t in ipairs{"a", "b"} do
    for i = 1, #p[t] do out[#out + 1] = string.format("%a", p[t][i]) end
  end
  local h = m:history()
  for _, r in ipairs(h.steps) do out[#out + 1] = string.format("%a,%a", r.loss.a, r.loss.b) end
  for _, e in ipairs(h.epochs) do out[#out + 1] = string.format("%a", e.monitor) end
  print(string.format("steps %d epochs %d", #h.steps, #h.epochs))
  print(table.concat(out, " "))
end
