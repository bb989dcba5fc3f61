-- test_golden.lua — this build's predictions against the committed golden file
-- of this platform (tests/golden/<platform>.txt.gz, scripts/golden.lua), bit
-- for bit: every backbone, DML, CrossDistil, each weighting method, a
-- calibrated model and a checkpoint resume. SKIPPED when this platform has no
-- golden file (the predictions depend on CPU, OpenBLAS, compiler and flags).
local G = assert(loadfile("scripts/golden.lua"))("--lib")
local T = {}

local function sh_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function read_cmd(cmd)
  local p = assert(io.popen(cmd))
  local s = p:read("a")
  local ok, _, rc = p:close()
  return s, ok, rc
end

-- The platform key of the binary running this test (TL_TEST_BIN from
-- run_tests.sh, else ./towerlab), from scripts/golden.sh.
local function platform()
  local bin = os.getenv("TL_TEST_BIN") or "./towerlab"
  local s, ok = read_cmd("TL_GOLDEN_BIN=" .. sh_quote(bin) .. " bash scripts/golden.sh platform 2>/dev/null")
  s = s:gsub("%s+$", "")
  if not ok or s == "" then return nil end
  return s
end

local function golden_text(path)
  local s, ok = read_cmd("gzip -dc " .. sh_quote(path) .. " 2>&1")
  if not ok then error("cannot read " .. path .. ": " .. s) end
  return s
end

-- A small golden section set from predictions made here, for the tests of the
-- comparison itself (no file needed).
local function tiny()
  local function f32(x) return (string.unpack("<f", string.pack("<f", x))) end
  local p = {a = {0.25, 0.5, f32(1 / 3)}, b = {0.125, 0.75, f32(2 / 3)}}
  local text = "# " .. G.FORMAT .. "\nplatform x\nthreads 1\n\n" ..
               G.section("r1", p, {"a", "b"}) .. G.section("r2", p, {"a", "b"})
  return text
end

local current  -- the current build's parsed predictions, computed once

function T.matches_committed_golden_of_this_platform()
  local key = platform()
  if not key then skip("scripts/golden.sh platform failed (bash, readelf or ldd missing?)") end
  local file = "tests/golden/" .. key .. ".txt.gz"
  local f = io.open(file, "rb")
  if not f then
    skip("no golden file for this platform (" .. file .. "); record one at a trusted commit with: " ..
         "scripts/golden.sh record BASE=<commit>")
  end
  f:close()
  local want = G.parse(golden_text(file), file)
  check(#want.order >= 17, file .. " holds only " .. #want.order .. " runs")
  current = current or G.parse(G.produce(key), "current build")
  local w = G.diff(want, current)
  if w then error("predictions differ from " .. file .. ": " .. w ..
                  " (if the change is intended: scripts/golden.sh record, and say why in the commit)") end
end

function T.every_strategy_has_a_run()
  local names = {}
  for _, e in ipairs(G.RUNS) do names[e[1]] = true end
  for _, n in ipairs{"shared_bottom", "omoe", "mmoe", "ple", "esmm", "aitm", "dml", "resume",
                     "weighting_fixed", "weighting_uncertainty", "weighting_gradnorm",
                     "weighting_dwa", "weighting_pcgrad"} do
    check(names[n], "no golden run " .. n)
  end
  local cd = 0
  for n in pairs(names) do if n:find("^crossdistil") then cd = cd + 1 end end
  check(cd >= 1, "no CrossDistil run")
end

function T.one_flipped_bit_is_reported_with_run_and_row()
  local text = tiny()
  local want = G.parse(text)
  eq(G.diff(want, G.parse(text)), nil)
  -- flip the lowest bit of task b in row 2 of run r2: 3f400000 -> 3f400001
  local lines = {}
  for l in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local at
  for i, l in ipairs(lines) do
    if l:match("^run r2 ") then at = i + 2 end
  end
  check(lines[at] == "3f000000 3f400000", "unexpected row text " .. tostring(lines[at]))
  lines[at] = "3f000000 3f400001"
  local w = G.diff(want, G.parse(table.concat(lines, "\n") .. "\n"))
  check(w, "a flipped bit was not reported")
  check(w:find("run r2 row 2", 1, true), w)
  check(w:find("expected", 1, true) and w:find("3f400001", 1, true), w)
end

function T.flipped_bit_in_a_real_golden_copy_is_reported()
  local key = platform()
  local file = key and ("tests/golden/" .. key .. ".txt.gz")
  local f = file and io.open(file, "rb")
  if not f then skip("no golden file for this platform") end
  f:close()
  local text = golden_text(file)
  local want = G.parse(text)
  -- the last run, its row 5000: flip bit 0 of the first task
  local name = want.order[#want.order]
  local r = want.runs[name]
  local hex = r.rows[5000]:match("^(%x+)")
  local flipped = string.format("%08x", tonumber(hex, 16) ~ 1)
  local copy = G.parse(text)
  copy.runs[name].rows[5000] = flipped .. r.rows[5000]:sub(9)
  local w = G.diff(want, copy)
  check(w and w:find("run " .. name .. " row 5000", 1, true), tostring(w))
  eq(G.diff(want, G.parse(text)), nil)
end

function T.truncated_or_edited_file_is_refused()
  local text = tiny()
  raises(function() G.parse(text:gsub("checksum r2 %x+\n$", "")) end, "has no checksum line")
  raises(function() G.parse("# something else\n") end, "not a golden file")
  -- a row removed: the header's row count catches it
  local cut = text:gsub("\n3eaaaaab 3f2aaaab\nchecksum r1", "\nchecksum r1")
  raises(function() G.parse(cut) end, "has 2 rows, its header says 3")
  -- a checksum edited while the rows agree
  local want, got = G.parse(text), G.parse(text)
  got.runs.r1.checksum = "0000000000000000"
  check((G.diff(want, got) or ""):find("checksum", 1, true), "an edited checksum was not reported")
end

function T.non_float32_prediction_is_refused()
  raises(function() G.section("r", {a = {1 / 3}}, {"a"}) end, "is not a float32")
end

function T.differing_runs_are_listed()
  local text = tiny()
  local want, got = G.parse(text), G.parse(text)
  eq(G.differing_runs(want, got), {})
  got.runs.r2.rows[1] = "3e800001 3e000000"
  eq(G.differing_runs(want, got), {"r2"})
  got.runs.r1 = nil
  eq(G.differing_runs(want, got), {"r1", "r2"})
end

function T.missing_run_is_reported()
  local want, got = G.parse(tiny()), G.parse(tiny())
  got.runs.r2 = nil
  check((G.diff(want, got) or ""):find("run r2: missing", 1, true), "a missing run was not reported")
end

return T
