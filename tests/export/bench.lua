-- bench.lua — builds the models of tests/export/bench.sh: B1's layer sizes
-- (README Performance) on a small CSV (2 categorical fields, emb 16, 3 numeric),
-- trained one epoch, exported to C and ONNX into arg[1], with the C bench
-- input (ids from d:vocab, raw numbers) in arg[1]/rows.in.
local dir = arg[1]
local seed = 7
local function rnd() seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 end
local rows = {}
local f = assert(io.open(dir .. "/data.csv", "w"))
f:write("a,b,x,y,z,click,buy\n")
for i = 1, 4096 do
  local r = {a = "a" .. math.floor(rnd() * 50), b = "b" .. math.floor(rnd() * 500),
             x = string.format("%.3f", rnd() * 50), y = string.format("%.3f", rnd() * 9),
             z = string.format("%.3f", rnd())}
  local click = (rnd() + (r.a < "a2" and 0.4 or 0)) > 0.7 and 1 or 0
  rows[i] = r
  f:write(string.format("%s,%s,%s,%s,%s,%d,%d\n", r.a, r.b, r.x, r.y, r.z, click,
                        click == 1 and rnd() < 0.4 and 1 or 0))
end
f:close()
local d = tl.data.csv{path = dir .. "/data.csv", header = true, categorical = {"a", "b"},
  numeric = {"x", {"y", transform = "log1p"}, "z"},
  labels = {ctr = {column = "click", positive = "1"}, cvr = {column = "buy", positive = "1"}}, cache = false}
local models = {
  shared_bottom = tl.shared_bottom{bottom = {256, 128}},
  mmoe = tl.mmoe{experts = 8, expert = {256, 128}},
  ple = tl.ple{levels = 1, shared = 4, specific = 2, expert = {256, 128}},
}
for name, bb in pairs(models) do
  local m = tl.model{data = d, backbone = bb, towers = tl.mlp{64}, emb = 16, batch = 1024, seed = 1}
  m:fit{data = d.all, epochs = 1, verbose = false}
  m:export(dir .. "/" .. name .. ".c")
  m:export(dir .. "/" .. name .. ".onnx")
end
local va, vb = {}, {}
for i, s in ipairs(d:vocab("a")) do va[s] = i + 1 end
for i, s in ipairs(d:vocab("b")) do vb[s] = i + 1 end
f = assert(io.open(dir .. "/rows.in", "w"))
f:write(string.format("%d 2 3 2\n", #rows))
for _, r in ipairs(rows) do
  f:write(string.format("%d %d %s %s %s\n", va[r.a] or 0, vb[r.b] or 0, r.x, r.y, r.z))
end
f:close()
