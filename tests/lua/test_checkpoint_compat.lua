-- test_checkpoint_compat.lua — checkpoints written before the redesign of
-- issue 20 (commit 8a771cd, tests/fixtures/ckpt_8a771cd/make.lua: backbones,
-- loss weighting, DML, CrossDistil with fitted calibrators) load in this build
-- and predict what they predicted there, bit for bit, also after 10 more
-- training steps (except CrossDistil's: its training changed on purpose after
-- 8a771cd, with the issue 18 fixes 9e55ac1 and 997751a, so a fresh model trains
-- differently there too; its loaded predictions are still compared); saved again, every section is the old one, byte for byte,
-- except the three that grew fields at their end since (CONF: dml.gkd_tasks;
-- OPTM: the learning-rate schedule; CALB: the step each calibrator was fitted
-- at), whose old bytes are a prefix of the new. Bits are compared on the
-- platform the fixtures were recorded on (platform.txt, the key of
-- scripts/golden.sh platform); elsewhere OpenBLAS kernels differ in the last
-- bits, and predictions must agree to 1e-5.
local T = {}
local dir = "tests/fixtures/ckpt_8a771cd/"
local C = dofile(dir .. "common.lua")

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local expected = {}
for line in io.lines(dir .. "expected.txt") do
  local name, what, bits = line:match("^(%S+) (%S+) (.*)$")
  expected[name .. " " .. what] = bits
end

local here = io.popen("bash scripts/golden.sh platform 2>/dev/null"):read("l")
local same_platform = here == read(dir .. "platform.txt"):match("^%S+")

local function compare(got, want, what)
  if same_platform then
    eq(got, want, what)
    return
  end
  local g, w = {}, {}
  for h in got:gmatch("%x+") do g[#g + 1] = string.unpack("<f", string.pack("<I4", tonumber(h, 16))) end
  for h in want:gmatch("%x+") do w[#w + 1] = string.unpack("<f", string.pack("<I4", tonumber(h, 16))) end
  near(g, w, 1e-5, what)
end

-- tag -> payload, and the tags in file order
local function sections(bytes)
  local out, order, pos = {}, {}, 25
  local len = string.unpack("<I8", bytes, 17)
  while pos < len - 4 do
    local tag, _, size = string.unpack("<c4I4I8", bytes, pos)
    out[tag] = bytes:sub(pos + 16, pos + 16 + size - 1)
    order[#order + 1] = tag
    pos = pos + 16 + size
  end
  return out, order
end

local GROWN = {CONF = true, OPTM = true, CALB = true}

local d
local function data()
  tl.threads(1)
  d = d or C.data(dir .. "data.csv")
  return d
end

for _, r in ipairs(C.RUNS) do
  local name, fitopt = r[1], r[3]
  T["loads_and_predicts_" .. name] = function()
    local dd = data()
    local m = tl.load(dir .. name .. ".tlm")
    compare(C.bits(m:predict(dd.test), dd), expected[name .. " saved"], name .. ": predictions")
    if name:find("^crossdistil") then return end -- training changed since (see the top)
    m:fit(C.fit_options(dd, fitopt, 1))
    compare(C.bits(m:predict(dd.test), dd), expected[name .. " resumed"], name .. ": after 10 more steps")
  end
  T["saves_the_same_sections_" .. name] = function()
    local path = os.tmpname()
    tl.load(dir .. name .. ".tlm"):save(path)
    local old, old_order = sections(read(dir .. name .. ".tlm"))
    local new, new_order = sections(read(path))
    os.remove(path)
    eq(new_order, old_order, name .. ": sections")
    for tag, payload in pairs(old) do
      if GROWN[tag] then
        check(#new[tag] > #payload and new[tag]:sub(1, #payload) == payload, name .. ": " .. tag .. " grew at its end")
      else
        check(new[tag] == payload, name .. ": " .. tag .. " identical")
      end
    end
  end
end

return T
