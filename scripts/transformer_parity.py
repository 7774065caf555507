#!/usr/bin/env python3
"""Writes a PyTorch reference for the sequence layers: the weights of the reference
`build()` of a two-block model (random biases), the logits, summed next-token loss and
parameter gradients for two right-padded samples with masked labels.

Usage: python3 scripts/transformer_parity.py DIR
then:  GRADACCUM_PARITY_DIR=DIR swift test --filter TransformerParityTests
(needs `pip install torch safetensors`; the reference definition is
scripts/transformer_reference.py).
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file

directory = sys.argv[1]
from transformer_reference import build  # noqa: E402

os.makedirs(directory, exist_ok=True)
torch.manual_seed(0)
spec = ("embedding(20,16) positionalembedding(32,16) transformerblock(16,4,ff=24) transformerblock(16,2) "
        "layernorm(16) linear(16,20)")
model = build(spec)
with torch.no_grad():
    for name, parameter in model.named_parameters():
        if "bias" in name:
            parameter.add_(0.1 * torch.randn_like(parameter))
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(directory, "weights.safetensors"))
ids = torch.tensor([[1, 2, 3, 4, 5, 6, 7], [8, 9, 10, 11, 0, 0, 0]])
labels = ids.clone()
labels[1, 4:] = -100
logits = model(ids)
loss = torch.nn.functional.cross_entropy(
    logits[:, :-1].reshape(-1, 20), labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
loss.backward()
json.dump({
    "spec": spec, "ids": ids.flatten().tolist(), "labels": labels.flatten().tolist(),
    "logits": logits.flatten().tolist(), "loss": loss.item(),
    "gradients": {name: p.grad.flatten().tolist() for name, p in model.named_parameters()},
}, open(os.path.join(directory, "reference.json"), "w"))
print(f"reference written to {directory}: loss {loss.item():.7f}")
