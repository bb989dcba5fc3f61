-- make_checkpoints.lua — seed corpus for fuzz_checkpoint: small real
-- checkpoints of every backbone, DML, CrossDistil, a calibrated model and
-- each weighting strategy, trained a few steps on the Ali-CCP test sample.
--   towerlab fuzz/make_checkpoints.lua [outdir=fuzz/corpus/checkpoint]
local out = arg[1] or "fuzz/corpus/checkpoint"
os.execute("mkdir -p " .. out)
local d = tl.data.csv{path = "tests/data/rechub_mtl_samples/ali_ccp_train_sample.csv",
                      categorical = {"101", "121", "205", "301"}, numeric = {"D508", "D509"},
                      labels = {click = {column = "click", positive = "1"},
                                purchase = {column = "purchase", positive = "1"}},
                      split = {train = 0.6, valid = 0.2, test = 0.2}}
local function save(name, opts, fit, after)
  opts.data = d
  opts.emb = opts.emb or 2
  opts.tower = opts.tower or tl.mlp{2}
  opts.batch = 8
  local m = tl.model(opts)
  m:fit(fit or {data = d.train, epochs = 1, max_steps = 2, verbose = false})
  if after then after(m) end
  m:save(out .. "/" .. name .. ".tlm")
  print("saved " .. name)
end
save("shared_bottom", {backbone = tl.shared_bottom{bottom = {4}}})
save("omoe", {backbone = tl.omoe{experts = 2, expert = {3}}})
save("mmoe", {backbone = tl.mmoe{experts = 2, expert = {3}}})
save("ple", {backbone = tl.ple{levels = 2, shared = 1, specific = 1, expert = {3}}})
save("esmm", {backbone = tl.esmm{}})
save("aitm", {backbone = tl.aitm{}})
for _, w in ipairs{"uncertainty", "gradnorm", "dwa", "pcgrad"} do
  save("mmoe_" .. w, {backbone = tl.mmoe{experts = 2, expert = {3}}, weighting = w})
end
save("dml", {backbone = tl.shared_bottom{bottom = {4}}, mutual = tl.dml{}})
save("dml_nostop", {backbone = tl.mmoe{experts = 2, expert = {3}}, mutual = tl.dml{stop_grad = false, gkd_layers = 2}})
-- calib_every: the teachers' isotonic calibrators exist (CALB) after 3 steps
save("crossdistil", {backbone = tl.shared_bottom{bottom = {4}},
                     distill = tl.crossdistil{pairs = {{"click", "purchase"}}, calibrate = "isotonic",
                                              calib_data = "valid", calib_every = 2}},
     {data = d.train, valid = d.valid, epochs = 1, max_steps = 3, verbose = false})
save("crossdistil_platt", {backbone = tl.shared_bottom{bottom = {4}},
                           distill = tl.crossdistil{pairs = {{"click", "purchase"}}, teacher_grad = true,
                                                    calibrate = "platt", calib_data = "train"}})
save("calibrated", {backbone = tl.mmoe{experts = 2, expert = {3}}}, nil,
     function(m) tl.calibrate(m, d.valid, "isotonic") end)
save("calibrated_platt", {backbone = tl.shared_bottom{bottom = {4}}}, nil,
     function(m) tl.calibrate(m, d.all, "platt") end)
save("unfitted_sgd", {backbone = tl.shared_bottom{bottom = {4}}},
     {data = d.train, epochs = 1, max_steps = 1, optim = tl.optim.sgd{lr = 0.1, momentum = 0.9}, verbose = false})
