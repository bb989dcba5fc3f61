"""The benchmark models in PyTorch, for the same-run comparison of `make bench`.

Prints "key value" lines like scripts/bench_b1.c. Thread counts are pinned
before torch is imported: OPENBLAS_NUM_THREADS, OMP_NUM_THREADS and
torch.set_num_threads. Each (model, loop) runs in a child process (this script
with that argument), so that its peak resident memory (ru_maxrss from wait4:
the torch import, warm-up, timed training and inference) is its own, as in
bench_b1.

Models: shared_bottom, mmoe, ple (benchmark B1) and paper_mmoe, paper_ple,
paper_dml (the papers' configuration, as bench_b1's paper rows).
Loops, so that towerlab is compared with the strongest plain PyTorch:
  typical  what most training scripts do: a torch.randperm shuffle and fancy
           indexing every step, zero_grad(), one nn.Embedding per field and one
           module per expert, inference under no_grad
  strong   batches sliced once before timing (same order every epoch, as
           towerlab runs in the bench: neither side shuffles),
           zero_grad(set_to_none=True), inference_mode; same modules as typical
  fused    the strong loop with the model written for speed: one embedding
           table (field offsets added when the batches are built), every
           expert's first layer in one GEMM and deeper layers as one bmm, all
           gates in one GEMM; this is how towerlab itself builds experts
The strongest PyTorch figure is the faster of strong and fused, round by round.
usage: bench_torch.py [threads] [reps] [model:loop | only=model:loop]
"""
import os
import subprocess
import sys

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
os.environ["OMP_NUM_THREADS"] = str(threads)

if len(sys.argv) <= 3 or sys.argv[3].startswith("only="):
    runs = [sys.argv[3][len("only="):]] if len(sys.argv) > 3 else [
        m + ":" + lp for m in ("shared_bottom", "mmoe", "ple") for lp in ("typical", "strong", "fused")]
    for run in runs:
        child = subprocess.Popen([sys.executable, __file__, str(threads), str(reps), run],
                                 stdout=subprocess.PIPE, text=True)
        out = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit("bench_torch.py: %s failed" % run)
        print(out, end="")
        print("%s_rss_mb %.0f" % (run.replace(":", "_"), usage.ru_maxrss / 1024.0))  # KiB
        sys.stdout.flush()
    sys.exit(0)

import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

torch.set_num_threads(threads)
torch.manual_seed(42)

kind, loop = sys.argv[3].split(":")
paper = kind.startswith("paper_")
if paper:  # emb 8, 3 experts [128] (PLE: 2 levels, 1 shared + 1 specific), towers [128, 80]
    N, FIELDS, VOCAB, EMB, DENSE, B, DROP = 512 * 48, 32, 100, 8, 7, 512, 0.5
    EXPERT, TOWER, RATES = [128], [128, 80], (0.06, 0.43)
else:  # B1: 8 fields x vocab 10,000 x emb 16 + 16 dense, experts [256, 128], towers [64]
    N, FIELDS, VOCAB, EMB, DENSE, B, DROP = 1024 * 24, 8, 10000, 16, 16, 1024, 0.0
    EXPERT, TOWER, RATES = [256, 128], [64], (0.3, 0.3)
IN, K = FIELDS * EMB + DENSE, 2
FUSED = loop == "fused"


def mlp(sizes):
    layers = []
    for a, b in zip(sizes, sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()] + ([nn.Dropout(DROP)] if DROP else [])
    return nn.Sequential(*layers)


