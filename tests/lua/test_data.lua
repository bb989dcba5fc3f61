-- The data pipeline from Lua (repl/l_data.c): tl.data.csv, tl.datasets.*,
-- dataset and split objects, and the error messages of misuse.
local T = {}

local tmpdir = temp_dir()
local function write(name, text) return write_file(tmpdir, name, text) end

local SMALL = "a,x,y\nred,1,1\nblue,2,0\nred,3,1\ngreen,4,0\n"

local function small(extra)
  local o = { path = write("s.csv", SMALL), categorical = { "a" }, numeric = { "x" },
              labels = { y = { column = "y", positive = "1", negative = "0" } }, cache = false }
  for k, v in pairs(extra or {}) do o[k] = v end
  return tl.data.csv(o)
end

local function census_present()
  local f = io.open("data/census_income_kdd/census-income.test.gz", "rb")
  if f then f:close() end
  return f ~= nil
end

function T.csv_all_split_and_labels()
  local d = small()
  eq(d.train, nil)
  eq(#d.all, 4)
  eq(d.all:size(), 4)
  eq(d.all:labels(), { y = { 1, 0, 1, 0 } })
  eq(d.all:rows(), { 0, 1, 2, 3 })
  eq(d.tasks, { { name = "y", type = "binary", rate = 0.5 } })
  local f = d:fields()
  eq(f.categorical, { { name = "a", vocab = 5, kind = "vocab" } })
  eq(f.numeric[1].name, "x")
  eq(f.numeric[1].transform, "standard")
  near(f.numeric[1].mean, 2.5, 1e-9)
  eq(d:vocab("a"), { "red", "blue", "green" })
  check(tostring(d):find("4 rows", 1, true), tostring(d))
  check(tostring(d.all):find("split all: 4 rows; y 50.00%", 1, true), tostring(d.all))
end

function T.csv_ratio_split_seeded()
  local lines = { "a,x,y" }
  for i = 1, 200 do lines[#lines + 1] = ("v%d,%d,%d"):format(i % 5, i, i % 2) end
  local p = write("r.csv", table.concat(lines, "\n") .. "\n")
  local function load(seed)
    return tl.data.csv{ path = p, categorical = { "a" }, labels = { y = { column = "y", positive = 1 } },
                        split = { train = 0.8, valid = 0.1, test = 0.1 }, seed = seed, cache = false }
  end
  local a, b, c = load(7), load(7), load(8)
  eq({ #a.train, #a.valid, #a.test }, { 160, 20, 20 })
  eq(a.train:rows(), b.train:rows())
  local same = true
  local ra, rc = a.train:rows(), c.train:rows()
  for i = 1, #ra do if ra[i] ~= rc[i] then same = false end end
  check(not same, "another seed gives another split")
  check(a.train == a.train, "split objects are cached")
  eq(a.train.name, "train")
  check(a.train.dataset == a)
end

function T.csv_modulo_split_and_train_only_vocab()
  local p = write("m.csv", "a,y\nc,1\nc,0\nonly_test,1\nc,1\nd,0\nonly_test,0\n")
  local d = tl.data.csv{ path = p, categorical = { "a" }, labels = { y = { column = "y", positive = "1" } },
                         split = { modulo = 3, train = { 0, 1 }, test = { 2 } }, cache = false }
  eq(#d.train, 4)
  eq(#d.valid, 0)
  eq(#d.test, 2)
  eq(d:vocab("a"), { "c", "d" })
end

function T.csv_like_reuses_vocabulary()
  local d = small()
  local n = tl.data.csv{ path = write("n.csv", "a,x,y\ngreen,2.5,1\npurple,9,0\n"), like = d }
  eq(#n.all, 2)
  eq(n:fields().categorical[1].vocab, d:fields().categorical[1].vocab)
  near(n:fields().numeric[1].mean, 2.5, 1e-9)
  raises(function() tl.data.csv{ path = "x.csv", like = d, split = { train = 1 } } end,
         "with like=, all rows of the file go to d.all")
end

function T.csv_cache_dir_round_trip()
  local opts = { path = write("c.csv", SMALL), categorical = { "a" }, numeric = { "x" },
                 labels = { y = { column = "y", positive = "1" } }, cache = tmpdir .. "/cachedir" }
  local a = tl.data.csv(opts)
  local b = tl.data.csv(opts)
  eq(a.from_cache, false)
  eq(b.from_cache, true)
  eq(b.all:labels(), a.all:labels())
  eq(b:vocab("a"), a:vocab("a"))
end

function T.csv_on_bad_skip_reports()
  local p = write("bad.csv", "a,x,y\nred,1,1\nblue,oops,0\nred\ngreen,4,0\n")
  local d = small{ path = p, on_bad = "skip" }
  eq(#d.all, 2)
  eq(d.skipped.count, 2)
  eq({ d.skipped[1], d.skipped[2] }, { 3, 4 })
  check(tostring(d):find("2 bad rows skipped", 1, true))
  local one = small{ path = write("bad1.csv", "a,x,y\nred,1,1\nblue,oops,0\n"), on_bad = "skip" }
  check(tostring(one):find("; 1 bad row skipped", 1, true), tostring(one))
end

-- issue 24 item 6: RFC 4180 records spanning lines, CRLF, BOM, no final newline, skipinitialspace
function T.csv_rfc4180_multiline()
  local p = write("ml.csv", "\239\187\191a,x,y\r\n\"two\r\nlines\",1,1\r\n\"say \"\"hi\"\"\",2,0\r\nred,3,1\r\n\"a\nb\",4,0")
  local d = small{ path = p }
  eq(#d.all, 4)
  eq(d:vocab("a"), { "two\nlines", "say \"hi\"", "red", "a\nb" })
  eq(d.all:labels(), { y = { 1, 0, 1, 0 } })
  p = write("mlbad.csv", "a,x,y\nred,1,1\n\"multi\nline\",oops,0\n")
  raises(function() small{ path = p } end, "mlbad.csv:4 (record from line 3): column 2 ('x'): expected a number, got \"oops\"")
  p = write("open.csv", "a,x,y\nred,1,1\n\"blue,2,0\ngreen,4,0\n")
  raises(function() small{ path = p } end, "open.csv:3: column 1: the quoted field is never closed")
  p = write("mlskip.csv", "a,x,y\nred,1,1\n\"bad\nrow\",zz,0\nblue,2,0\n\"x\ny\",3\n")
  local s = small{ path = p, on_bad = "skip" }
  eq(#s.all, 2)
  eq(s.skipped.count, 2)
  eq({ s.skipped[1], s.skipped[2] }, { 3, 6 })
  check(tostring(s):find("2 bad rows skipped", 1, true), tostring(s))
end

function T.csv_skipinitialspace()
  local p = write("sp.csv", "a, x,  y\nred, 1, 1\n  blue,2,   0\n\"r,ed\", 3, 1\n")
  raises(function() small{ path = p } end, "sp.csv:2: column 3 ('y'): unknown label value \" 1\"")
  local d = small{ path = p, skipinitialspace = true }
  eq(d:vocab("a"), { "red", "blue", "r,ed" })
  eq(d.all:labels(), { y = { 1, 0, 1 } })
  raises(function() small{ path = p, sep = " ", skipinitialspace = true } end,
         "skipinitialspace=true needs a separator that does not start with a space")
  raises(function() small{ path = p, skipinitialspace = 1 } end, "skipinitialspace")
  -- sep=", " is exactly comma + one space (the census files)
  p = write("c2.csv", "a, x, y\nred, 1, 1\nblue, 2, 0\n")
  eq(#small{ path = p, sep = ", " }.all, 2)
  raises(function() small{ path = write("c3.csv", "a, x, y\nred,1, 1\n") , sep = ", " } end, "expected 3 fields, got 2")
end

-- issue 24 item 2: the collision rate of hashed fields, in print(d) and d:fields()
function T.csv_hash_collision_rate()
  local p = write("hc.csv", "a,x,y\np,0,1\nq,1,0\nr,2,0\ns,3,1\n?,4,0\np,5,0\n")
  local d = small{ path = p, categorical = { { "a", hash = 1 } } }
  local f = d:fields().categorical[1]
  eq({ f.kind, f.values }, { "hash", 4 })
  near(f.collisions, 0.75, 1e-12)
  check(tostring(d):find("; hashed: a 4 values, 75.0% collide in 1 buckets", 1, true), tostring(d))
  local c = small{ path = p, categorical = { { "a", hash = 1 } }, cache = tmpdir }
  local c2 = small{ path = p, categorical = { { "a", hash = 1 } }, cache = tmpdir }
  eq(c.from_cache, false)
  eq(c2.from_cache, true)
  eq(c2:fields().categorical[1].collisions, nil) -- the cache does not keep them
  eq(small{ path = p }:fields().categorical[1].collisions, nil)
end

-- issue 24 item 2: quantile buckets from the one-pass sketch when asked
function T.csv_quantile_sketch()
  local lines = { "a,x,y" }
  for i = 0, 19999 do lines[#lines + 1] = ("r,%d,%d"):format((i * 7919) % 20000, i % 2) end
  local p = write("qs.csv", table.concat(lines, "\n") .. "\n")
  local function load(sk)
    return small{ path = p, numeric = { { "x", transform = "quantile", buckets = 4 } }, sketch = sk }
  end
  local e, s = load(false), load(true)
  eq(e:fields().categorical[2].vocab, 5)
  eq(s:fields().categorical[2].vocab, 5)
  eq(s.from_cache, false)
  raises(function() load("yes") end, "sketch")
end

function T.csv_bad_input_messages()
  local p = write("bad.csv", "a,x,y\nred,1,1\nblue,oops,0\n")
  raises(function() small{ path = p } end, "bad.csv:3: column 2 ('x'): expected a number, got \"oops\"")
  p = write("rag.csv", "a,x,y\nred,1,1\nblue,2\n")
  raises(function() small{ path = p } end, "rag.csv:3: expected 3 fields, got 2")
  p = write("lab.csv", "a,x,y\nred,1,maybe\n")
  raises(function() small{ path = p } end, "unknown label value \"maybe\"")
  raises(function() small{ path = write("e.csv", "") } end, "e.csv: empty file")
  raises(function() small{ path = tmpdir .. "/missing.csv" } end, "cannot open '.*missing.csv': No such file")
  raises(function() small{ numeric = { "nope" } } end, "schema names numeric column 'nope', which does not exist")
end

function T.csv_argument_errors()
  raises(function() small{ sep = "ab" } end, "tl.data.csv: field 'sep' must be a single character")
  raises(function() small{ colour = 1 } end, "tl.data.csv: unknown field 'colour'")
  raises(function() small{ seed = "x" } end, "tl.data.csv: field 'seed' must be")
  raises(function() small{ on_bad = "ignore" } end, "field 'on_bad' must be one of")
  raises(function() small{ labels = { y = { column = "y" } } } end,
         "labels.y: give exactly one of positive=, threshold= or regression=true")
  raises(function() small{ labels = { y = { column = "y", positive = "1", colour = 2 } } } end,
         "labels.y: unknown field 'colour'")
  raises(function() small{ split = { train = 0.5, valid = 0.1 } } end, "ratios must sum to 1")
  raises(function() small{ split = { modulo = 2, train = { 0 }, test = { 0 } } } end, "residue 0 is in two splits")
  raises(function() tl.data.csv{ labels = {} } end, "field 'path' is required")
  raises(function() small{ header = false } end, "with header=false give the column names")
end

-- issue 19 item 5: click=yes with positive="1" was silently 0
function T.csv_unknown_label_value_is_an_error()
  local p = write("u.csv", "a,click\nr,1\nb,0\nr,yes\n")
  local function load(lab)
    return tl.data.csv{ path = p, categorical = { "a" }, cache = false, labels = { click = lab } }
  end
  raises(function() load{ column = "click", positive = "1" } end,
         "u.csv:4: column 2 ('click'): unknown label value \"yes\" for task 'click'")
  local d = load{ column = "click", positive = "1", unknown = "negative" }
  eq(d.all:labels().click, { 1, 0, 0 })
  raises(function() load{ column = "click", positive = "1", unknown = "zero" } end, "field 'unknown' must be one of")
  raises(function() load{ column = "click", positive = "1", negative = "0", unknown = "negative" } end, "not both")
  raises(function() load{ column = "click", threshold = 1, unknown = "negative" } end, "unknown= needs positive=")
end

-- issue 19 item 6: scoring rows without labels
function T.csv_like_without_labels_for_scoring()
  local lines = { "a,x,y" }
  for i = 1, 64 do lines[#lines + 1] = ("v%d,%d,%d"):format(i % 3, i % 7, i % 2) end
  local d = tl.data.csv{ path = write("lab.csv", table.concat(lines, "\n") .. "\n"), categorical = { "a" },
                         numeric = { "x" }, labels = { y = { column = "y", positive = "1" } }, cache = false }
  eq(d.labeled, true)
  local u = tl.data.csv{ path = write("score.csv", "x,a\n1,v1\n5,v9\n3,v2\n"), like = d }
  eq(u.labeled, false)
  eq(#u.all, 3)
  check(tostring(u):find("no labels", 1, true), tostring(u))
  raises(function() u.all:labels() end, "the dataset has no labels")
  raises(function() u:leakage() end, "the dataset has no labels")
  local m = tl.model{ data = d, backbone = tl.shared_bottom{ bottom = { 8 } }, tower = tl.mlp{ 4 }, emb = 4, batch = 16, seed = 1 }
  local p = m:predict(u.all)
  eq(#p.y, 3)
  for _, v in ipairs(p.y) do check(v > 0 and v < 1, "a probability: " .. tostring(v)) end
  -- the same rows with labels give the same predictions
  local l = tl.data.csv{ path = write("score_l.csv", "x,a,y\n1,v1,0\n5,v9,1\n3,v2,0\n"), like = d }
  eq(m:predict(l.all).y, p.y)
  raises(function() m:evaluate(u.all) end, "has no labels")
  raises(function() m:fit{ data = u.all, epochs = 1, verbose = false } end, "has no labels")
  raises(function() tl.data.csv{ path = write("half.csv", "x,a\n1,v1\n"), categorical = { "a" }, numeric = { "x" },
                                 labels = { y = { column = "y", positive = "1" } } } end,
         "schema names label column 'y', which does not exist")
end

-- issue 25 item 16: a dataset with the same vocabulary sizes but other values
function T.model_refuses_other_vocabulary()
  local function rows(vals)
    local l = { "a,x,y" }
    for i = 1, 40 do l[#l + 1] = ("%s,%d,%d"):format(vals[i % #vals + 1], i % 5, i % 2) end
    return table.concat(l, "\n") .. "\n"
  end
  local opts = function(p) return { path = p, categorical = { "a" }, numeric = { "x" }, cache = false,
                                    labels = { y = { column = "y", positive = "1" } } } end
  local d = tl.data.csv(opts(write("v1.csv", rows{ "red", "blue", "green" })))
  local e = tl.data.csv(opts(write("v2.csv", rows{ "red", "blue", "pink" })))
  eq(d:fields().categorical[1].vocab, e:fields().categorical[1].vocab)
  local m = tl.model{ data = d, backbone = tl.shared_bottom{ bottom = { 8 } }, tower = tl.mlp{ 4 }, emb = 4,
                      batch = 16, seed = 1 }
  raises(function() m:evaluate(e.all) end,
         "the split's ids mean other values than in the model's data: field 'a' has the same number of ids (5) " ..
         "but other values: id 3 is \"pink\" here and \"green\" there")
  raises(function() m:predict(e.all) end, "build the data with like= the model's dataset")
  local l = tl.data.csv{ path = write("v3.csv", rows{ "pink", "red" }), like = d }
  eq(#m:predict(l.all).y, 40)
  check(m:evaluate(d.all) ~= nil)
  -- reloaded without its dataset, the model still knows its fields' encodings
  m:save(tmpdir .. "/voc.tlm")
  local r = tl.load(tmpdir .. "/voc.tlm")
  raises(function() r:predict(e.all) end, "the ids of field 'a' mean other values than in the data the model " ..
         "was trained on")
  raises(function() r:export(tmpdir .. "/voc.onnx", { data = e }) end, "field 'data': the ids of field 'a'")
  eq(r:predict(l.all), m:predict(l.all))
end

function T.csv_label_column_listed_as_feature()
  local p = write("lf.csv", "a,x,y\nr,1,1\nb,2,0\n")
  raises(function() tl.data.csv{ path = p, categorical = { "a" }, numeric = { "x", "y" }, cache = false,
                                 labels = { y = { column = "y", positive = "1" } } } end,
         "tl.data.csv: tl_data_csv_load: column 'y' is listed as numeric, but it is the label column of task 'y'")
  local d = tl.data.csv{ path = p, categorical = { "a" }, numeric = { "x", "y" }, cache = false,
                         labels = { y = { column = "y", positive = "1", keep = true } } }
  eq(#d:fields().numeric, 2)
end

function T.csv_threshold_regression_and_keep()
  local p = write("t.csv", "a,r\nu,4.5\nv,2\n")
  local labels = { good = { column = "r", threshold = 4 }, rating = { column = "r", regression = true } }
  raises(function() tl.data.csv{ path = p, categorical = { "a" }, numeric = { "r" }, cache = false, labels = labels } end,
         "column 'r' is listed as numeric, but it is the label column of task")
  local d = tl.data.csv{ path = p, categorical = { "a" }, cache = false, labels = labels }
  eq(#d:fields().numeric, 0, "label columns are not features")
  eq(d.all:labels(), { good = { 1, 0 }, rating = { 4.5, 2 } })
  eq(d.tasks[2], { name = "rating", type = "regression", mean = 3.25 })
  local k = tl.data.csv{ path = p, categorical = { "a" }, numeric = { "r" }, cache = false,
                         labels = { good = { column = "r", threshold = 4, keep = true } } }
  eq(#k:fields().numeric, 1)
end

function T.census()
  if not census_present() then skip("data/census_income_kdd absent") end
  local d = tl.datasets.census{ cache = false }
  eq({ #d.train, #d.valid, #d.test, #d.all }, { 79810, 9976, 9976, 99762 })
  eq(d.tasks[1].name, "income")
  eq(d.tasks[2].name, "never_married")
  near(d.tasks[1].rate, 4923 / 79810, 1e-12)
  near(d.tasks[2].rate, 34559 / 79810, 1e-12)
  local y = d.test:labels()
  eq(#y.income, 9976)
  local pos = 0
  for i = 1, #y.income do pos = pos + y.income[i] end
  eq(pos, 651)
  for _, f in ipairs(d:fields().categorical) do
    check(f.name ~= "marital_stat" and f.name ~= "income_50k", f.name .. " must not be a feature")
  end
  local e = tl.datasets.census{ education = true, cache = false }
  eq(#e.tasks, 3)
  raises(function() tl.datasets.census{ path = tmpdir } end, "no census-income.test.gz in")
  raises(function() tl.datasets.census{ edu = true } end, "unknown field 'edu'")
end

function T.synthetic()
  local s = tl.datasets.synthetic{ n = 1000, dim = 10, corr = 0.5, seed = 3 }
  eq({ #s.train, #s.valid, #s.test }, { 800, 100, 100 })
  eq(s.tasks[1], { name = "y1", type = "regression", mean = s.tasks[1].mean })
  eq(#s:fields().numeric, 10)
  local t = tl.datasets.synthetic{ n = 1000, dim = 10, corr = 0.5, seed = 3 }
  eq(t.test:labels(), s.test:labels())
  raises(function() tl.datasets.synthetic{ corr = 2 } end, "tl.datasets.synthetic: field 'corr' must be")
end

function T.movielens()
  local f = io.open("../shared/data/movielens_100k/u.user", "rb")
  if not f then skip("../shared/data/movielens_100k absent") end
  f:close()
  local d = tl.datasets.movielens{ version = "100k" }
  eq(#d.all, 100000)
  eq(d.tasks[1].name, "like")
  eq(d.tasks[2].type, "regression")
  raises(function() tl.datasets.movielens(tmpdir) end, "no MovieLens data in")
end

function T.amazon_video_games()
  local f = io.open("../shared/data/amazon_video_games_dml/Video_Games_val.txt", "rb")
  if not f then skip("../shared/data/amazon_video_games_dml absent") end
  f:close()
  local d = tl.datasets.amazon_video_games()
  eq({ #d.all, #d.train, #d.valid, #d.test }, { 92712, 74170, 9271, 9271 })
  eq(d.tasks[1].name, "rated")
  eq(d.tasks[2].name, "like")
  eq(d.tasks[2].type, "binary")
  local l = d.all:labels()
  for i = 1, #l.like do
    if l.like[i] == 1 and l.rated[i] ~= 1 then error("row " .. i .. ": like without rated") end
  end
  local e = tl.datasets.amazon_video_games{ path = "../shared/data/amazon_video_games_dml", seed = 1 }
  eq(e.train:rows(), d.train:rows())
  local g = tl.datasets.amazon_video_games{ seed = 2 }
  check(table.concat(g.train:rows(), ",", 1, 50) ~= table.concat(d.train:rows(), ",", 1, 50), "seed 2 = seed 1")
  raises(function() tl.datasets.amazon_video_games(tmpdir) end, "no Video_Games_val.txt in")
  raises(function() tl.datasets.amazon_video_games{ seeds = 1 } end, "seeds")
end

function T.synthetic_pair()
  local d = tl.datasets.synthetic_pair{ rho = -0.5, nested = true, rows = 5000, seed = 4 }
  eq({ #d.train, #d.valid, #d.test }, { 4000, 500, 500 })
  eq(d.tasks[1].name, "a")
  eq(d.tasks[2].name, "b")
  local l = d.all:labels()
  for i = 1, #l.a do
    if l.a[i] == 0 and l.b[i] == 1 then error("nested data has a (-,+) row at " .. i) end
  end
  local e = tl.datasets.synthetic_pair{ rho = -0.5, nested = true, rows = 5000, seed = 4 }
  eq(e.all:labels(), l)
  check(tostring(d):find("synthetic_pair(rho=-0.5, nested)", 1, true), tostring(d))
  raises(function() tl.datasets.synthetic_pair{ rho = 1.5 } end, "tl.datasets.synthetic_pair: field 'rho'")
  raises(function() tl.datasets.synthetic_pair{ corr = 0.5 } end, "corr")
end

-- issue 24 item 3: Ali-CCP in the release's format and torch-rechub's, AliExpress
function T.aliccp_release_format()
  local d = tl.datasets.aliccp("tests/data/aliccp_release")
  eq({ #d.train, #d.valid + #d.test }, { 5, 4 })
  eq(d.tasks[1].name, "click")
  eq(d.tasks[2].name, "conversion")
  eq(d.train:labels(), { click = { 1, 0, 1, 0, 1 }, conversion = { 0, 0, 1, 0, 0 } })
  eq(d.skipped.count, 1)
  eq(d.skipped[1], 4)
  eq(d:vocab("101"), { "u1", "u2" })
  eq(d:vocab("210"), { "t2" })
  eq(#d:fields().categorical, 23)
  local h = tl.datasets.aliccp{ path = "tests/data/aliccp_release", hash = 5, rows = 3, valid = 1, seed = 2 }
  eq({ #h.train, #h.valid, #h.test }, { 3, 3, 0 })
  eq(h:fields().categorical[1].kind, "hash")
  raises(function() tl.datasets.aliccp{ path = tmpdir } end, "tl.datasets.aliccp: no Ali-CCP in")
  raises(function() tl.datasets.aliccp{ dir = "x" } end, "unknown field 'dir'")
  raises(function() tl.datasets.aliccp{ path = "tests/data/aliccp_release", valid = 2 } end, "valid")
  -- the default folder: ali_ccp/ under the shared data folders, with every place tried
  local bin = os.getenv("TL_TEST_BIN") or "./towerlab"
  if bin:sub(1, 1) ~= "/" then bin = io.popen("pwd"):read("l") .. "/" .. bin:gsub("^%./", "") end
  local out = io.popen("cd /tmp && env -u TOWERLAB_DATA '" .. bin .. "' -e 'print(pcall(tl.datasets.aliccp))' 2>&1"):read("a")
  check(out:find("no ali_ccp folder found", 1, true), out)
end

function T.alibaba_rechub_samples()
  local dir = "../shared/data/rechub_mtl_samples"
  local f = io.open(dir .. "/SOURCE.md", "rb")
  if not f then skip(dir .. " absent") end
  f:close()
  local d = tl.datasets.aliccp{ path = dir }
  eq({ #d.train, #d.valid, #d.test }, { 100, 50, 50 })
  near(d.tasks[1].rate, 0.07, 1e-12)
  near(d.tasks[2].rate, 0.01, 1e-12)
  local e = tl.datasets.aliexpress(dir)
  eq({ #e.train, #e.valid + #e.test }, { 100, 20 })
  near(e.tasks[1].rate, 0.6, 1e-12)
  eq(#e:fields().categorical, 16)
end

function T.aliexpress_mtreclib_layout()
  local d = tl.datasets.aliexpress{ path = "tests/data/aliexpress_mtreclib", valid = 0 }
  eq({ #d.train, #d.valid, #d.test }, { 5, 0, 4 })
  eq(d.skipped.count, 1)
  eq(d:vocab("categorical_1"), { "7", "8" })
  raises(function() tl.datasets.aliexpress(tmpdir) end, "no AliExpress in")
end

-- issue 24 item 7: the program finds its data from any working directory
function T.datasets_found_from_any_directory()
  if not census_present() then skip("data/census_income_kdd absent") end
  local pwd = io.popen("pwd"):read("l")
  local bin = os.getenv("TL_TEST_BIN") or "./towerlab"
  if bin:sub(1, 1) ~= "/" then bin = pwd .. "/" .. bin:gsub("^%./", "") end
  local function run(env, code)
    local p = io.popen(("cd /tmp && %s '%s' -e '%s' 2>&1"):format(env, bin, code))
    local out = p:read("a")
    p:close()
    return out
  end
  local out = run("env -u TOWERLAB_DATA", "print(tl.datasets.census())")
  check(out:find("dataset census-income.test: 99762 rows", 1, true), out)
  -- TOWERLAB_DATA first: a folder holding another census_income_kdd/
  os.execute("mkdir -p " .. tmpdir .. "/td/census_income_kdd && cp data/census_income_kdd/census-income.test.gz " ..
             tmpdir .. "/td/census_income_kdd/")
  out = run("TOWERLAB_DATA=" .. tmpdir .. "/td", "print(#tl.datasets.census().all)")
  check(out:find("99762", 1, true), out)
  local ls = io.popen("ls " .. tmpdir .. "/td/census_income_kdd"):read("a")
  check(ls:find(".tlcache", 1, true), "read from TOWERLAB_DATA (its cache is written there): " .. ls)
  -- a program with no data next to it says where it looked
  os.execute("mkdir -p " .. tmpdir .. "/bin && cp '" .. bin .. "' " .. tmpdir .. "/bin/")
  local p = io.popen(("cd %s && env -u TOWERLAB_DATA %s/bin/towerlab -e 'print(pcall(tl.datasets.census))' 2>&1")
                     :format(tmpdir, tmpdir))
  out = p:read("a")
  p:close()
  check(out:find("no census_income_kdd folder found (looked in " .. tmpdir .. "/bin/data/census_income_kdd", 1, true),
        out)
  check(out:find("TOWERLAB_DATA is not set", 1, true), out)
  -- the function is named once, not twice ("tl.datasets.census: census: ...")
  local ok, err = pcall(tl.datasets.census, tmpdir)
  check(not ok and err:find("tl.datasets.census: no census-income.test.gz in", 1, true), err)
  -- a TOWERLAB_DATA that is no directory is an error, not a silent fall-back
  out = run("TOWERLAB_DATA=" .. tmpdir .. "/no-such-dir", "print(pcall(tl.datasets.census))")
  check(out:find("false", 1, true) and out:find("TOWERLAB_DATA is '" .. tmpdir .. "/no-such-dir', which is not a directory (No such file", 1, true), out)
  local f = io.open("../shared/data/movielens_100k/u.user", "rb")
  if f then
    f:close()
    out = run("env -u TOWERLAB_DATA", "print(#tl.datasets.movielens{version=\"100k\"}.all)")
    check(out:find("100000", 1, true), out)
  end
end

function T.closed_dataset()
  local d = small()
  local s = d.all
  d:close()
  raises(function() return #s end, "dataset is closed")
  check(tostring(d):find("closed", 1, true))
end

function T.zz_cleanup()
  os.execute("rm -rf " .. tmpdir)
end

return T
