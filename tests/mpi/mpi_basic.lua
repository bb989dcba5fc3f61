-- Run by tests/mpi/test_mpi.sh under mpirun -np N: prints "ok <check>" lines on rank 0.
local r, n = tl.mpi.rank, tl.mpi.size
local function check(name, cond)
  if not cond then error("rank " .. r .. ": " .. name .. " failed", 0) end
  if r == 0 then print("ok " .. name) end
end
check("size", n == tonumber(arg and arg[1] or n) and tl.mpi.active)
tl.mpi.barrier()
local b = tl.mpi.broadcast(r == 0 and {cfg = {lr = 0.1, name = "x"}, 1, 2} or nil)
check("broadcast", b.cfg.lr == 0.1 and b.cfg.name == "x" and b[2] == 2)
local b2 = tl.mpi.broadcast(r == n - 1 and "last" or nil, n - 1)
check("broadcast_root", b2 == "last")
local g = tl.mpi.gather({rank = r, s = string.rep("a", r)})
if r == 0 then
  check("gather", #g == n and g[n].rank == n - 1 and g[n].s == string.rep("a", n - 1))
else
  check("gather_nil", g == nil)
end
local a = tl.mpi.allgather(r * 10)
local ok = #a == n
for i = 1, n do ok = ok and a[i] == (i - 1) * 10 end
check("allgather", ok)
