-- help.lua — tl.help(x): documentation registered with tl_lua_doc (C) or
-- tl.doc (Lua). By value identity (help(tl.tensor.zeros)), by name
-- (help "tl.tensor"), by method ("t:get" for a tensor t); help() lists topics.
local tl, names, values, private = ...

-- Topics of methods are named after the variable the examples use: "m:fit"
-- for a model (metatable "tl.model"), "cp:evaluate" for tl.calibrate's
-- result. Other objects use their type: "tensor:get", "dataset:vocab".
local METHOD_ALIAS = { model = "m", calibrated = "cp" }

local function first_line(s)
  return (s:match("^[^\n]*"))
end

local function sorted_names(prefix)
  local out = {}
  for name in pairs(names) do
    if not prefix or (name ~= prefix and name:sub(1, #prefix) == prefix) then
      out[#out + 1] = name
    end
  end
  table.sort(out)
  return out
end

local function list(ns, out)
  local w = 0
  for _, n in ipairs(ns) do w = math.max(w, #n) end
  w = math.min(w, 24)
  for _, n in ipairs(ns) do
    out[#out + 1] = string.format("  %-" .. w .. "s  %s", n, first_line(names[n]))
  end
end

-- The documentation name for a value: registered identity, or the method
-- prefix of a userdata ("tl.tensor" -> "tensor").
local function name_of(v)
  local n = values[v]
  if n then return n end
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" and names[mt.__name] then
    return mt.__name
  end
  return nil
end

local function method_prefix(v)
  local mt = getmetatable(v)
  if type(mt) == "table" and type(mt.__name) == "string" then
    return (mt.__name:gsub("^tl%.", ""))
  end
  return nil
end

local function eval(expr)
  local f = load("return " .. expr, "=help", "t")
  if not f then return nil end
  local ok, v = pcall(f)
  if ok then return v end
  return nil
end

-- Returns the help text for x (nil and a message when there is none).
local function text(x)
  local out = {}
  if x == nil then
    out[1] = "Topics (help(x) or ?x for one; help \"name\" by name):"
    list(sorted_names(), out)
    return table.concat(out, "\n")
  end
  local name, prefix
  if type(x) == "string" then
    local s = x:match("^%s*(.-)%s*$")
    if names[s] then
      name = s
    else
      local obj, meth = s:match("^(.-):([%a_][%w_]*)$")
      if obj then
        local p = method_prefix(eval(obj))
        if p and names[p .. ":" .. meth] then name = p .. ":" .. meth end
        if p and not name and METHOD_ALIAS[p] and names[METHOD_ALIAS[p] .. ":" .. meth] then
          name = METHOD_ALIAS[p] .. ":" .. meth
        end
      else
        local v = eval(s)
        if v ~= nil and type(v) ~= "string" then name = name_of(v); x = v end
      end
    end
    if not name then
      local near = sorted_names(s)
      if #near == 0 then return nil, "no help for '" .. s .. "' (help() lists the topics)" end
      out[1] = "Topics under '" .. s .. "':"
      list(near, out)
      return table.concat(out, "\n")
    end
  else
    name = name_of(x)
  end
  if not name then
    return nil, "no help for " .. tostring(x) .. " (help() lists the topics)"
  end
  out[1] = names[name]
  prefix = name
  local subs = sorted_names(prefix .. ".")
  local meths = {}
  if type(x) == "userdata" or (names[name] and name:match("^tl%.")) then
    local p = type(x) == "userdata" and method_prefix(x) or name:gsub("^tl%.", "")
    meths = sorted_names(p .. ":")
    if METHOD_ALIAS[p] then
      for _, n in ipairs(sorted_names(METHOD_ALIAS[p] .. ":")) do meths[#meths + 1] = n end
    end
  end
  if #subs > 0 then out[#out + 1] = "\nFields:"; list(subs, out) end
  if #meths > 0 then out[#out + 1] = "\nMethods:"; list(meths, out) end
  return table.concat(out, "\n")
end

-- At a terminal, text taller than the screen goes through $PAGER (default
-- "less -R"; less -F would quit at once for short text, but short text is
-- printed directly anyway). Elsewhere (a pipe, the Jupyter kernel) it is
-- printed.
local function page(s)
  local tty = private.stdout_is_tty and private.stdout_is_tty()
  local rows = tty and private.terminal_rows and private.terminal_rows() or 0
  local _, lines = s:gsub("\n", "")
  if not tty or rows <= 0 or lines + 2 <= rows then
    print(s)
    return
  end
  local pager = os.getenv("PAGER")
  if not pager or pager == "" then pager = "less -R" end
  io.stdout:flush()
  local p = io.popen(pager, "w")
  if not p then print(s); return end
  p:write(s, "\n")
  p:close()
end

function tl.help(x)
  local s, err = text(x)
  page(s or err)
end

-- tl.doc(name, text [, value]): register documentation from Lua.
function tl.doc(name, s, v)
  assert(type(name) == "string", "tl.doc: name must be a string")
  assert(type(s) == "string", "tl.doc: text must be a string")
  names[name] = s
  if v ~= nil then values[v] = name end
end

tl.doc("tl.help", "help(x), ?x, tl.help(x): documentation of x (a value, or a name string\n" ..
  "like \"tl.tensor\" or \"t:get\"); help() lists every topic.", tl.help)
tl.doc("tl.doc", "tl.doc(name, text [, value]): register documentation for help().", tl.doc)

-- ---- texts for topics the binding files do not register ---------------------

local MODEL_TEXT = [[
tl.model{data=d, backbone=tl.mmoe{...}, towers={task=tl.mlp{64}}, tower=tl.mlp{64},
         weights={task=1}, weighting="fixed" or {"famo", lr=0.025} (methods below),
         tasks={task={space=, weight=, tower=}}, mutual=tl.dml{...},
         distill=tl.crossdistil{...}, emb=16, batch=1024, seed=tl.seed stream,
         alpha=1.5 (gradnorm), temperature=2 (dwa)}
Build a multi-task model for dataset d: embeddings of its categorical fields plus its
numeric features feed the backbone; each task gets its own tower.
  backbone= one of (?tl.<name> for each): tl.shared_bottom (= tl.hps, hard parameter
    sharing), tl.omoe, tl.mmoe, tl.ple, tl.esmm, tl.aitm, tl.stem, tl.adatt,
    tl.cross_stitch, tl.dselect_k; tl.esmm{backbone=...} puts ESMM's head over another.
  towers={income=tl.mlp{64}}: a tower per task (tower= is the default for the rest).
  tasks={cvr={space="ctr", weight=1, tower=tl.mlp{32}}}: per-task options; space= names
    another binary task: cvr is trained (and evaluated) only on rows where ctr = 1.
  mutual=tl.dml{...}: Deep Mutual Learning across the task towers (?tl.dml).
  distill=tl.crossdistil{...}: cross-task knowledge distillation with teacher towers
    (?tl.crossdistil; m:teachers judges the teachers).
Methods: m:fit{...}, m:evaluate(split), m:predict(split), m:history(), m:save(path),
m:gates(split), m:teachers(split), m:params(), m:close(); m.weights.<task> = w (next step).
Fields: m.weights, m.tasks, m.backbone, m.weighting, m.data.
m:set_weighting("name" or {"name", option=...}) switches the method between fits: its
state starts afresh (factors 1, histories cleared), weights, parameters and optimizer
state are kept; not to or from uncertainty/imtl_l (their loss scales are in the graph).
m:history() records each method's per-task weights (steps[i].weight; for gradient
methods the coefficient of each task's gradient, for graddrop the direction's cosine).
Weighting methods (tl.weightings; options in brackets):]]
for _, w in ipairs(tl.weightings or {}) do
  local o = #w.options > 0 and (" [" .. table.concat(w.options, ", ") .. "]") or ""
  MODEL_TEXT = MODEL_TEXT .. "\n  " .. w.name .. o .. ": " .. w.about
end

local EXTRA = {
  ["tl.model"] = MODEL_TEXT,
  ["m:teachers"] = [[
m:teachers(split) -> r; r.<task>.auc, .multi_auc (the teacher's raw score), .logloss,
.ece, .pcoc (its calibrated probability), .order ("positive"|"negative"|"auto")
Judge the CrossDistil teacher towers on their own (tl.model{distill=tl.crossdistil{...}});
an error for a model without teachers (or with naive=true).]],
  ["m:params"] = [[
m:params() -> n: the number of trainable parameters (embeddings, backbone, towers,
distillation and DML parts).]],
  ["m:close"] = [[
m:close(): free the model's memory now instead of at garbage collection; the model
cannot be used afterwards (local m <close> = tl.model{...} does the same at scope end).]],
  ["cp:evaluate"] = [[
cp:evaluate(split [, {bins=10}]) -> {before=r, after=r}: the model's metrics on split
without and with the calibrators tl.calibrate fitted (r as m:evaluate returns);
tl.plot.calibration(cp:evaluate(d.test)) draws both.]],
  ["cp:predict"] = [[
cp:predict(split) -> p; p.<task>[i] is the calibrated probability for row i (binary
tasks; regression tasks as m:predict).]],
  ["dataset:close"] = [[
d:close(): free the dataset's memory now; its splits cannot be used afterwards.]],
  ["split:size"] = "s:size() -> n: the number of rows of the split (#s too).",
  ["split:rows"] = "s:rows() -> {i, ...}: the 0-based source row index of each row of the split.",
}
for name, t in pairs(EXTRA) do
  -- the binding's own text wins once it covers what this one says
  local have = names[name]
  if not have or (name == "tl.model" and not (have:find("mutual=", 1, true) and
      have:find("distill=", 1, true) and have:find("space=", 1, true))) then
    names[name] = t
  end
end
