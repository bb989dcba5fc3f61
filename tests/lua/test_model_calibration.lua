-- Calibrators fitted before further training (issue 19 item 3): kept, but
-- every use says they are stale, and a checkpoint keeps that knowledge.
local T = {}
local BIN = os.getenv("TL_TEST_BIN") or "./towerlab"

local function run(src)
  local script = os.tmpname()
  local f = assert(io.open(script, "w"))
  f:write(src)
  f:close()
  local p = io.popen("'" .. BIN .. "' '" .. script .. "' 2>&1")
  local out = p:read("a")
  p:close()
  os.remove(script)
  return out
end

local SETUP = [[
local d = tl.datasets.census()
local m = tl.model{data = d, backbone = tl.shared_bottom{bottom = {8}}, tower = tl.mlp{4},
                   emb = 2, batch = 256, seed = 1}
m:fit{data = d.train, epochs = 1, max_steps = 20, verbose = false}
local cp = tl.calibrate(m, d.valid, "platt")
]]

function T.fresh_calibrators_do_not_warn()
  local out = run(SETUP .. [[
m:evaluate(d.test, {calibrated = true})
cp:evaluate(d.test)
print("done")
]])
  check(out:find("done"), out)
  check(not out:find("stale"), out)
end

function T.training_after_calibrate_warns_at_every_use()
  local out = run(SETUP .. [[
m:fit{data = d.train, epochs = 1, max_steps = 5, verbose = false}
m:evaluate(d.test, {calibrated = true})
cp:predict(d.test)
print(tostring(cp))
local path = os.tmpname()
m:save(path)
local m2 = tl.load(path)
m2:evaluate(d.test, {calibrated = true})
os.remove(path)
tl.calibrate(m, d.valid, "platt")
m:evaluate(d.test, {calibrated = true})
print("done")
]])
  check(out:find("m:evaluate: warning: the calibrators of income, never_married are stale: fitted 5 " ..
                 "training steps ago", 1, true), out)
  check(out:find("cp:predict: warning: the calibrators", 1, true), out)
  check(out:find("(stale: fitted 5 steps ago)", 1, true), out)
  local _, n = out:gsub("m:evaluate: warning", "")
  eq(n, 2, "warned for m and for its reloaded copy, not after the refit: " .. out)
  check(out:find("done"), out)
end

function T.teacher_calibrators_older_than_teachers_warn()
  local out = run([[
local d = tl.datasets.census()
local m = tl.model{data = d, backbone = tl.shared_bottom{bottom = {8}}, tower = tl.mlp{4},
                   emb = 2, batch = 256, seed = 1,
                   distill = tl.crossdistil{pairs = {{"income", "never_married"}}, calibrate = "isotonic",
                                            calib_every = 10}}
m:fit{data = d.train, valid = d.valid, epochs = 1, max_steps = 10, verbose = false}
m:teachers(d.test)
print("fresh")
m:fit{data = d.train, valid = d.valid, epochs = 1, max_steps = 4, verbose = false}
m:teachers(d.test)
print("done")
]])
  local fresh = out:sub(1, out:find("fresh", 1, true))
  check(not fresh:find("warning"), out)
  check(out:find("m:teachers: warning: the teachers' fitted calibrators are 4 steps older", 1, true), out)
end

return T
