-- help.lua — tl.help(x): documentation registered with tl_lua_doc (C) or
-- tl.doc (Lua). By value identity (help(tl.tensor.zeros)), by name
-- (help "tl.tensor"), by method ("t:get" for a tensor t); help() lists topics.
local tl, names, values = ...

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
  end
  if #subs > 0 then out[#out + 1] = "\nFields:"; list(subs, out) end
  if #meths > 0 then out[#out + 1] = "\nMethods:"; list(meths, out) end
  return table.concat(out, "\n")
end

function tl.help(x)
  local s, err = text(x)
  print(s or err)
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
