-- Run by tests/mpi/test_dp.sh under mpirun -np 2 and 3: m:evaluate shared
-- among the ranks (tl.mpi.distribute) gives every rank the numbers one
-- process computes on all rows, bit for bit: AUC, GAUC (a user id column),
-- Multi-AUC, logloss, ECE, PCOC, Brier and every reliability bin.
-- arg[1]: a directory for the CSV file.
tl.threads(1)
local path = arg[1] .. "/dp_eval.csv"
if tl.mpi.rank == 0 then
  local f = assert(io.open(path, "w"))
  f:write("user,item,x,click,buy\n")
  local seed = 12345
  local function rnd() seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 end
  for i = 1, 3000 do
    local u, it, x = math.floor(rnd() * 60), math.floor(rnd() * 40), rnd()
    local c = rnd() < 0.2 + 0.5 * x and 1 or 0
    local b = c == 1 and rnd() < 0.4 and 1 or 0
    f:write(string.format("u%d,i%d,%.4f,%d,%d\n", u, it, x, c, b))
  end
  f:close()
end
tl.mpi.barrier()
local d = tl.data.csv{path = path, header = true, categorical = {"user", "item"}, numeric = {"x"}, id = "user",
                      labels = {click = {column = "click", positive = "1"}, buy = {column = "buy", positive = "1"}},
                      split = {train = 0.6, valid = 0.2, test = 0.2}, seed = 7}
local m = tl.model{data = d, backbone = tl.mmoe{experts = 2, expert = {8}}, tower = tl.mlp{4}, emb = 4,
                   batch = 64, seed = 5}
m:fit{data = d.train, epochs = 1, max_steps = 10, verbose = false}
local function flat(r)
  local out = {}
  for _, t in ipairs{"click", "buy"} do
    local e = r[t]
    for _, k in ipairs{"auc", "gauc", "multi_auc", "logloss", "ece", "pcoc", "brier"} do
      out[#out + 1] = t .. "." .. k .. "=" .. string.format("%a", e[k] or 0 / 0)
    end
    for i, b in ipairs(e.bins) do
      out[#out + 1] = string.format("%s.bin%d=%d,%a,%a", t, i, b.count, b.mean_pred or 0, b.rate or 0)
    end
  end
  return table.concat(out, " ")
end
local alone = flat(m:evaluate(d.test))          -- every rank on all rows
tl.mpi.distribute(m, true)
local shared = flat(m:evaluate(d.test))         -- each rank on its chunks, predictions gathered
local stats = tl.mpi.stats()
assert(alone:find("gauc=0x"), "no GAUC in the report: " .. alone:sub(1, 200))
local all = tl.mpi.allgather(shared == alone)
if tl.mpi.rank == 0 then
  for r, same in ipairs(all) do
    if not same then print("rank " .. (r - 1) .. " differs:\n" .. alone .. "\n" .. shared) end
  end
  print(string.format("eval gathered %d bytes", stats.bytes))
  print(shared)
end
