#!/usr/bin/env python3
"""PyTorch CPU eager throughput of one training micro-step (forward, backward, optimizer step).

The counterpart of `gradaccum bench`: the same model specification, input shape, loss and
optimizer, random data, 2 threads (or `--threads`); prints samples/s per micro-batch, median
of repeats.
Needs `pip install torch` (only this script does).

Usage: python3 scripts/pytorch_throughput.py [--model SPEC] [--input-shape CxHxW] [--loss mse|cross-entropy]
                                             [--optimizer sgd|adam] [--threads N] [micro-batch ...]
"""
import argparse
import statistics
import time

import torch
import torch.nn as nn

from pytorch_models import build

MLP = "linear(784,512) relu linear(512,512) relu linear(512,10)"
TRANSFORMER = ("embedding(256,128) positionalembedding(128,128) transformerblock(128,4) transformerblock(128,4) "
               "layernorm(128) linear(128,256)")


class SequenceStep:
    """A token model (the reference definitions) on random sequences of `length` ids, with
    next-token cross-entropy (mean over predicted tokens), ready to time micro-steps."""

    def __init__(self, spec, length, optimizer="sgd", threads=2):
        from transformer_reference import build as build_sequences
        torch.set_num_threads(threads)
        self.length = length
        self.model = build_sequences(spec)
        self.vocabulary = self.model[0].num_embeddings
        params = self.model.parameters()
        self.optimizer = torch.optim.SGD(params, lr=0.01) if optimizer == "sgd" else torch.optim.Adam(params, lr=1e-3)

    def samples_per_second(self, m, repeats=7, seconds=0.2):
        ids = torch.randint(0, self.vocabulary, (m, self.length))

        def step():
            self.optimizer.zero_grad()
            logits = self.model(ids)
            loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
            loss.backward()
            self.optimizer.step()

        return timed(step, m, repeats, seconds)


def timed(step, m, repeats, seconds):
    """Samples/s of `step` (m samples each): median over `repeats` runs of about `seconds`."""
    for _ in range(3):
        step()
    start = time.perf_counter()
    step()
    steps = max(1, min(1000, int(seconds / max(time.perf_counter() - start, 1e-6))))
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        rates.append(steps * m / (time.perf_counter() - start))
    return statistics.median(rates)


class Step:
    """One model, optimizer and loss, ready to time micro-steps of any size."""

    def __init__(self, spec, shape, loss="cross-entropy", optimizer="sgd", threads=2):
        torch.set_num_threads(threads)
        self.shape = shape
        self.loss = loss
        self.model = build(spec)
        params = self.model.parameters()
        self.optimizer = torch.optim.SGD(params, lr=0.01) if optimizer == "sgd" else torch.optim.Adam(params, lr=1e-3)

    def samples_per_second(self, m, repeats=7, seconds=0.05):
        """Median over `repeats` runs of about `seconds` each, after a warm-up."""
        x = torch.rand(m, *self.shape) * 2 - 1
        with torch.no_grad():
            out_shape = self.model(x).shape
        if self.loss == "cross-entropy":
            criterion, y = nn.CrossEntropyLoss(), torch.arange(m) % out_shape[1]
        else:
            criterion, y = nn.MSELoss(), torch.rand(out_shape) * 2 - 1

        def step():
            self.optimizer.zero_grad()
            criterion(self.model(x), y).backward()
            self.optimizer.step()

        return timed(step, m, repeats, seconds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=MLP)
    parser.add_argument("--input-shape", default="784")
    parser.add_argument("--loss", default="cross-entropy", choices=["mse", "cross-entropy"])
    parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads (default 2)")
    parser.add_argument("sizes", nargs="*", type=int, default=[1, 4, 16, 64, 256])
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be 1 or more, got {args.threads}")
    step = Step(args.model, [int(s) for s in args.input_shape.split("x")], args.loss, args.optimizer, args.threads)
    print(f"model   {args.model}  (input {args.input_shape}, {args.loss}, {args.optimizer}), PyTorch {torch.__version__}")
    for m in args.sizes:
        print(f"micro-batch {m:4d}: {step.samples_per_second(m, seconds=1.0):10.0f} samples/s")
