-- diagnose.lua — tl.plot.gates(m, split [, opts]): the gate heat map of a
-- model over a split. repl/l_plot.c draws a gate table (or calls m:gates()
-- with no split); this wrapper runs m:gates(split, {field=, level=}) first and
-- hands the rest of opts to the plot.
local tl, names, values = ...

local plot = type(tl.plot) == "table" and tl.plot or nil
local draw = plot and plot.gates
if not draw then return end

local function is_model(x)
  local mt = getmetatable(x)
  return type(x) == "userdata" and type(mt) == "table" and mt.__name == "tl.model"
end

local function is_split(x)
  local mt = getmetatable(x)
  return type(x) == "userdata" and type(mt) == "table" and mt.__name == "tl.split"
end

local GATE_OPTS = { field = true, level = true }

local function gates(x, a, b)
  if not is_model(x) then return draw(x, a, b) end
  local split, opts = nil, a
  if is_split(a) then split, opts = a, b end
  local gopts, popts = nil, nil
  if type(opts) == "table" then
    popts = {}
    for k, v in pairs(opts) do
      if GATE_OPTS[k] then
        gopts = gopts or {}
        gopts[k] = v
      else
        popts[k] = v
      end
    end
  else
    popts = opts
  end
  return draw(x:gates(split, gopts), popts)
end

plot.gates = gates
local name = values[draw]
if name then
  values[gates] = name
  names[name] = names[name] ..
    "\ntl.plot.gates(m, split [, opts]) runs m:gates(split) first; opts may also hold\n" ..
    "field= and level= for m:gates."
end
