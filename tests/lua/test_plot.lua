-- test_plot.lua — tl.plot through a real gnuplot: svg files are rendered and
-- read back, the dumb terminal's text is checked, a missing or crashing
-- gnuplot gives nil, message, and live():update is throttled.

local BIN = os.getenv("TL_TEST_BIN") or "./towerlab"
local TMP = os.tmpname()
os.remove(TMP)
os.execute("mkdir -p '" .. TMP .. "'")

local function have_gnuplot()
  if not tl.plot.gnuplot() then skip("gnuplot not installed") end
end

local function slurp(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

-- Texts drawn in an svg (titles, legends, tick labels).
local function svg_texts(svg)
  local t = {}
  for s in svg:gmatch("<text>([^<]*)</text>") do t[s] = (t[s] or 0) + 1 end
  return t
end

-- Run towerlab -e code; returns stdout, stderr, success.
local function run(code, env)
  local out, err = TMP .. "/out.txt", TMP .. "/err.txt"
  local cmd = string.format("%s %s -e %q >%s 2>%s </dev/null", env or "", BIN, code, out, err)
  local ok = os.execute(cmd)
  return slurp(out), slurp(err), ok
end

-- An evaluation result: 10 bins, the last two empty; `slope` bends the curve.
local function result(slope, ece)
  local bins = {}
  for i = 1, 10 do
    local lo, hi = (i - 1) / 10, i / 10
    local n = i <= 8 and 1000 // i or 0
    local b = { lo = lo, hi = hi, count = n }
    if n > 0 then
      local mp = (lo + hi) / 2
      b.mean_pred, b.rate = mp, math.min(1, mp * slope)
      b.ci_lo, b.ci_hi = math.max(0, b.rate - 0.05), math.min(1, b.rate + 0.05)
    end
    bins[i] = b
  end
  return { auc = 0.9, logloss = 0.3, ece = ece, bins = bins }
end

local function eval_result()
  return { income = result(1.1, 0.02), never_married = result(0.8, 0.05) }
end

-- A history shaped like the fit loop's: 300 steps, 3 epochs, diagnostics.
local function history(nsteps)
  local h = { steps = {}, epochs = {}, diagnostics = {} }
  for s = 1, nsteps or 300 do
    h.steps[s] = { step = s, epoch = (s - 1) // 100 + 1,
      loss = { income = 0.5 * math.exp(-s / 100) + 0.1, never_married = 0.4 * math.exp(-s / 80) },
      weight = { income = 1, never_married = s > 150 and 0.5 or 1 } }
    if s % 50 == 0 then
      h.diagnostics[#h.diagnostics + 1] = { step = s,
        grad_norm = { income = 50 / s, never_married = 100 / s },
        grad_cos = { ["income|never_married"] = -0.1 + s / 1000 } }
    end
    if s % 100 == 0 then
      local e = s // 100
      h.epochs[e] = { epoch = e, step = s, train_loss = { income = 0.3 / e, never_married = 0.2 / e },
        valid = { income = { auc = 0.8 + 0.03 * e, logloss = 0.4 },
                  never_married = { auc = 0.85 + 0.02 * e, logloss = 0.3 } } }
    end
  end
  return h
end

-- Rows of the datablock `$name << EOD ... EOD` in a script, as number lists.
local function datablock(script, name)
  local body = script:match("%$" .. name .. " << EOD\n(.-)EOD\n")
  check(body, "datablock $" .. name .. " missing")
  local rows = {}
  for line in body:gmatch("[^\n]+") do
    local r = {}
    for v in line:gmatch("%S+") do r[#r + 1] = tonumber(v) end
    rows[#rows + 1] = r
  end
  return rows
end

return {
  calibration_svg_has_title_one_curve_per_task_and_ranges = function()
    have_gnuplot()
    local f = TMP .. "/cal.svg"
    eq(tl.plot.calibration(eval_result(), { file = f, title = "Census calibration" }), f)
    local svg = slurp(f)
    check(svg:find("</svg>", 1, true), "svg is complete")
    local t = svg_texts(svg)
    eq(t["Census calibration"], 1, "title")
    eq(t["income (ECE 0.0200)"], 1, "income legend")
    eq(t["never_married (ECE 0.0500)"], 1, "never_married legend (underscore kept)")
    eq(t["perfect"], 1, "diagonal")
    -- top panel: diagonal + 2 curves; bottom panel: 2 histograms
    eq(count(svg, 'id="gnuplot_plot_%da"'), 3)
    eq(count(svg, 'id="gnuplot_plot_%db"'), 2)
    -- y of the reliability diagram is [0:1] with ticks every 0.2
    for _, tick in ipairs { " 0", " 0.2", " 0.4", " 0.6", " 0.8", " 1" } do
      check(t[tick], "y tick " .. tick)
    end
    check(t["predicted probability"] and t["observed rate"] and t["count"], "axis labels")
  end,

  calibration_script_skips_empty_bins_and_has_error_bars = function()
    local s = tl.plot.calibration(eval_result(), { format = "script", tasks = { "income" } })
    local curve = datablock(s, "c0_1")
    eq(#curve, 8, "two empty bins left out of the curve")
    near(curve[1], { 0.05, 0.055, 0.005, 0.105 }, 1e-9)
    eq(#datablock(s, "h0_1"), 10, "histogram keeps every bin")
    check(s:find("yerrorlines", 1, true), "error bars from ci_lo/ci_hi")
    check(s:find("set yrange [0:1]", 1, true))
    check(not s:find("never_married", 1, true), "tasks= selects")
  end,

  calibration_before_after = function()
    have_gnuplot()
    local r = { before = eval_result(), after = { income = result(1.0, 0.01), never_married = result(0.97, 0.01) } }
    local s = tl.plot.calibration(r, { format = "script" })
    check(s:find("$c0_1 using 1:2:3:4 with yerrorlines lc 1 pt 7 ps 0.6 dt 2", 1, true), "before dashed")
    check(s:find("$c1_1 using 1:2:3:4 with yerrorlines lc 1 pt 7 ps 0.6 dt 1", 1, true), "after solid")
    local t = svg_texts(tl.plot.svg("calibration", r))
    eq(t["income before (ECE 0.0200)"], 1)
    eq(t["income after (ECE 0.0100)"], 1)
    eq(t["never_married after (ECE 0.0100)"], 1)
  end,

  calibration_argument_errors = function()
    raises(function() tl.plot.calibration(5) end,
      "tl.plot.calibration: argument 1 must be an evaluation result table (task -> {bins=...}), got number")
    raises(function() tl.plot.calibration({ a = 1 }) end, "no task has bins")
    raises(function() tl.plot.calibration(eval_result(), { colour = "red" }) end,
      "tl.plot.calibration: unknown field 'colour'")
    raises(function() tl.plot.calibration(eval_result(), { tasks = { "ctr" } }) end,
      "task 'ctr' (field 'tasks') has no result with bins")
    raises(function() tl.plot.calibration(eval_result(), { file = "x.jpg" }) end,
      "field 'file' must end in .svg, .png or .pdf, got 'x.jpg'")
    local r = eval_result()
    r.income.bins[3].count = "many"
    raises(function() tl.plot.calibration(r, { format = "script" }) end,
      "tl.plot.calibration: r.income.bins[3].count must be a number, got string")
  end,

  dumb_text_contains_title = function()
    have_gnuplot()
    local txt = tl.plot.calibration(eval_result(), { format = "text", title = "DumbTitle" })
    check(txt:find("DumbTitle", 1, true), "title in dumb text")
    check(txt:find("predicted probability", 1, true))
    check(not txt:find("<svg", 1, true))
    check(not txt:find("\f", 1, true), "form feeds stripped")
  end,

  dumb_terminal_prints_before_the_call_returns = function()
    have_gnuplot()
    local out, err = run([[io.write("BEFORE\n"); tl.plot.terminal("dumb");
      print("results", select("#", tl.plot.compare({{x=1,y=2},{x=2,y=3}}, {x="x", y="y", title="ChartTitle"})))
      io.write("AFTER\n")]])
    local a, b, c = out:find("BEFORE", 1, true), out:find("ChartTitle", 1, true), out:find("AFTER", 1, true)
    check(a and b and c, "output: " .. out .. err)
    check(a < b and b < c, "plot printed between BEFORE and AFTER")
    check(out:find("results\t0\nAFTER", 1, true), "returns nothing after printing (the prompt echoes no `true`): " .. out)
  end,

  history_panels_and_extras = function()
    have_gnuplot()
    local h = history()
    local t = svg_texts(tl.plot.svg("history", h, { title = "Run 7" }))
    eq(t["Run 7"], 1)
    for _, p in ipairs { "loss (train)", "auc (valid)", "weight (train)" } do eq(t[p], 1, p) end
    eq(t["income"], 3, "income in each panel's legend")
    eq(t["never_married"], 3)
    t = svg_texts(tl.plot.svg("history", h, { "grad_norm", "grad_cos" }))
    check(t["grad_norm (diagnostics)"] and t["grad_cos (diagnostics)"], "diagnostics panels")
    eq(t["income|never_married"], 1)
    t = svg_texts(tl.plot.svg("history", h, { metrics = { "logloss" } }))
    eq(t["logloss (valid)"], 1)
    check(not t["loss (train)"], "metrics= replaces the defaults")
  end,

  history_steps_share_x_range_and_long_series_are_bucketed = function()
    local s = tl.plot.history(history(5000), { format = "script" })
    check(s:find("set xrange [1:5000]", 1, true), "shared x range")
    local loss = datablock(s, "s0")
    check(#loss <= 1000 and #loss >= 900, "5000 steps averaged to <= 1000 points, got " .. #loss)
  end,

  history_from_model_object_and_errors = function()
    local h = history(20)
    local model = setmetatable({}, { __index = { history = function() return h end } })
    local s = tl.plot.history(model, { format = "script" })
    check(s:find("$s0 << EOD", 1, true))
    raises(function() tl.plot.history(42) end,
      "tl.plot.history: argument 1 must be a model or a history table {steps=..., epochs=...}, got number")
    raises(function() tl.plot.history(h, { metrics = { "f1" } }) end,
      "tl.plot.history: no data for metric 'f1' in the history (available: ")
    raises(function() tl.plot.history({ steps = { 5 } }) end, "history.steps[1] must be a table, got number")
    local r, msg = tl.plot.history({ steps = {} })
    eq(r, nil)
    check(msg:find("no data", 1, true))
  end,

  compare_means_and_std_over_repeats = function()
    local rows = {}
    for _, bb in ipairs { "mmoe", "ple" } do
      for _, w in ipairs { 0.5, 0.1 } do
        for seed = 1, 3 do
          rows[#rows + 1] = { backbone = bb, weight = w, seed = seed,
            auc = 0.9 + w * 0.1 + (bb == "ple" and 0.01 or 0) + seed * 0.01 }
        end
      end
    end
    local s = tl.plot.compare(rows, { x = "weight", y = "auc", group = "backbone", format = "script" })
    local g1 = datablock(s, "g1")
    eq(#g1, 2)
    near(g1[1], { 0.1, 0.93, 0.01, 3 }, 1e-9, "sorted by x; mean, std (n-1), n")
    near(datablock(s, "g2")[2], { 0.5, 0.98, 0.01, 3 }, 1e-9)
    check(s:find("title 'backbone=ple'", 1, true))
    have_gnuplot()
    local f = TMP .. "/cmp.svg"
    eq(tl.plot.compare(rows, { x = "weight", y = "auc", group = "backbone", file = f }), f)
    local svg = slurp(f)
    eq(count(svg, 'id="gnuplot_plot_%d+"'), 2, "one curve per group")
    local t = svg_texts(svg)
    check(t["backbone=mmoe"] and t["backbone=ple"] and t["auc by weight"])
    -- categorical x: one tick per backbone
    t = svg_texts(tl.plot.svg("compare", rows, { x = "backbone", y = "auc" }))
    check(t["mmoe"] and t["ple"], "category ticks")
  end,

  compare_errors = function()
    raises(function() tl.plot.compare({ { a = 1 } }, { x = "a" }) end, "tl.plot.compare: field 'y'")
    raises(function() tl.plot.compare({ { a = 1, b = "x" } }, { x = "a", y = "b" }) end,
      "tl.plot.compare: row 1 field 'b' (y) must be a number, got string")
    raises(function() tl.plot.compare("rows", { x = "a", y = "b" }) end, "argument 1 must be a list")
  end,

  gates_heat_map = function()
    have_gnuplot()
    local g = { tasks = { "income", "never_married" }, experts = 4,
                weights = { { 0.1, 0.2, 0.3, 0.4 }, { 0.7, 0.1, 0.1, 0.1 } } }
    local t = svg_texts(tl.plot.svg("gates", g))
    check(t["income"] and t["never_married"], "row labels")
    eq(t["0.70"], 1)
    eq(t["0.10"], 4)
    check(t["expert"] and t["Mean gate weights"])
    raises(function() tl.plot.gates({ tasks = { "a" }, experts = 3, weights = { { 1, 2 } } }) end,
      "tl.plot.gates: weights[1] has 2 values, expected 3 (experts)")
    raises(function() tl.plot.gates({ tasks = { "a", "b" }, weights = { { 1 } } }) end,
      "field 'weights' has 1 rows but there are 2 tasks")
  end,

  png_and_pdf_files = function()
    have_gnuplot()
    local png, pdf = TMP .. "/c.png", TMP .. "/c.pdf"
    eq(tl.plot.calibration(eval_result(), { file = png }), png)
    eq(slurp(png):sub(1, 4), "\137PNG")
    eq(tl.plot.history(history(50), { file = pdf }), pdf)
    eq(slurp(pdf):sub(1, 4), "%PDF")
  end,

  terminal_get_set = function()
    local name, resolved = tl.plot.terminal()
    eq(name, "auto")
    check(resolved == "dumb" or resolved == "qt" or resolved == "wxt" or resolved == "x11")
    if not os.getenv("DISPLAY") then eq(resolved, "dumb", "no display: dumb") end
    eq(tl.plot.terminal("svg"), "svg")
    check(tl.plot.svg("gates", { tasks = { "a" }, weights = { { 1, 2 } } }):find("<svg", 1, true))
    raises(function() tl.plot.gates({ tasks = { "a" }, weights = { { 1 } } }, { terminal = "png" }) end,
      "terminal 'png' needs a file")
    raises(function() tl.plot.terminal("jpeg") end, "tl.plot.terminal: unknown terminal 'jpeg'")
    eq(tl.plot.terminal("auto"), "auto")
  end,

  missing_gnuplot_returns_nil_and_warns_once = function()
    local out, err, ok = run([[
      local r = {t={bins={{lo=0,hi=1,count=1,mean_pred=0.5,rate=0.5}}}}
      print(tl.plot.calibration(r))
      print(tl.plot.calibration(r, {file="/tmp/never.svg"}))
      print(tl.plot.live{})
      print("still running")]], "TL_GNUPLOT=/nonexistent")
    check(ok, "towerlab exits normally: " .. err)
    check(out:find("still running", 1, true))
    eq(count(out, "nil\ttl.plot: gnuplot not found"), 3, "every call returns nil, message: " .. out)
    eq(count(err, "tl.plot: gnuplot not found"), 1, "message printed once: " .. err)
    check(err:find("install gnuplot%-nox %— plots disabled") or err:find("install gnuplot-nox", 1, true))
  end,

  missing_gnuplot_in_process = function()
    eq(tl.plot.gnuplot("/nonexistent/gnuplot"), nil)
    local r, msg = tl.plot.calibration(eval_result())
    tl.plot.gnuplot(nil)
    eq(r, nil)
    check(msg:find("^tl.plot: gnuplot not found"), msg)
  end,

  crashing_gnuplot_does_not_kill_towerlab = function()
    -- /bin/true exits at once: writes hit a closed socket (no SIGPIPE).
    local ok_true = io.open("/bin/true") and true
    if not ok_true then skip("/bin/true missing") end
    tl.plot.gnuplot("/bin/true")
    local big = history(3000)
    local r, msg = tl.plot.history(big)
    local lp = tl.plot.live { interval = 0 }
    local sent1 = lp and lp:update(big)
    os.execute("sleep 0.1")
    local sent2 = lp and lp:update(big)
    tl.plot.gnuplot(nil)
    eq(r, nil)
    check(msg:find("gnuplot", 1, true), msg)
    eq(sent2, false, "live plot stops quietly once gnuplot is gone")
    if lp then check(lp.closed, "closed after gnuplot died") end
    local _ = sent1
  end,

  live_update_is_throttled = function()
    have_gnuplot()
    local f = TMP .. "/live.svg"
    local lp = assert(tl.plot.live { interval = 0.25, file = f, title = "Live" })
    local h = history(200)
    -- Spin for 1-2 s of wall time (os.time has 1 s resolution).
    local n, cpu0 = 0, os.clock()
    local start = os.time()
    while os.time() < start + 2 do
      for _ = 1, 1000 do lp:update(h) end
      n = n + 1000
    end
    local wall = os.time() - start -- 2 or 3
    local per_call = (os.clock() - cpu0) / n
    eq(lp.calls, n)
    local drawn = lp.frames + lp.skipped
    check(lp.frames >= 2, "frames are sent while spinning: " .. lp.frames)
    check(drawn <= wall / 0.25 + 2,
      string.format("at most one frame per 0.25 s: %d frames, %d skipped in %d s, %d calls",
        lp.frames, lp.skipped, wall, n))
    check(per_call < 5e-6, string.format("throttled update costs %.0f ns", per_call * 1e9))
    -- appended entries are read incrementally; force draws now
    for s = 201, 300 do h.steps[s] = { step = s, loss = { income = 0.1, never_married = 0.1 } } end
    os.execute("sleep 0.3")
    eq(lp:update(h, true), true)
    eq(lp:stats().calls, n + 1)
    lp:close()
    check(lp.closed)
    eq(lp:update(h, true), false, "no frames after close")
    local svg = slurp(f)
    check(svg:find("<text>Live</text>", 1, true), "last frame written to the file")
    check(svg:find("set xrange", 1, true) == nil and svg:find("</svg>", 1, true))
    check(svg:find(">300<", 1, true) or svg:find("> 300<", 1, true), "x axis reaches step 300")
  end,

  live_reads_appended_entries_only = function()
    have_gnuplot()
    local lp = assert(tl.plot.live { interval = 1000, file = TMP .. "/live2.svg" })
    -- m:history() builds a fresh table each call: a longer table with the
    -- same entries continues; a shorter one starts over.
    lp:update(history(100), true)
    local p100 = lp:stats().points
    eq(p100, 100 * 4 + 2 * 3 + 1 * 6, "steps: 4 values, diagnostics: 3, epochs: 6")
    lp:update(history(150), true)
    eq(lp:stats().points, 150 * 4 + 3 * 3 + 1 * 6)
    lp:update(history(40), true)
    eq(lp:stats().points, 40 * 4)
    local other = history(60)
    other.steps[40].step = 1000 -- same length prefix, different run
    lp:update(other, true)
    eq(lp:stats().points, 60 * 4 + 1 * 3)
    lp:close()
  end,

  live_dumb_prints_frames = function()
    have_gnuplot()
    local out, err, ok = run([[
      local h = {steps={{step=1, loss={a=1}}, {step=2, loss={a=0.5}}}}
      local lp = tl.plot.live{terminal="dumb", title="LiveDumb", interval=10}
      lp:update(h); lp:update(h); lp:close()
      print("frames", lp.frames, "calls", lp.calls)]])
    check(ok, err)
    eq(count(out, "LiveDumb"), 1, "one frame printed: " .. out)
    check(out:find("frames\t1\tcalls\t2", 1, true), out)
  end,

  -- Issue 25 item 11: 100k rows in 1000 groups (200 x values in all) take one
  -- sort, not a scan of every row per (group, x): 2 10^10 steps before. The
  -- bound is generous (CPU seconds); it finishes in well under one.
  compare_many_rows_and_groups_is_fast = function()
    local rows = {}
    for i = 1, 100000 do
      rows[i] = { x = i // 500, g = "g" .. (i % 1000), y = (i % 7) / 7 }
    end
    local t0 = os.clock()
    local s = tl.plot.compare(rows, { x = "x", y = "y", group = "g", format = "script" })
    local cpu = os.clock() - t0
    check(cpu < 10, string.format("tl.plot.compare took %.1f CPU s", cpu))
    eq(count(s, "EOD\n") // 2, 1000, "one datablock per group")
    local g1 = datablock(s, "g1")
    eq(#g1, 100, "group g1 (rows 1000k + 1): x = 0, 2, ..., 198")
    for j = 2, #g1 do check(g1[j][1] > g1[j - 1][1], "x sorted within a group") end
    eq(g1[1][4], 1, "one row per (group, x)")
  end,

  compare_nan_x_is_a_clear_error = function()
    raises(function()
      tl.plot.compare({ { x = 1, y = 1 }, { x = 0 / 0, y = 2 } }, { x = "x", y = "y", format = "script" })
    end, "tl.plot.compare: row 2 field 'x' (x) is nan")
    raises(function()
      tl.plot.compare({ { x = 1, y = 1, g = 0 / 0 } }, { x = "x", y = "y", group = "g", format = "script" })
    end, "tl.plot.compare: row 1 field 'g' (group) is nan")
  end,

  -- Issue 19 item 10: the diagonal is visible on a dark terminal (not ANSI
  -- black) and the tasks differ by point character, not only by colour.
  calibration_text_distinct_points_and_visible_diagonal = function()
    local s = tl.plot.calibration(eval_result(), { format = "script" })
    check(s:find("plot x with lines lt -1 dt 3 title 'perfect'", 1, true), "diagonal in the foreground colour")
    check(not s:find("gray", 1, true), "no gray (ANSI black on dumb)")
    check(s:find("$c0_1 using 1:2:3:4 with yerrorlines lc 1 pt 7", 1, true), s)
    check(s:find("$c0_2 using 1:2:3:4 with yerrorlines lc 2 pt 5", 1, true), "second task: another point type")
    have_gnuplot()
    local txt = tl.plot.calibration(eval_result(), { format = "text" })
    check(txt:find("G", 1, true) and txt:find("E", 1, true), "two point letters in the text plot:\n" .. txt)
    local h = tl.plot.history(history(), { format = "script" })
    local pts = {}
    for p in h:gmatch("with linespoints pt (%d+)") do pts[p] = true end
    check(pts["7"] and next(pts, next(pts)), "history series differ by point type: " .. h)
  end,

  -- Runs last (tests run in name order): remove this file's temporary files.
  zz_remove_temporary_files = function()
    check(os.execute("rm -rf '" .. TMP .. "'"))
    check(not io.open(TMP .. "/cal.svg"), "temporary directory removed")
  end,

  help_texts_registered = function()
    if not tl.help then skip("tl.help not available") end
    local printed
    local saved = print
    print = function(s) printed = s end
    local ok, err = pcall(function()
      for _, f in ipairs { "calibration", "history", "compare", "gates", "live", "terminal", "svg" } do
        printed = nil
        tl.help(tl.plot[f])
        check(printed and printed:find("tl.plot." .. f .. "(", 1, true), "help for tl.plot." .. f)
      end
      printed = nil
      tl.help("tl.plot")
      check(printed and printed:find("calibration", 1, true))
    end)
    print = saved
    if not ok then error(err, 0) end
  end,
}
