-- tl.mpi in one process (repl/l_mpi.c): the one-process world, and the
-- serialiser round trip that broadcast/gather use under mpirun too.
local T = {}

function T.one_process_world()
  eq(tl.mpi.rank, 0)
  eq(tl.mpi.size, 1)
  tl.mpi.barrier()
end

function T.round_trip_keeps_values_and_types()
  local v = {1, 2.5, "x\0y", true, false, n = {deep = {3, "s"}}, [7] = 0.1, [-3] = math.mininteger}
  local b = tl.mpi.broadcast(v)
  eq(b, v)
  eq(math.type(b[1]), "integer")
  eq(math.type(b[2]), "float")
  eq(tl.mpi.gather(v)[1], v)
  eq(tl.mpi.allgather("s"), {"s"})
  eq(tl.mpi.broadcast(42), 42)
end

function T.functions_rejected_with_key_path()
  local ok, err = pcall(tl.mpi.broadcast, {a = {b = {1, print}}})
  eq(ok, false)
  assert(err:find("value.a.b[2]: a function cannot be sent", 1, true), err)
  ok, err = pcall(tl.mpi.gather, {[{}] = 1})
  assert(not ok and err:find("a table key cannot be sent", 1, true), err)
  local t = {}; t.self = t
  ok, err = pcall(tl.mpi.allgather, t)
  assert(not ok and err:find("nested deeper", 1, true), err)
  ok, err = pcall(tl.mpi.broadcast, 1, 1)
  assert(not ok and err:find("root 1 is not a rank", 1, true), err)
end

return T