class Experts(nn.Module):
    """E experts of widths [n_in] + sizes on one input; forward gives [B, E, H]."""

    def __init__(self, n_in, E, sizes):
        super().__init__()
        self.E = E
        if FUSED:
            self.first = nn.Linear(n_in, E * sizes[0])
            dims = list(zip(sizes, sizes[1:]))
            self.w = nn.ParameterList(nn.Parameter(torch.randn(E, a, b) * a ** -0.5) for a, b in dims)
            self.b = nn.ParameterList(nn.Parameter(torch.zeros(E, 1, b)) for _, b in dims)
            self.drop = nn.Dropout(DROP)
        else:
            self.each = nn.ModuleList(mlp([n_in] + sizes) for _ in range(E))

    def forward(self, x):
        if not FUSED:
            return torch.stack([e(x) for e in self.each], dim=1)
        z = self.drop(torch.relu(self.first(x)))
        if not len(self.w):
            return z.view(x.shape[0], self.E, -1)
        z = z.view(x.shape[0], self.E, -1).transpose(0, 1)  # [E, B, H]
        for w, b in zip(self.w, self.b):
            z = self.drop(torch.relu(torch.baddbmm(b, z, w)))
        return z.transpose(0, 1)


class Gates(nn.Module):
    """G softmax gates over n experts each, on one input; forward gives [B, G, n]."""

    def __init__(self, n_in, G, n):
        super().__init__()
        self.G, self.n = G, n
        if FUSED:
            self.all = nn.Linear(n_in, G * n)
        else:
            self.each = nn.ModuleList(nn.Linear(n_in, n) for _ in range(G))

    def forward(self, x):
        if FUSED:
            return torch.softmax(self.all(x).view(x.shape[0], self.G, self.n), dim=2)
        return torch.stack([torch.softmax(g(x), dim=1) for g in self.each], dim=1)


class CTFM(nn.Module):
    """DML's cross-task feature mining (PAPERS.md): attention over the task
    inputs, keys and values read a stop-gradient copy, residual add."""

    def __init__(self, d):
        super().__init__()
        self.task = nn.Parameter(torch.randn(K, d) * 0.01)
        self.q, self.k, self.v = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.drop, self.scale = nn.Dropout(DROP), d ** -0.5

    def forward(self, h):
        x = torch.stack(h, dim=1) + self.task  # [B, K, d]
        xs = x.detach()
        q, k, v = torch.relu(self.q(x)), torch.relu(self.k(xs)), torch.relu(self.v(xs))
        c = self.drop(torch.softmax(q @ k.transpose(1, 2) * self.scale, dim=2) @ v)
        return [hk + c[:, i] for i, hk in enumerate(h)]


class GKD(nn.Module):
    """DML's global knowledge distillation for task k (PAPERS.md)."""

    def __init__(self, w):
        super().__init__()
        self.u = nn.Sequential(nn.Linear(K * w, w), nn.ReLU(), nn.Dropout(DROP))
        self.a = nn.Linear(2 * w, w)
        self.out = nn.Linear(w, 1, bias=False)

    def forward(self, g, t):
        u = self.u(g)
        return self.out(torch.sigmoid(self.a(torch.cat([t, u], dim=1))) * u).squeeze(1)


