#!/usr/bin/env python3
"""PyTorch reference for benchmarks/lm: the transformer of
examples/brown-transformer.yaml (train/transformer.go) in PyTorch, one
thread, the same batch, data split, vocabulary, loss and Adam settings.

    python3 benchmarks/lm/torch_lm.py --steps 20             # ms/step, tokens/s
    python3 benchmarks/lm/torch_lm.py --minutes 20 --data ../shared/data/brown
                                    # train; held-out bits per character as it goes

Model: token + position embeddings (N(0, 0.02)); 4 pre-layer-norm blocks of
causal 4-head self-attention (one qkv projection, output projection) and a
4x GELU (tanh) MLP, residual projections N(0, 0.02/sqrt(2*layers)); final
layer norm, untied output layer. Data: the text's distinct characters of
the first 90 % (after an unknown token 0), windows of 65 characters at
stride 64; the last 10 % held out.
"""
import argparse
import gzip
import math
import os
import sys
import time

_threads = "1"
for _i, _a in enumerate(sys.argv):
    if _a == "--threads" and _i + 1 < len(sys.argv):
        _threads = sys.argv[_i + 1]
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = _threads

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

LAYERS, WIDTH, HEADS, CONTEXT, BATCH = 4, 128, 4, 64, 32


class Block(nn.Module):
    def __init__(self, d, h):
        super().__init__()
        self.h = h
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.fc, self.mlp = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.h, d // self.h).transpose(1, 2) for z in (q, k, v))
        s = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.h)
        s = s.masked_fill(mask[:t, :t], float("-inf"))
        o = (F.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(o)
        return x + self.mlp(F.gelu(self.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, WIDTH), nn.Embedding(CONTEXT, WIDTH)
        self.blocks = nn.ModuleList(Block(WIDTH, HEADS) for _ in range(LAYERS))
        self.lnf, self.head = nn.LayerNorm(WIDTH), nn.Linear(WIDTH, vocab)
        self.register_buffer("mask", torch.triu(torch.ones(CONTEXT, CONTEXT, dtype=torch.bool), 1))
        for n, p in self.named_parameters():
            if n.endswith("bias"):
                nn.init.zeros_(p)
            elif p.dim() >= 2:
                std = 0.02 / math.sqrt(2 * LAYERS) if n.endswith(("proj.weight", "mlp.weight")) else 0.02
                nn.init.normal_(p, 0, std)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x, self.mask)
        return self.head(self.lnf(x))


def load(path):
    for f in sorted(os.listdir(path)):
        if f.endswith((".txt", ".txt.gz")) and not f.upper().startswith(("SHA256SUMS", "README")):
            raw = open(os.path.join(path, f), "rb").read()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            text = raw.decode("utf-8")
            cut = len(text) - int(0.1 * len(text))
            vocab = ["\ufffd"] + sorted(set(text[:cut]))
            ids = {c: i for i, c in enumerate(vocab)}
            tok = torch.tensor([ids.get(c, 0) for c in text], dtype=torch.long)
            return tok[:cut], tok[cut:], len(vocab)
    sys.exit(f"no .txt or .txt.gz in {path}")


def windows(tok):
    n = (len(tok) - 1) // CONTEXT
    return tok[: n * CONTEXT + 1].unfold(0, CONTEXT + 1, CONTEXT)


def evaluate(model, held, limit=0):
    model.eval()
    w = windows(held)
    if limit:
        w = w[:limit]
    total, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(w), 256):
            b = w[i:i + 256]
            logits = model(b[:, :-1])
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), b[:, 1:].reshape(-1), reduction="sum").item()
            n += b[:, 1:].numel()
    model.train()
    return total / n / math.log(2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--minutes", type=float, default=0)
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-windows", type=int, default=0, help="evaluate on the first N held-out windows as it goes (all at the end)")
    ap.add_argument("--data", default="")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--lr", type=float, default=2e-3)
    a = ap.parse_args()
    torch.set_num_threads(int(a.threads))
    torch.manual_seed(1)
    if a.data:
        train, held, vocab = load(a.data)
    else:
        vocab = 86
        train, held = torch.randint(0, vocab, (100 * BATCH * (CONTEXT + 1),)), None
    model = GPT(vocab)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(0.9, 0.99), eps=1e-8)
    w = windows(train)
    g = torch.Generator().manual_seed(1)
    perm, pos = torch.randperm(len(w), generator=g), 0

    def step():
        nonlocal perm, pos
        if pos + BATCH > len(perm):
            perm, pos = torch.randperm(len(w), generator=g), 0
        b = w[perm[pos:pos + BATCH]]
        pos += BATCH
        logits = model(b[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, vocab), b[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()

    if a.minutes <= 0:
        step()  # warm-up
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.steps):
            step()
        sec = (time.perf_counter() - t0) / a.steps
        cpu = (time.process_time() - c0) / a.steps
        print(f"torch-transformer {sec * 1e3:.1f} ms/step {BATCH * CONTEXT / sec:.0f} tokens/s {cpu * 1e3:.1f} cpu-ms/step")
        return
    # Constant learning rate over a time budget (no schedule needs the end).
    t0, n = time.perf_counter(), 0
    print(f"# torch {torch.__version__}, {sum(p.numel() for p in model.parameters())} parameters, {a.threads} thread(s)")
    while time.perf_counter() - t0 < a.minutes * 60:
        loss = step()
        n += 1
        if n % a.eval_every == 0:
            el = time.perf_counter() - t0
            print(f"step {n} {el / 60:.1f} min train loss {loss:.3f} held-out {evaluate(model, held, a.eval_windows):.3f} bits/char {n * BATCH * CONTEXT / el:.0f} tokens/s", flush=True)
    el = time.perf_counter() - t0
    print(f"final step {n} {el / 60:.1f} min held-out {evaluate(model, held):.3f} bits/char", flush=True)


if __name__ == "__main__":
    main()
