-- Multi-valued fields end to end from Lua: tl.data.csv's {name, multi=} spec,
-- a model that learns from a bag field only, the three poolings, save/load,
-- tl.data.convert and a streaming fit bit-identical to the in-memory one.
local T = {}

local tmpdir = temp_dir()

-- The label depends on the tags only: 1 when a tag g0..g4 is present (10 %
-- of labels flipped); `a` is noise. Rows have 0 to 4 tags of 40.
local function write_data(n)
  local p = tmpdir .. "/bags.csv"
  local f = assert(io.open(p, "wb"))
  f:write("tags,a,y\n")
  math.randomseed(7)
  for _ = 1, n do
    local t, pos = {}, false
    for _ = 1, math.random(0, 4) do
      local v = math.random(0, 39)
      t[#t + 1] = "g" .. v
      pos = pos or v < 5
    end
    local y = pos and 1 or 0
    if math.random(10) == 1 then y = 1 - y end
    f:write(table.concat(t, "|"), ",a", math.random(0, 2), ",", y, "\n")
  end
  f:close()
  return p
end

local path = write_data(4000)

local function load(pool, extra)
  local cat = { "a", { "tags", multi = "|", pooling = pool } }
  if extra == "no-bags" then cat = { "a" } end
  return tl.data.csv{ path = path, categorical = cat, labels = { y = { column = "y", positive = "1" } },
                      split = { train = 0.7, valid = 0.15, test = 0.15 }, seed = 3, cache = false }
end

local function model(d)
  return tl.model{ data = d, backbone = tl.shared_bottom{ bottom = { 32 } }, towers = { y = tl.mlp{ 16 } },
                   emb = 8, seed = 1 }
end

T["csv spec: fields, print and errors"] = function()
  local d = load("mean")
  local f = d:fields()
  eq(#f.categorical, 1)
  eq(f.bags[1].name, "tags")
  eq(f.bags[1].pooling, "mean")
  eq(f.bags[1].max_len, 4)
  eq(f.bags[1].vocab, 42)
  eq(f.bags[1].truncated, 0)
  check(tostring(d):find("1 multi%-valued"), tostring(d))
  local h = tl.data.csv{ path = path, categorical = { { "tags", multi = "|", max_len = 2, keep = "first", hash = 16 } },
                         labels = { y = { column = "y", positive = "1" } }, cache = false }
  eq(h:fields().bags[1].kind, "hash")
  eq(h:fields().bags[1].max_len, 2)
  check(h:fields().bags[1].truncated > 0)
  check(tostring(h):find("tags: %d+ rows truncated to 2 values"), tostring(h))
  raises(function() tl.data.csv{ path = path, categorical = { { "tags", pooling = "mean" } }, labels = { y = { column = "y", positive = "1" } } } end,
         "pooling= needs multi=")
  raises(function() tl.data.csv{ path = path, categorical = { { "tags", multi = "|", pooling = "median" } }, labels = { y = { column = "y", positive = "1" } } } end,
         "pooling")
  raises(function() tl.data.csv{ path = path, categorical = { { "tags", multi = "|", max_len = 0 } }, labels = { y = { column = "y", positive = "1" } } } end,
         "max_len")
  local bad = tmpdir .. "/bad.csv"
  local f2 = assert(io.open(bad, "wb"))
  f2:write("tags,y\na|b,1\nb||c,0\n")
  f2:close()
  raises(function() tl.data.csv{ path = bad, categorical = { { "tags", multi = "|" } }, labels = { y = { column = "y", positive = "1" } }, cache = false } end,
         "bad.csv:3: column 1 ('tags'): multi-valued field 'tags': value 2 is empty")
end

-- Fails when the model ignores the bag: the other field is noise (AUC ~ 0.5).
T["a label that depends only on the bag is learned"] = function()
  local d = load("sum")
  local m = model(d)
  check(tostring(m):find("bag     tags: 42 ids, 4 slots, sum pooling"), tostring(m))
  m:fit{ data = d.train, epochs = 4, batch = 128, optim = tl.optim.adam{ lr = 3e-3 }, verbose = false }
  local auc = m:evaluate(d.test).y.auc
  check(auc > 0.75, "test AUC " .. auc)
  local n = load(nil, "no-bags")
  local m0 = model(n)
  m0:fit{ data = n.train, epochs = 4, batch = 128, optim = tl.optim.adam{ lr = 3e-3 }, verbose = false }
  check(m0:evaluate(n.test).y.auc < 0.6, "without the bag the label cannot be learned")
end

-- Same seed and shapes: the three models have the same parameters. A row
-- with one tag (or none) pools to the same vector under sum, mean and max;
-- a row with several tags does not (sum = count x mean).
T["sum, mean and max pool as they should"] = function()
  local p = {}
  for _, pool in ipairs{ "sum", "mean", "max" } do
    local d = load(pool)
    p[pool] = model(d):predict(d.test).y
  end
  local rows = {}
  local f = assert(io.open(path))
  f:read("l")
  for line in f:lines() do rows[#rows + 1] = line end
  f:close()
  local d = load("sum")
  local order = d.test:rows()
  local single, multi, differ = 0, 0, 0
  for i = 1, #p.sum do
    local tags = rows[order[i] + 1]:match("^([^,]*)")
    local k = tags == "" and 0 or select(2, tags:gsub("|", "|")) + 1
    if k <= 1 then
      single = single + 1
      eq(p.sum[i], p.mean[i], "row " .. i .. " (" .. tags .. ")")
      eq(p.sum[i], p.max[i], "row " .. i .. " (" .. tags .. ")")
    else
      multi = multi + 1
      if p.sum[i] ~= p.mean[i] and p.mean[i] ~= p.max[i] then differ = differ + 1 end
    end
  end
  check(single > 50 and multi > 50, single .. " " .. multi)
  check(differ > 0.9 * multi, differ .. " of " .. multi .. " multi-tag rows differ")
end

T["save and load keep the bag fields and predictions"] = function()
  local d = load("max")
  local m = model(d)
  m:fit{ data = d.train, epochs = 1, batch = 128, verbose = false }
  local file = tmpdir .. "/bags.tlm"
  m:save(file)
  local m2 = tl.load(file)
  check(tostring(m2):find("bag     tags: 42 ids, 4 slots, max pooling"), tostring(m2))
  eq(m2:predict(d.test).y, m:predict(d.test).y)
  raises(function() m2:predict(load(nil, "no-bags").test) end, "multi%-valued")
  -- the same rows in reverse order: the same sizes, other ids for the values
  local rows = {}
  for line in io.lines(path) do rows[#rows + 1] = line end
  local rev = tmpdir .. "/reversed.csv"
  local f = assert(io.open(rev, "wb"))
  f:write(rows[1], "\n")
  for i = #rows, 2, -1 do f:write(rows[i], "\n") end
  f:close()
  local r = tl.data.csv{ path = rev, categorical = { "a", { "tags", multi = "|", pooling = "max" } },
                         labels = { y = { column = "y", positive = "1" } }, cache = false }
  eq(r:fields().bags[1].vocab, 42)
  raises(function() m:predict(r.all) end, "multi%-valued ids mean other values")
  local ok = tl.data.csv{ path = rev, like = d, cache = false }
  eq(#m:predict(ok.all).y, 4000)
end

T["convert keeps the bags; a stream fit equals the in-memory fit"] = function()
  local d = load("mean")
  local dir = tmpdir .. "/shards"
  tl.data.convert(d, dir, { rows_per_shard = 1000, verbose = false })
  local sh = tl.data.shards{ dir = dir, shuffle = false }
  check(tostring(sh):find("1 multi%-valued"), tostring(sh))
  local m1, m2 = model(d), model(sh.data)
  m1:fit{ data = d.train, epochs = 2, batch = 100, shuffle = false, verbose = false }
  m2:fit{ data = sh, epochs = 2, batch = 100, verbose = false }
  local p1, p2 = m1:predict(d.test).y, m2:predict(sh.test).y
  eq(#p1, #p2)
  eq(p1, p2, "streamed and in-memory predictions")
end

return T
