-- m:fit{data=sh, checkpoint=path} from Lua (repl/l_shards.c): a stream fit that
-- the progress callback stops mid-epoch saves its place at the stop; tl.load and
-- m:fit on the same shards finish the epoch with the bits of an uninterrupted
-- fit (also with multi-valued fields); other shards or another seed are refused,
-- naming what differs.
local T = {}

local tmpdir = os.tmpname()
os.remove(tmpdir)
assert(os.execute("mkdir -p " .. tmpdir))

local function shards(name, seed)
  local d = tl.datasets.synthetic_pair{ rows = 3000, seed = 3 }
  local dir = tmpdir .. "/" .. name
  tl.data.convert(d, dir, { rows_per_shard = 300, verbose = false })
  return tl.data.shards{ dir = dir, seed = seed, buffer = 400 }
end

local function model(sh)
  return tl.model{ data = sh.data, backbone = tl.mmoe{ experts = 2, expert = { 16 }, dropout = 0.1 },
                   tower = tl.mlp{ 8 }, emb = 4, batch = 64, seed = 5, weighting = "dwa" }
end

-- the bits of the test predictions and of the step losses
local function bits(m, sh)
  local p, out = m:predict(sh.test), {}
  for _, t in ipairs{ "a", "b" } do
    for i = 1, #p[t] do out[#out + 1] = string.format("%a", p[t][i]) end
  end
  for _, r in ipairs(m:history().steps) do out[#out + 1] = string.format("%a,%a", r.loss.a, r.loss.b) end
  return table.concat(out, " ")
end

T["stopped by the callback, saved at the stop, resumed: the bits of a fit never stopped"] = function()
  local sh = shards("a", 7)
  local ref = model(sh)
  ref:fit{ data = sh, valid = sh.valid, epochs = 2, verbose = false }
  local per_epoch = #ref:history().steps // 2
  local path = tmpdir .. "/m.tlm"
  for _, stop in ipairs{ per_epoch + 5, per_epoch } do -- mid-epoch 2; epoch 1's last step
    local m = model(sh)
    local ok, err = pcall(m.fit, m, { data = sh, valid = sh.valid, epochs = 2, verbose = false, checkpoint = path,
                                      progress = function(p) if p.step == stop then return false end end })
    check(not ok and err:find("saved to " .. path, 1, true), tostring(err))
    local r = tl.load(path)
    eq(#r:history().steps, stop)
    r:fit{ data = sh, valid = sh.valid, epochs = 2 - #r:history().epochs, verbose = false }
    eq(bits(r, sh), bits(ref, sh), "resumed at step " .. stop)
  end
  -- a step checkpoint (every=) holds the place too: max_steps ends the fit without a stop
  local stop = per_epoch + 6
  os.remove(path)
  model(sh):fit{ data = sh, valid = sh.valid, epochs = 2, verbose = false, checkpoint = path, every = stop,
                 max_steps = stop + 2 }
  local r = tl.load(path)
  eq(#r:history().steps, stop)
  r:fit{ data = sh, valid = sh.valid, epochs = 1, verbose = false }
  eq(bits(r, sh), bits(ref, sh), "resumed from the step checkpoint")
end

T["multi-valued fields (synthetic Ali-CCP): stopped mid-epoch 2, resumed, the same bits"] = function()
  local dir = tmpdir .. "/ccp"
  tl.data.synthetic_ccp{ dir = dir, rows = 10000, rows_per_shard = 1000, verbose = false }
  local sh = tl.data.shards{ dir = dir, seed = 3, buffer = 500 }
  check(tostring(sh.data):find("3 multi-valued", 1, true), tostring(sh.data))
  local function ccp_model()
    return tl.model{ data = sh.data, backbone = tl.mmoe{ experts = 2, expert = { 16 } }, emb = 4, batch = 128, seed = 1 }
  end
  local function ccp_bits(m)
    local p, out = m:predict(sh.test), {}
    for _, t in ipairs{ "click", "purchase" } do
      for i = 1, #p[t] do out[#out + 1] = string.format("%a", p[t][i]) end
    end
    for _, r in ipairs(m:history().steps) do out[#out + 1] = string.format("%a,%a", r.loss.click, r.loss.purchase) end
    return table.concat(out, " ")
  end
  local ref = ccp_model()
  ref:fit{ data = sh, epochs = 2, verbose = false }
  local stop, path = #ref:history().steps // 2 + 7, dir .. "/m.tlm"
  local m = ccp_model()
  pcall(m.fit, m, { data = sh, epochs = 2, verbose = false, checkpoint = path,
                    progress = function(p) return p.step ~= stop end })
  local r = tl.load(path)
  eq(#r:history().steps, stop)
  r:fit{ data = sh, epochs = 1, verbose = false }
  eq(ccp_bits(r), ccp_bits(ref))
end

T["another stream refused"] = function()
  local sh, other = shards("b", 7), shards("c", 8)
  local m = model(sh)
  pcall(m.fit, m, { data = sh, epochs = 1, verbose = false, progress = function(p) return p.step < 4 end })
  eq(#m:history().steps, 4)
  raises(function() m:fit{ data = other, epochs = 1, verbose = false } end, "seed 8 %(the stopped fit's 7%)")
  m:fit{ data = sh, epochs = 1, verbose = false }
  eq(#m:history().epochs, 1)
end

return T
