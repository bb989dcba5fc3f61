-- kernel.lua — the Lua side of the Jupyter kernel (repl/kernel.c).
-- Nothing here runs outside kernel mode: kernel.c calls
-- private.kernel_setup(publish, now, session) once, which returns the table
-- of helpers the kernel uses (bundle, inspect) and, for notebooks:
--   * tl.display(v [, {id=, update=}]): show a value (or a {mime=text} bundle)
--   * tl.plot.calibration/history/compare/gates draw inline SVG (display_data)
--     while the default terminal is "svg" and no file/format/terminal is given
--   * tl.plot.live (and so m:fit{plot=true}) redraws one SVG in place
--     (update_display_data with a display_id)
local tl, _, values, private = ...

local function pretty(v)
  local ok, s = pcall(tl.pretty, v)
  if ok and type(s) == "string" then return s end
  return tostring(v)
end

local function fmt(v)
  if type(v) == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    if v ~= v then return "nan" end
    if v == math.floor(v) and math.abs(v) < 1e15 then return string.format("%d", v) end
    return string.format("%.4f", v)
  end
  return tostring(v)
end

local ORDER = {"rows", "auc", "gauc", "logloss", "ne", "rmse", "ece", "mce", "pcoc",
  "brier", "slope", "intercept", "base_rate"}
local RANK = {}
for i, k in ipairs(ORDER) do RANK[k] = i end

local function col_less(a, b)
  local ra, rb = RANK[a] or math.huge, RANK[b] or math.huge
  if ra ~= rb then return ra < rb end
  return tostring(a) < tostring(b)
end

local function scalar(v)
  local t = type(v)
  return t == "number" or t == "string" or t == "boolean"
end

