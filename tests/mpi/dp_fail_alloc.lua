-- Run by tests/mpi/test_dp_fail_alloc.sh under mpirun -np 3: the n-th
-- engine allocation of rank R's data-parallel fit fails (the test-only
-- fault point private.mpi_test_fault, repl/l_mpi.c), for n = 1, 2, ...
-- until a fit runs with no fault left to fire. Every rank must come back
-- from every fit, with the same error naming rank R: a rank that waits for
-- one that gave up hangs, and the script's timeout fails the test.
-- arg[1]: R; arg[2]: the variant: "plain" (MMoE, fixed weights, validation
-- at epoch ends, a progress callback), "pcgrad" (each task's gradient
-- reduced over the ranks), "uncertainty" (grains=6, the rows-free part),
-- "crossdistil" (the teacher scores gathered over the batch)
tl.threads(1)
local R, variant = tonumber(arg[1]), arg[2] or "plain"
local fault = debug.getregistry()["tl.private"].mpi_test_fault
local d = tl.datasets.synthetic_pair{rows = 900, seed = 3}

local function model()
  local spec = {data = d, backbone = tl.mmoe{experts = 2, expert = {8}, dropout = 0.1}, tower = tl.mlp{4}, emb = 4,
                batch = 128, seed = 5}
  if variant == "pcgrad" or variant == "uncertainty" then spec.weighting = variant end
  if variant == "crossdistil" then spec.distill = tl.crossdistil{pairs = {{"a", "b"}}, aux = 0.5, kd = 0.5} end
  return tl.model(spec)
end

local faults, tolerated, bad = 0, 0, 0
for n = 1, 20000 do
  local m = model()
  if tl.mpi.rank == R then fault(n) end
  local ok, err = pcall(m.fit, m, {data = d.train, valid = d.valid, epochs = 2, verbose = false, check_every = 1,
                                   grains = variant == "uncertainty" and 6 or nil, progress = function() end})
  local fired = tl.mpi.rank == R and fault() or false
  local all = tl.mpi.allgather{ok = ok, err = ok and "" or tostring(err), fired = fired}
  if not all[R + 1].fired then -- every allocation of the fit has failed once: this one ran clean
    local clean = true
    for _, x in ipairs(all) do clean = clean and x.ok end
    if not clean then bad = bad + 1 end
    if tl.mpi.rank == 0 then
      print(string.format("rank 0: %s: %d faults on rank %d (%d tolerated), %d bad; clean at n=%d%s", variant, faults,
                          R, tolerated, bad, n, clean and "" or " (BAD: the clean fit failed)"))
    end
    break
  end
  faults = faults + 1
  local same, all_ok = true, true
  for _, x in ipairs(all) do
    same = same and not x.ok and x.err == all[1].err
    all_ok = all_ok and x.ok
  end
  local named = all[1].err:find("rank " .. R .. " failed", 1, true) or all[1].err:find("rank " .. R .. " stopped", 1, true)
  if all_ok then
    tolerated = tolerated + 1 -- the engine did without the allocation (the ranks checked equal every step)
  elseif not (same and named) then
    bad = bad + 1
    if tl.mpi.rank == 0 then
      print(string.format("BAD n=%d: not the same error naming rank %d on every rank:", n, R))
      for q, x in ipairs(all) do print(string.format("  rank %d: %s", q - 1, x.ok and "ok" or x.err)) end
    end
  elseif tl.mpi.rank == 0 and os.getenv("TL_TEST_VERBOSE") then
    print(string.format("n=%d: %s", n, all[1].err))
  end
end
