#!/usr/bin/env python3
"""The MLP's matrix products per step through OpenBLAS, run the ways `scripts/mlp_product_rates.c`
names (by default in fixed halves, as GradAccum cut them before its cuts followed the cores,
and with OpenBLAS's own two threads), and through PyTorch's MKL (`torch.mm`, 2 threads or
`--threads 1`), alternating round by round; GFLOP/s over the same products, medians of the
rounds, and each way's rate over MKL's (the median of the rounds' ratios). Used for
docs/benchmarks.md ("Side by side with this build"). Needs `pip install torch`.

Usage:
  cc -O2 scripts/mlp_product_rates.c -o /tmp/mlp_rates -lopenblas -lpthread -ldl -lm
  OPENBLAS_CORETYPE=Cooperlake python3 scripts/mlp_product_rates.py /tmp/mlp_rates [--rounds N] [--micro-batches 256,1024]
      [--first-product] [--ways halves,following,shared,threaded,single,independent] [--threads 1|2]
"""
import argparse
import re
import statistics
import subprocess
import time

import torch

WIDTHS = [784, 512, 512, 10]


WAYS = ["halves", "following", "shared", "threaded", "single", "independent"]


def mkl_rate(batch, first_only, threads=2):
    """GFLOP/s of torch.mm on `threads` threads over one step's products (output, weight gradient,
    input gradient), or over the first layer's output product alone."""
    torch.set_num_threads(threads)
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
    parser.add_argument("--ways", default="halves,threaded", help="comma-separated, of " + ", ".join(WAYS))
    parser.add_argument("--threads", type=int, default=2, choices=[1, 2], help="MKL's threads")
    args = parser.parse_args()
    ways = args.ways.split(",")
    unknown = [way for way in ways if way not in WAYS]
    if unknown:
        parser.error(f"--ways: {', '.join(unknown)} is not one of {', '.join(WAYS)}")
    print("| micro-batch | " + " | ".join(f"OpenBLAS, {way}" for way in ways) + f" | MKL, {args.threads} thread(s) | "
          + " | ".join(f"{way} / MKL" for way in ways) + " |")
    print("|---:" * (2 * len(ways) + 2) + "|")
    for batch in [int(size) for size in args.micro_batches.split(",")]:
        rates = {way: [] for way in ways + ["mkl"]}
        for _ in range(args.rounds):
            for way in ways:
                rates[way].append(openblas_rate(args.binary, batch, way, args.first_product))
            rates["mkl"].append(mkl_rate(batch, args.first_product, args.threads))
        medians = {key: statistics.median(values) for key, values in rates.items()}
        ratios = [statistics.median(rate / mkl for rate, mkl in zip(rates[way], rates["mkl"])) for way in ways]
        print(f"| {batch} | " + " | ".join(f"{medians[way]:.0f}" for way in ways) + f" | {medians['mkl']:.0f} | "
              + " | ".join(f"{ratio:.2f}" for ratio in ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
