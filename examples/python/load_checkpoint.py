#!/usr/bin/env python3
"""Load a swarmtrain checkpoint into PyTorch and evaluate it.

A checkpoint (`swarmtrain export` or `swarmtrain train --output`) is a
safetensors file holding a torch state_dict, with the module described in
its metadata. This script builds that module from the metadata alone (an
mlp or cnn nn.Sequential of any input shape and class count, or the
decoder-only transformer), loads the tensors with
load_state_dict(strict=True) and no renaming or transposing, and evaluates:

- an image model: correct predictions on an IDX test set (t10k- or test-
  images and labels, gzipped or not), fed with the metadata's input
  normalisation (MNIST's constants, or an own IDX set's pinned mean/std);
- a transformer: bits per character on a text dataset's held-out tail (the
  last data.held_out of its characters, 0.1 by default), the windows
  swarmtrain evaluates: Context+1 tokens at stride Context.

Where the metadata carries swarmtrain's own figures for the same samples,
it compares: a different count of correct predictions exits 1.

    python3 load_checkpoint.py model.safetensors [--data DIR] [--limit N] [--json]

DIR defaults to $SWARMTRAIN_DATA/<data.name of the checkpoint's config>
(mnist when it has none). Needs torch and numpy only (Debian: apt-get
install python3-torch python3-numpy).
"""
import argparse
import gzip
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

LAYOUT = "torch/1"  # the only swarmtrain.layout this script knows
UNKNOWN = "\ufffd"  # token 0 of a text vocabulary: a character the training split lacks
SIDE_FILES = ("SHA256SUMS", "SHA1SUMS", "MD5SUMS", "README", "LICENSE", "LICENCE")


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


class Block(nn.Module):
    """A pre-layer-norm block, named as swarmtrain names its tensors."""

    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.qkv, self.attn.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Module()
        self.mlp.fc, self.mlp.proj = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x, mask):
        b, t, d = x.shape
        q, k, v = self.attn.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        s = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        s = s.masked_fill(mask[:t, :t], float("-inf"))
        o = (F.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.attn.proj(o)
        return x + self.mlp.proj(F.gelu(self.mlp.fc(self.ln2(x)), approximate="tanh"))


class GPT(nn.Module):
    """swarmtrain's transformer (train/transformer.go; benchmarks/lm/torch_lm.py
    is the same model): token + position embeddings, pre-layer-norm blocks,
    final layer norm, untied output layer."""

    def __init__(self, vocab, context, layers, width, heads):
        super().__init__()
        self.tok_emb, self.pos_emb = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln_f, self.head = nn.LayerNorm(width), nn.Linear(width, vocab)
        self.register_buffer("mask", torch.triu(torch.ones(context, context, dtype=torch.bool), 1), persistent=False)

    def forward(self, idx):
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(idx.shape[1]))
        for b in self.blocks:
            x = b(x, self.mask)
        return self.head(self.ln_f(x))


def build(meta):
    """The module the metadata describes (swarmtrain.model)."""
    if meta.get("swarmtrain.layout") != LAYOUT:
        sys.exit(f"swarmtrain.layout is {meta.get('swarmtrain.layout')!r}; this script reads {LAYOUT!r}")
    spec = json.loads(meta["swarmtrain.model"])
    classes = spec.get("classes") or 10  # absent: MNIST's
    if spec["kind"] == "transformer":
        return GPT(classes, spec["context"], spec["layers"], spec["width"], spec["heads"]), spec
    c, h, w = json.loads(meta["swarmtrain.input"])["shape"]
    layers = []
    if spec["kind"] == "mlp":
        layers.append(nn.Flatten())
        n = c * h * w
        for width in spec["hidden"]:
            layers += [nn.Linear(n, width), nn.ReLU()]
            n = width
        layers.append(nn.Linear(n, classes))
    elif spec["kind"] == "cnn":
        n = c
        for width in spec["channels"]:
            layers += [nn.Conv2d(n, width, 5, padding=2, bias=False), nn.ReLU(), nn.MaxPool2d(2)]
            n = width
            h, w = h // 2, w // 2
        layers += [nn.Flatten(), nn.Linear(n * h * w, spec["dense"]), nn.ReLU(), nn.Linear(spec["dense"], classes)]
    else:
        sys.exit(f"model kind {spec['kind']!r}: this script builds mlp, cnn and transformer")
    return nn.Sequential(*layers), spec


