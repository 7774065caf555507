#!/usr/bin/env python3
"""Trains sequence models with PyTorch (the reference definitions) and with `gradaccum train`
under many budgets, and compares final weights; checks every step's peak against its budget
and that greedy `gradaccum generate` equals PyTorch's greedy continuation.

Each window is one right-padded batch in PyTorch (summed token loss / predicted tokens, the
reference's `window_loss` with one micro-batch); GradAccum composes the window by length
under the budget. The attention's key bias (`in_proj_bias[d:2d]`) is left out under AdamW:
its true gradient is zero, so Adam's normalized steps there follow rounding noise.

Needs `pip install torch safetensors`. Usage:
  python3 scripts/sequence_reference.py [path/to/gradaccum] [processes]
With a number of processes, `gradaccum train` runs under `mpirun -np N` (data parallel,
each process under the budget) and must still end where PyTorch's single batches end.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from transformer_reference import build, pad, predicted_tokens

GRADACCUM = sys.argv[1] if len(sys.argv) > 1 else ".build/release/gradaccum"
PROCESSES = int(sys.argv[2]) if len(sys.argv) > 2 else 1
LAUNCH = ([] if PROCESSES == 1 else
          ["mpirun", "--oversubscribe", "-np", str(PROCESSES)] + (["--allow-run-as-root"] if os.getuid() == 0 else []))


def heavy_tailed_samples(rng, count, vocabulary, longest, masked_every=3):
    """Lengths from a Pareto tail (mostly short, a few up to `longest`); every few samples a
    masked prompt (labels -100 on its first tokens)."""
    samples = []
    for index in range(count):
        length = int(min(longest, 2 + rng.pareto(1.2) * 4))
        ids = [int(t) for t in rng.integers(0, vocabulary, length)]
        labels = list(ids)
        if index % masked_every == 0:
            for position in range(min(int(rng.integers(1, 5)), length)):
                labels[position] = -100
        samples.append((ids, labels))
    return samples


def torch_optimizer(name, params, lr):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.AdamW(params, lr=lr)


def train_torch(model, samples, target, epochs, optimizer):
    for _ in range(epochs):
        for start in range(0, len(samples), target):
            window = samples[start:start + target]
            count = predicted_tokens(window)
            optimizer.zero_grad()
            if count == 0:
                continue
            ids, labels = pad(window)
            logits = model(ids)
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                                   ignore_index=-100, reduction="sum") / count
            loss.backward()
            optimizer.step()


def run(command):
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def compare(reference_state, ours, heads_width, adamw):
    overall = 0.0
    for key, value in reference_state.items():
        reference = value.detach().numpy().copy()
        mine = ours[key].numpy().copy()
        if adamw and key.endswith("attn.in_proj_bias"):
            d = heads_width
            reference = np.concatenate([reference[:d], reference[2 * d:]])
            mine = np.concatenate([mine[:d], mine[2 * d:]])
        scale = max(float(np.abs(reference).max()), 1e-6)
        overall = max(overall, float(np.abs(mine - reference).max()) / scale)
    return overall


def case(name, spec, width, vocabulary, longest, count, target, optimizer, lr, epochs, seed, budget_factors):
    rng = np.random.default_rng(seed)
    samples = heavy_tailed_samples(rng, count, vocabulary, longest)
    work = tempfile.mkdtemp()
    data = os.path.join(work, "data.jsonl")
    with open(data, "w") as f:
        for ids, labels in samples:
            f.write(json.dumps({"input_ids": ids, "labels": labels}) + "\n")
    torch.manual_seed(seed)
    model = build(spec)
    init = os.path.join(work, "init.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, init)
    train_torch(model, samples, target, epochs, torch_optimizer(optimizer, model.parameters(), lr))
    reference = model.state_dict()

    momentum = ["--momentum", "0.9"] if optimizer == "sgd" else []
    plan = json.loads(run([GRADACCUM, "plan", "--data", data, "--model", spec, "--optimizer", optimizer]
                          + momentum + ["--target-batch", str(target), "--budget", "4GB", "--no-shuffle", "--json",
                                        "--world-size", str(PROCESSES)]))
    smallest = plan["smallest_budget_bytes"]
    worst = 0.0
    uneven = 0
    for factor in budget_factors:
        budget = int(smallest * factor)
        out = os.path.join(work, "out.safetensors")
        log = os.path.join(work, "log.jsonl")
        run(LAUNCH + [GRADACCUM, "train", "--data", data, "--model", spec, "--optimizer", optimizer, "--lr", str(lr)]
            + momentum
            + ["--epochs", str(epochs), "--no-shuffle", "--init", init, "--save", out, "--log", log,
               "--target-batch", str(target), "--budget", str(budget), "--quiet"])
        records = [json.loads(line) for line in open(log)]
        steps = [r for r in records if "loss" in r and "step" in r]
        summary = [r for r in records if r.get("summary")][0]
        assert summary["budget_violations"] == 0, f"{name}: budget violations at {budget}"
        assert all(r["peak_bytes"] <= budget for r in steps), f"{name}: a step over budget {budget}"
        uneven += sum(1 for r in steps if len(r["micro_batches"]) >= 3
                      and max(r["micro_batches"]) - min(r["micro_batches"]) > 1)
        difference = compare(reference, load_file(out), width, optimizer == "adamw")
        worst = max(worst, difference)
        counts = [len(r["micro_batches"]) for r in steps]
        print(f"  {name:44s} budget {budget:>9d} ({factor:4.2f}x smallest): micro-batches/window "
              f"{min(counts)}-{max(counts)}, max peak {summary['max_peak_bytes']}, "
              f"difference {difference:.2e}")
    print(f"{name:46s} worst relative difference {worst:.2e}, uneven windows (>= 3 micro-batches, sizes "
          f"differing by > 1): {uneven}")
    return worst, model, work


def greedy(model, prompt, tokens, context):
    model.eval()
    sequence = list(prompt)
    with torch.no_grad():
        for _ in range(tokens):
            logits = model(torch.tensor([sequence[-context:]]))
            sequence.append(int(torch.argmax(logits[0, -1])))
    return sequence


if __name__ == "__main__":
    results = []
    factors = [1.0, 1.1, 1.3, 1.7, 2.5, 4.0]
    results.append(case("1 block, AdamW, T=12", "embedding(24,16) positionalembedding(48,16) "
                         "transformerblock(16,2,ff=32) layernorm(16) linear(16,24)", 16, 24, 48, 61, 12,
                         "adamw", 0.01, 2, 1, factors)[0])
    worst, model, work = case("2 blocks, SGD momentum, T=16", "embedding(32,16) positionalembedding(64,16) "
                              "transformerblock(16,4,ff=24) transformerblock(16,2) layernorm(16) linear(16,32)",
                              16, 32, 64, 75, 16, "sgd", 0.05, 2, 2, factors)
    results.append(worst)
    results.append(case("2 blocks, AdamW, T=20", "embedding(20,8) positionalembedding(40,8) "
                        "transformerblock(8,2) transformerblock(8,4,ff=16) layernorm(8) linear(8,20)", 8, 20, 40,
                        57, 20, "adamw", 0.005, 3, 3, factors)[0])
    # Greedy generation from the trained SGD model's weights.
    spec = ("embedding(32,16) positionalembedding(64,16) transformerblock(16,4,ff=24) transformerblock(16,2) "
            "layernorm(16) linear(16,32)")
    weights = os.path.join(work, "trained.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, weights)
    prompt = [3, 1, 4, 1, 5]
    ours = json.loads(run([GRADACCUM, "generate", "--model", spec, "--init", weights, "--prompt-ids",
                           ",".join(map(str, prompt)), "--tokens", "80", "--json"]))["input_ids"]
    theirs = greedy(model, prompt, 80, 64)
    same = ours == theirs
    print(f"greedy generate, 80 tokens past a 64-token context: {'equal' if same else 'DIFFERENT'} to PyTorch's")
    worst = max(results)
    print(f"worst relative difference over all cases and budgets: {worst:.2e}")
    sys.exit(0 if worst <= 1e-4 and same else 1)
