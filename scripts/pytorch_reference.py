#!/usr/bin/env python3
"""Trains the same models with PyTorch and with `gradaccum train` and compares final weights.

Needs `pip install torch safetensors` (only this script does; the tests do not).
Usage: python3 scripts/pytorch_reference.py [path/to/gradaccum] [processes]
With a number of processes, `gradaccum train` runs under `mpirun -np N` (data parallel; the
automatic cases' budgets then force k micro-batches per process) and must still end where
PyTorch's single batches end.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from pytorch_models import build

GRADACCUM = sys.argv[1] if len(sys.argv) > 1 else ".build/release/gradaccum"
PROCESSES = int(sys.argv[2]) if len(sys.argv) > 2 else 1
LAUNCH = ([] if PROCESSES == 1 else
          ["mpirun", "--oversubscribe", "-np", str(PROCESSES)] + (["--allow-run-as-root"] if os.getuid() == 0 else []))


def optimizer(name, params, lr, momentum, weight_decay):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay or 0.0)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay or 0.0)
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay if weight_decay is not None else 0.01)


def budget_forcing(spec, shape, loss, opt, target, k):
    """A budget whose plan has k micro-batches per window (per process's share with several
    processes; after the trainer's 1% margin)."""
    share = -(-target // PROCESSES)
    micro = -(-share // k)
    out = subprocess.run([GRADACCUM, "plan", "--model", spec, "--input-shape", shape, "--loss", loss,
                          "--optimizer", opt, "--target-batch", str(target), "--budget", "4GB", "--measure",
                          "--measure-at", str(micro), "--json", "--world-size", str(PROCESSES)],
                         check=True, capture_output=True, text=True).stdout
    import json
    plan = json.loads(out)
    # With several processes the gradient reduction must fit too (for small models it can
    # need more than the micro-steps, and the plan then takes larger micro-batches).
    predicted = max(plan["measurements"][0]["predicted_peak_bytes"],
                    plan["persistent_bytes"] + plan["reduction_workspace_bytes"])
    return int((predicted + 64) / 0.99) + 1


def case(name, spec, features, rows, loss, opt, lr, epochs, batch, accumulate, momentum=0.0, weight_decay=None,
         zero_init=False, classes=None, seed=0, automatic_k=None, input_shape=None):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features)).astype(np.float32)
    if loss == "cross-entropy":
        y = rng.integers(0, classes, rows).astype(np.float32)
    else:
        w = rng.standard_normal(features).astype(np.float32)
        y = (x @ w + 0.5 + 0.01 * rng.standard_normal(rows)).astype(np.float32)
    torch.manual_seed(seed)
    model = build(spec)
    if zero_init:
        for p in model.parameters():
            nn.init.zeros_(p)
    work = tempfile.mkdtemp()
    csv = os.path.join(work, "data.csv")
    header = ",".join([f"x{i}" for i in range(features)] + ["y"])
    np.savetxt(csv, np.column_stack([x, y]), delimiter=",", header=header, comments="", fmt="%.9g")
    init = os.path.join(work, "init.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, init)

    # PyTorch: plain batches of the window size T = batch × accumulate.
    window = batch * accumulate
    criterion = nn.MSELoss() if loss == "mse" else nn.CrossEntropyLoss()
    optim = optimizer(opt, model.parameters(), lr, momentum, weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if input_shape:
        xt = xt.view(-1, *input_shape)
    for _ in range(epochs):
        for start in range(0, rows, window):
            xb, yb = xt[start:start + window], yt[start:start + window]
            out = model(xb)
            target = yb.view(-1, 1) if loss == "mse" else yb.long()
            optim.zero_grad()
            criterion(out, target).backward()
            optim.step()

    out_path = os.path.join(work, "out.safetensors")
    command = LAUNCH + [GRADACCUM, "train", "--data", csv, "--model", spec, "--loss", loss, "--optimizer", opt,
               "--lr", str(lr), "--epochs", str(epochs), "--no-shuffle", "--init", init, "--save", out_path, "--quiet"]
    if input_shape:
        command += ["--input-shape", "x".join(map(str, input_shape))]
    if automatic_k:
        shape = "x".join(map(str, input_shape)) if input_shape else str(features)
        budget = budget_forcing(spec, shape, loss, opt, window, automatic_k)
        command += ["--target-batch", str(window), "--budget", str(budget)]
    else:
        command += ["--batch", str(batch), "--accumulate", str(accumulate)]
    if momentum:
        command += ["--momentum", str(momentum)]
    if weight_decay is not None:
        command += ["--weight-decay", str(weight_decay)]
    subprocess.run(command, check=True)
    ours = load_file(out_path)
    worst = 0.0
    overall = 0.0
    for key, value in model.state_dict().items():
        reference = value.detach().numpy()
        difference = np.abs(ours[key].numpy() - reference) / np.maximum(np.abs(reference), 1e-3)
        worst = max(worst, float(difference.max()))
        # Relative to the tensor's scale: |a - b| / max |b|.
        overall = max(overall, float(np.abs(ours[key].numpy() - reference).max() / np.abs(reference).max()))
    print(f"{name:50s} max elementwise relative difference {worst:.2e}, relative to tensor scale {overall:.2e}")
    return overall


if __name__ == "__main__":
    results = [
        case("article: linear(2,1), zero init, batch 40", "linear(2,1)", 2, 1000, "mse", "sgd", 0.01, 3, 40, 1,
             zero_init=True),
        case("article: linear(2,1), zero init, 10 x 4", "linear(2,1)", 2, 1000, "mse", "sgd", 0.01, 3, 10, 4,
             zero_init=True),
        case("mlp adam + cross-entropy, 16 x 3, partial window", "linear(8,32) relu linear(32,4)", 8, 203,
             "cross-entropy", "adam", 0.01, 3, 16, 3, classes=4, seed=1),
        case("mlp sgd momentum + weight decay + mse, 7 x 4", "linear(5,16) tanh linear(16,1)", 5, 150, "mse", "sgd",
             0.02, 3, 7, 4, momentum=0.9, weight_decay=0.01, seed=2),
        case("mlp adamw + cross-entropy, 25 x 2", "linear(10,24) gelu linear(24,24) relu linear(24,5)", 10, 260,
             "cross-entropy", "adamw", 0.005, 2, 25, 2, classes=5, seed=3),
        case("mlp adam + cross-entropy, plain batch 32", "linear(6,12) sigmoid linear(12,3)", 6, 100,
             "cross-entropy", "adam", 0.02, 3, 32, 1, classes=3, seed=4),
    ]
    # Automatic mode: the planner picks the micro-batch under budgets forcing k = 2, 3, 4.
    results += [
        case("auto: sgd momentum + weight decay + mse, T=40, k=2", "linear(5,64) tanh linear(64,1)", 5, 203, "mse",
             "sgd", 0.02, 3, 40, 1, momentum=0.9, weight_decay=0.01, seed=5, automatic_k=2),
        case("auto: adam + cross-entropy, T=50, k=3", "linear(12,64) relu linear(64,64) relu linear(64,4)", 12, 321,
             "cross-entropy", "adam", 0.005, 3, 50, 1, classes=4, seed=6, automatic_k=3),
        # The same model and data as the case above in plain batches of 50: Adam turns
        # rounding-level gradient differences on near-dead units into visible steps.
        case("plain batch 50, same model and data as above", "linear(12,64) relu linear(64,64) relu linear(64,4)", 12,
             321, "cross-entropy", "adam", 0.005, 3, 50, 1, classes=4, seed=6),
        case("auto: adamw + cross-entropy, T=41, k=4", "linear(8,48) gelu linear(48,3)", 8, 250, "cross-entropy",
             "adamw", 0.01, 2, 41, 1, classes=3, seed=7, automatic_k=4),
    ]
    # Convolutional networks (NCHW, PyTorch's layouts), plain batches and accumulation.
    results += [
        case("mlp with layernorm, adamw, 12 x 2", "linear(6,16) layernorm(16) relu linear(16,3)", 6, 90,
             "cross-entropy", "adamw", 0.01, 2, 12, 2, classes=3, seed=10),
        case("cnn adam + cross-entropy, batch 16", "conv2d(1,4,3,padding=1) relu maxpool2d(2) flatten linear(64,3)",
             64, 120, "cross-entropy", "adam", 0.01, 2, 16, 1, classes=3, seed=8, input_shape=(1, 8, 8)),
        case("cnn sgd momentum, 8 x 3, stride 2, avgpool", "conv2d(2,6,3,stride=2,padding=1) tanh avgpool2d(2) flatten linear(24,4)",
             128, 100, "cross-entropy", "sgd", 0.05, 2, 8, 3, momentum=0.9, classes=4, seed=9, input_shape=(2, 8, 8)),
    ]
    results += [
        case("cnn adaptive average pooling 7 -> 3, sgd momentum, 6 x 2",
             "conv2d(1,4,2) relu adaptiveavgpool2d(3) flatten linear(36,3)", 64, 90, "cross-entropy", "sgd", 0.05, 2,
             6, 2, momentum=0.9, classes=3, seed=15, input_shape=(1, 8, 8)),
    ]
    # Batch normalization (running statistics and num_batches_tracked compared too), k = 1.
    results += [
        case("cnn with batchnorm2d, adam, batch 16",
             "conv2d(1,4,3,padding=1,bias=false) batchnorm2d(4) relu maxpool2d(2) flatten linear(64,3)", 64, 120,
             "cross-entropy", "adam", 0.01, 2, 16, 1, classes=3, seed=11, input_shape=(1, 8, 8)),
        case("cnn with batchnorm2d, sgd momentum, batch 10, partial batch",
             "conv2d(2,6,3,stride=2,padding=1) batchnorm2d(6) tanh avgpool2d(2) flatten linear(24,4)", 128, 95,
             "cross-entropy", "sgd", 0.05, 2, 10, 1, momentum=0.9, classes=4, seed=12, input_shape=(2, 8, 8)),
        case("mlp with batchnorm1d, sgd + mse, batch 20", "linear(6,16) batchnorm1d(16) relu linear(16,1)", 6, 100,
             "mse", "sgd", 0.02, 2, 20, 1, seed=13),
        # A convolution's bias right before batch normalization has a gradient of exactly zero
        # in exact arithmetic; Adam and AdamW turn its rounding noise into full steps in either
        # framework, so such models compare with bias=false (as they are usually written).
        case("auto: cnn with batchnorm2d, adamw, T=32, k=1",
             "conv2d(1,8,3,padding=1,bias=false) batchnorm2d(8) relu maxpool2d(2) flatten linear(128,5)", 64, 130,
             "cross-entropy", "adamw", 0.01, 2, 32, 1, classes=5, seed=14, input_shape=(1, 8, 8), automatic_k=1),
    ]
    # Pass: every tensor within 1e-4 of PyTorch's, relative to the tensor's largest value.
    sys.exit(0 if max(results) < 1e-4 else 1)
