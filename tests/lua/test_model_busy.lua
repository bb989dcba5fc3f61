-- A fit's progress callback must not free what the fit is using (issue 25
-- items 1-3): m:close(), a nested m:fit and d:close() are refused with a
-- clear error, and the fit reports it; model and data stay usable.
local T = {}

local d
local function census()
  d = d or tl.datasets.census()
  return d
end

local function model()
  return tl.model{data = census(), backbone = tl.shared_bottom{bottom = {8}}, tower = tl.mlp{4},
                  emb = 2, batch = 256, seed = 1}
end

local function fit_calling(m, fn, data)
  local inner
  local ok, err = pcall(function()
    m:fit{data = (data or d).train, epochs = 1, max_steps = 3, verbose = false,
          progress = function() if not inner then inner = select(2, pcall(fn)) or "no error" end end}
  end)
  return inner, ok, err
end

function T.close_inside_progress_is_refused()
  local m = model()
  local inner = fit_calling(m, function() m:close() end)
  check(tostring(inner):find("m:close: the model is training", 1, true), tostring(inner))
  eq(m:history().steps[3].step, 3, "the fit ran to its end and the model is intact")
  m:close()
  raises(function() m:params() end, "closed")
end

function T.nested_fit_is_refused()
  local m = model()
  local inner = fit_calling(m, function()
    m:fit{data = d.train, epochs = 1, max_steps = 2, verbose = false}
  end)
  check(tostring(inner):find("m:fit: the model is training", 1, true), tostring(inner))
  eq(#m:history().steps, 3, "no steps appended by an inner fit")
end

function T.close_error_stops_fit_with_message()
  local m = model()
  local ok, err = pcall(function()
    m:fit{data = census().train, epochs = 1, verbose = false, progress = function() m:close() end}
  end)
  check(not ok and err:find("m:close: the model is training", 1, true), tostring(err))
  eq(#m:history().steps, 1)
end

function T.dataset_close_inside_progress_is_refused()
  local own = tl.datasets.census()
  local m = tl.model{data = own, backbone = tl.shared_bottom{bottom = {8}}, tower = tl.mlp{4},
                     emb = 2, batch = 256, seed = 1}
  local inner = fit_calling(m, function() own:close() end, own)
  check(tostring(inner):find("d:close: the dataset is in use", 1, true), tostring(inner))
  eq(#own.train > 0, true, "dataset still open")
  m:close()
  own:close() -- allowed once no fit runs
  raises(function() return #own.train end, "closed")
end

function T.other_model_may_fit_inside_a_callback()
  local m, m2 = model(), model()
  local inner = fit_calling(m, function()
    m2:fit{data = d.train, epochs = 1, max_steps = 2, verbose = false}
  end)
  eq(inner, "no error")
  eq(#m2:history().steps, 2)
end

function T.collected_while_busy_is_not_freed_under_fit()
  -- __gc of a model that is training (as lua_close would run it) must not
  -- free it: call the metamethod directly.
  local m = model()
  local gc = getmetatable(m).__gc
  local inner = fit_calling(m, function() gc(m) end)
  eq(inner, "no error")
  -- the fit freed it when it returned
  raises(function() m:params() end, "closed")
end

return T
