"""PyTorch modules for GradAccum model specifications (`linear(784,512) relu …`)."""
import torch.nn as nn


def build(spec):
    layers = []
    for token in spec.split():
        name, _, rest = token.partition("(")
        args = [a for a in rest.rstrip(")").split(",") if a] if rest else []
        positional = [int(a) for a in args if "=" not in a]
        keywords = {k: (v == "true" if v in ("true", "false") else int(v)) for k, v in (a.split("=") for a in args if "=" in a)}
        if name == "linear":
            layers.append(nn.Linear(*positional, **keywords))
        elif name == "conv2d":
            layers.append(nn.Conv2d(*positional, **keywords))
        elif name == "maxpool2d":
            layers.append(nn.MaxPool2d(*positional))
        elif name == "avgpool2d":
            layers.append(nn.AvgPool2d(*positional))
        elif name == "batchnorm1d":
            layers.append(nn.BatchNorm1d(*positional))
        elif name == "batchnorm2d":
            layers.append(nn.BatchNorm2d(*positional))
        elif name == "layernorm":
            layers.append(nn.LayerNorm(*positional))
        elif name == "adaptiveavgpool2d":
            layers.append(nn.AdaptiveAvgPool2d(tuple(positional) if len(positional) == 2 else positional[0]))
        else:
            layers.append({"relu": nn.ReLU(), "tanh": nn.Tanh(), "gelu": nn.GELU(), "sigmoid": nn.Sigmoid(),
                           "flatten": nn.Flatten()}[name])
    return nn.Sequential(*layers)
