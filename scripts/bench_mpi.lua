-- bench_mpi.lua — B1-MMoE training throughput of one process against
-- data-parallel ranks (run by scripts/bench_mpi.sh, `make bench-mpi`).
-- B1's shape (README "Performance"): 8 categorical fields x vocabulary 10,000 x emb 16
-- plus 16 dense features, two binary tasks, MMoE 8 experts 144->256->128, towers
-- 128->64->1, Adam lr 1e-3, batch 1024, 24,576 rows; seeded random rows (a CSV that
-- rank 0 writes, the others wait).
-- arg: threads steps dir
local threads, steps, dir = tonumber(arg[1]), tonumber(arg[2]), arg[3]
tl.threads(threads)
local path = dir .. "/b1.csv"
if tl.mpi.rank == 0 and not io.open(path) then
  local f = assert(io.open(path .. ".tmp", "w"))
  local cols = {}
  for i = 1, 8 do cols[#cols + 1] = "c" .. i end
  for i = 1, 16 do cols[#cols + 1] = "x" .. i end
  f:write(table.concat(cols, ","), ",y1,y2\n")
  local seed = 7
  local function rnd() seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 end
  for _ = 1, 24576 + 2048 do
    local row = {}
    for i = 1, 8 do row[i] = tostring(math.floor(rnd() * 10000)) end
    for i = 9, 24 do row[i] = string.format("%.4f", rnd() * 2 - 1) end
    f:write(table.concat(row, ","), rnd() < 0.3 and ",1" or ",0", rnd() < 0.1 and ",1\n" or ",0\n")
  end
  f:close()
  os.rename(path .. ".tmp", path)
end
tl.mpi.barrier()
local cat, num = {}, {}
for i = 1, 8 do cat[i] = "c" .. i end
for i = 1, 16 do num[i] = "x" .. i end
local d = tl.data.csv{path = path, header = true, categorical = cat, numeric = num,
                      labels = {y1 = {column = "y1", positive = "1"}, y2 = {column = "y2", positive = "1"}},
                      split = {train = 24576 / (24576 + 2048), test = 2048 / (24576 + 2048)}, seed = 1}
local m = tl.model{data = d, backbone = tl.mmoe{experts = 8, expert = {256, 128}}, tower = tl.mlp{64},
                   emb = 16, batch = 1024, seed = 1}
local opt = {data = d.train, epochs = 1000, max_steps = 5, verbose = false, optim = tl.optim.adam{lr = 1e-3},
             check_every = 0}
m:fit(opt) -- warm-up
tl.mpi.barrier()
tl.mpi.stats(true)
local t0 = tl.mpi.wtime()
opt.max_steps = steps
m:fit(opt)
local wall = tl.mpi.wtime() - t0
local st = tl.mpi.stats()
local all = tl.mpi.gather({wall = wall, comm = st.seconds, bytes = st.bytes})
if tl.mpi.rank == 0 then
  local w, c, b = 0, 0, 0
  for _, x in ipairs(all) do w = math.max(w, x.wall); c = c + x.comm / #all; b = b + x.bytes / #all end
  print(string.format("np %d threads %d: %d steps of 1024 rows in %.2f s: %.0f samples/s; per step %.1f ms, " ..
                      "communication %.1f ms (%.0f %%), %.2f MB gathered per rank",
                      tl.mpi.size, threads, steps, w, steps * 1024 / w, 1000 * w / steps, 1000 * c / steps,
                      100 * c / w, b / steps / 1e6))
end