class Model(nn.Module):
    def __init__(self):
        super().__init__()
        if FUSED:
            self.emb = nn.Embedding(FIELDS * VOCAB, EMB)
        else:
            self.emb = nn.ModuleList(nn.Embedding(VOCAB, EMB) for _ in range(FIELDS))
        d = EXPERT[-1]
        if kind == "shared_bottom":
            self.bottom = mlp([IN] + EXPERT)
        elif kind in ("mmoe", "paper_mmoe", "paper_dml"):
            E = 3 if paper else 8
            self.experts, self.gates = Experts(IN, E, EXPERT), Gates(IN, K, E)
        elif kind == "ple":  # one CGC level: 4 shared + 2 specific per task
            self.experts, self.gates = Experts(IN, 2 * 2 + 4, EXPERT), Gates(IN, K, 6)
        else:  # paper_ple: 2 levels of 1 shared + 1 specific per task
            self.experts1, self.gates1 = Experts(IN, K + 1, EXPERT), Gates(IN, K, 2)
            self.gate1_shared = Gates(IN, 1, K + 1)
            self.own2 = nn.ModuleList(Experts(d, 1, EXPERT[-1:]) for _ in range(K))
            self.shared2 = Experts(d, 1, EXPERT[-1:])
            self.gates2 = nn.ModuleList(Gates(d, 1, 2) for _ in range(K))
        self.towers = nn.ModuleList(mlp([d] + TOWER) for _ in range(K))
        self.logits = nn.ModuleList(nn.Linear(TOWER[-1], 1) for _ in range(K))
        if kind == "paper_dml":
            self.ctfm = CTFM(d)
            self.gkd = nn.ModuleList(GKD(TOWER[-1]) for _ in range(K))

    def forward(self, ids, dense):
        if FUSED:
            x = torch.cat([self.emb(ids).flatten(1), dense], dim=1)
        else:
            x = torch.cat([e(ids[:, f]) for f, e in enumerate(self.emb)] + [dense], dim=1)
        if kind == "shared_bottom":
            h = [self.bottom(x)] * K
        elif kind in ("mmoe", "paper_mmoe", "paper_dml"):
            mixed = self.gates(x) @ self.experts(x)  # [B, K, E] x [B, E, H]
            h = [mixed[:, k] for k in range(K)]
        elif kind == "ple":  # task k's gate reads its 2 experts and the 4 shared ones
            ex, g = self.experts(x), self.gates(x)
            h = [(g[:, k:k + 1] @ torch.cat([ex[:, 2 * k:2 * k + 2], ex[:, 4:]], dim=1)).squeeze(1)
                 for k in range(K)]
        else:  # level 1: experts [task 1, task 2, shared]; task gates over own + shared
            ex, g = self.experts1(x), self.gates1(x)
            ins = [(g[:, k:k + 1] @ ex[:, [k, K]]).squeeze(1) for k in range(K)]
            ins.append((self.gate1_shared(x) @ ex).squeeze(1))
            sh = self.shared2(ins[K])
            h = [(self.gates2[k](ins[k]) @ torch.cat([self.own2[k](ins[k]), sh], dim=1)).squeeze(1)
                 for k in range(K)]
        if kind == "paper_dml":
            h = self.ctfm(h)
        t = [tw(hk) for tw, hk in zip(self.towers, h)]
        z = [lg(tk).squeeze(1) for lg, tk in zip(self.logits, t)]
        if kind == "paper_dml":
            g = torch.cat(t, dim=1).detach()
            z = [zk + self.gkd[k](g, t[k]) for k, zk in enumerate(z)]
        return z


ids = torch.randint(0, VOCAB, (N, FIELDS))
dense = torch.randn(N, DENSE)
labels = torch.stack([(torch.rand(N) < r).float() for r in RATES], dim=1)
loss_fn = nn.BCEWithLogitsLoss()
model = Model()
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
offsets = torch.arange(FIELDS) * VOCAB
model_ids = ids + offsets if FUSED else ids
batches = [(model_ids[s:s + B].contiguous(), dense[s:s + B].contiguous(),
            labels[s:s + B, 0].contiguous(), labels[s:s + B, 1].contiguous()) for s in range(0, N, B)]


def step(i, d, y0, y1):
    out = model(i, d)
    loss = loss_fn(out[0], y0) + loss_fn(out[1], y1)
    opt.zero_grad(set_to_none=loop != "typical")
    loss.backward()
    opt.step()


def epoch():
    model.train()
    if loop == "typical":
        perm = torch.randperm(N)
        for s in range(0, N, B):
            idx = perm[s:s + B]
            step(model_ids[idx], dense[idx], labels[idx, 0], labels[idx, 1])
    else:
        for b in batches:
            step(*b)


def infer():
    model.eval()
    with (torch.no_grad() if loop == "typical" else torch.inference_mode()):
        for b in batches:
            model(b[0], b[1])


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
key = kind + "_" + loop
print(f"{key}_train {statistics.median(tr):.0f}")
print(f"{key}_infer {statistics.median(inf):.0f}")
sys.stdout.flush()
