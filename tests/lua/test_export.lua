-- test_export.lua — m:export (engine/export/, repl/l_export.c): every backbone,
-- DML, CrossDistil, the three calibrators and multi-valued (bag) fields (sum,
-- mean, max pooling, a sequence with max_len, empty bags, unseen and hashed
-- values, single and multi-valued fields together) exported to ONNX and to C,
-- each checked against m:predict on the same rows by an independent runtime:
--   ONNX: onnxruntime-node (tests/export/serve.js, installed by make deps), on
--         rows encoded from the raw CSV with the exported vocabulary JSON (not
--         by towerlab), and onnx.checker.check_model(full_check=True) (python3-onnx);
--   C:    the exported file compiled with cc -std=c99 -Wall -Werror and run by
--         tests/export/c_driver.c.
-- Tolerance: max |Δ| <= 1e-5 on probabilities/values. Both sides are float32; they
-- differ only by the order of the matrix-product sums (OpenBLAS blocks them, the
-- runtimes do not): a few ulp per layer, 3e-8..2e-7 measured on these models.
-- A test whose runtime is absent is skipped, naming what is missing.

local TOL = 1e-5
local dir = temp_dir()

local function sh_ok(cmd) return os.execute(cmd .. " >/dev/null 2>&1") == true end
local HAVE_NODE = sh_ok("command -v node")
local HAVE_ORT = HAVE_NODE and sh_ok("cd tests/export && node -e \"require('onnxruntime-node')\"")
local HAVE_ONNX = sh_ok("/usr/bin/python3 -c 'import onnx'")
local CC = os.getenv("CC") or "cc"
local HAVE_CC = sh_ok("command -v " .. CC)
-- The exported C runs under AddressSanitizer and UBSan when the compiler has
-- them: the out-of-range id test then shows that nothing is read out of bounds.
local SAN = "-fsanitize=address,undefined -fno-sanitize-recover=undefined "
if not (HAVE_CC and sh_ok("echo 'int main(void){return 0;}' | " .. CC .. " " .. SAN .. "-x c - -o /dev/null")) then
  SAN = ""
end

