-- Checkpoints from Lua (repl/l_io.c): m:save / tl.load round trip on the
-- census data, exact continuation after loading, and the error messages of
-- refused files and failed saves.
local T = {}

local d
local function census()
  d = d or tl.datasets.census()
  return d
end

local function small_model(extra)
  local opts = {data = census(), backbone = tl.mmoe{experts = 2, expert = {8}}, emb = 4,
                batch = 256, seed = 5}
  for k, v in pairs(extra or {}) do opts[k] = v end
  return tl.model(opts)
end

local function tmpfile()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".tlm"
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function spit(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

local function metrics(r)
  local out = {}
  for task, v in pairs(r) do out[task] = {auc = v.auc, logloss = v.logloss, ece = v.ece} end
  return out
end

function T.save_load_evaluates_the_same()
  local m = small_model()
  m:fit{data = d.train, max_steps = 20, verbose = false}
  m.weights.never_married = 0.5
  local path = tmpfile()
  eq(m:save(path), m, "save returns the model")
  local m2 = tl.load(path)
  os.remove(path)
  eq(tostring(m2), tostring(m))
  eq(metrics(m2:evaluate(d.test)), metrics(m:evaluate(d.test)))
  eq(m2.weights.never_married, 0.5)
  eq(m2.weights.income, 1.0)
  local h, h2 = m:history(), m2:history()
  eq(#h2.steps, 20)
  eq(h2.steps[20].step, h.steps[20].step)
  eq(h2.steps[20].loss, h.steps[20].loss)
end

function T.loaded_model_continues_exactly()
  local a = small_model()
  a:fit{data = d.train, max_steps = 20, verbose = false}
  local path = tmpfile()
  a:save(path)
  local b = tl.load(path)
  os.remove(path)
  b:fit{data = d.train, max_steps = 15, verbose = false}
  local u = small_model()
  u:fit{data = d.train, max_steps = 35, verbose = false}
  eq(metrics(b:evaluate(d.valid)), metrics(u:evaluate(d.valid)),
     "20 steps + checkpoint + 15 steps == 35 steps")
  eq(#b:history().steps, 35)
end

function T.untrained_model_round_trips()
  local m = small_model()
  local path = tmpfile()
  m:save(path)
  local m2 = tl.load(path)
  os.remove(path)
  eq(metrics(m2:evaluate(d.test)), metrics(m:evaluate(d.test)))
  m2:fit{data = d.train, max_steps = 2, verbose = false}
  eq(#m2:history().steps, 2)
end

function T.refused_files_say_why()
  local m = small_model()
  local path = tmpfile()
  m:save(path)
  local good = slurp(path)
  local bad = tmpfile()

  spit(bad, "return os.exit(3)\n")
  raises(function() tl.load(bad) end, "tl.load: " .. bad .. ": not a towerlab checkpoint (bad magic)")
  spit(bad, good:sub(1, #good // 2))
  raises(function() tl.load(bad) end, "truncated checkpoint")
  local i = #good // 2
  spit(bad, good:sub(1, i - 1) .. string.char((good:byte(i) + 1) % 256) .. good:sub(i + 1))
  raises(function() tl.load(bad) end, "checksum mismatch")
  spit(bad, good:sub(1, 8) .. "\99\0\0\0" .. good:sub(13))
  raises(function() tl.load(bad) end, "format version 99 is newer")
  os.remove(bad)
  raises(function() tl.load(bad) end, "No such file or directory")
  raises(function() tl.load() end, "string expected")

  -- A failed save names the path and leaves the old file whole.
  raises(function() m:save(path .. "/sub.tlm") end, "m:save: " .. path .. "/sub.tlm")
  raises(function() m:save("/nonexistent-dir-towerlab/x.tlm") end, "No such file or directory")
  eq(slurp(path), good)
  os.remove(path)
end

function T.documented()
  local names = debug.getregistry()["tl.docs.names"]
  check(names and tostring(names["tl.load"]):find("checkpoint"), "help text for tl.load")
  check(tostring(names["m:save"]):find("renamed"), "help text for m:save")
end

return T
