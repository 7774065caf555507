#!/usr/bin/env python3
"""The MLP's matrix products per step through OpenBLAS (as GradAccum cuts them in halves, and
with OpenBLAS's own two threads: `scripts/mlp_product_rates.c`) and through PyTorch's MKL
(`torch.mm`, 2 threads), alternating round by round; GFLOP/s over the same products. Used for
docs/benchmarks.md ("Side by side with this build"). Needs `pip install torch`.

Usage:
  cc -O2 scripts/mlp_product_rates.c -o /tmp/mlp_rates -lopenblas -lpthread
  OPENBLAS_CORETYPE=Cooperlake python3 scripts/mlp_product_rates.py /tmp/mlp_rates [--rounds N] [--micro-batches 256,1024]
      [--first-product]
"""
import argparse
import re
import statistics
import subprocess
import time

import torch

WIDTHS = [784, 512, 512, 10]


def mkl_rate(batch, first_only):
    """GFLOP/s of torch.mm over one step's products (output, weight gradient, input gradient),
    or over the first layer's output product alone."""
    torch.set_num_threads(2)
    products, flops = [], 0.0
    if first_only:
        x, w = torch.rand(batch, WIDTHS[0]), torch.rand(WIDTHS[1], WIDTHS[0])
        products, flops = [lambda: torch.mm(x, w.t())], 2.0 * batch * WIDTHS[0] * WIDTHS[1]
    for layer in range(0 if first_only else 3):
        inputs, outputs = WIDTHS[layer], WIDTHS[layer + 1]
        x, w, g = torch.rand(batch, inputs), torch.rand(outputs, inputs), torch.rand(batch, outputs)
        products += [lambda x=x, w=w: torch.mm(x, w.t()), lambda g=g, x=x: torch.mm(g.t(), x)]
        flops += 4.0 * batch * inputs * outputs
        if layer > 0:
            products.append(lambda g=g, w=w: torch.mm(g, w))
            flops += 2.0 * batch * inputs * outputs
    rounds = max(20, int(2e9 / flops))
    for _ in range(rounds):
        for product in products:
            product()
    start = time.perf_counter()
    for _ in range(rounds):
        for product in products:
            product()
    return flops * rounds / (time.perf_counter() - start) / 1e9


def openblas_rate(binary, batch, way, first_only):
    line = subprocess.run([binary, str(batch), way] + (["first"] if first_only else []), check=True,
                          capture_output=True, text=True).stdout
    return float(re.search(r"([0-9.]+) GFLOP/s", line).group(1))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("binary", help="scripts/mlp_product_rates.c, compiled")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--micro-batches", default="256,1024", help="comma-separated, such as 256,512,1024")
    parser.add_argument("--first-product", action="store_true",
                        help="the first layer's output product alone (MICRO_BATCH x 784 . 784 x 512)")
    args = parser.parse_args()
    print("| micro-batch | OpenBLAS, halves | OpenBLAS, its threads | MKL | halves / MKL |")
    print("|---:|---:|---:|---:|---:|")
    for batch in [int(size) for size in args.micro_batches.split(",")]:
        rates = {"halves": [], "threaded": [], "mkl": []}
        for _ in range(args.rounds):
            rates["halves"].append(openblas_rate(args.binary, batch, "halves", args.first_product))
            rates["threaded"].append(openblas_rate(args.binary, batch, "threaded", args.first_product))
            rates["mkl"].append(mkl_rate(batch, args.first_product))
        medians = {key: statistics.median(values) for key, values in rates.items()}
        print(f"| {batch} | {medians['halves']:.0f} | {medians['threaded']:.0f} | {medians['mkl']:.0f} | "
              f"{medians['halves'] / medians['mkl']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
