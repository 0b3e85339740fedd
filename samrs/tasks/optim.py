"""Optimiser parameter groups (no weight decay on norms and embeddings, layer-wise lr decay, frozen
parts) and the per-iteration cosine schedule of the paper (Tables 7-8, official code)."""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.instancenorm import _InstanceNorm

from samrs.errors import ConfigError

NORM_LAYERS = (_BatchNorm, _InstanceNorm, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm, nn.LocalResponseNorm)


def freeze(net: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Set requires_grad=False on parameters whose name matches any regex; returns their names.
    A pattern that matches nothing is an error (a typo would otherwise train everything)."""
    names = [n for n, _ in net.named_parameters()]
    frozen = []
    for pattern in patterns:
        hits = [n for n in names if re.search(pattern, n)]
        if not hits:
            raise ConfigError(f"frozen pattern {pattern!r} matches no parameter; names look like {names[0]!r}, "
                              f"{names[len(names) // 2]!r}")
        frozen += hits
    params = dict(net.named_parameters())
    for n in frozen:
        params[n].requires_grad_(False)
    return sorted(set(frozen))


def param_groups(
    net: nn.Module,
    lr: float,
    weight_decay: float,
    no_decay_norm: bool = True,
    no_decay_bias: bool = False,
    no_decay_names: Sequence[str] = (),
    layer_decay: float | None = None,
) -> list[dict[str, Any]]:
    """Trainable parameters of `net` grouped by (layer, decay or not), each group with its own lr and
    weight_decay and a `name` (which the LR monitor logs).

    No weight decay for: parameters of normalisation layers (`no_decay_norm`), biases and other 1-d
    parameters (`no_decay_bias`), names containing one of `no_decay_names` (pos_embed,
    relative_position_bias_table, ...). `layer_decay` (ViT): backbone layer i of L gets lr *
    layer_decay ** (L - i), everything after the backbone the full lr (BEiT's rule; needs
    `net.backbone.layer_ids()`).
    """
    norm_params = {id(p) for m in net.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters(recurse=False)}
    layer_of: dict[str, int] = {}
    top = 0
    if layer_decay is not None:
        layer_of = {f"backbone.{k}": v for k, v in net.backbone.layer_ids().items()}
        top = max(layer_of.values()) + 1  # the neck, decoder and heads
    groups: dict[str, dict[str, Any]] = {}
    for name, p in net.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = ((no_decay_norm and id(p) in norm_params) or (no_decay_bias and p.ndim <= 1)
                    or any(key in name for key in no_decay_names))
        kind = "no_decay" if no_decay else "decay"
        if layer_decay is None:
            key, scale = kind, 1.0
        else:
            layer = layer_of.get(name, top)
            key, scale = f"layer{layer:02d}/{kind}", layer_decay ** (top - layer)
        group = groups.setdefault(key, {"name": key, "params": [], "lr": lr * scale, "lr_scale": scale,
                                        "weight_decay": 0.0 if no_decay else weight_decay})
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def describe_groups(groups: Sequence[dict[str, Any]]) -> str:
    """One line per group: name, tensors, elements, lr, weight decay."""
    return "\n".join(
        f"{g['name']:<22} {len(g['params']):>4} tensors {sum(p.numel() for p in g['params']):>12,} params "
        f"lr {g['lr']:.3g} wd {g['weight_decay']:g}" for g in groups
    )


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0,
                       min_lr: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay per iteration from each group's lr down to `min_lr` (the
    same floor for every group, as torch's CosineAnnealingLR(eta_min) in the official code)."""
    base = [g["lr"] for g in optimizer.param_groups]

    def factor(step: int, lr: float) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        floor = min(1.0, min_lr / lr) if lr > 0 else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, [lambda s, lr=lr: factor(s, lr) for lr in base])
