#!/usr/bin/env python3
"""PyTorch CPU eager throughput of the benchmark MLP (forward, backward, SGD step).

Prints samples/s per micro-batch, median of repeats, 2 threads. Needs `pip install torch`.
Usage: python3 scripts/pytorch_throughput.py [micro-batch ...]
"""
import statistics
import sys
import time

import torch
import torch.nn as nn

torch.set_num_threads(2)
sizes = [int(s) for s in sys.argv[1:]] or [1, 16, 64, 256]
model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
criterion = nn.CrossEntropyLoss()
for m in sizes:
    x = torch.rand(m, 784)
    y = torch.arange(m) % 10
    def step():
        optimizer.zero_grad()
        criterion(model(x), y).backward()
        optimizer.step()
    for _ in range(20):
        step()
    rates = []
    for _ in range(7):
        steps = max(10, 2000 // m)
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * m / (time.perf_counter() - start))
    print(f"micro-batch {m:4d}: {statistics.median(rates):10.0f} samples/s")
