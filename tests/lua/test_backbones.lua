-- The backbones added with issue 23 (STEM, AdaTT, cross-stitch, DSelect-k) and the
-- tl.hps name, end to end on the shipped census data: one epoch with fixed weights,
-- every weighting method, DML, CrossDistil, ESMM's head over them, a task space, the
-- checkpoint round trip (identical predictions), and their help texts.
local T = {}

local d
local function census()
  d = d or tl.datasets.census()
  return d
end

-- Small instances of each new backbone, so a full census epoch takes a fraction of a second.
local NEW = {
  stem = function() return tl.stem{levels = 2, shared = 1, specific = 1, expert = {12, 8}, gate = {6}} end,
  adatt = function() return tl.adatt{levels = 2, shared = 1, specific = 2, expert = {12, 8}} end,
  cross_stitch = function() return tl.cross_stitch{bottom = {12, 8}} end,
  dselect_k = function() return tl.dselect_k{experts = 3, k = 2, expert = {12}, entropy = 1e-4} end,
}
local NAMES = {"stem", "adatt", "cross_stitch", "dselect_k"}

local function model(name, extra)
  local opts = {data = census(), backbone = NEW[name](), tower = tl.mlp{8}, emb = 4, batch = 512,
                seed = 11}
  for k, v in pairs(extra or {}) do opts[k] = v end
  return tl.model(opts)
end

local function finite(x) return type(x) == "number" and x == x and x > -math.huge and x < math.huge end

