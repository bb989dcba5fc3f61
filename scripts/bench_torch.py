"""The B1 benchmark models in PyTorch, for the same-run comparison of `make bench`.

Prints "key value" lines like scripts/bench_b1.c. Thread counts are pinned
before torch is imported: OPENBLAS_NUM_THREADS and torch.set_num_threads.
Each model runs in a child process (this script with a model name), so that
its peak resident memory (ru_maxrss from wait4: the torch import, warm-up,
timed training and inference) is its own, as in bench_b1.
usage: bench_torch.py [threads] [reps] [model | only=model]
(a model name runs it in this process; only=model measures just that one, in a child)
"""
import os
import subprocess
import sys

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
os.environ["OMP_NUM_THREADS"] = str(threads)
KINDS = ("shared_bottom", "mmoe", "ple")

if len(sys.argv) <= 3 or sys.argv[3].startswith("only="):
    if len(sys.argv) > 3:
        KINDS = (sys.argv[3][len("only="):],)
    for kind in KINDS:
        child = subprocess.Popen([sys.executable, __file__, str(threads), str(reps), kind],
                                 stdout=subprocess.PIPE, text=True)
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != 0:
            sys.exit("bench_torch.py: %s failed" % kind)
        print(out, end="")
        print("%s_rss_mb %.0f" % (kind, usage.ru_maxrss / 1024.0))  # ru_maxrss in KiB
        sys.stdout.flush()
    sys.exit(0)

import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(threads)
torch.manual_seed(42)

N, FIELDS, VOCAB, EMB, DENSE, B = 1024 * 24, 8, 10000, 16, 16, 1024
IN = FIELDS * EMB + DENSE


def mlp(sizes):
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers)


class Model(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.emb = nn.ModuleList(nn.Embedding(VOCAB, EMB) for _ in range(FIELDS))
        if kind == "shared_bottom":
            self.bottom = mlp([IN, 256, 128])
        elif kind == "mmoe":
            self.experts = nn.ModuleList(mlp([IN, 256, 128]) for _ in range(8))
            self.gates = nn.ModuleList(nn.Linear(IN, 8) for _ in range(2))
        else:  # PLE, one CGC level: 4 shared + 2 specific per task
            self.shared = nn.ModuleList(mlp([IN, 256, 128]) for _ in range(4))
            self.specific = nn.ModuleList(
                nn.ModuleList(mlp([IN, 256, 128]) for _ in range(2)) for _ in range(2))
            self.gates = nn.ModuleList(nn.Linear(IN, 6) for _ in range(2))
        self.towers = nn.ModuleList(nn.Sequential(mlp([128, 64]), nn.Linear(64, 1)) for _ in range(2))

    def forward(self, ids, dense):
        x = torch.cat([e(ids[:, f]) for f, e in enumerate(self.emb)] + [dense], dim=1)
        if self.kind == "shared_bottom":
            h = [self.bottom(x)] * 2
        elif self.kind == "mmoe":
            ex = torch.stack([e(x) for e in self.experts], dim=1)
            h = [(torch.softmax(g(x), dim=1).unsqueeze(2) * ex).sum(1) for g in self.gates]
        else:
            sh = [e(x) for e in self.shared]
            h = []
            for k in range(2):
                ex = torch.stack([e(x) for e in self.specific[k]] + sh, dim=1)
                h.append((torch.softmax(self.gates[k](x), dim=1).unsqueeze(2) * ex).sum(1))
        return [t(hk).squeeze(1) for t, hk in zip(self.towers, h)]


ids = torch.randint(0, VOCAB, (N, FIELDS))
dense = torch.randn(N, DENSE)
labels = (torch.rand(N, 2) < 0.3).float()
loss_fn = nn.BCEWithLogitsLoss()

kind = sys.argv[3]
model = Model(kind)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)


def epoch():
    perm = torch.randperm(N)
    for s in range(0, N, B):
        idx = perm[s:s + B]
        out = model(ids[idx], dense[idx])
        loss = loss_fn(out[0], labels[idx, 0]) + loss_fn(out[1], labels[idx, 1])
        opt.zero_grad()
        loss.backward()
        opt.step()


def infer():
    with torch.no_grad():
        for s in range(0, N, B):
            model(ids[s:s + B], dense[s:s + B])


epoch()
infer()
tr, inf = [], []
for _ in range(reps):
    t = time.perf_counter()
    epoch()
    tr.append(N / (time.perf_counter() - t))
    t = time.perf_counter()
    infer()
    inf.append(N / (time.perf_counter() - t))
print(f"{kind}_train {statistics.median(tr):.0f}")
print(f"{kind}_infer {statistics.median(inf):.0f}")
sys.stdout.flush()
