-- The tl table, help, the pretty printer and the tab completer, as seen from
-- Lua inside the towerlab program.
local T = {}

local function capture(fn, ...)
  local out, old = {}, print
  print = function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
    out[#out + 1] = table.concat(parts, "\t")
  end
  local ok, err = pcall(fn, ...)
  print = old
  if not ok then error(err, 0) end
  return table.concat(out, "\n")
end

local function complete(text)
  return debug.getregistry()["tl.private"].complete(text)
end

function T.tl_table_basics()
  check(type(tl) == "table")
  check(package.loaded.towerlab == tl, "require 'towerlab' returns the global tl")
  check(tl.version:match("^%d+%.%d+%.%d+$"), tl.version)
  eq(math.type(tl.seed), "integer")
  check(help == tl.help, "global help is tl.help")
end

function T.threads_get_set()
  local n = tl.threads()
  eq(math.type(n), "integer")
  check(n >= 1)
  eq(tl.threads(1), 1)
  eq(tl.threads(), 1)
  tl.threads(n)
  raises(function() tl.threads(0) end, "thread count must be in 1..4096")
  raises(function() tl.threads("x") end, "number expected, got string")
end

function T.cancelled_flag_is_clear()
  eq(tl.cancelled(), false)
end

function T.optional_modules_load_when_present()
  for _, m in ipairs({ "data", "metrics", "plot" }) do
    local v = tl[m]
    check(v == nil or type(v) == "table" or type(v) == "function", m)
  end
end

function T.help_by_value_name_and_method()
  local s = capture(tl.help, tl.threads)
  check(s:find("tl.threads([n])", 1, true), s)
  s = capture(tl.help, "tl.tensor.zeros")
  check(s:find("zero tensor", 1, true), s)
  tensor_for_help = tl.tensor.zeros(2)
  s = capture(tl.help, "tensor_for_help:shape")
  check(s:find("t:shape() -> {d1, ..., dk}", 1, true), s)
  s = capture(tl.help, tensor_for_help)
  check(s:find("Methods:", 1, true) and s:find("tensor:get", 1, true), s)
  tensor_for_help = nil
  s = capture(tl.help, "tl.tensor")
  check(s:find("Fields:", 1, true), s)
end

function T.help_lists_topics_and_reports_unknown()
  local s = capture(tl.help)
  check(s:find("Topics", 1, true), s)
  check(s:find("tl.threads", 1, true) and s:find("tl.tensor", 1, true), s)
  s = capture(tl.help, "no_such_thing")
  check(s:find("no help for 'no_such_thing'", 1, true), s)
  s = capture(tl.help, print)
  check(s:find("no help for", 1, true), s)
end

function T.doc_from_lua()
  local f = function() end
  tl.doc("mine.f", "mine.f(): a test function", f)
  local s = capture(tl.help, f)
  eq(s, "mine.f(): a test function")
end

function T.pretty_sorted_keys_and_arrays()
  eq(tl.pretty({ b = 2, a = 1, 10, 20 }), "{10, 20, a = 1, b = 2}")
  eq(tl.pretty({ ["with space"] = true, [3.5] = "x" }), '{[3.5] = "x", ["with space"] = true}')
  eq(tl.pretty({}), "{}")
  eq(tl.pretty("top-level strings are raw"), "top-level strings are raw")
  eq(tl.pretty({ s = "q\"uote" }), '{s = "q\\"uote"}')
  eq(tl.pretty(0.1), "0.1")
  eq(tl.pretty(3), "3")
  eq(tl.pretty(2.0), "2.0")
  eq(tl.pretty(1 / 0), "inf")
  eq(tl.pretty({ x = 0 / 0 }), "{x = nan}")
end

function T.pretty_cycles_and_depth()
  local t = { name = "root" }
  t.self = t
  eq(tl.pretty(t), '{name = "root", self = <cycle>}')
  local deep = { a = { b = { c = { d = { e = 1 } } } } }
  eq(tl.pretty(deep), "{a = {b = {c = {d = {...}}}}}")
  eq(tl.pretty(deep, { depth = 10 }), "{a = {b = {c = {d = {e = 1}}}}}")
  local shared = {}
  eq(tl.pretty({ shared, shared }), "{{}, {}}", "a shared table is not a cycle")
end

function T.pretty_long_tables_wrap_and_truncate()
  local long = {}
  for i = 1, 30 do long["key" .. string.format("%02d", i)] = i end
  local s = tl.pretty(long)
  check(s:find("\n  key01 = 1,\n", 1, true), s)
  local many = {}
  for i = 1, 150 do many[i] = i end
  check(tl.pretty(many):find("... (50 more)", 1, true))
end

function T.pretty_userdata_and_results_grid()
  local s = tl.pretty({ t = tl.tensor{1, 2} })
  check(s:find("tl.tensor[2]", 1, true), s)
  local r = { income = { auc = 0.91234, logloss = 0.3, bins = {} },
              married = { auc = 0.8, logloss = 0.41, bins = {} } }
  eq(tl.pretty(r), table.concat({
    "            auc  logloss",
    "income   0.9123   0.3000",
    "married  0.8000   0.4100",
    "(also in each row: bins)" }, "\n"))
  -- rows with different fields are not a grid
  check(tl.pretty({ a = { x = 1 }, b = { y = 2 } }):find("{a = {x = 1}, b = {y = 2}}", 1, true))
end

function T.completion_globals_fields_methods()
  local c = complete("tl.ten")
  eq(c, { "tl.tensor" })
  c = complete("tl.tensor.ze")
  eq(c, { "tl.tensor.zeros" })
  c = complete("pri")
  eq(c, { "print" })
  c = complete("whi")
  eq(c, { "while" }, "keywords")
  tensor_for_completion = tl.tensor.zeros(1)
  c = complete("tensor_for_completion:s")
  eq(c, { "tensor_for_completion:set", "tensor_for_completion:shape", "tensor_for_completion:sum" })
  tensor_for_completion = nil
  c = complete("string.up")
  eq(c, { "string.upper" })
  local names = complete("tl.")
  for _, n in ipairs(names) do check(not n:find("^tl%._"), "private names hidden: " .. n) end
  eq(complete("nosuch.x"), {})
  eq(complete("f(x).y"), {}, "no calls are evaluated")
end

function T.completion_through_index_chain()
  local base = { method_a = function() end }
  obj_for_completion = setmetatable({ field = 1 }, { __index = base })
  eq(complete("obj_for_completion:me"), { "obj_for_completion:method_a" })
  eq(complete("obj_for_completion.fi"), { "obj_for_completion.field" })
  obj_for_completion = nil
end

-- Issue 25 item 19: tl.seed takes integers only.
function T.tl_seed_rejects_non_integers()
  local old = tl.seed
  raises(function() tl.seed = 0 / 0 end, "tl.seed must be an integer, got nan")
  raises(function() tl.seed = "x" end, "tl.seed must be an integer, got string")
  raises(function() tl.seed = "5" end, "tl.seed must be an integer, got string")
  raises(function() tl.seed = 1.5 end, "tl.seed must be an integer, got 1.5")
  raises(function() tl.seed = nil end, "tl.seed must be an integer, got nil")
  eq(tl.seed, old, "a refused value changes nothing")
  tl.seed = 42.0
  eq(math.type(tl.seed), "integer")
  eq(tl.seed, 42)
  tl.seed = old
  tl.some_user_field = 3 -- other fields are plain
  eq(rawget(tl, "some_user_field"), 3)
  tl.some_user_field = nil
end

-- Issue 19 item 11: every method that Tab offers has help.
function T.every_offered_method_has_help()
  local d = tl.datasets.synthetic{n = 300, seed = 1}
  help_m = tl.model{data = d, backbone = tl.shared_bottom{bottom = {4}}, emb = 2, batch = 32}
  help_d, help_s = d, d.train
  help_cp = tl.calibrate(help_m, d.valid, "platt")
  help_t = tl.tensor.zeros(2)
  local missing = {}
  for _, v in ipairs({ "help_m", "help_d", "help_s", "help_cp", "help_t" }) do
    for _, c in ipairs(complete(v .. ":")) do
      local s = capture(tl.help, c)
      if s:find("^no help for") then missing[#missing + 1] = c end
    end
  end
  eq(missing, {}, "methods offered by Tab without help")
  local s = capture(tl.help, "help_m:teachers")
  check(s:find("m:teachers(split)", 1, true), s)
  s = capture(tl.help, "help_cp:evaluate")
  check(s:find("before=r, after=r", 1, true), s)
  s = capture(tl.help, "m:params")
  check(s:find("trainable parameters", 1, true), s)
  s = capture(tl.help, help_m)
  check(s:find("Methods:", 1, true) and s:find("m:close", 1, true), "help(m) lists the methods: " .. s)
  help_m:close()
  help_m, help_d, help_s, help_cp, help_t = nil, nil, nil, nil, nil
end

function T.help_tl_model_names_mutual_distill_and_space()
  local s = capture(tl.help, "tl.model")
  check(s:find("mutual=", 1, true), s)
  check(s:find("distill=", 1, true), s)
  check(s:find("tasks={", 1, true) and s:find("space=", 1, true), s)
end

-- help() does not page when stdout is not a terminal (tests, pipes, the kernel).
function T.help_prints_without_pager_off_a_terminal()
  local s = capture(tl.help)
  check(s:find("^Topics"), s)
end

-- Issue 19 item 12: m.w<TAB> completes fields, not only methods.
function T.completion_of_object_fields()
  local d = tl.datasets.synthetic{n = 200, seed = 1}
  cm = tl.model{data = d, backbone = tl.shared_bottom{bottom = {4}}, emb = 2, batch = 32}
  cd = d
  eq(complete("cm.w"), { "cm.weighting", "cm.weights" })
  local all = complete("cm.")
  local set = {}
  for _, n in ipairs(all) do set[n] = true end
  for _, f in ipairs({ "cm.weights", "cm.tasks", "cm.backbone", "cm.data", "cm.history", "cm.fit" }) do
    check(set[f], f .. " offered after 'cm.': " .. table.concat(all, " "))
  end
  eq(complete("cm:w"), {}, "':' offers methods only")
  eq(complete("cd.tr"), { "cd.train" })
  eq(complete("tl.se"), { "tl.seed" })
  cm:close()
  cm, cd = nil, nil
end

function T.arg_table_in_script_mode()
  eq(type(arg), "table")
  check(arg[0]:find("harness.lua", 1, true), "arg[0] is the script")
  check(arg[1]:find("test_repl_api.lua", 1, true), "arg[1] is its first argument")
  check(arg[-1] ~= nil, "arg[-1] is the program")
end

return T
