-- test_lint.lua — scripts/lint.sh finds what it is for (include cycles, hidden
-- dependencies, weak symbols, getenv in engine/) on the small trees under
-- tests/lint/, and passes a clean one. (`make lint` runs it on the real tree.)
local T = {}

local function lint(root)
  local sizes = root:match("^%-%-sizes (.*)$")
  local cmd = sizes and ("-C " .. sizes .. " --sizes") or ("-C " .. root)
  local p = assert(io.popen("bash scripts/lint.sh " .. cmd .. " 2>&1"))
  local out = p:read("a")
  local _, _, rc = p:close()
  return out, rc
end

function T.bad_tree_reports_every_kind_and_fails()
  local out, rc = lint("tests/lint/bad")
  eq(rc, 1, out)
  check(out:find("include cycle: engine/a \226\134\148 engine/b", 1, true), out)   -- "↔"
  check(out:find("engine/b.h:2 #include \"a.h\"", 1, true), out)
  check(out:find("hidden dependency: repl/s.c:2 declares r_h", 1, true), out)
  check(out:find("weak symbol: repl/r.c:1:", 1, true), out)
  check(out:find("weak symbol: repl/r.c:2: #pragma weak r_g", 1, true), out)
  check(out:find("getenv in engine: engine/c.c:3:", 1, true), out)
  check(out:find("private header: engine/io.c:1 includes engine/models/m_impl.h", 1, true), out)
  -- module m itself may include its internals; the comment and the string
  -- literal that mention getenv( are not findings
  check(not out:find("engine/m.c:1", 1, true), out)
  check(out:find("6 finding(s)", 1, true), out)
end

function T.clean_tree_passes()
  local out, rc = lint("tests/lint/clean")
  eq(rc, 0, out)
  check(out:find("lint: clean", 1, true), out)
end

function T.three_module_cycle_is_reported_with_its_path()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/engine " .. dir .. "/repl"))
  local function put(name, text)
    local f = assert(io.open(dir .. "/engine/" .. name, "w"))
    f:write(text)
    f:close()
  end
  put("p.h", '#include "q.h"\n')
  put("q.h", '#include "r.h"\n')
  put("r.h", '/* r.h */\n')
  put("r.c", '#include "p.h"\n')
  local out, rc = lint(dir)
  os.execute("rm -rf " .. dir)
  eq(rc, 1, out)
  check(out:find("engine/p \226\134\146 engine/q \226\134\146 engine/r \226\134\146 engine/p", 1, true), out)
end

-- A .c file with no header of its own that defines what another module's
-- header declares is part of that module: no hidden-dependency finding for the
-- header, and the part's includes count as the module's (a cycle through it).
function T.part_of_a_module_is_that_module()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/engine " .. dir .. "/repl"))
  local function put(name, text)
    local f = assert(io.open(dir .. "/engine/" .. name, "w"))
    f:write(text)
    f:close()
  end
  put("m.h", "int m_a(void);\nint m_b(void);\n")
  put("m.c", '#include "m.h"\nint m_a(void) { return 1; }\n')
  put("m_more.c", '#include "m.h"\n#include "q.h"\nint m_b(void) { return q_f(); }\n')
  put("q.h", "int q_f(void);\n")
  put("q.c", '#include "q.h"\nint q_f(void) { return 2; }\n')
  local out, rc = lint(dir)
  eq(rc, 0, out)
  check(out:find("lint: clean", 1, true), out)
  put("q.c", '#include "q.h"\n#include "m.h"\nint q_f(void) { return m_a(); }\n')
  out, rc = lint(dir)
  os.execute("rm -rf " .. dir)
  eq(rc, 1, out)
  check(out:find("include cycle: engine/m \226\134\148 engine/q", 1, true), out)
  check(out:find('engine/m \226\134\146 engine/q: engine/m_more.c:2 #include "q.h"', 1, true), out)
end

function T.sizes_lists_long_functions_without_failing()
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir .. "/engine " .. dir .. "/repl"))
  local body = {"static int long_one(int x)", "{"}
  for i = 1, 125 do body[#body + 1] = "    x += " .. i .. ";" end
  body[#body + 1] = "    return x;"
  body[#body + 1] = "}"
  body[#body + 1] = "int short_one(void)"
  body[#body + 1] = "{"
  body[#body + 1] = "    return long_one(1);"
  body[#body + 1] = "}"
  local f = assert(io.open(dir .. "/engine/f.c", "w"))
  f:write(table.concat(body, "\n") .. "\n")
  f:close()
  local out, rc = lint("--sizes " .. dir)
  local out2 = lint(dir)
  os.execute("rm -rf " .. dir)
  eq(rc, 0, out)
  check(out:find("size: engine/f.c:2: long_one is 128 lines (over 120)", 1, true), out)
  check(not out:find("short_one", 1, true), out)
  check(not out2:find("size:", 1, true), out2)
end

return T