def read_idx(path):
    """An IDX file (gzipped or not) as a numpy array of uint8."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    dims = raw[3]
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def find(d, *names):
    for name in names:
        for p in (os.path.join(d, name), os.path.join(d, name + ".gz")):
            if os.path.exists(p):
                return p
    sys.exit(f"--data {d}: no {names[0]} or {names[0]}.gz")


def eval_images(model, meta, d, limit):
    """(samples, correct, mean cross-entropy) on an IDX test set."""
    inp = json.loads(meta["swarmtrain.input"])
    images = read_idx(find(d, "t10k-images-idx3-ubyte", "test-images-idx3-ubyte"))
    labels = read_idx(find(d, "t10k-labels-idx1-ubyte", "test-labels-idx1-ubyte"))
    if limit > 0:
        images, labels = images[:limit], labels[:limit]
    # float32 throughout, in the order swarmtrain computes it.
    x = torch.from_numpy(images.astype(np.float32)).reshape(-1, *inp["shape"])
    x = (x / np.float32(inp["scale"]) - np.float32(inp["mean"])) / np.float32(inp["std"])
    y = torch.from_numpy(labels.astype(np.int64))
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(y), 500):
            logits = model(x[i:i + 500])
            correct += int((logits.argmax(dim=1) == y[i:i + 500]).sum())
            loss_sum += float(F.cross_entropy(logits, y[i:i + 500], reduction="sum"))
    return len(y), correct, loss_sum / len(y)


def eval_text(model, spec, d, held_out, limit):
    """(predicted characters, correct, mean cross-entropy) on the held-out
    windows of the text in d, tokenised as swarmtrain does: the training
    split's distinct characters, sorted, after the unknown token 0."""
    files = [f for f in sorted(os.listdir(d)) if f.endswith((".txt", ".txt.gz")) and not f.upper().startswith(SIDE_FILES)]
    if len(files) != 1:
        sys.exit(f"--data {d}: want one .txt or .txt.gz file, found {files}")
    with open(os.path.join(d, files[0]), "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    cut = len(text) - int(held_out * len(text))
    vocab = [UNKNOWN] + sorted(set(text[:cut]))
    if len(vocab) != spec["classes"]:
        sys.exit(f"--data {d}: a vocabulary of {len(vocab)}, the model's is {spec['classes']} (another text, or another data.held_out)")
    ids = {c: i for i, c in enumerate(vocab)}
    tok = torch.tensor([ids.get(c, 0) for c in text[cut:]], dtype=torch.long)
    ctx = spec["context"]
    n = (len(tok) - 1) // ctx
    if limit > 0:
        n = min(n, limit)
    w = tok[: n * ctx + 1].unfold(0, ctx + 1, ctx)
    correct, loss_sum = 0, 0.0
    with torch.no_grad():
        for i in range(0, len(w), 64):
            b = w[i:i + 64]
            logits = model(b[:, :-1])
            y = b[:, 1:]
            correct += int((logits.argmax(dim=-1) == y).sum())
            loss_sum += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum"))
    return w.shape[0] * ctx, correct, loss_sum / (w.shape[0] * ctx)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--data", "--mnist", dest="data", default="",
                    help="the dataset's directory (default $SWARMTRAIN_DATA/<its config's data.name>, or mnist)")
    ap.add_argument("--held-out", type=float, default=0, help="a text's held-out fraction (default: the checkpoint config's, or 0.1)")
    ap.add_argument("--limit", type=int, default=0, help="evaluate the first N test images or held-out windows only")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args()

    tensors, meta = read_safetensors(args.checkpoint)
    model, spec = build(meta)
    model.load_state_dict(tensors, strict=True)  # names and shapes as they are
    model.eval()
    torch.set_num_threads(1)  # a few MB of model: threads only cost here

    config = json.loads(meta.get("swarmtrain.config") or "{}")
    d = args.data or os.path.join(os.environ.get("SWARMTRAIN_DATA", os.path.expanduser("~/.cache/swarmtrain/data")),
                                  config.get("data", {}).get("name", "mnist"))
    out = {}
    if spec["kind"] == "transformer":
        held = args.held_out or config.get("data", {}).get("held_out") or 0.1
        n, correct, loss = eval_text(model, spec, d, held, args.limit)
        out["bits_per_char"] = loss / math.log(2)
        module_matches = True  # not an nn.Sequential: no print to compare
    else:
        n, correct, loss = eval_images(model, meta, d, args.limit)
        module_matches = str(model) == meta.get("swarmtrain.module")
    out.update({"samples": n, "correct": correct, "accuracy": correct / n, "loss": loss,
                "module_matches_metadata": module_matches})
    claimed = None
    if meta.get("swarmtrain.test_samples") == str(n) and "swarmtrain.test_correct" in meta:
        claimed = int(meta["swarmtrain.test_correct"])
        out["swarmtrain_correct"] = claimed
        out["swarmtrain_loss"] = float(meta["swarmtrain.test_loss"])
    if args.json:
        print(json.dumps(out))
    else:
        print(model)
        if not module_matches:
            print("note: this module prints differently from the metadata's swarmtrain.module")
        where = f"swarm {meta['swarmtrain.swarm']} round {meta.get('swarmtrain.round', '?')}" if "swarmtrain.swarm" in meta else meta.get("swarmtrain.name", "")
        what = "characters predicted" if spec["kind"] == "transformer" else "correct"
        print(f"{args.checkpoint} ({where}): {correct}/{n} {what}, accuracy {100 * correct / n:.2f} %, loss {loss:.6f}" +
              (f", {out['bits_per_char']:.4f} bits/char" if "bits_per_char" in out else ""))
        if claimed is not None:
            print(f"swarmtrain measured {claimed}/{n}: {'reproduced' if claimed == correct else 'NOT reproduced'}")
    if claimed is not None and claimed != correct:
        sys.exit(1)


if __name__ == "__main__":
    main()
