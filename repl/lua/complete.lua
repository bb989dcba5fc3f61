-- complete.lua — candidates for the REPL's tab completion.
-- private.complete(text) -> sorted array of full completions of `text`:
--   "pri"       globals and keywords
--   "tl.da"     fields of a table reached by a dotted name (and its __index chain)
--   "m:fi"      methods of a value: its metatable's __index table (chain) or
--               __methods table (for objects whose __index is a function)
--   "m.w"       fields too: a metatable's __fields list (objects whose __index
--               is a function), or the known fields of towerlab's objects below
-- Names starting with "_" are offered only when the typed part starts with "_".
-- Only dotted identifier chains are evaluated (no calls run on TAB).
local _, _, _, private = ...

local keywords = {}
for w in ([[and break do else elseif end false for function goto if in
  local nil not or repeat return then true until while]]):gmatch("%a+") do
  keywords[#keywords + 1] = w
end

-- Add the string keys of t (and of its __index tables) to `set`.
local function add_keys(set, t, methods_only, seen)
  seen = seen or {}
  if type(t) ~= "table" or seen[t] then return end
  seen[t] = true
  for k, v in next, t do
    if type(k) == "string" and (not methods_only or type(v) == "function" or
        (type(v) == "table" and getmetatable(v) and getmetatable(v).__call)) then
      set[k] = true
    end
  end
  local mt = getmetatable(t)
  if type(mt) == "table" then
    local idx = rawget(mt, "__index")
    if type(idx) == "table" then add_keys(set, idx, methods_only, seen) end
  end
end

-- Fields that a towerlab object's __index function answers (by metatable
-- name), for metatables without their own __fields list.
local KNOWN_FIELDS = {
  ["tl.model"] = { "weights", "tasks", "backbone", "weighting", "data" },
  ["tl.dataset"] = { "train", "valid", "test", "all", "tasks", "source", "from_cache", "skipped" },
  ["tl.split"] = { "name", "dataset" },
  ["tl.plot.live"] = { "frames", "skipped", "calls", "closed", "terminal", "interval" },
}

local function add_fields(set, mt)
  local f = rawget(mt, "__fields")
  if type(f) ~= "table" then f = KNOWN_FIELDS[rawget(mt, "__name")] end
  if type(f) ~= "table" then return end
  for _, k in ipairs(f) do if type(k) == "string" then set[k] = true end end
end

-- Keys reachable from a value with '.' or ':'.
local function keys_of(v, methods_only)
  local set = {}
  if type(v) == "table" then add_keys(set, v, methods_only) end
  local ok, mt = pcall(getmetatable, v)
  if ok and type(mt) == "table" and type(v) ~= "table" then
    local idx = rawget(mt, "__index")
    if type(idx) == "table" then add_keys(set, idx, methods_only) end
    local m = rawget(mt, "__methods")
    if type(m) == "table" then add_keys(set, m, methods_only) end
  end
  if ok and type(mt) == "table" and not methods_only then add_fields(set, mt) end
  if type(v) == "string" then add_keys(set, string, methods_only) end
  return set
end

local function lookup(path)
  local v = _G
  for name in path:gmatch("[^%.]+") do
    if type(v) ~= "table" and type(v) ~= "userdata" then return nil end
    local ok, r = pcall(function() return v[name] end)
    if not ok then return nil end
    v = r
  end
  return v
end

function private.complete(text)
  local prefix, sep, part = text:match("^(.*)([%.:])([%w_]*)$")
  local set, out = {}, {}
  if not prefix then
    part = text
    if not part:match("^[%a_]?[%w_]*$") then return out end
    add_keys(set, _G)
    for _, w in ipairs(keywords) do set[w] = true end
    prefix, sep = "", ""
  else
    if not prefix:match("^[%a_][%w_]*$") and not prefix:match("^[%a_][%w_]*[%.%w_]*[%w_]$") then
      return out
    end
    if prefix:find("%.%.") then return out end
    local v = lookup(prefix)
    if v == nil then return out end
    set = keys_of(v, sep == ":")
  end
  local hidden = part:sub(1, 1) ~= "_"
  for k in pairs(set) do
    if k:sub(1, #part) == part and k:match("^[%a_][%w_]*$") and
        not (hidden and k:sub(1, 1) == "_") then
      out[#out + 1] = prefix .. sep .. k
    end
  end
  table.sort(out)
  return out
end
