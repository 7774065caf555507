#!/usr/bin/env python3
"""GradAccum against PyTorch CPU eager, side by side in one run, as docs/benchmarks.md reports.

For each model and micro-batch, alternates `gradaccum bench` (full training micro-steps,
median of its repeats) and the same step in PyTorch for several rounds, both on 2 threads
(or `--threads 1`: OpenBLAS on one thread, `OPENBLAS_NUM_THREADS=1`, against PyTorch's one),
and prints a markdown table of the medians over rounds and their ratio. Needs
`pip install torch` (only this script does).

Usage: python3 scripts/throughput_comparison.py [--rounds N] [--threads 1|2] [--micro-batches M,M,...]
                                                [--gradaccum PATH] [mlp|cnn|cnn2|cnn-wide|transformer ...]
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_throughput import MLP, TRANSFORMER, SequenceStep, Step  # noqa: E402

CASES = {
    "mlp": (MLP, "784", "cross-entropy", [1, 4, 16, 64, 256, 512, 1024]),
    "cnn": ("conv2d(3,32,3,padding=1) flatten", "3x32x32", "mse", [64]),
    # Two conv blocks and a classifier.
    "cnn2": ("conv2d(3,32,3,padding=1) relu maxpool2d(2) conv2d(32,64,3,padding=1) relu maxpool2d(2) flatten "
             "linear(4096,10)", "3x32x32", "cross-entropy", [64]),
    # Wide 3×3 convolutions over small (8×8) planes, as deep in a CNN.
    "cnn-wide": ("conv2d(64,128,3,padding=1) relu conv2d(128,128,3,padding=1) relu maxpool2d(2) flatten "
                 "linear(2048,10)", "64x8x8", "cross-entropy", [64]),
    # Sequences of 128 tokens ("seq128"), next-token cross-entropy.
    "transformer": (TRANSFORMER, "seq128", "cross-entropy", [16]),
}


def gradaccum_rate(binary, spec, shape, loss, m, threads):
    with tempfile.NamedTemporaryFile(suffix=".csv") as table:
        sample = (["--sequence-length", shape[3:]] if shape.startswith("seq")
                  else ["--input-shape", shape, "--loss", loss])
        subprocess.run([binary, "bench", "--model", spec] + sample + ["--optimizer", "sgd",
                        "--micro-batches", str(m), "--repeat", "7", "--csv", table.name],
                       check=True, capture_output=True, env=dict(os.environ, OPENBLAS_NUM_THREADS=str(threads)))
        with open(table.name) as f:
            return float(next(csv.DictReader(f))["samples_per_second"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, choices=[1, 2], help="threads on each side (default 2)")
    parser.add_argument("--micro-batches", help="comma-separated sizes instead of each case's own")
    parser.add_argument("--gradaccum", default=".build/release/gradaccum")
    parser.add_argument("cases", nargs="*", default=[], help="mlp, cnn, cnn2, cnn-wide, transformer (default: mlp and cnn)")
    args = parser.parse_args()
    for name in args.cases or ["mlp", "cnn"]:
        if name not in CASES:
            parser.error(f"unknown case {name!r}; expected one of {', '.join(sorted(CASES))}")
    chosen = None
    if args.micro_batches:
        try:
            chosen = [int(size) for size in args.micro_batches.split(",")]
        except ValueError:
            chosen = []
        if not chosen or min(chosen) < 1:
            parser.error(f"--micro-batches takes sizes of 1 or more separated by commas, got {args.micro_batches!r}")
    for name in args.cases or ["mlp", "cnn"]:
        spec, shape, loss, sizes = CASES[name]
        sizes = chosen or sizes
        torch_step = (SequenceStep(spec, int(shape[3:]), threads=args.threads) if shape.startswith("seq")
                      else Step(spec, [int(s) for s in shape.split("x")], loss, threads=args.threads))
        print(f"\n`{spec}`, input {shape}, {loss}, SGD, {args.threads} thread{'s' if args.threads > 1 else ''} "
              f"each; medians of {args.rounds} interleaved rounds\n")
        print("| micro-batch | GradAccum samples/s | PyTorch samples/s | ratio | ratios per round |")
        print("|---:|---:|---:|---:|---|")
        for m in sizes:
            ours, theirs = [], []
            for _ in range(args.rounds):
                ours.append(gradaccum_rate(args.gradaccum, spec, shape, loss, m, args.threads))
                theirs.append(torch_step.samples_per_second(m))
            ratios = [a / b for a, b in zip(ours, theirs)]
            print(f"| {m} | {statistics.median(ours):,.0f} | {statistics.median(theirs):,.0f} | "
                  f"{statistics.median(ours) / statistics.median(theirs):.2f} | "
                  f"{', '.join(f'{r:.2f}' for r in ratios)} |", flush=True)


if __name__ == "__main__":
    main()
