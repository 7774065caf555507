#!/usr/bin/env python3
"""PyTorch CPU eager throughput of one training micro-step (forward, backward, optimizer step).

The counterpart of `gradaccum bench`: the same model specification, input shape, loss and
optimizer, random data, 2 threads; prints samples/s per micro-batch, median of repeats.
Needs `pip install torch` (only this script does).

Usage: python3 scripts/pytorch_throughput.py [--model SPEC] [--input-shape CxHxW] [--loss mse|cross-entropy]
                                             [--optimizer sgd|adam] [micro-batch ...]
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn

from pytorch_models import build

parser = argparse.ArgumentParser()
parser.add_argument("--model", default="linear(784,512) relu linear(512,512) relu linear(512,10)")
parser.add_argument("--input-shape", default="784")
parser.add_argument("--loss", default="cross-entropy", choices=["mse", "cross-entropy"])
parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
parser.add_argument("--seconds", type=float, default=1.0, help="time per repeat")
parser.add_argument("sizes", nargs="*", type=int, default=[1, 4, 16, 64, 256])
args = parser.parse_args()

torch.set_num_threads(2)
shape = [int(s) for s in args.input_shape.split("x")]
model = build(args.model)
optimizer = torch.optim.SGD(model.parameters(), lr=0.01) if args.optimizer == "sgd" else torch.optim.Adam(
    model.parameters(), lr=1e-3)
print(f"model   {args.model}  (input {args.input_shape}, {args.loss}, {args.optimizer}), PyTorch {torch.__version__}")
for m in args.sizes:
    x = torch.rand(m, *shape) * 2 - 1
    with torch.no_grad():
        out_shape = model(x).shape
    if args.loss == "cross-entropy":
        criterion, y = nn.CrossEntropyLoss(), torch.arange(m) % out_shape[1]
    else:
        criterion, y = nn.MSELoss(), torch.rand(out_shape) * 2 - 1

    def step():
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()

    for _ in range(5):
        step()
    # Steps per repeat so that a repeat lasts about --seconds.
    start = time.perf_counter()
    step()
    steps = max(3, int(args.seconds / max(time.perf_counter() - start, 1e-6)))
    rates = []
    for _ in range(7):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * m / (time.perf_counter() - start))
    print(f"micro-batch {m:4d}: {statistics.median(rates):10.0f} samples/s")
