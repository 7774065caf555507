#!/usr/bin/env python3
"""Random models against the planner, under every OpenBLAS kernel family this CPU runs.

For each random model (MLPs and CNNs, narrow-then-wide layers included) and each kernel
family: predicted against measured peaks at several micro-batch sizes (`plan --measure`),
then a training run whose budget is 1% above the predicted peak of a random micro-batch,
counting budget violations. Prints one line per run and a summary per family.

Usage: scripts/budget_check.py [--gradaccum PATH] [--models N] [--seed S] [--families A,B]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile


def families():
    flags = open("/proc/cpuinfo").read().split()
    names = ["Prescott"]
    if "avx" in flags:
        names.append("Sandybridge")
    if "avx2" in flags:
        names += ["Haswell", "Zen"]
    if "avx512f" in flags:
        names.append("SkylakeX")
    if "avx512_bf16" in flags:
        names.append("Cooperlake")
    return names


def random_model(rng):
    """A model spec, its input shape as text and its per-sample feature count."""
    if rng.random() < 0.75:
        width = rng.randint(2, 400)
        layers, current = [], width
        for _ in range(rng.randint(1, 3)):
            # Narrow-then-wide layers reach the AVX-512 small-matrix kernels' buffers.
            out = rng.choice([rng.randint(1, 12), rng.randint(13, 200), rng.randint(200, 6000)])
            layers.append(f"linear({current},{out}{',bias=false' if rng.random() < 0.2 else ''})")
            layers.append(rng.choice(["relu", "tanh", "gelu", "sigmoid", "relu dropout(0.1)"]))
            current = out
        layers.append(f"linear({current},{rng.randint(2, 10)})")
        return " ".join(layers), str(width), width
    channels, size = rng.choice([1, 3]), rng.choice([6, 8, 12])
    c1, c2 = rng.randint(2, 16), rng.randint(2, 24)
    norm = f" batchnorm2d({c1})" if rng.random() < 0.5 else ""
    spec = (f"conv2d({channels},{c1},3,padding=1){norm} relu maxpool2d(2) "
            f"conv2d({c1},{c2},3,padding=1) relu adaptiveavgpool2d(1) flatten linear({c2},{rng.randint(2, 10)})")
    return spec, f"{channels}x{size}x{size}", channels * size * size


def classes(spec):
    return int(spec.rsplit(",", 1)[1].rstrip(")"))


def run(command, family):
    env = dict(os.environ, OPENBLAS_CORETYPE=family)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--gradaccum", default=".build/release/gradaccum")
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--families", default=",".join(families()))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    models = [random_model(rng) for _ in range(args.models)]
    directory = tempfile.mkdtemp(prefix="gradaccum-budget-")
    summary = {}
    for family in args.families.split(","):
        errors, violations, runs = [], 0, 0
        for index, (spec, shape, features) in enumerate(models):
            optimizer = rng.choice(["sgd", "adam", "adamw"])
            sizes = sorted({1, rng.randint(2, 9), rng.randint(10, 70), rng.randint(71, 300)})
            plan = run([args.gradaccum, "plan", "--model", spec, "--input-shape", shape, "--optimizer", optimizer,
                        "--loss", "cross-entropy", "--target-batch", "512", "--budget", "4GB", "--measure",
                        "--measure-at", ",".join(map(str, sizes)), "--json"], family)
            if plan.returncode != 0:
                print(f"{family} {spec}: plan failed: {plan.stderr.strip()}", file=sys.stderr)
                sys.exit(1)
            measured = json.loads(plan.stdout)["measurements"]
            for item in measured:
                p, m = item["predicted_peak_bytes"], item["measured_peak_bytes"]
                errors.append(((p - m) / m, p - m))
                if p != m:
                    print(f"{family:11s} {optimizer:5s} m={item['micro_batch']:4d} predicted {p} measured {m}  {spec}")
            # Train with the budget 1% above the predicted peak of one of the sizes.
            chosen = rng.choice(measured)
            budget = int(chosen["predicted_peak_bytes"] * 1.01) + 1
            data = os.path.join(directory, f"{index}.csv")
            if not os.path.exists(data):
                k = classes(spec)
                with open(data, "w") as f:
                    f.write(",".join([f"x{i}" for i in range(features)] + ["y"]) + "\n")
                    for row in range(96):
                        f.write(",".join(f"{rng.uniform(-1, 1):.3f}" for _ in range(features)) + f",{row % k}\n")
            log = os.path.join(directory, f"{family}-{index}.jsonl")
            train = run([args.gradaccum, "train", "--data", data, "--model", spec, "--input-shape", shape,
                         "--optimizer", optimizer, "--loss", "cross-entropy", "--target-batch", "64", "--budget",
                         str(budget), "--epochs", "1", "--log", log, "--quiet"], family)
            if train.returncode != 0 and "too small" not in train.stderr:
                print(f"{family} {spec}: train failed: {train.stderr.strip()}", file=sys.stderr)
                sys.exit(1)
            if train.returncode == 0:
                runs += 1
                last = json.loads(open(log).read().strip().splitlines()[-1])
                violations += last["budget_violations"]
                print(f"{family:11s} {optimizer:5s} m={chosen['micro_batch']:4d} budget={budget:10d} "
                      f"violations={last['budget_violations']} max_peak={last['max_peak_bytes']:10d}  {spec}")
        relative = [e for e, _ in errors]
        summary[family] = (len(errors), min(relative), max(relative), max(abs(b) for _, b in errors), runs, violations)
    print()
    print("| kernels | predictions | most under | most over | largest difference | training runs | violations |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for family, (count, low, high, largest, runs, violations) in summary.items():
        print(f"| {family} | {count} | {100 * low:+.4f}% | {100 * high:+.4f}% | {largest} bytes | {runs} | {violations} |")


if __name__ == "__main__":
    main()
