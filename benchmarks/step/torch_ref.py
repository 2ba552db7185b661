#!/usr/bin/env python3
"""PyTorch reference for benchmarks/step: the same models, batch, loss and
optimizer as BenchmarkStep, one training step (forward, backward, Adam
update) timed on the CPU with one thread.

    python3 benchmarks/step/torch_ref.py            # Debian: apt-get install python3-torch
    python3 benchmarks/step/torch_ref.py --steps 100 --threads 1

Prints one line per model: name, ms/step, samples/s and CPU ms/step
(compare.sh reads them).
The models match train.paramShapes: the MLP is 784-256-128-10 with biases;
the CNN is conv 5x5 (1->8, padding 2, no bias), ReLU, 2x2 max pool, conv
5x5 (8->16, no bias), ReLU, 2x2 max pool, dense 784->128 ReLU, dense
128->10. Loss: mean cross-entropy; Adam lr 1e-3, betas (0.9, 0.999), eps 1e-8.
"""
import argparse
import os
import sys
import time

# Debian's torch does its dense products through the system OpenBLAS, whose
# thread pool torch.set_num_threads does not govern: pin it (and OpenMP)
# before torch loads, so the reference really runs on one thread.
_threads = "1"
for _i, _a in enumerate(sys.argv):
    if _a == "--threads" and _i + 1 < len(sys.argv):
        _threads = sys.argv[_i + 1]
    elif _a.startswith("--threads="):
        _threads = _a.split("=", 1)[1]
for _v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = _threads

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

BATCH = 64

def mlp():
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(),
        nn.Linear(256, 128), nn.ReLU(),
        nn.Linear(128, 10))

def cnn():
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 8, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 7 * 7, 128), nn.ReLU(),
        nn.Linear(128, 10))

MODELS = [("mlp-256-128", mlp), ("cnn-8-16-128", cnn)]

def bench(make, steps, warmup):
    torch.manual_seed(1)
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.randn(BATCH, 784)
    y = torch.randint(0, 10, (BATCH,))

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()

    for _ in range(warmup):
        step()
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu) / steps

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=100, help="timed steps per model")
    ap.add_argument("--warmup", type=int, default=10, help="untimed steps first")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--model", default="", help="only models whose name contains this")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch {BATCH}")
    for name, make in MODELS:
        if args.model and args.model not in name:
            continue
        sec, cpu = bench(make, args.steps, args.warmup)
        print(f"{name} {sec * 1e3:.3f} ms/step {BATCH / sec:.0f} samples/s {cpu * 1e3:.3f} cpu-ms/step", flush=True)

if __name__ == "__main__":
    main()
