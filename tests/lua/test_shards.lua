-- Sharded data from Lua (repl/l_shards.c): tl.data.convert, tl.data.shards,
-- tl.data.synthetic_ccp, m:fit on a shard stream, and the errors of misuse.
local T = {}

local tmpdir = temp_dir()
local function write(name, text) return write_file(tmpdir, name, text) end

local function csv_data(n)
  local lines = { "u,i,x,click" }
  for r = 1, n do
    lines[#lines + 1] = string.format("u%d,i%d,%d,%d", r % 13, r % 7, r % 5, (r % 13 < 5 and r % 3 ~= 0) and 1 or 0)
  end
  return tl.data.csv{ path = write("c.csv", table.concat(lines, "\n") .. "\n"), categorical = { "u", "i" },
                      numeric = { "x" }, labels = { click = { column = "click", positive = "1" } },
                      split = { train = 0.8, valid = 0.1, test = 0.1 }, seed = 3, cache = false }
end

T["convert, open, stream fit"] = function()
  local d = csv_data(3000)
  local dir = tmpdir .. "/conv"
  local sh = tl.data.convert(d, dir, { rows_per_shard = 500, verbose = false })
  eq(#sh, #d.train)
  eq(sh.rows.valid, #d.valid)
  eq(sh.valid:size(), #d.valid)
  check(tostring(sh):find("shards " .. dir, 1, true), tostring(sh))
  -- the valid split in memory holds the same labels as the source
  eq(sh.valid:labels().click, d.valid:labels().click)
  local m = tl.model{ data = sh.data, backbone = tl.shared_bottom{ bottom = { 16 } }, emb = 4, batch = 64 }
  m:fit{ data = sh, valid = sh.valid, epochs = 2, verbose = false }
  local r = m:evaluate(sh.test)
  check(r.click.auc > 0.65, "auc " .. r.click.auc)
  -- a finished directory is refused; reopening works
  raises(function() tl.data.convert(d, dir, { verbose = false }) end, "complete conversion")
  local again = tl.data.shards{ dir = dir, seed = 2 }
  eq(#again, #sh)
  raises(function() m:fit{ data = again, epochs = 1, seed = 3, verbose = false } end, "unknown field 'seed'")
  again:close()
  raises(function() return #again end, "closed")
end

T["convert a csv spec"] = function()
  local path = write("spec.csv", "a,y\nx,1\ny,0\nx,1\nz,0\n")
  local sh = tl.data.convert({ path = path, categorical = { "a" }, labels = { y = { column = "y", positive = "1" } },
                               cache = false }, tmpdir .. "/spec", { verbose = false })
  eq(#sh, 4) -- no split: every row is train
  eq(sh.rows.valid, 0)
end

T["same seed, same training"] = function()
  local d = csv_data(2000)
  local dir = tmpdir .. "/seed"
  tl.data.convert(d, dir, { rows_per_shard = 300, verbose = false })
  local function run(seed)
    local sh = tl.data.shards{ dir = dir, seed = seed, buffer = 100 }
    local m = tl.model{ data = sh.data, backbone = tl.shared_bottom{ bottom = { 8 } }, emb = 4, batch = 32, seed = 1 }
    m:fit{ data = sh, epochs = 1, verbose = false }
    return m:predict(sh.valid).click
  end
  local a, b, c = run(5), run(5), run(6)
  eq(a, b)
  check(a[1] ~= c[1] or a[2] ~= c[2], "another seed, another row order")
end

T["synthetic ccp shape and rates"] = function()
  local dir = tmpdir .. "/ccp"
  local sh = tl.data.synthetic_ccp{ dir = dir, rows = 200000, valid = 50000, test = 1000, seed = 2, verbose = false }
  eq(#sh, 200000)
  local f = sh.data:fields()
  eq(#f.categorical, 21)
  eq(f.categorical[1].name, "101")
  local y = sh.valid:labels()
  local clicks, buys = 0, 0
  for i = 1, #y.click do clicks = clicks + y.click[i]; buys = buys + y.purchase[i] end
  near(clicks / #y.click, 0.04, 0.005)
  check(buys <= clicks)
  raises(function() tl.data.synthetic_ccp{ dir = dir .. "2", rows = 10, zipf = 1, verbose = false } end, "zipf")
  raises(function() tl.data.synthetic_ccp{ rows = 10 } end, "'dir' is required")
end

T["errors name the directory and file"] = function()
  raises(function() tl.data.shards(tmpdir .. "/none") end, "no directory")
  local d = csv_data(500)
  local dir = tmpdir .. "/bad"
  tl.data.convert(d, dir, { rows_per_shard = 100, verbose = false })
  -- truncate one shard: opening names it
  local p = dir .. "/train-00001.tls"
  local fh = assert(io.open(p, "rb")); local bytes = fh:read("a"); fh:close()
  fh = assert(io.open(p, "wb")); fh:write(bytes:sub(1, 100)); fh:close()
  raises(function() tl.data.shards(dir) end, "train%-00001%.tls")
  os.remove(dir .. "/manifest.tls")
  raises(function() tl.data.shards(dir) end, "did not finish")
end

-- A generator killed with SIGKILL mid-run: the directory is not readable,
-- running it again resumes, and the shards are byte for byte those of an
-- uninterrupted run.
T["kill -9 then resume gives the same shards"] = function()
  local bin = os.getenv("TL_TEST_BIN") or "./towerlab"
  local a, b = tmpdir .. "/killed", tmpdir .. "/whole"
  local gen = "tl.data.synthetic_ccp{dir=%q, rows=3000000, valid=1000, test=1000, rows_per_shard=50000, verbose=false}"
  local cmd = string.format("%s -e %q & p=$!; sleep 0.8; kill -9 $p 2>/dev/null; wait $p 2>/dev/null; true",
                            bin, string.format(gen, a))
  os.execute(cmd)
  local f = io.open(a .. "/manifest.tls")
  local sa
  if f then
    f:close() -- the run finished before the kill (a fast machine): nothing to resume
    sa = tl.data.shards(a)
  else
    raises(function() tl.data.shards(a) end, "did not finish")
    sa = load("return " .. string.format(gen, a))()
  end
  local sb = load("return " .. string.format(gen, b))()
  eq(#sa, 3000000)
  eq(sa.rows, sb.rows)
  for i = 0, 59 do
    local n = string.format("/train-%05d.tls", i)
    check(os.execute(string.format("cmp -s %q %q", a .. n, b .. n)), n .. " differs")
  end
  eq(sa.valid:labels(), sb.valid:labels())
end

-- Off a terminal: plain lines (no carriage returns), rows/s, and the last one says how long.
T["progress lines in a log"] = function()
  local bin = os.getenv("TL_TEST_BIN") or "./towerlab"
  local dir = tmpdir .. "/log"
  local p = assert(io.popen(string.format("%s -e %q 2>&1", bin, string.format(
    "sh = tl.data.synthetic_ccp{dir=%q, rows=200000, log_every=0}; m = tl.model{data=sh.data, emb=2, " ..
    "backbone=tl.shared_bottom{bottom={4}}, batch=4096}; m:fit{data=sh, epochs=1, log_every=0}", dir))))
  local out = p:read("a")
  p:close()
  check(not out:find("\r"), "carriage return in a log")
  check(out:find("synthetic_ccp %d+/204000 rows %(%d+%%%)  %d+ rows/s  ETA %d+:%d%d\n"), out)
  check(not out:find(" 0 rows/s"), out)
  check(out:find("synthetic_ccp 204000/204000 rows %(100%%%)  %d+ rows/s  took %d+:%d%d\n"), out)
  check(out:find("epoch 1/1 %d+/200000 rows"), out)
  check(out:find("epoch 1/1  step 49  %d+ rows/s"), out)
end

T["zz cleanup"] = function() os.execute("rm -rf " .. tmpdir) end

return T
