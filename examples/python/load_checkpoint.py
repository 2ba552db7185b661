#!/usr/bin/env python3
"""Load a swarmtrain checkpoint into PyTorch and evaluate it on MNIST.

A checkpoint (`swarmtrain export` or `swarmtrain train --output`) is a
safetensors file holding the state_dict of a torch.nn.Sequential, with the
module described in its metadata. This script builds that module from the
metadata alone, loads the tensors with load_state_dict(strict=True) and no
renaming or transposing, and counts correct predictions on the MNIST test
set, fed as the metadata's input normalisation says. Where the metadata
carries the swarm's own metric for the same images, it compares: a mismatch
exits 1.

    python3 load_checkpoint.py model.safetensors --mnist DIR [--limit N] [--json]

Needs torch and numpy only (Debian: apt-get install python3-torch
python3-numpy); safetensors.torch.load_file reads the same file where that
package is installed.
"""
import argparse
import gzip
import json
import os
import struct
import sys

import numpy as np
import torch
from torch import nn

LAYOUT = "torch/1"  # the only swarmtrain.layout this script knows
CLASSES = 10


def read_safetensors(path):
    """Returns ({name: tensor}, metadata) of a safetensors file of F32 tensors."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    meta = header.pop("__metadata__", {})
    data = raw[8 + n:]
    tensors = {}
    for name, e in header.items():
        if e["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {e['dtype']}, expected F32")
        start, end = e["data_offsets"]
        arr = np.frombuffer(data[start:end], dtype="<f4").reshape(e["shape"])
        tensors[name] = torch.from_numpy(arr.copy())
    return tensors, meta


def build(meta):
    """The nn.Sequential the metadata describes (swarmtrain.model)."""
    if meta.get("swarmtrain.layout") != LAYOUT:
        sys.exit(f"swarmtrain.layout is {meta.get('swarmtrain.layout')!r}; this script reads {LAYOUT!r}")
    spec = json.loads(meta["swarmtrain.model"])
    c, h, w = json.loads(meta["swarmtrain.input"])["shape"]
    layers = []
    if spec["kind"] == "mlp":
        layers.append(nn.Flatten())
        n = c * h * w
        for width in spec["hidden"]:
            layers += [nn.Linear(n, width), nn.ReLU()]
            n = width
        layers.append(nn.Linear(n, CLASSES))
    elif spec["kind"] == "cnn":
        n = c
        for width in spec["channels"]:
            layers += [nn.Conv2d(n, width, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(2)]
            n = width
            h, w = h // 2, w // 2
        layers += [nn.Flatten(), nn.Linear(n * h * w, spec["dense"]), nn.ReLU(), nn.Linear(spec["dense"], CLASSES)]
    else:
        sys.exit(f"model kind {spec['kind']!r}: this script builds mlp and cnn")
    return nn.Sequential(*layers)


def read_idx(path):
    """An IDX file (gzipped or not) as a numpy array of uint8."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    dims = raw[3]
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(mnist, name):
    for p in (os.path.join(mnist, name), os.path.join(mnist, name + ".gz")):
        if os.path.exists(p):
            return p
    sys.exit(f"--mnist {mnist}: no {name} or {name}.gz (swarmtrain data get mnist fetches it)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--mnist", default=os.path.join(os.environ.get("SWARMTRAIN_DATA", os.path.expanduser("~/.cache/swarmtrain/data")), "mnist"),
                    help="MNIST directory (default $SWARMTRAIN_DATA/mnist)")
    ap.add_argument("--limit", type=int, default=0, help="evaluate the first N test images only")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()

    tensors, meta = read_safetensors(args.checkpoint)
    model = build(meta)
    model.load_state_dict(tensors, strict=True)  # names and shapes as they are
    model.eval()
    module_matches = str(model) == meta.get("swarmtrain.module")

    inp = json.loads(meta["swarmtrain.input"])
    images = read_idx(find(args.mnist, "t10k-images-idx3-ubyte"))
    labels = read_idx(find(args.mnist, "t10k-labels-idx1-ubyte"))
    if args.limit > 0:
        images, labels = images[:args.limit], labels[:args.limit]
    # float32 throughout, in the order swarmtrain computes it.
    x = torch.from_numpy(images.astype(np.float32)).reshape(-1, *inp["shape"])
    x = (x / np.float32(inp["scale"]) - np.float32(inp["mean"])) / np.float32(inp["std"])
    y = torch.from_numpy(labels.astype(np.int64))
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(y), 500):
            logits = model(x[i:i + 500])
            correct += int((logits.argmax(dim=1) == y[i:i + 500]).sum())
            loss_sum += float(nn.functional.cross_entropy(logits, y[i:i + 500], reduction="sum"))
    n = len(y)
    out = {"samples": n, "correct": correct, "accuracy": correct / n, "loss": loss_sum / n,
           "module_matches_metadata": module_matches}
    claimed = None
    if meta.get("swarmtrain.test_samples") == str(n) and "swarmtrain.test_correct" in meta:
        claimed = int(meta["swarmtrain.test_correct"])
        out["swarmtrain_correct"] = claimed
    if args.json:
        print(json.dumps(out))
    else:
        print(model)
        if not module_matches:
            print("note: this module prints differently from the metadata's swarmtrain.module")
        where = f"swarm {meta['swarmtrain.swarm']} round {meta.get('swarmtrain.round', '?')}" if "swarmtrain.swarm" in meta else meta.get("swarmtrain.name", "")
        print(f"{args.checkpoint} ({where}): {correct}/{n} correct, accuracy {100 * correct / n:.2f} %, loss {loss_sum / n:.6f}")
        if claimed is not None:
            print(f"swarmtrain measured {claimed}/{n}: {'reproduced' if claimed == correct else 'NOT reproduced'}")
    if claimed is not None and claimed != correct:
        sys.exit(1)


if __name__ == "__main__":
    main()