-- Every step's loss of every task is finite.
local function check_losses(m, what)
  local h = m:history()
  check(#h.steps > 0, what .. ": no steps")
  for _, s in ipairs(h.steps) do
    for task, l in pairs(s.loss) do check(finite(l), what .. ": step " .. s.step .. " " .. task .. " loss " .. tostring(l)) end
  end
end

local function tmpfile()
  local p = os.tmpname()
  os.remove(p)
  return p .. ".tlm"
end

-- Saved and loaded, the model predicts the same bits on the test split.
local function check_round_trip(m, what)
  local path = tmpfile()
  m:save(path)
  local m2 = tl.load(path)
  os.remove(path)
  eq(tostring(m2), tostring(m), what .. ": summary")
  eq(m2:predict(d.test), m:predict(d.test), what .. ": predictions after save/load")
end

-- Every weighting method, from the engine's own list (so methods added later
-- are covered without editing this file).
local function weightings()
  local list = {}
  for _, w in ipairs(tl.weightings) do list[#list + 1] = w.name end
  check(#list >= 20, "tl.weightings lists " .. #list .. " methods")
  return list
end

function T.one_census_epoch_fixed_weights_and_round_trip()
  for _, name in ipairs(NAMES) do
    local m = model(name)
    check(tostring(m):find("model  " .. name, 1, true), tostring(m))
    m:fit{data = d.train, valid = d.valid, epochs = 1, verbose = false}
    check_losses(m, name)
    eq(#m:history().steps, math.ceil(#d.train / 512), name .. ": one epoch of steps")
    local r = m:evaluate(d.test)
    -- never_married is easy on census: a backbone that trains must beat chance clearly
    check(r.never_married.auc > 0.8, name .. ": never_married auc " .. r.never_married.auc)
    check(finite(r.income.logloss), name .. ": income logloss")
    check_round_trip(m, name)
  end
end

function T.every_weighting_method()
  for _, w in ipairs(weightings()) do
    for _, name in ipairs(NAMES) do
      -- GradDrop on DSelect-k too: its entropy term, below the towers' inputs, is a seed of
      -- the split backward (tests/test_weighting.c test_rep_with_regulariser)
      local m = model(name, {weighting = w})
      m:fit{data = d.train, epochs = 1, max_steps = 6, verbose = false}
      check_losses(m, name .. " + " .. w)
    end
  end
end

function T.dml_crossdistil_esmm_and_task_spaces()
  for _, name in ipairs(NAMES) do
    local runs = {
      dml = model(name, {mutual = tl.dml{}}),
      crossdistil = model(name, {distill = tl.crossdistil{pairs = {{"income", "never_married"}}}}),
      esmm = tl.model{data = census(), backbone = tl.esmm{backbone = NEW[name]()}, tower = tl.mlp{8},
                      emb = 4, batch = 512, seed = 11},
      space = model(name, {tasks = {never_married = {space = "income"}}}),
    }
    for what, m in pairs(runs) do
      m:fit{data = d.train, valid = d.valid, epochs = 1, max_steps = 40, verbose = false}
      check_losses(m, name .. " + " .. what)
      check_round_trip(m, name .. " + " .. what)
    end
    check(tostring(runs.esmm):find("head    esmm", 1, true), tostring(runs.esmm))
  end
end

-- ESMM's head over a backbone is ESMM: pCTCVR = pCTR x pCVR, so it never exceeds pCTR.
function T.esmm_head_over_a_backbone()
  local m = tl.model{data = census(), backbone = tl.esmm{backbone = NEW.adatt()}, tower = tl.mlp{8},
                     emb = 4, batch = 512, seed = 11}
  m:fit{data = d.train, max_steps = 20, verbose = false}
  local p = m:predict(d.test)
  for i = 1, #p.income do check(p.never_married[i] <= p.income[i], "pCTCVR <= pCTR at row " .. i) end
  raises(function() tl.esmm{backbone = tl.aitm{}} end, "not esmm or aitm")
  raises(function()
    tl.model{data = census(), backbone = tl.esmm{backbone = tl.mmoe{}},
             distill = tl.crossdistil{pairs = {{"income", "never_married"}}}}
  end, "ESMM's second output is pCTCVR")
end

-- tl.hps is the Shared-Bottom: the same model, bit for bit.
function T.hps_is_shared_bottom()
  local a = tl.model{data = census(), backbone = tl.hps{bottom = {16}}, tower = tl.mlp{8}, emb = 4, seed = 2}
  local b = tl.model{data = census(), backbone = tl.shared_bottom{bottom = {16}}, tower = tl.mlp{8}, emb = 4,
                     seed = 2}
  a:fit{data = d.train, max_steps = 10, verbose = false}
  b:fit{data = d.train, max_steps = 10, verbose = false}
  eq(tostring(a), tostring(b))
  eq(a:predict(d.test), b:predict(d.test))
  eq(a.backbone, "shared_bottom")
end

function T.bad_options_are_named()
  raises(function() tl.stem{level = 2} end, "level")
  raises(function() tl.dselect_k{experts = 4, k = 5} end, "k <= experts")
  raises(function() tl.dselect_k{experts = 1} end, "experts >= 2")
  raises(function() tl.model{data = census(), backbone = tl.cross_stitch{bottom = {}}} end,
         "cross_stitch: bottom needs at least one layer")
  raises(function() tl.model{data = census(), backbone = tl.adatt{specific = 0}} end, "specific 1..256")
  local numeric_only = tl.datasets.synthetic{n = 200, seed = 1}
  raises(function() tl.model{data = numeric_only, backbone = tl.stem{}} end, "stem: needs categorical fields")
end

function T.help_lists_every_backbone()
  local out = {}
  local print0 = print
  print = function(s) out[#out + 1] = tostring(s) end
  local ok, err = pcall(help, tl.model)
  for _, name in ipairs{"stem", "adatt", "cross_stitch", "dselect_k", "hps"} do
    pcall(help, tl[name])
  end
  print = print0
  check(ok, tostring(err))
  local text = table.concat(out, "\n")
  for _, name in ipairs{"tl.shared_bottom", "tl.hps", "tl.omoe", "tl.mmoe", "tl.ple", "tl.esmm", "tl.aitm",
                        "tl.stem", "tl.adatt", "tl.cross_stitch", "tl.dselect_k"} do
    check(text:find(name, 1, true), "help mentions " .. name)
  end
  for _, phrase in ipairs{"All Forward Task-specific", "AdaTT-sp", "0.1/(T-1)", "smooth-steps", "hard parameter"} do
    check(text:find(phrase, 1, true), "help explains: " .. phrase)
  end
end

return T
