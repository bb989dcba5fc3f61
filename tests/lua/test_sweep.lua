-- tl.sweep / tl.compare (repl/lua/sweep.lua, repl/l_sweep.c): grid and random
-- expansion, CSV rows, summaries, resume, worker processes, errors, Ctrl-C.
-- Run functions are trivial (no training) except one smoke test of
-- scripts/sweep_weights.lua with tiny sizes.
local T = {}

local tmp = os.getenv("TMPDIR") or "/tmp"
local base = string.format("%s/tl-sweep-test-%d-%d", tmp, os.time(), math.random(1, 1e9))
local n_dirs = 0
local function fresh_dir()
  n_dirs = n_dirs + 1
  local d = base .. "/" .. n_dirs
  os.execute("mkdir -p '" .. d .. "'")
  return d
end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end

-- The CSV read back: header, rows as maps (quoted cells: "" for a quote;
-- these tests write no newlines inside cells).
local function split_csv_line(l)
  local out, pos = {}, 1
  while true do
    if l:sub(pos, pos) == '"' then
      local buf, p = {}, pos + 1
      while true do
        local q = assert(l:find('"', p, true), "unterminated quote in " .. l)
        buf[#buf + 1] = l:sub(p, q - 1)
        if l:sub(q + 1, q + 1) == '"' then buf[#buf + 1] = '"'; p = q + 2 else pos = q + 1; break end
      end
      out[#out + 1] = table.concat(buf)
    else
      local e = l:find(",", pos, true) or #l + 1
      out[#out + 1] = l:sub(pos, e - 1)
      pos = e
    end
    if l:sub(pos, pos) ~= "," then return out end
    pos = pos + 1
  end
end

local function read_csv(path)
  local text = assert(read(path), "no file " .. path)
  local lines = {}
  for l in text:gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
  local header = split_csv_line(lines[1])
  local rows = {}
  for i = 2, #lines do
    local cells, r = split_csv_line(lines[i]), {}
    eq(#cells, #header, "cells in row " .. (i - 1))
    for j, h in ipairs(header) do r[h] = cells[j] end
    rows[#rows + 1] = r
  end
  return header, rows
end

local function count_lines(path)
  local s = read(path) or ""
  local n = 0
  for _ in s:gmatch("\n") do n = n + 1 end
  return n
end

-- Calls are counted in a file: workers are other processes.
local function counting_run(file, fn)
  return function(cfg, seed)
    local f = assert(io.open(file, "a"))
    f:write(string.format("%s %d\n", tostring(cfg.x), seed))
    f:close()
    return fn(cfg, seed)
  end
end

local function key_of(row, fields)
  local p = {}
  for _, f in ipairs(fields) do p[#p + 1] = f .. "=" .. tostring(row[f]) end
  return table.concat(p, " ")
end

local function my_pid()
  local f = io.open("/proc/self/stat")
  if not f then return nil end
  local pid = f:read("n")
  f:close()
  return math.tointeger(pid)
end

local function sleep(s) os.execute("sleep " .. s) end

function T.grid_order_and_count()
  local seen = {}
  local r = tl.sweep{grid = {b = {"x", "y", "z"}, a = {2, 1}}, verbose = false,
                     run = function(cfg, seed)
                       seen[#seen + 1] = cfg.a .. cfg.b .. seed
                       return {v = 1}
                     end}
  eq(#r.rows, 6)
  eq(r.fields, {"a", "b"})
  eq(seen, {"2x1", "2y1", "2z1", "1x1", "1y1", "1z1"}, "sorted fields, first slowest, list order")
  eq(#r.summary, 6)
  eq({r.rows[1].a, r.rows[1].b, r.rows[1].seed, r.rows[1].status}, {2, "x", 1, "ok"})
  check(r.rows[1].wall >= 0, "wall seconds")
  local three = tl.sweep{grid = {a = {1, 2}, b = {true, false}, c = {0.5, 1.5, 2.5}}, repeats = 2,
                         seed = 100, verbose = false, run = function() return {} end}
  eq(#three.rows, 24)
  eq({three.rows[1].seed, three.rows[2].seed, three.rows[3].seed}, {101, 102, 101})
  eq({three.rows[1].c, three.rows[3].c, three.rows[7].b}, {0.5, 1.5, false})
end

function T.random_sampling_reproducible_from_seed()
  local function sample(seed)
    local r = tl.sweep{random = {lr = {min = 1e-4, max = 1e-1, log = true}, p = {min = 0, max = 1},
                                 opt = {"adam", "sgd", "adagrad"}, n = 40},
                       seed = seed, verbose = false, run = function() return {} end}
    return r.rows
  end
  local a, b, c = sample(7), sample(7), sample(8)
  eq(#a, 40)
  local same, logs = true, 0
  local picks = {}
  for i = 1, 40 do
    for _, k in ipairs{"lr", "p", "opt"} do
      eq(a[i][k], b[i][k], "same seed, same draw")
    end
    if a[i].lr ~= c[i].lr then same = false end
    check(a[i].lr >= 1e-4 and a[i].lr <= 1e-1, "lr in range")
    check(a[i].p >= 0 and a[i].p <= 1, "p in range")
    check(a[i].opt == "adam" or a[i].opt == "sgd" or a[i].opt == "adagrad", "opt from the list")
    picks[a[i].opt] = true
    if a[i].lr < 1e-2 then logs = logs + 1 end
  end
  check(not same, "another seed draws other values")
  check(picks.adam and picks.sgd and picks.adagrad, "every list value drawn in 40 picks")
  check(logs >= 15, "log-uniform: most draws below 1e-2 (" .. logs .. " of 40)")
  local before = math.random(1, 1000000)
  math.randomseed(5); local x1 = math.random()
  math.randomseed(5); sample(9); local x2 = math.random()
  eq(x1, x2, "math.random is not disturbed")
  check(before ~= nil)
end

function T.csv_rows_written_and_parsed_back()
  local dir = fresh_dir()
  local r = tl.sweep{grid = {w = {0.25, 1, 4}, name = {"a", "b"}}, repeats = 2, seed = 10,
                     out = dir .. "/sub/deeper/run", verbose = false,
                     run = function(cfg, seed)
                       return {loss = cfg.w * seed, ok_flag = cfg.w > 0.5, tag = cfg.name .. "!"}
                     end}
  eq(r.csv, dir .. "/sub/deeper/run.csv")
  local header, rows = read_csv(r.csv)
  eq(header, {"name", "w", "seed", "status", "loss", "ok_flag", "tag", "wall", "message", "run_hash"})
  eq(#rows, 12)
  local got = {}
  for _, row in ipairs(rows) do
    eq(row.status, "ok")
    eq(row.message, "")
    local w, seed = tonumber(row.w), tonumber(row.seed)
    near(tonumber(row.loss), w * seed, 1e-12, "loss cell")
    eq(row.ok_flag, tostring(w > 0.5))
    eq(row.tag, row.name .. "!")
    check(tonumber(row.wall) >= 0, "wall cell")
    got[row.name .. "/" .. row.w .. "/" .. row.seed] = true
  end
  for _, n in ipairs{"a", "b"} do
    for _, w in ipairs{"0.25", "1", "4"} do
      for _, s in ipairs{"11", "12"} do check(got[n .. "/" .. w .. "/" .. s], "row " .. n .. w .. s) end
    end
  end
end

function T.summary_mean_std_match_independent_computation()
  local function metric(cfg, seed) return cfg.k * 10 + (seed * seed) % 7 + seed / 3 end
  local r = tl.sweep{grid = {k = {1, 2, 3}}, repeats = 4, seed = 3, verbose = false,
                     run = function(cfg, seed) return {m = metric(cfg, seed), label = "x"} end}
  eq(#r.summary, 3)
  for i, s in ipairs(r.summary) do
    local k = ({1, 2, 3})[i]
    eq(s.k, k)
    eq(s.n, 4)
    local xs = {}
    for seed = 4, 7 do xs[#xs + 1] = metric({k = k}, seed) end
    local mean = (xs[1] + xs[2] + xs[3] + xs[4]) / 4
    local ss = 0
    for _, x in ipairs(xs) do ss = ss + (x - mean) ^ 2 end
    near(s.m_mean, mean, 1e-12, "mean k=" .. k)
    near(s.m_std, math.sqrt(ss / 3), 1e-12, "sample std k=" .. k)
    check(s.wall_mean ~= nil, "wall summarised")
    eq(s.label_mean, nil, "strings are not averaged")
  end
  eq(r.metrics, {"m", "wall"})
  local text = tostring(r)
  check(text:find("^| k ") and text:find("±") and text:find("| n "), "markdown table: " .. text)
  local lines = 0
  for _ in text:gmatch("[^\n]+") do lines = lines + 1 end
  eq(lines, 5, "header, rule, 3 rows")
  -- tl.compare: the same table, from results, from rows, from a plain list
  local s1 = tl.compare(r, {print = false})
  eq(tostring(s1), text)
  eq(tostring(tl.compare(r.rows, {print = false})), text)
  local plain = {}
  for _, row in ipairs(r.rows) do
    plain[#plain + 1] = {k = row.k, m = row.m, seed = row.seed, status = row.status}
  end
  local s2 = tl.compare(plain, {by = "k", print = false})
  near(s2[2].m_mean, r.summary[2].m_mean, 1e-12)
  local s3 = tl.compare({{g = "a", v = 1}, {g = "a", v = 3}, {g = "b", v = 5}}, {print = false})
  eq(#s3, 2)
  eq({s3[1].g, s3[1].v_mean, s3[1].n, s3[2].v_mean}, {"a", 2.0, 2, 5.0})
end

function T.resume_runs_only_missing_pairs()
  local dir = fresh_dir()
  local calls = dir .. "/calls"
  local out = dir .. "/res"
  local fail_x2 = true
  local function run(cfg, seed)
    if cfg.x == 2 and fail_x2 then error("x2 is broken") end
    return {v = cfg.x * 100 + seed}
  end
  local opts = {grid = {x = {1, 2, 3}}, repeats = 2, out = out, jobs = 2, verbose = false,
                run = counting_run(calls, run)}
  local r1 = tl.sweep(opts)
  eq(count_lines(calls), 6)
  local n_err = 0
  for _, row in ipairs(r1.rows) do if row.status == "error" then n_err = n_err + 1 end end
  eq(n_err, 2)
  -- re-run with x=2 fixed: only its two runs execute
  fail_x2 = false
  write(calls, "")
  local r2 = tl.sweep(opts)
  eq(count_lines(calls), 2, "only the failed runs again")
  for l in read(calls):gmatch("[^\n]+") do check(l:match("^2 "), "a run of x=2: " .. l) end
  eq(#r2.rows, 6)
  for _, row in ipairs(r2.rows) do
    eq(row.status, "ok")
    eq(row.v, row.x * 100 + row.seed, "resumed rows read back typed")
  end
  local _, rows = read_csv(out .. ".csv")
  eq(#rows, 6, "error rows replaced")
  -- drop the last two rows of the file: exactly those run again
  local text = read(out .. ".csv")
  local lines = {}
  for l in text:gmatch("[^\n]*\n") do lines[#lines + 1] = l end
  local dropped = {}
  for i = #lines - 1, #lines do
    local x, seed = lines[i]:match("^(%d+),(%d+),")
    dropped[#dropped + 1] = x .. " " .. seed
  end
  write(out .. ".csv", table.concat(lines, "", 1, #lines - 2) .. "3,1,ok,30")  -- + a cut-off row
  write(calls, "")
  tl.sweep(opts)
  local again = {}
  for l in read(calls):gmatch("[^\n]+") do again[#again + 1] = l end
  table.sort(again); table.sort(dropped)
  eq(again, dropped, "the dropped rows ran again")
  eq(#select(2, read_csv(out .. ".csv")), 6)
  -- nothing left: no run at all
  write(calls, "")
  local r4 = tl.sweep(opts)
  eq(count_lines(calls), 0)
  eq(#r4.rows, 6)
  -- another grid on the same file is refused
  raises(function()
    tl.sweep{grid = {y = {1}}, out = out, verbose = false, run = run}
  end, "was written by a different sweep")
end

function T.jobs2_gives_the_same_rows_as_jobs1()
  local function run(cfg, seed) return {v = cfg.a * 1000 + cfg.b * seed, s = cfg.a .. "/" .. seed} end
  local opts = {grid = {a = {1, 2, 3}, b = {0.5, 2}}, repeats = 3, seed = 5, verbose = false, run = run}
  local r1 = tl.sweep(opts)
  opts.jobs = 2
  local r2 = tl.sweep(opts)
  opts.jobs = 4
  local r4 = tl.sweep(opts)
  local function strip(rows)
    local out = {}
    for _, row in ipairs(rows) do
      local c = {}
      for k, v in pairs(row) do if k ~= "wall" then c[k] = v end end
      out[#out + 1] = c
    end
    table.sort(out, function(x, y) return key_of(x, {"a", "b", "seed"}) < key_of(y, {"a", "b", "seed"}) end)
    return out
  end
  eq(#r1.rows, 18)
  eq(strip(r2.rows), strip(r1.rows))
  eq(strip(r4.rows), strip(r1.rows))
  eq(strip(r2.rows), strip(r2.rows))
  -- results.rows come in configuration/seed order whatever finished first
  for i, row in ipairs(r2.rows) do eq(row.seed, r1.rows[i].seed); eq(row.a, r1.rows[i].a) end
end

function T.worker_jobs_run_single_threaded()
  local r = tl.sweep{grid = {x = {1, 2}}, jobs = 2, verbose = false,
                     run = function() return {threads = tl.threads(), pid = my_pid() or 0} end}
  for _, row in ipairs(r.rows) do eq(row.threads, 1) end
  if my_pid() then check(r.rows[1].pid ~= my_pid(), "ran in another process") end
  local r1 = tl.sweep{grid = {x = {1}}, verbose = false,
                      run = function() return {pid = my_pid() or 0} end}
  eq(r1.rows[1].pid, my_pid() or 0, "jobs=1 runs in this process")
end

function T.worker_errors_give_error_rows_and_the_sweep_goes_on()
  local dir = fresh_dir()
  for _, jobs in ipairs{1, 2} do
    local r = tl.sweep{grid = {x = {1, 2, 3, 4, 5}}, jobs = jobs, out = dir .. "/e" .. jobs, verbose = false,
                       run = function(cfg)
                         if cfg.x == 2 then error("bad config, two") end
                         if cfg.x == 3 then return "not a table" end
                         if cfg.x == 4 then return {nested = {1}} end
                         return {v = cfg.x}
                       end}
    eq(#r.rows, 5)
    eq(r.rows[1].status, "ok")
    eq(r.rows[2].status, "error")
    check(r.rows[2].message:find("bad config, two", 1, true), r.rows[2].message)
    check(r.rows[3].message:find("must return a table", 1, true), r.rows[3].message)
    check(r.rows[4].message:find("'nested' must be a number, string or boolean", 1, true), r.rows[4].message)
    eq(r.rows[5].v, 5)
    check(r.rows[2].v ~= r.rows[2].v, "error rows carry nan metrics")
    eq(r.summary[2].n, 0)
    eq(r.summary[2].errors, 1)
    local _, rows = read_csv(dir .. "/e" .. jobs .. ".csv")
    eq(#rows, 5)
    local errs = 0
    for _, row in ipairs(rows) do if row.status == "error" then errs = errs + 1 end end
    eq(errs, 3)
    check(tostring(r):find("errors"), "the table counts errors")
  end
  -- a worker that dies: exit without a result, killed by a signal
  local r = tl.sweep{grid = {x = {1, 2, 3}}, jobs = 2, verbose = false,
                     run = function(cfg)
                       if cfg.x == 1 then os.exit(3) end
                       if cfg.x == 2 then os.execute("kill -9 " .. my_pid()) end
                       return {v = 1}
                     end}
  eq(r.rows[1].status, "error")
  check(r.rows[1].message:find("run called os.exit(3)", 1, true), r.rows[1].message)
  if my_pid() then
    check(r.rows[2].message:find("killed by signal 9", 1, true), r.rows[2].message)
  end
  eq(r.rows[3].status, "ok")
end

function T.result_key_rules()
  local r = tl.sweep{grid = {x = {1, 2}}, verbose = false,
                     run = function(cfg)
                       if cfg.x == 1 then return {x = 1, seed = 3} end
                       return {x = 99}
                     end}
  check(r.rows[1].message:find("'seed' clashes", 1, true), r.rows[1].message)
  check(r.rows[2].message:find("'x' clashes with the configuration field", 1, true), r.rows[2].message)
  local ok = tl.sweep{grid = {x = {1}}, verbose = false, run = function(cfg) return {x = cfg.x, v = 2} end}
  eq(ok.rows[1].status, "ok", "a result may repeat its configuration")
  -- new keys in later rows: the CSV grows a column (wide union)
  local dir = fresh_dir()
  local ran = 0
  local function wide_run(cfg)
    ran = ran + 1
    if cfg.x == 1 then error("first fails") end
    if cfg.x == 2 then return {a = 1} end
    return {a = 2, b = "text, with \"quotes\""}
  end
  local w = tl.sweep{grid = {x = {1, 2, 3}}, out = dir .. "/wide", verbose = false, run = wide_run}
  eq(#w.rows, 3)
  local text = read(dir .. "/wide.csv")
  check(text:find("^x,seed,status,a,b,wall,message,run_hash\n"), text)
  check(text:find('"text, with ""quotes"""', 1, true), "quoted cell: " .. text)
  -- and reads back on resume
  ran = 0
  local w2 = tl.sweep{grid = {x = {2, 3}}, out = dir .. "/wide", verbose = false, run = wide_run}
  eq(ran, 0, "resumed, not run")
  eq(w2.rows[2].b, 'text, with "quotes"')
end

function T.interrupt_keeps_finished_rows()
  local pid = my_pid()
  if not pid then skip("no /proc/self/stat") end
  local dir = fresh_dir()
  local out = dir .. "/int"
  local ok, err = pcall(tl.sweep, {
    grid = {x = {1, 2, 3, 4, 5, 6}}, jobs = 2, out = out, verbose = false,
    run = function(cfg)
      if cfg.x >= 3 then
        if cfg.x == 3 then
          -- once x=1 and x=2 are in the CSV (header + 2 rows), press "Ctrl-C"
          for _ = 1, 200 do
            if count_lines(out .. ".csv") >= 3 then break end
            sleep(0.05)
          end
          os.execute("kill -INT " .. pid)
        end
        for _ = 1, 100 do sleep(0.05) end
      end
      return {v = cfg.x}
    end})
  check(not ok, "the sweep raised")
  local n, m, path = tostring(err):match("^tl%.sweep: interrupted after (%d+) of (%d+) runs %(rows kept in (.-)%)$")
  check(n, "message: " .. tostring(err))
  eq(m, "6")
  eq(path, out .. ".csv")
  eq(n, "2")
  local _, rows = read_csv(out .. ".csv")
  eq(#rows, 2)
  for _, row in ipairs(rows) do eq(row.status, "ok") end
  check(not tl.cancelled(), "the flag is consumed by the error")
  -- the session goes on: the next sweep resumes
  local r = tl.sweep{grid = {x = {1, 2, 3, 4, 5, 6}}, jobs = 2, out = out, verbose = false,
                     run = function(cfg) return {v = cfg.x} end}
  eq(#r.rows, 6)
  eq(r.rows[6].v, 6)
end

function T.plot_compare_takes_rows()
  local r = tl.sweep{grid = {w = {1, 2}, g = {"a", "b"}}, repeats = 2, verbose = false,
                     run = function(cfg, seed)
                       if cfg.w == 2 and seed == 2 then error("one bad run") end
                       return {auc = cfg.w / 10 + seed / 100}
                     end}
  local s = tl.plot.compare(r.rows, {x = "w", y = "auc", group = "g", format = "script"})
  check(type(s) == "string" and s:find("EOD"), "a gnuplot script: " .. tostring(s))
end

function T.argument_errors()
  local run = function() return {} end
  raises(function() tl.sweep{grid = {x = {1}}} end, "tl.sweep: field 'run' must be a function, got nil")
  raises(function() tl.sweep{grid = {x = {1}}, run = run, repeat_ = 2} end,
         "tl.sweep: unknown field 'repeat_'")
  raises(function() tl.sweep(5) end, "tl.sweep: argument must be a table")
  raises(function() tl.sweep{run = run} end, "one of the fields 'grid'")
  raises(function() tl.sweep{grid = {x = {1}}, random = {x = {1}, n = 1}, run = run} end, "not both")
  raises(function() tl.sweep{grid = {x = 1}, run = run} end,
         "tl.sweep: grid field 'x' must be a non-empty list of values, got number")
  raises(function() tl.sweep{grid = {x = {}}, run = run} end, "non-empty list")
  raises(function() tl.sweep{grid = {x = {{}}}, run = run} end, "value 1 must be a number, string or boolean, got table")
  raises(function() tl.sweep{grid = {seed = {1}}, run = run} end, "grid field 'seed' clashes")
  raises(function() tl.sweep{grid = {1, 2}, run = run} end, "field names")
  raises(function() tl.sweep{grid = {x = {1}}, run = run, repeats = 0} end,
         "tl.sweep: field 'repeats' must be an integer in 1..")
  raises(function() tl.sweep{grid = {x = {1}}, run = run, jobs = "2"} end, "field 'jobs' must be an integer")
  raises(function() tl.sweep{grid = {x = {1}}, run = run, out = 3} end, "field 'out' must be a file name")
  raises(function() tl.sweep{grid = {x = {1}}, run = run, verbose = 1} end, "field 'verbose' must be a boolean")
  raises(function() tl.sweep{random = {x = {1}}, run = run} end, "needs n=")
  raises(function() tl.sweep{random = {x = {min = 2, max = 1}, n = 2}, run = run} end, "min <= max")
  raises(function() tl.sweep{random = {x = {min = 0, max = 1, log = true}, n = 2}, run = run} end, "log=true needs min > 0")
  raises(function() tl.sweep{random = {x = {min = 1, max = 2, steps = 3}, n = 2}, run = run} end, "'steps'")
  raises(function() tl.compare(3) end, "tl.compare: argument 1 must be sweep results or a list")
  raises(function() tl.compare({}, {group = "x"}) end, "tl.compare: unknown field 'group'")
  local dir = fresh_dir()
  write(dir .. "/file", "x")
  raises(function() tl.sweep{grid = {x = {1}}, run = run, out = dir .. "/file/sub/r", verbose = false} end,
         "cannot create directory")
end

function T.smoke_sweep_weights_script()
  local bin = os.getenv("TL_TEST_BIN")
  if not bin then skip("TL_TEST_BIN not set (run through tests/run_tests.sh)") end
  local f = io.open("scripts/sweep_weights.lua")
  if not f then skip("run from the project root") end
  f:close()
  local dir = fresh_dir()
  local p = io.popen(string.format("'%s' scripts/sweep_weights.lua 1 1 '%s/w' 5 2>&1", bin, dir))
  local text = p:read("a")
  local okp, _, code = p:close()
  check(okp and code == 0, "script exit status: " .. tostring(code) .. "\n" .. text)
  check(text:find("| income_weight | income_auc"), "summary table printed:\n" .. text)
  local header, rows = read_csv(dir .. "/w.csv")
  eq(#rows, 5)
  eq(header[1], "income_weight")
  for _, row in ipairs(rows) do eq(row.status, "ok") end
end

-- runs last (sorted names): leave no files behind
-- Issue 19 item 4: rows are keyed by a hash of run's source text as well.
function T.changed_run_function_runs_again()
  local dir = fresh_dir()
  local calls = dir .. "/calls"
  local out = dir .. "/h"
  local function epochs2(cfg, seed) return {v = cfg.x * 2 + seed} end
  local function epochs5(cfg, seed) return {v = cfg.x * 5 + seed} end
  tl.sweep{grid = {x = {1, 2}}, out = out, verbose = false, run = counting_run(calls, epochs2)}
  eq(count_lines(calls), 2)
  local header = read_csv(out .. ".csv")
  eq(header[#header], "run_hash")
  -- the same run function: resumed, nothing runs
  write(calls, "")
  tl.sweep{grid = {x = {1, 2}}, out = out, verbose = false, run = counting_run(calls, epochs2)}
  eq(count_lines(calls), 0, "same source: resumed")
  -- another function text (the wrapper is the same closure, so wrap differently)
  write(calls, "")
  local printed = {}
  local print0 = print
  print = function(...) printed[#printed + 1] = table.concat({...}, " ") end
  local ok, r = pcall(tl.sweep, {grid = {x = {1, 2}}, out = out, verbose = true,
    run = function(cfg, seed)
      local f = assert(io.open(calls, "a")); f:write("new\n"); f:close()
      return epochs5(cfg, seed)
    end})
  print = print0
  check(ok, tostring(r))
  eq(count_lines(calls), 2, "a changed run function runs again")
  eq(r.rows[1].v, 1 * 5 + 1)
  eq(r.rows[2].v, 2 * 5 + 1)
  local said = table.concat(printed, "\n")
  check(said:find("2 rows in " .. out .. ".csv came from a different run function", 1, true), said)
  local _, rows = read_csv(out .. ".csv")
  eq(#rows, 4, "the old rows stay in the file")
  local hashes = {}
  for _, row in ipairs(rows) do hashes[row.run_hash] = true; check(row.run_hash:match("^%x+$"), row.run_hash) end
  local n = 0
  for _ in pairs(hashes) do n = n + 1 end
  eq(n, 2, "two run hashes in the file")
end

-- Files written before the run_hash column (a long sweep running today)
-- keep resuming: their rows count as this run function's.
function T.csv_without_run_hash_still_resumes()
  local dir = fresh_dir()
  local out = dir .. "/old"
  write(out .. ".csv", "x,seed,status,v,wall,message\n1,1,ok,11,0.5,\n2,1,ok,21,0.5,\n")
  local r = tl.sweep{grid = {x = {1, 2, 3}}, out = out, verbose = false,
                     run = function(cfg, seed) return {v = cfg.x * 10 + seed + 1000} end}
  eq(r.rows[1].v, 11, "old row reused")
  eq(r.rows[2].v, 21, "old row reused")
  eq(r.rows[3].v, 1031, "the missing one ran")
  local header, rows = read_csv(out .. ".csv")
  eq(header, {"x", "seed", "status", "v", "wall", "message", "run_hash"})
  eq(rows[1].run_hash, "", "old rows keep an empty hash")
  check(rows[3].run_hash ~= "", "new rows get the hash")
  -- and again: old rows still accepted, the new row matches
  local r2 = tl.sweep{grid = {x = {1, 2, 3}}, out = out, verbose = false,
                      run = function() error("must not run") end}
  eq(r2.rows[1].status, "ok")
  eq(r2.rows[3].status, "error", "a different run function: the new-format row runs again")
end

-- Issue 25 item 19: os.exit in a jobs=1 run fails the row; the program goes on.
function T.os_exit_in_process_fails_the_row()
  local r = tl.sweep{grid = {x = {1, 2}}, verbose = false,
                     run = function(cfg)
                       if cfg.x == 1 then os.exit(0) end
                       return {v = cfg.x}
                     end}
  eq(r.rows[1].status, "error")
  check(r.rows[1].message:find("run called os.exit(0)", 1, true), r.rows[1].message)
  eq(r.rows[2].v, 2)
  check(os.exit ~= nil and select(2, pcall(debug.getinfo, os.exit, "S")).what == "C", "os.exit restored")
end

-- Issue 25 item 12: workers die with a killed (kill -9) parent.
function T.workers_die_with_a_killed_parent()
  if not my_pid() then skip("no /proc") end
  local bin = os.getenv("TL_TEST_BIN") or arg[-1]
  if not bin or not io.open(bin) then skip("no towerlab binary to start") end
  local dir = fresh_dir()
  write(dir .. "/s.lua", string.format([[
    local function pid() local f = io.open("/proc/self/stat"); local p = f:read("n"); f:close(); return math.tointeger(p) end
    tl.sweep{grid = {x = {1, 2}}, jobs = 2, verbose = false, run = function(cfg)
      local f = io.open(%q .. "/w" .. cfg.x, "w"); f:write(pid()); f:close()
      os.execute("sleep 60")
      return {v = 1}
    end}]], dir))
  os.execute(string.format("%s %s/s.lua >/dev/null 2>&1 & echo $! > %s/parent", bin, dir, dir))
  local parent = tonumber(read(dir .. "/parent"))
  local workers = {}
  for _ = 1, 200 do
    local a, b = read(dir .. "/w1"), read(dir .. "/w2")
    if a and b and a ~= "" and b ~= "" then workers = {tonumber(a), tonumber(b)}; break end
    sleep(0.05)
  end
  eq(#workers, 2, "both workers started")
  os.execute("kill -9 " .. parent)
  local function alive(p)
    local f = io.open("/proc/" .. p .. "/stat")
    if not f then return false end
    local st = f:read("a"); f:close()
    return not st:match("^%d+ %b() Z") -- a zombie is gone
  end
  local gone = false
  for _ = 1, 100 do
    if not alive(workers[1]) and not alive(workers[2]) then gone = true; break end
    sleep(0.05)
  end
  if not gone then os.execute("kill -9 " .. workers[1] .. " " .. workers[2] .. " 2>/dev/null") end
  check(gone, "workers still running 5 s after their parent was killed")
end

-- Issue 19 item 14: paired differences to a baseline, 95 % t-intervals, and
-- one number format per column.
function T.compare_paired_delta_against_a_baseline()
  local rows = {}
  local base = {0.70, 0.72, 0.71, 0.69}
  local better = {0.73, 0.74, 0.745, 0.72}
  for i = 1, 4 do
    rows[#rows + 1] = {arm = "base", seed = i, auc = base[i], loss = 2.3e-07 * i}
    rows[#rows + 1] = {arm = "new", seed = i, auc = better[i], loss = 0.00013 * i}
  end
  local s = tl.compare(rows, {by = "arm", baseline = "base", print = false})
  local d = {}
  for i = 1, 4 do d[i] = better[i] - base[i] end
  local m = (d[1] + d[2] + d[3] + d[4]) / 4
  local ss = 0
  for i = 1, 4 do ss = ss + (d[i] - m) ^ 2 end
  local half = 3.182 * math.sqrt(ss / 3) / 2
  near(s[2].auc_delta, m, 1e-12)
  near(s[2].auc_delta_ci, half, 1e-12)
  eq(s[2].auc_pairs, 4)
  check(s[1].baseline, "the baseline entry is marked")
  local text = tostring(s)
  check(text:find("Δ auc", 1, true), text)
  check(text:find(string.format("%+.4f ± %.4f ▲", m, half), 1, true), text)
  check(text:find("baseline", 1, true), text)
  check(not text:find("e%-0%d"), "no exponent notation: " .. text)
  -- the loss column: every cell with the same decimals
  local cells = {}
  for l in text:gmatch("[^\n]+") do
    local c = select(4, l:match("^| ([^|]*)|([^|]*)|([^|]*)|([^|]*)|"))
    if c and c:match("%d") then cells[#cells + 1] = c:match("^%s*(.-)%s*$") end
  end
  eq(#cells, 2, "two loss cells: " .. text)
  local decs = {}
  for _, c in ipairs(cells) do
    for num in c:gmatch("[%d%.]+") do decs[#decs + 1] = #(num:match("%.(%d+)$") or "") end
  end
  for i = 2, #decs do eq(decs[i], decs[1], "same decimals in a column: " .. table.concat(cells, " / ")) end
  -- errors name what is wrong
  raises(function() tl.compare(rows, {by = "arm", baseline = "nope", print = false}) end,
    'no group matches baseline arm="nope"')
  raises(function() tl.compare(rows, {by = "arm", baseline = {lr = 1}, print = false}) end,
    "baseline names field 'lr'")
  -- and in tl.sweep: a bad baseline is refused before any run
  raises(function()
    tl.sweep{grid = {x = {1, 2}}, baseline = 3, verbose = false, run = function() error("ran") end}
  end, "no group matches baseline x=3")
  local r = tl.sweep{grid = {x = {1, 2}}, repeats = 3, baseline = 1, verbose = false,
                     run = function(cfg, seed) return {v = cfg.x + seed / 10} end}
  near(r.summary[2].v_delta, 1, 1e-12)
  check(tostring(r):find("Δ v", 1, true), tostring(r))
end

function T.zz_cleanup()
  os.execute("rm -rf '" .. base .. "'")
end

return T
