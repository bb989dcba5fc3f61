-- harness.lua — run a Lua test file inside towerlab:
--   towerlab tests/lua/harness.lua tests/lua/test_x.lua [name-pattern]
--
-- The test file either returns a table of tests or defines global functions
-- named test_*. In a returned table, string keys are test names (run in
-- sorted order) and array items {"name", fn} run first, in their order.
-- Each test runs in pcall; the harness prints "ok name", "FAIL name: message"
-- or "SKIP name: reason", then cmocka-style summary lines:
--   [  PASSED  ] N test(s).
--   [  FAILED  ] N test(s)      (only when some failed)
--   [  SKIPPED ] N test(s).     (only when some were skipped)
-- and exits with status 1 when any test failed or the file did not load.
--
-- Globals for tests:
--   eq(a, b [, msg])          a == b; tables compared deeply
--   near(a, b, tol [, msg])   |a - b| <= tol; numbers or (nested) tables of numbers
--   raises(fn, pattern)       fn() must raise an error whose message matches the
--                             Lua pattern (or contains it literally); returns it
--   skip(reason)              end this test as skipped
--   check(cond [, msg])       cond must be truthy

local file, only = arg[1], arg[2]
if not file then
  io.stderr:write("usage: towerlab tests/lua/harness.lua test_file.lua [name-pattern]\n")
  os.exit(2)
end

local SKIP = {}

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if tl and tl.pretty then
    local ok, s = pcall(tl.pretty, v, { depth = 3 })
    if ok then return s end
  end
  return tostring(v)
end

local function deep_eq(a, b, seen)
  if a == b then return true end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  seen = seen or {}
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    if not deep_eq(v, b[k], seen) then return false end
  end
  for k in pairs(b) do
    if a[k] == nil then return false end
  end
  return true
end

local function fail(msg, default)
  error((msg and (msg .. ": ") or "") .. default, 3)
end

function eq(a, b, msg)
  if not deep_eq(a, b) then fail(msg, "expected " .. show(b) .. ", got " .. show(a)) end
end

local function near_rec(a, b, tol, path)
  if type(a) == "table" and type(b) == "table" then
    if #a ~= #b then return false, path .. ": lengths " .. #a .. " and " .. #b end
    for k, v in pairs(b) do
      local ok, where = near_rec(a[k], v, tol, path .. "[" .. tostring(k) .. "]")
      if not ok then return false, where end
    end
    return true
  end
  if type(a) ~= "number" or type(b) ~= "number" then
    return false, path .. ": expected numbers, got " .. type(a) .. " and " .. type(b)
  end
  if a ~= a or b ~= b or math.abs(a - b) > tol then
    return false, string.format("%s: expected %.9g (tolerance %g), got %.9g", path, b, tol, a)
  end
  return true
end

function near(a, b, tol, msg)
  local ok, where = near_rec(a, b, tol or 1e-6, "value")
  if not ok then fail(msg, where) end
end

function raises(fn, pattern)
  local ok, err = pcall(fn)
  if ok then fail(nil, "expected an error" .. (pattern and (" matching " .. show(pattern)) or "")) end
  local s = tostring(err)
  if pattern and not (s:find(pattern) or s:find(pattern, 1, true)) then
    fail(nil, "error " .. show(s) .. " does not match " .. show(pattern))
  end
  return s
end

function check(cond, msg)
  if not cond then fail(nil, msg or "check failed") end
  return cond
end

function skip(reason)
  error(setmetatable({ reason = reason or "skipped" }, SKIP), 2)
end

-- A fresh temporary directory (the test file removes it), and a file
-- written into it; returns the file's path.
function temp_dir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. d))
  return d
end

function write_file(dir, name, text)
  local p = dir .. "/" .. name
  local f = assert(io.open(p, "wb"))
  f:write(text)
  f:close()
  return p
end

-- Load the test file and collect its tests.
local chunk, lerr = loadfile(file)
local tests = {}
if chunk then
  local ok, ret = pcall(chunk)
  if not ok then
    chunk, lerr = nil, tostring(ret)
  else
    if type(ret) == "table" then
      for _, item in ipairs(ret) do
        if type(item) == "table" and type(item[1]) == "string" and type(item[2]) == "function" then
          tests[#tests + 1] = { item[1], item[2] }
        end
      end
      local named = {}
      for k, v in pairs(ret) do
        if type(k) == "string" and type(v) == "function" then named[#named + 1] = k end
      end
      table.sort(named)
      for _, k in ipairs(named) do tests[#tests + 1] = { k, ret[k] } end
    else
      local named = {}
      for k, v in pairs(_G) do
        if type(k) == "string" and k:match("^test_") and type(v) == "function" then
          named[#named + 1] = k
        end
      end
      table.sort(named)
      for _, k in ipairs(named) do tests[#tests + 1] = { k, _G[k] } end
    end
  end
end

local passed, failed, skipped, failures = 0, 0, 0, {}
if not chunk then
  print("FAIL " .. file .. ": " .. tostring(lerr))
  failed, failures[1] = 1, file
end

local function handler(e)
  if getmetatable(e) == SKIP then return e end
  -- The traceback without the harness's own frames.
  local lines = {}
  for line in debug.traceback(tostring(e), 2):gmatch("[^\n]+") do
    if not line:find("harness.lua", 1, true) and not line:find("in function 'error'", 1, true) then
      lines[#lines + 1] = line
    end
  end
  return table.concat(lines, "\n")
end

for _, t in ipairs(tests) do
  local name, fn = t[1], t[2]
  if not only or name:find(only) then
    local ok, err = xpcall(fn, handler)
    if ok then
      passed = passed + 1
      print("ok " .. name)
    elseif getmetatable(err) == SKIP then
      skipped = skipped + 1
      print("SKIP " .. name .. ": " .. err.reason)
    else
      failed = failed + 1
      failures[#failures + 1] = name
      print("FAIL " .. name .. ": " .. tostring(err))
    end
    io.stdout:flush()
    collectgarbage()
  end
end

print(string.format("[==========] %d test(s) run.", passed + failed + skipped))
print(string.format("[  PASSED  ] %d test(s).", passed))
if skipped > 0 then print(string.format("[  SKIPPED ] %d test(s).", skipped)) end
if failed > 0 then
  print(string.format("[  FAILED  ] %d test(s), listed below:", failed))
  for _, n in ipairs(failures) do print("[  FAILED  ] " .. n) end
end
io.stdout:flush()
os.exit(failed > 0 and 1 or 0)
