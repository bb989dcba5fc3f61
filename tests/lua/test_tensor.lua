-- Lua tensors (repl/l_tensor.c): construction, 1-based indexing, views,
-- conversions, printing, lifetime, and the error messages of misuse.
local T = {}

function T.from_nested_tables()
  local t = tl.tensor{{1, 2, 3}, {4, 5, 6}}
  eq(t:shape(), {2, 3})
  eq(t:dim(), 2)
  eq(t:numel(), 6)
  eq(#t, 2)
  eq(t:get(1, 1), 1.0)
  eq(t:get(2, 3), 6.0)
  eq(t:totable(), {{1, 2, 3}, {4, 5, 6}})
end

function T.rank1_and_rank3()
  local v = tl.tensor{0.5, -1, 2}
  eq(v:shape(), {3})
  eq(v[1], 0.5)
  eq(v[3], 2.0)
  v[2] = 7
  eq(v:get(2), 7.0)
  local c = tl.tensor{{{1, 2}, {3, 4}}, {{5, 6}, {7, 8}}}
  eq(c:shape(), {2, 2, 2})
  eq(c:get(2, 1, 2), 6.0)
  eq(c[2][2][1], 7.0)
end

function T.float32_rounding()
  local t = tl.tensor{0.1}
  near(t[1], 0.1, 1e-7)
  check(t[1] ~= 0.1, "values are stored as float32")
end

function T.zeros_ones_shapes()
  local z = tl.tensor.zeros(2, 3)
  eq(z:shape(), {2, 3})
  eq(z:sum(), 0.0)
  local o = tl.tensor.ones{4}
  eq(o:totable(), {1, 1, 1, 1})
  eq(tl.tensor.zeros(1, 2, 3, 4):numel(), 24)
end

function T.set_and_fill_return_self()
  local t = tl.tensor.zeros(2, 2)
  check(t:set(1, 2, 5) == t)
  eq(t:get(1, 2), 5.0)
  eq(t:get(2, 1), 0.0, "set wrote only one element (row-major, 1-based)")
  check(t:fill(3) == t)
  eq(t:sum(), 12.0)
end

function T.row_views_share_memory()
  local t = tl.tensor{{1, 2}, {3, 4}}
  local row = t[2]
  eq(row:shape(), {2})
  row[1] = 30
  eq(t:get(2, 1), 30.0, "a row is a view")
  check(tostring(row):find("(view)", 1, true), "views say so")
  local copy = row:clone()
  copy[2] = 99
  eq(t:get(2, 2), 4.0, "clone copies")
end

function T.view_keeps_parent_alive()
  local row = tl.tensor{{1, 2}, {3, 4}}[1]
  collectgarbage()
  collectgarbage()
  eq(row:totable(), {1, 2})
end

function T.copy_constructor()
  local a = tl.tensor{1, 2}
  local b = tl.tensor(a)
  b[1] = 5
  eq(a[1], 1.0)
  eq(b[1], 5.0)
end

function T.randn_seeded_is_reproducible()
  local a = tl.tensor.randn(3, 4, {seed = 7})
  local b = tl.tensor.randn(3, 4, {seed = 7})
  local c = tl.tensor.randn(3, 4, {seed = 8})
  eq(a:totable(), b:totable())
  check(not pcall(eq, a:totable(), c:totable()), "different seeds differ")
  local s = tl.tensor.randn({1000}, {seed = 1, scale = 2})
  local sum, sq = 0, 0
  for i = 1, 1000 do sum = sum + s[i]; sq = sq + s[i] ^ 2 end
  near(sum / 1000, 0, 0.3)
  near(math.sqrt(sq / 1000), 2, 0.3)
end

function T.default_seed_stream_follows_tl_seed()
  local old = tl.seed
  tl.seed = 123
  local a1, a2 = tl.tensor.randn(4), tl.tensor.randn(4)
  tl.seed = 124
  local c1 = tl.tensor.randn(4)
  tl.seed = 123 -- a draw that sees a changed tl.seed restarts the stream
  local b1 = tl.tensor.randn(4)
  tl.seed = old
  check(not pcall(eq, a1:totable(), a2:totable()), "successive draws differ")
  eq(a1:totable(), b1:totable(), "same tl.seed, same stream")
  check(not pcall(eq, a1:totable(), c1:totable()), "another tl.seed, another stream")
end

function T.rand_is_uniform()
  local u = tl.tensor.rand(500, {seed = 3, scale = 1})
  for i = 1, 500 do check(u[i] >= -1 and u[i] <= 1) end
end

function T.tostring_shows_shape_and_corners()
  local s = tostring(tl.tensor{{1, 2}, {3, 4}})
  check(s:find("tl.tensor[2, 2]", 1, true), s)
  check(s:find("4"), s)
  local big = tl.tensor.zeros(50, 50)
  big:set(50, 50, 9)
  local b = tostring(big)
  check(b:find("...", 1, true), "elides the middle")
  check(b:find("9"), "shows the last corner")
  check(#b < 2000, "bounded output")
end

function T.close_frees_and_marks()
  local t = tl.tensor.zeros(3)
  do
    local c <close> = t
  end
  eq(tostring(t), "tl.tensor (closed)")
  raises(function() return t:numel() end, "tensor is closed")
end

function T.errors_name_the_problem()
  raises(function() return tl.tensor{} end, "tl.tensor: empty table at dimension 1")
  raises(function() return tl.tensor{{1, 2}, {3}} end, "row[2] has 1 elements, expected 2")
  raises(function() return tl.tensor{1, "x"} end, "element[2] must be a number, got string")
  raises(function() return tl.tensor(5) end, "table of numbers expected")
  raises(function() return tl.tensor.zeros(0, 2) end, "dimension 1 must be a positive integer")
  raises(function() return tl.tensor.zeros(1, 1, 1, 1, 1) end, "at most 4 dimensions")
  raises(function() return tl.tensor.zeros() end, "expected a shape")
  local t = tl.tensor.zeros(2, 3)
  raises(function() return t:get(1) end,
         "tensor:get: expected 2 indices for a tensor of shape [2, 3], got 1")
  raises(function() return t:get(3, 1) end,
         "tensor:get: index 3 out of range for dimension 1 of size 2")
  raises(function() return t:get(1, 0) end, "index 0 out of range for dimension 2 of size 3")
  raises(function() return t[0] end, "index 0 out of range")
  raises(function() t[1] = 2 end, "needs a rank-1 tensor")
  raises(function() return t:set(1, 1) end, "expected 2 indices and a value")
  raises(function() return tl.tensor.randn(2, {seed = "x"}) end,
         "tl.tensor.randn: field 'seed' must be a non-negative integer, got string 'x'")
  raises(function() return tl.tensor.randn(2, {sed = 1}) end,
         "tl.tensor.randn: unknown field 'sed' (expected one of: seed, scale)")
  raises(function() return t.get(5) end, "tl.tensor expected, got number")
end

function T.methods_are_documented()
  local t = tl.tensor.zeros(1)
  local out = {}
  local old = print
  print = function(s) out[#out + 1] = s end
  local ok, err = pcall(tl.help, t.get)
  print = old
  check(ok, err)
  check(out[1]:find("t:get(i, j, ...)", 1, true), out[1])
end

return T
