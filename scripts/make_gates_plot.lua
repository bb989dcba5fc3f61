-- make_gates_plot.lua — the README's picture of an MMoE's gates: train a small
-- MMoE on census (three tasks, one epoch) and draw the mean gate weight of
-- each expert per task with tl.plot.gates.
--   towerlab scripts/make_gates_plot.lua [out.svg]     (default docs/gates.svg)
local out = arg and arg[1] or "docs/gates.svg"
local d = tl.datasets.census{education = true}
local m = tl.model{data = d, backbone = tl.mmoe{experts = 6, expert = {64, 32}},
                   tower = tl.mlp{16}, emb = 8, batch = 512, seed = 1}
m:fit{data = d.train, valid = d.valid, epochs = 2, verbose = false, diagnostics = 20}
local g = m:gates(d.valid)
for t, name in ipairs(g.tasks) do
  local row = {}
  for e, w in ipairs(g.weights[t]) do row[e] = string.format("%.2f", w) end
  print(string.format("%-14s %s  entropy %.3f", name, table.concat(row, " "), g.entropy[name]))
end
assert(tl.plot.gates(m, d.valid, {file = out,
  title = "MMoE on census: mean gate weight of each expert per task (valid split)"}))
print("wrote " .. out)
