-- tl.data.convert with a tl.data.csv spec (repl/l_shards.c, engine/data/convert.c):
-- streamed in two passes; the same shards as loading then converting
-- (split={..., hash=true} for ratios), its report (rows, skipped bad rows,
-- hashed fields), progress lines of both passes, stream=false, and a
-- conversion killed with SIGKILL resumed to the bytes of a whole one.
local T = {}

local tmpdir = temp_dir()
local function write(name, text) return write_file(tmpdir, name, text) end

local function csv_text(n, bad)
  local lines = { "u,i,tags,x,click" }
  for r = 1, n do
    local tags = {}
    for k = 1, r % 4 do tags[k] = "t" .. ((r * k) % 9) end
    local x = bad and bad[r] and "oops" or tostring(r % 5)
    lines[#lines + 1] = string.format("u%d,\"i%d\",%s,%s,%d", r % 13, r % 7, table.concat(tags, "|"), x,
                                      (r % 13 < 5 and r % 3 ~= 0) and 1 or 0)
  end
  return table.concat(lines, "\n") .. "\n"
end

local function spec(path, extra)
  local s = { path = path, categorical = { "u", { "i", hash = 5 }, { "tags", multi = "|", pooling = "mean" } },
              numeric = { "x" }, labels = { click = { column = "click", positive = "1" } },
              split = { train = 0.8, valid = 0.1, test = 0.1 }, seed = 3, cache = false }
  for k, v in pairs(extra or {}) do s[k] = v end
  return s
end

local function same_dirs(a, b)
  local p = assert(io.popen(string.format("cd %q && ls", a)))
  local n = 0
  for name in p:lines() do
    n = n + 1
    check(os.execute(string.format("cmp -s %q %q", a .. "/" .. name, b .. "/" .. name)), name .. " differs")
  end
  p:close()
  check(n > 1, "no files in " .. a)
end

