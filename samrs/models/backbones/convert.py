"""Helpers of the zoo backbones' `checkpoint_filter_fn`s (which unwrap the published files with
samrs.models.weights.unwrap_checkpoint): keep the official `init_weights`' non-strict loading explicit (the parts a classification checkpoint
cannot have keep the model's own initialisation, everything else must be in the file)."""

from __future__ import annotations

import re
from typing import Any, Iterable

import torch
from torch import nn

def drop_keys(state: dict[str, torch.Tensor], patterns: Iterable[str]) -> dict[str, torch.Tensor]:
    """`state` without the keys that match (re.match) one of `patterns`."""
    compiled = [re.compile(p) for p in patterns]
    return {k: v for k, v in state.items() if not any(p.match(k) for p in compiled)}


def keep_model_init(state: dict[str, torch.Tensor], model: nn.Module, patterns: Iterable[str]) -> dict[str, torch.Tensor]:
    """Add the model's current tensors for its keys that `state` lacks and that match one of
    `patterns`: the parts the official init_weights leaves at their initialisation (load with
    strict=False). Any other missing key still fails a strict load."""
    compiled = [re.compile(p) for p in patterns]
    out = dict(state)
    for key, value in model.state_dict().items():
        if key not in out and any(p.match(key) for p in compiled):
            out[key] = value
    return out


def vit_b_cfg(**kwargs: Any) -> dict[str, Any]:
    """timm's pretrained config of the ViT-B-based zoo backbones (ViT-Adapter-B, ViT-B + RVSA): 224,
    ImageNet normalisation, no classifier; `hf_hub_id` names the weights `pretrained=True` takes."""
    return dict(url="", num_classes=0, input_size=(3, 224, 224), pool_size=None, crop_pct=1.0,
                interpolation="bicubic", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                first_conv="patch_embed.proj", classifier=None, **kwargs)