-- A grid {head=, rows={{label, cells...}}} for per-task results (string keys
-- -> tables of metrics) and for lists of flat records (sweep rows); nil for
-- anything else.
local function grid(t)
  if type(t) ~= "table" then return nil end
  local mt = getmetatable(t)
  if mt ~= nil and not (type(mt) == "table" and mt.__name == "tl.result") then return nil end
  local keys, cols, seen, text, n = {}, {}, {}, {}, #t
  local list = n > 0
  for k, v in pairs(t) do
    if type(v) ~= "table" then return nil end
    if list then
      if math.type(k) ~= "integer" or k < 1 or k > n then return nil end
    elseif type(k) ~= "string" then
      return nil
    end
    keys[#keys + 1] = k
    local any = false
    for c, x in pairs(v) do
      if type(c) == "string" and scalar(x) then
        any = true
        if not seen[c] then seen[c] = true; cols[#cols + 1] = c end
        if type(x) ~= "number" then text[c] = true end
      end
    end
    if not any then return nil end
  end
  if #keys == 0 or #keys > 500 or #cols > 40 then return nil end
  table.sort(keys)
  -- labels (text columns) first, then metrics in the usual order
  table.sort(cols, function(a, b)
    if (text[a] or false) ~= (text[b] or false) then return text[a] ~= nil end
    return col_less(a, b)
  end)
  local g = {head = {list and "" or "task"}, rows = {}, left = {true}}
  for _, c in ipairs(cols) do
    g.head[#g.head + 1] = c
    g.left[#g.head] = text[c] or false
  end
  for _, k in ipairs(keys) do
    local row = {tostring(k)}
    for _, c in ipairs(cols) do
      local x = t[k][c]
      row[#row + 1] = scalar(x) and fmt(x) or ""
    end
    g.rows[#g.rows + 1] = row
  end
  return g
end

local function html_escape(s)
  return (s:gsub("[&<>\"]", {["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;"}))
end

local function html(g)
  local out = {"<table>\n<thead><tr>"}
  for _, h in ipairs(g.head) do out[#out + 1] = "<th>" .. html_escape(h) .. "</th>" end
  out[#out + 1] = "</tr></thead>\n<tbody>\n"
  for _, r in ipairs(g.rows) do
    out[#out + 1] = "<tr>"
    for i, c in ipairs(r) do
      local tag = i == 1 and "th" or "td"
      out[#out + 1] = "<" .. tag .. ">" .. html_escape(c) .. "</" .. tag .. ">"
    end
    out[#out + 1] = "</tr>\n"
  end
  out[#out + 1] = "</tbody>\n</table>"
  return table.concat(out)
end

local function markdown(g)
  local function cell(s) return (s:gsub("|", "\\|")) end
  local out, sep = {}, {}
  local h = {}
  for i, x in ipairs(g.head) do h[i] = cell(x); sep[i] = g.left[i] and "---" or "---:" end
  out[1] = "| " .. table.concat(h, " | ") .. " |"
  out[2] = "| " .. table.concat(sep, " | ") .. " |"
  for _, r in ipairs(g.rows) do
    local c = {}
    for i, x in ipairs(r) do c[i] = cell(x) end
    out[#out + 1] = "| " .. table.concat(c, " | ") .. " |"
  end
  return table.concat(out, "\n")
end

local function is_svg(v)
  return type(v) == "string" and #v < 64 * 1024 * 1024 and
    (v:match("^%s*<%?xml[^\n]*\n%s*<svg") ~= nil or v:match("^%s*<svg[%s>]") ~= nil)
end

local K = {}

-- The mime bundle of the values a cell returned: text/plain as the REPL
-- prints them; HTML and Markdown tables for results; SVG text as an image.
function K.bundle(...)
  local n = select("#", ...)
  local parts, multi = {}, false
  for i = 1, n do
    parts[i] = pretty((select(i, ...)))
    if parts[i]:find("\n") then multi = true end
  end
  local b = {["text/plain"] = table.concat(parts, multi and "\n" or "\t")}
  if n == 1 then
    local v = ...
    if is_svg(v) then
      b["image/svg+xml"] = v
      b["text/plain"] = "<svg image, " .. #v .. " bytes>"
    else
      local g = grid(v)
      if g then
        b["text/html"] = html(g)
        b["text/markdown"] = markdown(g)
      end
    end
  end
  return b
end

-- Help text for the name (or expression) `s`: tl.help's text, else the
-- value's type and pretty form; nil when there is nothing.
function K.inspect(s)
  local out = {}
  local saved = print
  print = function(...)
    local t = table.pack(...)
    for i = 1, t.n do t[i] = tostring(t[i]) end
    out[#out + 1] = table.concat(t, "\t")
  end
  local ok = pcall(tl.help, s)
  print = saved
  local text = table.concat(out, "\n")
  if ok and text ~= "" and not text:match("^no help for") and not text:match("^Topics under") then
    return text
  end
  local f = load("return " .. s, "=inspect", "t")
  if not f then return nil end
  local good, v = pcall(f)
  if not good or v == nil then return nil end
  local p = pretty(v)
  if #p > 4000 then p = p:sub(1, 4000) .. "\n..." end
  return s .. ": " .. type(v) .. "\n" .. p
end

function private.kernel_setup(publish, now, session)
  local function show(v, opts)
    opts = opts or {}
    local b
    if type(v) == "table" and getmetatable(v) == nil and next(v) ~= nil then
      b = {}
      for k, x in pairs(v) do
        if type(k) ~= "string" or not k:find("/", 1, true) then b = nil; break end
        b[k] = tostring(x)
      end
    end
    b = b or K.bundle(v)
    publish(b, opts.id, opts.update and true or false)
  end
  tl.display = show
  tl.doc("tl.display", "tl.display(v [, {id=, update=}]) (notebooks): show v as a cell output now.\n" ..
    "v may be a {[\"text/html\"]=..., ...} mime bundle; id= names the output so a\n" ..
    "later call with update=true replaces it in place.", show)

  local plot = tl.plot
  if type(plot) ~= "table" then return K end
  pcall(plot.terminal, "svg")

  -- Draw inline when the caller asked for no particular output.
  local function inline(opts)
    if opts ~= nil and type(opts) ~= "table" then return false end
    if opts and (opts.file ~= nil or opts.format ~= nil or opts.terminal ~= nil) then return false end
    local ok, term = pcall(plot.terminal)
    return ok and term == "svg"
  end

  for _, kind in ipairs {"calibration", "history", "compare", "gates"} do
    local orig = plot[kind]
    if type(orig) == "function" and type(plot.svg) == "function" then
      local function wrapped(data, opts, ...)
        if not inline(opts) then return orig(data, opts, ...) end
        local svg, err = plot.svg(kind, data, opts)
        if not svg then return nil, err end
        publish({["image/svg+xml"] = svg, ["text/plain"] = "<" .. kind .. " plot>"}, nil, false)
        return -- shown: nothing to return, as at the terminal
      end
      plot[kind] = wrapped
      values[wrapped] = values[orig]
    end
  end

  local orig_live = plot.live
  if type(orig_live) ~= "function" or type(plot.svg) ~= "function" then return K end
  local live = {}
  live.__index = live
  live.__name = "tl.plot.live"
  local count = 0
  function live.update(self, h, force)
    self.calls = self.calls + 1
    if self.closed then return false end
    local t = now()
    if not force and t - self.last < self.interval then return false end
    self.last = t
    local ok, svg = pcall(plot.svg, "history", h, self.opts)
    if not ok or type(svg) ~= "string" then
      self.skipped = self.skipped + 1
      return false
    end
    publish({["image/svg+xml"] = svg, ["text/plain"] = "<live plot>"}, self.id, self.frames > 0)
    self.frames = self.frames + 1
    return true
  end
  function live.close(self) self.closed = true end
  function live.stats(self)
    return {frames = self.frames, skipped = self.skipped, calls = self.calls,
      closed = self.closed, terminal = "svg"}
  end
  function live.__tostring(self)
    return string.format("live plot (inline svg, every %g s, %d frames%s)", self.interval,
      self.frames, self.closed and ", closed" or "")
  end
  local function wrapped_live(opts)
    if not inline(opts) then return orig_live(opts) end
    opts = opts or {}
    local o = {}
    for k, v in pairs(opts) do
      if k ~= "interval" then o[k] = v end
    end
    count = count + 1
    return setmetatable({opts = o, interval = opts.interval or 1.0, last = -math.huge,
      frames = 0, skipped = 0, calls = 0, closed = false, terminal = "svg",
      id = session .. "-live-" .. count}, live)
  end
  plot.live = wrapped_live
  values[wrapped_live] = values[orig_live]
  return K
end
