-- bits.lua — what the data-parallel test scripts print and compare (loaded
-- with dofile by dp_weighting.lua, dp_crossdistil.lua, dp_shards_reduces.lua):
-- predictions and history values as exact hex text, one FNV-1a hash of that
-- text printed by every rank (the ranks must print the same line), and a
-- reference file of test predictions to measure a distance from.
local M = {}

-- appends every task's test predictions, as %a text, to parts
function M.add_predictions(parts, p)
  for _, t in ipairs{"a", "b"} do
    for i = 1, #p[t] do parts[#parts + 1] = string.format("%a", p[t][i]) end
  end
end

-- appends diagnostics records (grad norms and the a|b cosine) to parts
function M.add_diagnostics(parts, h)
  for _, r in ipairs(h.diagnostics or {}) do
    for _, t in ipairs{"a", "b"} do parts[#parts + 1] = string.format("%a", r.grad_norm[t]) end
    parts[#parts + 1] = string.format("%a", r.grad_cos["a|b"])
  end
end

-- prints "rank R: hash H" and the suffix
function M.print_hash(parts, suffix)
  local text = table.concat(parts, " ")
  local hsh = 2166136261
  for i = 1, #text do hsh = ((hsh ~ text:byte(i)) * 16777619) & 0xffffffff end
  print(string.format("rank %d: hash %08x%s", tl.mpi.rank, hsh, suffix or ""))
end

function M.write_reference(path, p)
  local f = assert(io.open(path, "w"))
  for i = 1, #p.a do f:write(string.format("%.9g %.9g\n", p.a[i], p.b[i])) end
  f:close()
end

-- prints "rank 0: worst D", the largest difference from the reference file
function M.print_worst(path, p)
  local worst, i = 0, 0
  for line in io.lines(path) do
    i = i + 1
    local a, b = line:match("(%S+) (%S+)")
    worst = math.max(worst, math.abs(tonumber(a) - p.a[i]), math.abs(tonumber(b) - p.b[i]))
  end
  assert(i == #p.a, "reference rows")
  print(string.format("rank 0: worst %.3g", worst))
end

return M
