-- Run by tests/mpi/test_mpi.sh under mpirun -np 2: m:save, m:export, plot files and
-- m:predict(split, {file=}) (also of a model shared among the ranks by
-- tl.mpi.distribute, whose every rank predicts) are written by rank 0 only, each rank naming its own file here so that the test
-- sees who wrote; after tl.mpi.all_ranks_write(true) every rank writes. A live plot
-- on rank 1 is a closed one (the script runs unchanged). Prints "rank r: ..." lines.
-- arg[1]: directory, arg[2]: "default" or "all"
local dir, mode = arg[1], arg[2]
local r = tl.mpi.rank
tl.threads(1)
if mode == "all" then assert(tl.mpi.all_ranks_write(true) == true) end
local d = tl.datasets.synthetic_pair{rows = 600, seed = 3}
local m = tl.model{data = d, backbone = tl.shared_bottom{bottom = {8}}, emb = 4, batch = 64, seed = 5}
m:fit{data = d.train, epochs = 1, verbose = false, dp = false}
local base = string.format("%s/%s.r%d", dir, mode, r)
assert(m:save(base .. ".tlm") == m)
local onnx = m:export(base .. ".onnx")
assert(onnx == base .. ".onnx")
local svg, err = tl.plot.history(m, {file = base .. ".svg"})
assert(svg == base .. ".svg" or (svg == nil and err:find("gnuplot")), tostring(err))
assert(m:predict(d.test, {file = base .. ".pred.csv"}) == #m:predict(d.test).a)
tl.mpi.distribute(m)
assert(m:predict(d.test, {file = base .. ".dpred.csv"}) == #m:predict(d.test).a)
tl.mpi.distribute(m, false)
local lp = tl.plot.live{file = base .. ".live.svg"}
if lp then lp:close() end
print(string.format("rank %d: done", r))
