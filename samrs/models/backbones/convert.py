"""Helpers of the zoo backbones' `checkpoint_filter_fn`s: unwrap the published weight files and keep
the official `init_weights`' non-strict loading explicit (the parts a classification checkpoint
cannot have keep the model's own initialisation, everything else must be in the file)."""

from __future__ import annotations

import re
from typing import Iterable, Mapping

import torch
from torch import nn

# Wrappers of the published files: mmcv / MAE / DeiT dicts, DDP, and the encoder of a SAMRS model.
WRAPPER_KEYS = ("state_dict", "model")
MODEL_PREFIXES = ("encoder.", "backbone.")


def unwrap_state_dict(state: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """The backbone's tensors from `{"state_dict": ...}`, `{"model": ...}` or a plain dict, without
    `module.` prefixes; when some keys start with `encoder.` (a SAMRS SEP / fine-tuning checkpoint,
    whose encoder is the backbone) or `backbone.` (mmseg), only those, stripped."""
    for key in WRAPPER_KEYS:
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    state = {_strip(k, "module."): v for k, v in state.items() if torch.is_tensor(v)}
    for prefix in MODEL_PREFIXES:
        inner = {_strip(k[len(prefix):], "module."): v for k, v in state.items() if k.startswith(prefix)}
        if inner:
            return inner
    return state


def _strip(key: str, prefix: str) -> str:
    while key.startswith(prefix):
        key = key[len(prefix):]
    return key


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
