-- m:predict(split, {file=}) writes predictions to a CSV file (issue 19
-- item 6): row id and one column per task, the values of m:predict.
local T = {}

local d
local function model()
  d = d or tl.datasets.census()
  local m = tl.model{data = d, backbone = tl.shared_bottom{bottom = {8}}, tower = tl.mlp{4},
                     emb = 2, batch = 1000, seed = 1}
  m:fit{data = d.train, epochs = 1, max_steps = 10, verbose = false}
  return m
end

local function read_csv(path)
  local rows = {}
  local f = assert(io.open(path))
  local header = f:read("l")
  for line in f:lines() do
    local t = {}
    for v in line:gmatch("[^,]+") do t[#t + 1] = tonumber(v) end
    rows[#rows + 1] = t
  end
  f:close()
  return header, rows
end

function T.file_holds_every_row_with_the_predictions()
  local m = model()
  local path = os.tmpname()
  local n = m:predict(d.test, {file = path})
  eq(n, #d.test)
  local header, rows = read_csv(path)
  eq(header, "row,income,never_married")
  eq(#rows, #d.test)
  local p = m:predict(d.test)
  local ids = {}
  for i = 1, #rows, 1 do
    near(rows[i][2], p.income[i], 1e-7)
    near(rows[i][3], p.never_married[i], 1e-7)
    check(rows[i][1] >= 1 and not ids[rows[i][1]], "row ids are distinct data rows")
    ids[rows[i][1]] = true
  end
  os.remove(path)
end

function T.calibrated_and_errors()
  local m = model()
  local cp = tl.calibrate(m, d.valid, "platt")
  local path = os.tmpname()
  eq(cp:predict(d.test, {file = path}), #d.test)
  local _, rows = read_csv(path)
  local p = cp:predict(d.test)
  near(rows[7][2], p.income[7], 1e-7)
  os.remove(path)
  raises(function() m:predict(d.test, {file = "/nonexistent-dir/p.csv"}) end, "m:predict: .*No such file")
  raises(function() m:predict(d.test, {path = "x"}) end, "unknown field")
  raises(function() m:predict(d.test, {}) end, "field 'file' is required")
end

return T
