-- Run by tests/mpi/test_dp_shards.sh: data-parallel m:fit on a stream of shards,
-- each grain reading shard files of its own.
-- arg: "make" dir: write the shards (one process, before mpirun)
--      "fit" dir grains backbone weighting: 2 epochs; rank 0 prints the bits of the
--            test predictions and of the history (the same text at every rank count)
--      "refuse" dir grains: fewer shard files than grains, refused on every rank
--      "broken" dir grains: a damaged shard; every rank stops naming the rank that read it
local what, dir = arg[1], arg[2]
tl.threads(1)
if what == "make" then
  local d = tl.datasets.synthetic_pair{rows = 4000, seed = 3}
  local sh = tl.data.convert(d, dir, {rows_per_shard = 300, verbose = false})
  print("files " .. #sh .. " rows")
  return
end
local grains = tonumber(arg[3])
local sh = tl.data.shards{dir = dir, seed = 7, buffer = 200}
local backbone, weighting = arg[4] or "mmoe", arg[5] or "fixed"
local bb = backbone == "mmoe" and tl.mmoe{experts = 3, expert = {16}, dropout = 0.1}
           or tl.shared_bottom{bottom = {16}}
local m = tl.model{data = sh.data, backbone = bb, tower = tl.mlp{8}, emb = 4, batch = 128, seed = 5,
                   weighting = weighting}
local ok, err = pcall(m.fit, m, {data = sh, valid = sh.valid, epochs = 2, grains = grains, verbose = false,
                                 check_every = 3, optim = tl.optim.adam{lr = 3e-3}})
if what ~= "fit" then
  print(string.format("rank %d: %s", tl.mpi.rank, ok and "ok" or err))
  return
end
if not ok then error(err) end
local p = m:predict(sh.test)
local auc = m:evaluate(sh.test).a.auc
if tl.mpi.rank == 0 then
  local out = {}
  for _, t in ipairs{"a", "b"} do
    for i = 1, #p[t] do out[#out + 1] = string.format("%a", p[t][i]) end
  end
  local h, s, mon = m:history(), 0, {}
  for _, r in ipairs(h.steps) do for _, v in pairs(r.loss) do s = s + v end end
  for _, e in ipairs(h.epochs) do mon[#mon + 1] = string.format("%a", e.monitor) end
  print(string.format("steps %d preds %d loss %a epochs %s", #h.steps, #out, s, table.concat(mon, ",")))
  print(string.format("auc %.3f", auc))
  print(table.concat(out, " "))
end