T["a csv spec streams into the shards of the in-memory path"] = function()
  local path = write("a.csv", csv_text(2000))
  local s = spec(path, { split = { train = 0.8, valid = 0.1, test = 0.1, hash = true } })
  local d = tl.data.csv(s)
  tl.data.convert(d, tmpdir .. "/mem", { rows_per_shard = 300, verbose = false })
  local sh, rep = tl.data.convert(spec(path), tmpdir .. "/str", { rows_per_shard = 300, verbose = false })
  same_dirs(tmpdir .. "/mem", tmpdir .. "/str")
  eq(rep.rows, { train = #d.train, valid = #d.valid, test = #d.test })
  eq(rep.resumed, { train = 0, valid = 0, test = 0 })
  eq(rep.skipped, 0)
  check(rep.hashed.i and rep.hashed.i.buckets == 5 and rep.hashed.i.values >= 5, "hashed report")
  eq(#sh, #d.train)
  eq(sh.valid:labels().click, d.valid:labels().click)
  -- the in-memory load without hash=true splits by a permutation: other rows
  local p = tl.data.csv(spec(path))
  eq(#p.train + #p.valid + #p.test, 2000)
  check(#p.valid == 200, "exact ratio counts without hash=")
  raises(function() tl.data.csv(spec(path, { split = { modulo = 2, train = { 0 }, hash = true } })) end,
         "hash= goes with ratios")
  -- stream=false loads first, then converts (the permutation split)
  local sh2 = tl.data.convert(spec(path), tmpdir .. "/old", { stream = false, verbose = false })
  eq(#sh2, #p.train)
end

T["bad rows: an error naming file, line and column, or skipped and counted"] = function()
  local path = write("bad.csv", csv_text(300, { [40] = true, [77] = true }))
  raises(function() tl.data.convert(spec(path), tmpdir .. "/bad1", { verbose = false }) end,
         "bad.csv:41: column 4 %('x'%): expected a number, got \"oops\"")
  local _, rep = tl.data.convert(spec(path, { on_bad = "skip" }), tmpdir .. "/bad2", { verbose = false })
  eq(rep.skipped, 2)
  eq(rep.skipped_lines, { 41, 78 })
  eq(rep.rows.train + rep.rows.valid + rep.rows.test, 298)
end

T["a vocabulary field past max_vocab distinct values is refused, naming it"] = function()
  local path = write("v.csv", csv_text(500))
  raises(function() tl.data.convert(spec(path), tmpdir .. "/voc", { max_vocab = 5, verbose = false }) end,
         "field 'u' has more than 5 distinct values")
  raises(function() tl.data.convert(spec(path), tmpdir .. "/voc", { max_vocab = 5, verbose = false }) end,
         "hash=N")
  local sh = tl.data.convert(spec(path), tmpdir .. "/voc", { max_vocab = 13, verbose = false })
  eq(sh.rows.train + sh.rows.valid + sh.rows.test, 500)
end

T["the label-leakage warning, on the valid split"] = function()
  local bin = os.getenv("TL_TEST_BIN") or "./towerlab"
  local lines = { "u,leak,click" }
  for r = 1, 3000 do lines[#lines + 1] = string.format("u%d,%d,%d", r % 7, r % 2, r % 2) end
  local path = write("leak.csv", table.concat(lines, "\n") .. "\n")
  local code = string.format("tl.data.convert({path=%q, categorical={'u'}, numeric={'leak'}, labels={click={column="
                             .. "'click', positive='1'}}, split={train=0.8, valid=0.2}, cache=false}, %q, "
                             .. "{verbose=false})", path, tmpdir .. "/leak")
  local p = assert(io.popen(string.format("%s -e %q 2>&1", bin, code)))
  local out = p:read("a")
  p:close()
  check(out:find("tl.data.convert: warning: feature 'leak' predicts task 'click' almost perfectly on the valid",
                 1, true), out)
end

-- Off a terminal: one line per pass, rows/s, and how long the last took.
T["progress lines of both passes in a log"] = function()
  local bin = os.getenv("TL_TEST_BIN") or "./towerlab"
  local path = write("p.csv", csv_text(200000))
  local code = string.format("tl.data.convert({path=%q, categorical={'u'}, numeric={'x'}, labels={click={column="
                             .. "'click', positive='1'}}, cache=false}, %q, {log_every=0})", path, tmpdir .. "/prog")
  local p = assert(io.popen(string.format("%s -e %q 2>&1", bin, code)))
  local out = p:read("a")
  p:close()
  check(not out:find("\r"), "carriage return in a log")
  check(out:find("convert: pass 1/2, reading %d+/%d+ rows %(%d+%%%)  %d+ rows/s  ETA %d+:%d%d"), out)
  check(out:find("convert: pass 2/2, writing 200000/200000 rows %(100%%%)  %d+ rows/s  took %d+:%d%d\n"), out)
end

-- SIGKILL in the middle: the directory is not readable, the same call
-- resumes, and every file is byte for byte that of an uninterrupted run.
T["kill -9 then resume gives the same shards"] = function()
  local bin = os.getenv("TL_TEST_BIN") or "./towerlab"
  local path = write("k.csv.gz", "") -- replaced below by a gzip file
  local plain = write("k.csv", csv_text(400000))
  os.execute(string.format("gzip -c %q > %q", plain, path))
  local a, b = tmpdir .. "/killed", tmpdir .. "/whole"
  local conv = "tl.data.convert({path=%q, categorical={'u', {'i', hash=5}, {'tags', multi='|'}}, numeric={'x'}, "
      .. "labels={click={column='click', positive='1'}}, split={train=0.8, valid=0.1, test=0.1}, cache=false}, "
      .. "%q, {rows_per_shard=2000, verbose=false})"
  -- killed once a few shards are complete (each is fsynced: the run takes a while)
  local cmd = string.format("%s -e %q & p=$!; for k in $(seq 1 1000); do [ -e %q ] && break; sleep 0.01; done; "
                            .. "kill -9 $p 2>/dev/null; wait $p 2>/dev/null; true",
                            bin, string.format(conv, path, a), a .. "/train-00005.tls")
  os.execute(cmd)
  local f = io.open(a .. "/manifest.tls")
  if f then
    f:close() -- the run finished before the kill (a fast machine): nothing to resume
  else
    raises(function() tl.data.shards(a) end, "did not finish")
  end
  local _, rep
  if not f then _, rep = load("return " .. string.format(conv, path, a))() end
  load("return " .. string.format(conv, path, b))()
  same_dirs(b, a)
  if rep then check(rep.resumed.train >= 6 * 2000, "resumed " .. rep.resumed.train) end
end

T["auto_hash: a field past the threshold is hashed, as hash= would, and reported"] = function()
  local lines = { "u,id,x,click" }
  for r = 1, 3000 do lines[#lines + 1] = string.format("u%d,id%d,%d,%d", r % 13, (r * 7) % 200, r % 5, r % 3 == 0 and 1 or 0) end
  local path = write("auto.csv", table.concat(lines, "\n") .. "\n")
  local function sp(id) return { path = path, categorical = { "u", id }, numeric = { "x" },
                                 labels = { click = { column = "click", positive = "1" } }, cache = false } end
  local _, rep = tl.data.convert(sp("id"), tmpdir .. "/auto", { auto_hash = 50, verbose = false })
  local h = rep.hashed.id
  check(h and h.auto and h.auto_at == 200 and h.auto_rows == 3000 and h.buckets == 256, "auto report")
  check(h.collisions > 0 and h.collisions < 0.5, "collision rate " .. tostring(h.collisions))
  check(rep.hashed.u == nil, "u (13 values) stays a vocabulary")
  local _, rep2 = tl.data.convert(sp({ "id", hash = 256 }), tmpdir .. "/explicit", { verbose = false })
  check(not rep2.hashed.id.auto, "explicit hash= is not automatic")
  same_dirs(tmpdir .. "/explicit", tmpdir .. "/auto")
  -- below the threshold (the default, 1e6) and with auto_hash=false: the in-memory vocabulary
  tl.data.convert(tl.data.csv(sp("id")), tmpdir .. "/automem", { verbose = false })
  tl.data.convert(sp("id"), tmpdir .. "/autodef", { verbose = false })
  tl.data.convert(sp("id"), tmpdir .. "/autooff", { auto_hash = false, verbose = false })
  same_dirs(tmpdir .. "/automem", tmpdir .. "/autodef")
  same_dirs(tmpdir .. "/automem", tmpdir .. "/autooff")
  -- min_count= given: a vocabulary asked for, not hashed
  local _, rep3 = tl.data.convert(sp({ "id", min_count = 1 }), tmpdir .. "/automc", { auto_hash = 50, verbose = false })
  check(rep3.hashed.id == nil, "min_count= keeps a vocabulary")
  raises(function() tl.data.convert(sp("id"), tmpdir .. "/autobad", { auto_hash = true }) end, "auto_hash")
  -- the printed line names the field, the values seen, the buckets and the collision rate
  local bin = os.getenv("TL_TEST_BIN") or "./towerlab"
  local code = string.format("tl.data.convert({path=%q, categorical={'u', 'id'}, numeric={'x'}, labels={click={column="
                             .. "'click', positive='1'}}, cache=false}, %q, {auto_hash=50, log_every=1000})", path,
                             tmpdir .. "/autoprint")
  local p = assert(io.popen(string.format("%s -e %q 2>&1", bin, code)))
  local out = p:read("a")
  p:close()
  check(out:find("field 'id' hashed automatically: 200 distinct values after 3000 rows %(> auto_hash%), 256 buckets, ~%d+%.%d%% of its ~%d+ values collide"), out)
end

T["zz cleanup"] = function() os.execute("rm -rf " .. tmpdir) end

-- The shards record their fields' encodings (encodings.tle), so a dataset
-- opened from them is the loaded one's: the same fields, the same export
-- (vocab JSON and ONNX bytes), evaluation by a model built on the CSV's
-- dataset, and like= reads. Shards without a record say "ids", not "hash".
T["shards keep the encodings: export, evaluation and like= as from the csv"] = function()
  local lines = { "u,i,tags,x,y,click" }
  for r = 1, 1500 do
    local x = r % 17 == 0 and "" or tostring((r * 7) % 23 + 0.5)
    lines[#lines + 1] = string.format("u%d,i%d,t%d|t%d,%s,%g,%d", r % 13, r % 7, r % 5, r % 3, x, (r % 11) * 1.5,
                                      (r % 13 < 5 and r % 3 ~= 0) and 1 or 0)
  end
  local path = write("enc.csv", table.concat(lines, "\n") .. "\n")
  local s = spec(path, { split = { train = 0.8, valid = 0.1, test = 0.1, hash = true },
                         categorical = { "u", { "i", hash = 5 }, { "tags", multi = "|" } },
                         numeric = { "x", { "y", transform = "log1p" }, { "y", transform = "quantile", buckets = 4 } } })
  local d = tl.data.csv(s)
  local sh = tl.data.convert(s, tmpdir .. "/enc", { rows_per_shard = 400, verbose = false })
  tl.data.convert(d, tmpdir .. "/enc_mem", { rows_per_shard = 400, verbose = false })
  same_dirs(tmpdir .. "/enc", tmpdir .. "/enc_mem")
  -- the same fields, but for the hashed field's collision counts (known when loaded)
  local function fields(ds)
    local f = ds:fields()
    for _, c in ipairs(f.categorical) do c.values, c.collisions = nil, nil end
    return f
  end
  eq(fields(sh.data), fields(d))
  eq(sh.data:fields().categorical[1].kind, "vocab")
  local m = tl.model{ data = d, backbone = tl.shared_bottom{}, emb = 4, batch = 128, seed = 3 }
  m:fit{ data = d.train, epochs = 1, verbose = false }
  -- a model of the CSV's dataset evaluates the shards' rows: their ids mean the same values
  eq(m:predict(sh.valid), m:predict(d.valid))
  eq(tostring(m:evaluate(sh.valid)), tostring(m:evaluate(d.valid)))
  local a, b = tmpdir .. "/enc_a.onnx", tmpdir .. "/enc_b.onnx"
  m:export(a)
  m:export(b, { data = sh.data })
  check(os.execute(string.format("cmp -s %q %q", a, b)), "the ONNX files differ")
  check(os.execute(string.format("cmp -s %q %q", tmpdir .. "/enc_a.vocab.json", tmpdir .. "/enc_b.vocab.json")),
        "the vocab JSON files differ")
  -- rows read like= the shards' dataset get the CSV's encodings
  local function more(like)
    local t = spec(path, { categorical = s.categorical, numeric = s.numeric, like = like })
    t.split = nil
    return tl.data.csv(t)
  end
  eq(m:predict(more(sh.data).all), m:predict(more(d).all))
  -- a damaged record is an error naming it
  local f = assert(io.open(tmpdir .. "/enc/encodings.tle", "r+b"))
  f:seek("set", f:seek("end") - 9) -- the payload's last byte
  f:write("\255")
  f:close()
  raises(function() return tl.data.shards{ dir = tmpdir .. "/enc" }.data end, "encodings.tle: damaged")
  -- the synthetic stream's shards have no record: ids, whose values are unknown
  local ccp = tl.data.synthetic_ccp{ dir = tmpdir .. "/enc_ccp", rows = 2000, valid = 500, test = 100, seed = 2,
                                     verbose = false }
  eq(ccp.data:fields().categorical[1].kind, "ids")
end

return T
