-- Run by tests/mpi/test_mpi.sh: a tiny m:fit whose log only rank 0 prints.
tl.threads(1)
local d = tl.datasets.census()
local m = tl.model{data = d, backbone = tl.mmoe{experts = 2, expert = {8}}, tower = tl.mlp{4},
                   emb = 4, batch = 256, seed = 3}
m:fit{data = d.train, epochs = 1, max_steps = 5}