-- The data: raw rows kept here, written to a CSV with a quoted value, missing
-- numbers (x) and missing categories ("?"), and read back with tl.data.csv.
local rows = {}
do
  local seed = 12345
  local function rnd() seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 end
  local A = {"red", "green", "blue", "cyan", "mag,enta", "?"}
  local f = assert(io.open(dir .. "/data.csv", "w"))
  f:write("a,b,x,y,z,click,buy\n")
  for i = 1, 600 do
    local r = {a = A[1 + math.floor(rnd() * #A)], b = "b" .. math.floor(rnd() * 9)}
    r.x = rnd() < 0.1 and "" or string.format("%.3f", rnd() * 50 - 10)
    r.y = string.format("%.4f", (rnd() - 0.3) * 100)
    r.z = string.format("%.2f", rnd() * 3)
    local s = (r.a == "red" and 1 or 0) + (tonumber(r.z) > 1.5 and 1 or 0) + rnd()
    local click = s > 1.2 and 1 or 0
    local buy = (click == 1 and rnd() < 0.5) and 1 or 0
    rows[i] = r
    f:write(string.format("%s,%s,%s,%s,%s,%d,%d\n", r.a:find(",") and '"' .. r.a .. '"' or r.a,
                          r.b, r.x, r.y, r.z, click, buy))
  end
  f:close()
end
local d = tl.data.csv{path = dir .. "/data.csv", header = true, categorical = {"a", "b"},
  numeric = {"x", {"y", transform = "log1p"}, {"z", transform = "none"}},
  labels = {ctr = {column = "click", positive = "1"}, cvr = {column = "buy", positive = "1"}},
  cache = false}

local function trained(spec)
  spec.data, spec.emb, spec.batch, spec.seed = d, 4, 128, 3
  local m = tl.model(spec)
  m:fit{data = d.all, epochs = 2, verbose = false}
  return m
end

-- Expected outputs as m:predict (or cp:predict) gives them, 9 digits (exact float).
local function write_pred(path, p, tasks)
  local f = assert(io.open(path, "w"))
  f:write("row," .. table.concat(tasks, ",") .. "\n")
  for i = 1, #p[tasks[1]] do
    local v = {}
    for k, t in ipairs(tasks) do v[k] = string.format("%.9g", p[t][i]) end
    f:write(i .. "," .. table.concat(v, ",") .. "\n")
  end
  f:close()
end

-- src: the CSV the rows come from ({csv=, n=, args=}: serve.js's extra arguments);
-- default the 600-row data.csv.
local function onnx_parity(m, name, p, tasks, opts, src)
  src = src or {csv = dir .. "/data.csv", n = 600, args = ""}
  local path = dir .. "/" .. name .. ".onnx"
  local got, vocab = m:export(path, opts)
  eq(got, path)
  eq(vocab, dir .. "/" .. name .. ".vocab.json")
  if HAVE_ONNX then
    local ok = sh_ok("/usr/bin/python3 -c \"import onnx,sys; m=onnx.load(sys.argv[1]); "
                     .. "onnx.checker.check_model(m, full_check=True); "
                     .. "assert m.ir_version == 8 and m.opset_import[0].version <= 17\" " .. path)
    check(ok, name .. ": onnx.checker.check_model(full_check=True) failed")
  end
  if not HAVE_ORT then return nil end
  write_pred(dir .. "/" .. name .. ".pred.csv", p, tasks)
  local outs = dir .. "/" .. name .. ".ort.csv"
  local h = io.popen("cd tests/export && node serve.js " .. src.args .. " " .. path .. " " .. vocab .. " "
                     .. src.csv .. " " .. dir .. "/" .. name .. ".pred.csv " .. outs .. " 2>&1")
  local line = h:read("a")
  h:close()
  check(line:match('"rows":' .. src.n .. ','), name .. ": serve.js said " .. line)
  for _, t in ipairs(tasks) do
    local v = tonumber(line:match('"' .. t .. '":([^,}]+)'))
    print(string.format("  %s %s onnxruntime max|d| %.2g", name, t, v or -1))
    check(v and v <= TOL, string.format("%s: onnxruntime vs m:predict on task %s: max |d| = %s > %g",
                                        name, t, tostring(v), TOL))
  end
  local q = {}
  for k, t in ipairs(tasks) do q[t] = {} end
  local first = true
  for line in io.lines(outs) do
    if not first then
      local k = 0
      for v in line:gmatch("[^,]+") do
        if k > 0 then table.insert(q[tasks[k]], tonumber(v)) end
        k = k + 1
      end
    end
    first = false
  end
  return q
end

-- ids encoded from d:vocab (id 0 unseen, 1 missing, 2.. the values), numbers raw.
local function c_input(path, K, bad_row, bad_b)
  local va, vb = {}, {}
  for i, s in ipairs(d:vocab("a")) do va[s] = i + 1 end
  for i, s in ipairs(d:vocab("b")) do vb[s] = i + 1 end
  local f = assert(io.open(path, "w"))
  f:write(string.format("%d 2 3 %d\n", #rows, K))
  for i, r in ipairs(rows) do
    local ia = r.a == "?" and 1 or va[r.a] or 0
    local ib = vb[r.b] or 0
    if i == bad_row and bad_b then ib = bad_b elseif i == bad_row then ia = #d:vocab("a") + 2 end
    f:write(string.format("%d %d %s %s %s\n", ia, ib, r.x == "" and "nan" or r.x, r.y, r.z))
  end
  f:close()
end

local function c_build(m, name, opts, ext, defs)
  local src = dir .. "/" .. name .. (ext or ".c")
  m:export(src, opts)
  local exe = dir .. "/" .. name .. ".bin"
  local cflags = CC .. " -std=c99 -Wall -Werror -O1 " .. SAN .. (defs or "")
  local cmd
  if ext == ".h" then
    local main = dir .. "/" .. name .. "_main.c"
    local f = assert(io.open(main, "w"))
    local bags = (defs or ""):find("-DBAGS", 1, true)
    local params = bags and "const int32_t *i, const int32_t *b, const float *x, size_t n, float *o"
                   or "const int32_t *i, const float *x, size_t n, float *o"
    f:write('#include "' .. src .. '"\n#include "' .. src .. '"\n' .. -- the guard holds
            "int " .. name .. "_run(" .. params .. ");\n" ..
            "int " .. name .. "_run(" .. params .. ") { return " ..
            name .. "_predict(i, " .. (bags and "b, " or "") .. "x, n, o); }\n")
    f:close()
    cmd = cflags .. "-DPREDICT=" .. name .. "_run tests/export/c_driver.c " .. main
  else
    cmd = cflags .. "-DPREDICT=" .. name .. "_predict tests/export/c_driver.c " .. src
  end
  local h = io.popen(cmd .. " -o " .. exe .. " -lm 2>&1")
  local msg = h:read("a")
  local ok = h:close()
  check(ok, name .. ": " .. cmd .. " failed:\n" .. msg)
  return exe
end

-- src: how the rows are written for c_driver ({input = function(path, K, bad_row, bad), n =,
-- bads = {...}, defs = extra cc flags}); default c_input on data.csv's rows.
local function c_parity(m, name, p, tasks, opts, ext, src)
  if not HAVE_CC then return nil end
  src = src or {input = c_input, n = #rows, bads = {false, 1000000, -3}}
  local exe = c_build(m, name, opts, ext, src.defs)
  local q = {}
  for _, t in ipairs(tasks) do q[t] = {} end
  src.input(dir .. "/" .. name .. ".in", #tasks)
  local h = io.popen(exe .. " < " .. dir .. "/" .. name .. ".in")
  local i, worst = 0, {}
  for line in h:lines() do
    i = i + 1
    local k = 0
    for v in line:gmatch("%S+") do
      k = k + 1
      local t = tasks[k]
      q[t][i] = tonumber(v)
      local dv = math.abs(tonumber(v) - p[t][i])
      worst[t] = math.max(worst[t] or 0, dv ~= dv and math.huge or dv)
    end
  end
  h:close()
  eq(i, src.n, name .. ": rows from the C model")
  for _, t in ipairs(tasks) do
    print(string.format("  %s %s C max|d| %.2g", name, t, worst[t]))
    check(worst[t] <= TOL, string.format("%s: C vs m:predict on task %s: max |d| = %g > %g", name, t,
                                         worst[t], TOL))
  end
  -- an id past its field's vocabulary (one past: another field's rows; far
  -- past or negative: outside the table) is refused with -1, reading nothing
  for _, bad in ipairs(src.bads) do
    src.input(dir .. "/" .. name .. ".bad", #tasks, 5, bad or nil)
    h = io.popen(exe .. " < " .. dir .. "/" .. name .. ".bad 2>&1")
    eq(h:read("a"), "status -1\n", name .. ": out-of-range id " .. tostring(bad))
    h:close()
  end
  return q
end

local function both(m, name, opts, cp)
  local tasks = {}
  for _, t in ipairs(opts and opts.tasks or {"ctr", "cvr"}) do tasks[#tasks + 1] = t end
  local p = cp and cp:predict(d.all) or m:predict(d.all)
  local ran_onnx = onnx_parity(m, name, p, tasks, opts)
  local ran_c = c_parity(m, name, p, tasks, opts)
  if not ran_onnx and not ran_c then skip("neither onnxruntime-node (make deps) nor " .. CC) end
  if not ran_onnx then skip("C parity passed; onnxruntime-node not installed (make deps)") end
  if not ran_c then skip("ONNX parity passed; no C compiler " .. CC) end
end

local T = {}
local backbones = {
  shared_bottom = {backbone = tl.shared_bottom{}},
  omoe = {backbone = tl.omoe{experts = 3, expert = {8}}},
  mmoe = {backbone = tl.mmoe{experts = 3, expert = {8, 4}}},
  ple = {backbone = tl.ple{levels = 2, shared = 2, specific = 1, expert = {8}}},
  esmm = {backbone = tl.esmm{}},
  aitm = {backbone = tl.aitm{}},
  dml = {backbone = tl.mmoe{experts = 3, expert = {8}}, mutual = tl.dml{ctfm = true, gkd = true}},
  crossdistil = {backbone = tl.mmoe{experts = 3, expert = {8}},
                 distill = tl.crossdistil{pairs = {{"ctr", "cvr"}}}},
  stem = {backbone = tl.stem{levels = 2, shared = 1, specific = 2, expert = {8}, gate = {4}}},
  adatt = {backbone = tl.adatt{levels = 2, shared = 1, specific = 2, expert = {8}}},
  adatt_unit = {backbone = tl.adatt{levels = 2, shared = 1, specific = 1, expert = {8}}},
  cross_stitch = {backbone = tl.cross_stitch{bottom = {8, 4}}},
  esmm_over_cross_stitch = {backbone = tl.esmm{backbone = tl.cross_stitch{bottom = {8}}}},
  -- 3 experts (2 code bits) and 5 (3 bits, 2 unreachable codes); gamma 0.01 so that the
  -- smooth-steps saturate on some rows and stay cubic on others
  dselect_k = {backbone = tl.dselect_k{experts = 3, k = 2, expert = {8}}},
  dselect_k5 = {backbone = tl.dselect_k{experts = 5, k = 3, gamma = 0.01, expert = {8}}},
}
for name, spec in pairs(backbones) do
  T["parity_" .. name] = function() both(trained(spec), name) end
end

for _, kind in ipairs({"platt", "temperature"}) do
  T["parity_calibrated_" .. kind] = function()
    local m = trained{backbone = tl.mmoe{experts = 3, expert = {8}}}
    local cp = tl.calibrate(m, d.all, kind)
    both(m, "cal_" .. kind, {calibrated = true}, cp)
  end
end

-- An isotonic map can be steep between its blocks (here up to ~1e4 per unit):
-- the runtimes' 1e-7 differences in its input become 1e-3 in its output. So
-- the calibrated export is checked against the engine's own calibrator
-- applied to the same runtime's uncalibrated output (both checked above).
T.parity_calibrated_isotonic = function()
  local m = trained{backbone = tl.mmoe{experts = 3, expert = {8}}}
  local cp = tl.calibrate(m, d.all, "isotonic")
  local p, y, pc = m:predict(d.all), d.all:labels(), cp:predict(d.all)
  local cal = {}
  for _, t in ipairs({"ctr", "cvr"}) do
    -- the same fit as tl.calibrate's (same rows, no weights): identical maps
    cal[t] = tl.metrics.calibrator(p[t], y[t], "isotonic")
    near(cal[t]:apply(p[t]), pc[t], 0, "tl.metrics.calibrator = tl.calibrate's for " .. t)
  end
  local function expected(q)
    local e = {}
    for t, c in pairs(cal) do e[t] = c:apply(q[t]) end
    return e
  end
  local tasks = {"ctr", "cvr"}
  local q = onnx_parity(m, "iso_raw", p, tasks)
  if q then onnx_parity(m, "iso", expected(q), tasks, {calibrated = true}) end
  local qc = c_parity(m, "iso_raw", p, tasks)
  if qc then c_parity(m, "iso", expected(qc), tasks, {calibrated = true}) end
  if not q then skip("C parity passed; onnxruntime-node not installed (make deps)") end
  if not qc then skip("ONNX parity passed; no C compiler " .. CC) end
end

T.parity_one_task = function() both(trained{backbone = tl.shared_bottom{}}, "one", {tasks = {"cvr"}}) end

T.c_header = function()
  if not HAVE_CC then skip("no C compiler " .. CC) end
  local m = trained{backbone = tl.ple{expert = {8}}}
  local p = m:predict(d.all)
  c_parity(m, "hdr", p, {"ctr", "cvr"}, nil, ".h")
end

T.vocab_json = function()
  local m = trained{backbone = tl.shared_bottom{}}
  local _, vocab = m:export(dir .. "/v.onnx")
  local text = assert(io.open(vocab)):read("a")
  check(text:find('"format": "towerlab%-vocab", "version": 1'), text)
  -- the values in id order, as d:vocab lists them, JSON-escaped
  local want = {}
  for i, s in ipairs(d:vocab("a")) do want[i] = '"' .. s .. '"' end
  check(text:find('"values": [' .. table.concat(want, ", "), 1, true), text)
  check(text:find('{"name": "x", "column": 0, "transform": "standard"', 1, true), text)
  check(text:find('"missing_flag": true', 1, true), "x has missing values: " .. text)
  check(text:find('{"name": "ctr", "type": "binary", "calibrated": false}', 1, true), text)
end

-- A server encodes hash-bucket and quantile fields from the JSON alone: the
-- hash (serve.js reimplements engine/data/hash.h) and the bucket edges.
T.vocab_json_hash_quantile = function()
  local dq = tl.data.csv{path = dir .. "/data.csv", header = true, categorical = {"a", {"b", hash = 5}},
    numeric = {"x", {"y", transform = "quantile", buckets = 6}, {"z", transform = "none"}},
    labels = {ctr = {column = "click", positive = "1"}, cvr = {column = "buy", positive = "1"}},
    cache = false}
  local m = tl.model{data = dq, backbone = tl.shared_bottom{}, emb = 4, batch = 128, seed = 3}
  m:fit{data = dq.all, epochs = 2, verbose = false}
  local _, vocab = m:export(dir .. "/hq.onnx")
  local text = assert(io.open(vocab)):read("a")
  check(text:find('{"name": "b", "kind": "hash", "size": 6, "buckets": 5, "missing": 5', 1, true), text)
  local size, edges = text:match('"name": "y", "kind": "quantile", "size": (%d+), "missing": 0, "first": 1,%s*"edges": %[([^%]]*)%]')
  check(edges, "y's bucket edges: " .. text)
  local n, last = 0, -math.huge
  for e in edges:gmatch("[^,]+") do
    n = n + 1
    check(tonumber(e) > last, "edges ascend: " .. edges)
    last = tonumber(e)
  end
  eq(n, 5) -- 6 buckets of distinct values: 5 inner edges
  eq(tonumber(size), n + 2) -- missing, then n + 1 buckets
  if not HAVE_ORT then skip("onnxruntime-node not installed (make deps)") end
  onnx_parity(m, "hq", m:predict(dq.all), {"ctr", "cvr"})
end

-- An id outside its field's vocabulary reads the field's id 0 in the ONNX
-- model (the C file refuses the row instead: c_parity checks that).
T.onnx_out_of_range_ids = function()
  if not HAVE_ORT then skip("onnxruntime-node not installed (make deps)") end
  local m = trained{backbone = tl.mmoe{experts = 2, expert = {8}}}
  local path, vocab = m:export(dir .. "/ids.onnx")
  local h = io.popen("cd tests/export && node bad_ids.js " .. path .. " " .. vocab .. " 2>&1")
  local line = h:read("a")
  h:close()
  check(line:match('"rows":12,'), "bad_ids.js said " .. line)
  eq(tonumber(line:match('"max_abs":([^}]+)')), 0, "out-of-range ids against id 0: " .. line)
end

T.bad_input = function()
  local untrained = tl.model{data = d, backbone = tl.mmoe{experts = 2, expert = {4}}, emb = 4, batch = 64}
  raises(function() untrained:export(dir .. "/u.onnx") end, "untrained")
  local m = trained{backbone = tl.shared_bottom{}}
  raises(function() m:export(dir .. "/m.pt") end, "must end in .onnx, .c or .h")
  raises(function() m:export("/nonexistent-dir/m.onnx") end, "/nonexistent%-dir/m.onnx")
  raises(function() m:export(dir .. "/m.onnx", {opset = 18}) end, "opset 18 unsupported")
  raises(function() m:export(dir .. "/m.onnx", {opest = 17}) end, "unknown field 'opest'")
  raises(function() m:export(dir .. "/m.onnx", {tasks = {"nope"}}) end, "not a task")
  raises(function() m:export(dir .. "/m.onnx", {calibrated = true}) end, "has no calibrator")
  raises(function() m:export(dir .. "/m.c", {name = "1bad"}) end, "not an identifier")
  raises(function() m:export(dir .. "/m.onnx", {name = "x"}) end, "for .c and .h files")
end

-- ---- multi-valued ("bag") fields -----------------------------------------
-- bags.csv: a single field a, three bags and a number. tags ("|", 0-4 values of
-- 200, skewed: the rare ones fall under min_count = 3 and read as unseen), hist
-- (";", a sequence of 0-6 values kept to its last 3; "?" = missing = an empty
-- bag), cats ("|", 0-3 values kept to the first 2); about a fifth of each empty.
-- The labels depend on the tags, so the bags carry signal into the towers.
local brows, BN = {}, 500
do
  local seed = 777
  local function rnd() seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 end
  local A = {"red", "green", "blue", "?"}
  local function bag(n, prefix, range, sep, skew)
    local v = {}
    for j = 1, n do v[j] = prefix .. math.floor((skew and rnd() ^ 2 or rnd()) * range) end
    return table.concat(v, sep)
  end
  local f = assert(io.open(dir .. "/bags.csv", "w"))
  f:write("a,tags,hist,cats,x,click,buy\n")
  for i = 1, BN do
    local r = {a = A[1 + math.floor(rnd() * #A)]}
    r.tags = bag(math.floor(rnd() * 5), "t", 200, "|", true)
    r.hist = rnd() < 0.1 and "?" or bag(math.floor(rnd() * 7), "h", 20, ";")
    r.cats = bag(math.floor(rnd() * 4), "k", 10, "|")
    r.x = rnd() < 0.1 and "" or string.format("%.3f", rnd() * 20 - 5)
    local hot = ("|" .. r.tags .. "|"):find("|t[0-3]|") and 1 or 0
    local click = (hot + (r.a == "red" and 0.6 or 0) + rnd() > 1.1) and 1 or 0
    local buy = (click == 1 and rnd() < 0.5) and 1 or 0
    brows[i] = r
    f:write(string.format("%s,%s,%s,%s,%s,%d,%d\n", r.a, r.tags, r.hist, r.cats, r.x, click, buy))
  end
  f:close()
end
local BAG_SRC = {csv = dir .. "/bags.csv", n = BN, args = "'--sep=hist=;'"}
local BAG_LABELS = {ctr = {column = "click", positive = "1"}, cvr = {column = "buy", positive = "1"}}
local BAG_SPEC = {
  tags = {"tags", multi = "|", pooling = "sum", min_count = 3},
  hist = {"hist", multi = ";", max_len = 3, pooling = "mean"},
  cats = {"cats", multi = "|", max_len = 2, keep = "first", pooling = "max"},
}
local SEPS = {tags = "|", hist = ";", cats = "|"}

-- A dataset on bags.csv: the single field a (unless single = false), the bag
-- fields named (with their spec, or the pooling / hash overrides), x numeric.
local function bag_data(fields, o)
  o = o or {}
  local cat = o.single == false and {} or {"a"}
  for _, nm in ipairs(fields) do
    local spec = {}
    for k, v in pairs(BAG_SPEC[nm]) do spec[k] = v end
    if o.pooling then spec.pooling = o.pooling end
    if o.hash then spec.hash, spec.min_count = o.hash, nil end
    cat[#cat + 1] = spec
  end
  return tl.data.csv{path = dir .. "/bags.csv", header = true, categorical = cat,
    numeric = o.numeric == false and nil or {"x"}, labels = BAG_LABELS, cache = false}
end

local function bag_trained(db, spec)
  spec.data, spec.emb, spec.batch, spec.seed = db, 4, 64, 5
  local m = tl.model(spec)
  m:fit{data = db.all, epochs = 3, verbose = false}
  return m
end

-- The vocabulary JSON's bag entries (and so the format README documents).
local function json_bags(vocab)
  local text = assert(io.open(vocab)):read("a")
  local out = {}
  for nm, input, kind, size, slots, off, pool, keep in text:gmatch(
      '{"name": "([^"]+)", "input": "([^"]+)", "kind": "(%a+)", "size": (%d+), "slots": (%d+), "offset": (%d+), '
      .. '"pad": %-1,%s*"pooling": "(%a+)", "keep": "(%a+)"') do
    local b = {name = nm, input = input, kind = kind, size = tonumber(size), slots = tonumber(slots),
               offset = tonumber(off), pooling = pool, keep = keep, ids = {}}
    local vals = text:match('"name": "' .. nm .. '", "input"[^}%]]-"values": %[([^%]]*)%]')
    if vals then
      local id = 2
      for v in vals:gmatch('"([^"]*)"') do b.ids[v] = id; id = id + 1 end
    end
    out[#out + 1] = b
  end
  return out, text
end

-- c_driver input for a bag model: a's id, then each bag's slots (encoded from the
-- JSON: unseen values 0, truncated as its keep says, -1 after the values; with
-- pad_first the -1 come first), then x. A bad value goes into row bad_row's first
-- single id ("a"), or the first slot of bag field k ({k, id}).
local function bag_input(db, vocab, pad_first)
  local va = {}
  local single = #db:fields().categorical > 0
  if single then for i, s in ipairs(db:vocab("a")) do va[s] = i + 1 end end
  local bags = json_bags(vocab)
  local slots, numeric = 0, #db:fields().numeric > 0
  for _, b in ipairs(bags) do slots = slots + b.slots end
  return function(path, K, bad_row, bad)
    local f = assert(io.open(path, "w"))
    f:write(string.format("%d %d %d %d %d\n", BN, single and 1 or 0, slots, numeric and 1 or 0, K))
    for i, r in ipairs(brows) do
      local line = {}
      if single then
        line[1] = r.a == "?" and 1 or va[r.a] or 0
        if i == bad_row and bad and bad[1] == "a" then line[1] = bad[2] end
      end
      for k, b in ipairs(bags) do
        local raw, vals = r[b.name], {}
        if raw ~= "" and raw ~= "?" then
          local sep, at = SEPS[b.name], 1
          while true do
            local e = raw:find(sep, at, true)
            vals[#vals + 1] = raw:sub(at, (e or 0) - 1)
            if not e then break end
            at = e + 1
          end
        end
        local from = (#vals > b.slots and b.keep == "last") and #vals - b.slots or 0
        local ids = {}
        for s = 1, math.min(#vals, b.slots) do ids[s] = b.ids[vals[from + s]] or 0 end
        if i == bad_row and bad and bad[1] == k then ids[1] = bad[2] end
        local pad = {}
        for _ = #ids + 1, b.slots do pad[#pad + 1] = -1 end
        for _, v in ipairs(pad_first and pad or ids) do line[#line + 1] = v end
        for _, v in ipairs(pad_first and ids or pad) do line[#line + 1] = v end
      end
      if numeric then line[#line + 1] = r.x == "" and "nan" or r.x end
      f:write(table.concat(line, " "), "\n")
    end
    f:close()
  end
end

-- ONNX (onnxruntime-node + checker + out-of-range ids) and C (compiled, run, bad
-- ids refused) parity of a bag model against m:predict on bags.csv.
local function bag_both(m, db, name, o)
  o = o or {}
  local tasks = {"ctr", "cvr"}
  local p = m:predict(db.all)
  local ran_onnx = onnx_parity(m, name, p, tasks, nil, BAG_SRC)
  if ran_onnx then
    local h = io.popen("cd tests/export && node bad_ids.js " .. dir .. "/" .. name .. ".onnx " .. dir .. "/"
                       .. name .. ".vocab.json 2>&1")
    local line = h:read("a")
    h:close()
    check(line:match('"rows":%d+,'), "bad_ids.js said " .. line)
    eq(tonumber(line:match('"max_abs":([^}]+)')), 0, name .. ": out-of-range ids against id 0: " .. line)
  end
  local ran_c = false
  if not o.onnx_only and HAVE_CC then
    m:export(dir .. "/" .. name .. ".c") -- writes the JSON the input is encoded with
    local vocab = dir .. "/" .. name .. ".vocab.json"
    local bags = json_bags(vocab)
    local bads = {}
    if #db:fields().categorical > 0 then bads[#bads + 1] = {"a", #db:vocab("a") + 2} end
    for k, b in ipairs(bags) do
      for _, v in ipairs({b.size, 1000000, -2}) do bads[#bads + 1] = {k, v} end
    end
    local src = {input = bag_input(db, vocab), n = BN, bads = bads, defs = "-DBAGS "}
    ran_c = c_parity(m, name, p, tasks, nil, nil, src) ~= nil
    -- the empty slots anywhere in a field's slots: first instead of last
    src.input, src.bads = bag_input(db, vocab, true), {}
    c_parity(m, name .. "_padfirst", p, tasks, nil, nil, src)
    if o.header then c_parity(m, name .. "_hdr", p, tasks, nil, ".h", src) end
  end
  if not ran_onnx and not ran_c then skip("neither onnxruntime-node (make deps) nor " .. CC) end
  if not ran_onnx then skip("C parity passed; onnxruntime-node not installed (make deps)") end
  if not ran_c and not o.onnx_only then skip("ONNX parity passed; no C compiler " .. CC) end
end

-- One bag field, no other feature: each pooling on its own (ids and numeric absent).
for _, pool in ipairs({"sum", "mean", "max"}) do
  T["bags_" .. pool] = function()
    local db = bag_data({"tags"}, {single = false, numeric = false, pooling = pool})
    local m = bag_trained(db, {backbone = tl.shared_bottom{}})
    bag_both(m, db, "bags_" .. pool)
  end
end

-- Single and multi-valued fields and a number together: sum (with unseen values),
-- a sequence with max_len (mean, last 3 kept), max (first 2 kept), empty bags in all.
T.bags_mixed = function()
  local db = bag_data({"tags", "hist", "cats"})
  local f = db:fields()
  eq(#f.bags, 3)
  eq(f.bags[2].max_len, 3)
  check(f.bags[2].truncated > 0 and f.bags[3].truncated > 0, "rows are truncated")
  local m = bag_trained(db, {backbone = tl.shared_bottom{}})
  bag_both(m, db, "bags_mixed", {header = true})
  if HAVE_ORT then onnx_parity(m, "bags_mixed13", m:predict(db.all), {"ctr", "cvr"}, {opset = 13}, BAG_SRC) end
  local bags, text = json_bags(dir .. "/bags_mixed.vocab.json")
  eq(#bags, 3, text)
  eq({bags[1].name, bags[1].input, bags[1].pooling, bags[1].keep, bags[1].slots, bags[1].offset},
     {"tags", "bag.tags", "sum", "last", 4, 0})
  eq({bags[2].name, bags[2].pooling, bags[2].keep, bags[2].slots, bags[2].offset}, {"hist", "mean", "last", 3, 4})
  eq({bags[3].name, bags[3].pooling, bags[3].keep, bags[3].slots, bags[3].offset}, {"cats", "max", "first", 2, 7})
  eq(bags[1].size, f.bags[1].vocab)
  -- min_count = 3 left some tags out: they are unseen (id 0), not in the values
  local n = 0
  for _ in pairs(bags[1].ids) do n = n + 1 end
  eq(n + 2, f.bags[1].vocab)
  local seen, distinct = {}, 0
  for _, r in ipairs(brows) do
    for t in r.tags:gmatch("[^|]+") do
      if not seen[t] then seen[t], distinct = true, distinct + 1 end
    end
  end
  check(n > 20 and n < distinct, string.format("%d of %d tags kept (min_count = 3)", n, distinct))
end

T.bags_mmoe = function()
  local db = bag_data({"tags", "hist", "cats"})
  bag_both(bag_trained(db, {backbone = tl.mmoe{experts = 3, expert = {8}}}), db, "bags_mmoe")
end

-- Hashed bags: serve.js hashes each value from the JSON alone (ONNX only: the C
-- file takes encoded ids, hashed or not, the same way).
T.bags_hashed = function()
  local db = bag_data({"tags", "hist"}, {hash = 7})
  eq(db:fields().bags[1].kind, "hash")
  local m = bag_trained(db, {backbone = tl.shared_bottom{}})
  local _, vocab = m:export(dir .. "/bags_hash.onnx")
  local text = assert(io.open(vocab)):read("a")
  check(text:find('"kind": "hash", "size": 8, "slots": 4', 1, true), text)
  check(text:find('"buckets": 7, "hash": "towerlab-xxh64", "seed": 29804', 1, true), text)
  if not HAVE_ORT then skip("onnxruntime-node not installed (make deps)") end
  bag_both(m, db, "bags_hash", {onnx_only = true})
end

-- What the export still refuses, naming the field.
T.bags_refused = function()
  local db = bag_data({"tags"})
  local m = bag_trained(db, {backbone = tl.shared_bottom{}})
  raises(function() m:export(dir .. "/r.onnx", {data = d}) end, "is not the one the model was built on")
  local other = bag_data({"hist"})
  raises(function() m:export(dir .. "/r.c", {data = other}) end, "multi%-valued field 1 is 'hist'")
  -- an output named like the field's input
  local lab = {["bag.tags"] = {column = "click", positive = "1"}}
  local dt = tl.data.csv{path = dir .. "/bags.csv", header = true, categorical = {"a", BAG_SPEC.tags},
    labels = lab, cache = false}
  local mt = tl.model{data = dt, backbone = tl.shared_bottom{}, emb = 4, seed = 1}
  mt:fit{data = dt.all, epochs = 1, verbose = false}
  raises(function() mt:export(dir .. "/r.onnx") end, "multi%-valued field 'tags': its ONNX input 'bag.tags'")
  -- a field name too long for an input name
  local long = string.rep("n", 201)
  local f = assert(io.open(dir .. "/long.csv", "w"))
  f:write(long .. ",y\n")
  for i = 1, 40 do f:write(i % 3 == 0 and "" or "p|q", ",", i % 2, "\n") end
  f:close()
  local dl = tl.data.csv{path = dir .. "/long.csv", header = true, categorical = {{long, multi = "|"}},
    labels = {y = {column = "y", positive = "1"}}, cache = false}
  local ml = tl.model{data = dl, backbone = tl.shared_bottom{}, emb = 4, seed = 1}
  ml:fit{data = dl.all, epochs = 1, verbose = false}
  raises(function() ml:export(dir .. "/r.c") end, "multi%-valued field 'nnnnnnnnnn.-': its name is longer than 200")
end

T.z_cleanup = function() os.execute("rm -rf " .. dir) end

return T
