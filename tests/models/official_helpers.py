"""The one rule by which official backbones (in a script outside the repository) and samrs' backbones
(in the tests) are given the same weights and input, so that golden fixtures written from an official
model can check samrs' model without any official code in the repository.

Fill rule, by state_dict key (parameters and buffers alike), each tensor from its own generator
`torch.Generator().manual_seed(zlib.crc32(key.encode()))`, so that the order of keys never matters:
- integer tensors (index buffers, `num_batches_tracked`): left as the model built them;
- `*running_var`: 0.5 + uniform[0, 1) (variances must be positive);
- 1-d `*weight` (norm scales): 1 + 0.1 * normal;
- everything else (weights, biases, embeddings, layer scales, position tables, running means):
  0.02 * normal.
Input: `official_input(size)`, a smooth deterministic pattern of shape (1, 3, H, W) in about [-1, 1].
A fixture level is summarised by `summarize`: shape, sum, abs-sum and 8 values at evenly spaced flat
indices; `assert_matches` compares with atol relative to the level's scale (mean |x|).
"""

from __future__ import annotations

import zlib
from typing import Any

import torch
from torch import nn

N_SAMPLES = 8


def fill_tensor(key: str, tensor: torch.Tensor) -> torch.Tensor:
    """The value the fill rule gives the tensor `key` (same shape and dtype)."""
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    shape = tuple(tensor.shape)
    if key.endswith("running_var"):
        value = 0.5 + torch.rand(shape, generator=gen)
    elif tensor.ndim == 1 and key.endswith("weight"):
        value = 1.0 + 0.1 * torch.randn(shape, generator=gen)
    else:
        value = 0.02 * torch.randn(shape, generator=gen)
    return value.to(tensor.dtype)


@torch.no_grad()
def fill_like_official(model: nn.Module) -> nn.Module:
    """Fill every floating tensor of `model.state_dict()` by the rule above, in place; returns model."""
    state = model.state_dict()
    filled = {k: fill_tensor(k, v) if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(filled, strict=True)
    return model


def official_input(size: int | tuple[int, int], batch: int = 1) -> torch.Tensor:
    """(batch, 3, H, W) float32: sin/cos stripes that differ per channel, row, column and sample."""
    h, w = (size, size) if isinstance(size, int) else size
    ys = torch.arange(h, dtype=torch.float64)[:, None]
    xs = torch.arange(w, dtype=torch.float64)[None, :]
    out = torch.empty(batch, 3, h, w, dtype=torch.float64)
    for b in range(batch):
        for c in range(3):
            out[b, c] = (torch.sin(0.11 * (c + 1) * ys + 0.05 * b) * torch.cos(0.07 * (c + 2) * xs)
                         + 0.3 * torch.sin(0.013 * (ys + 2 * xs) + c))
    return out.float() / 1.3


def summarize(t: torch.Tensor) -> dict[str, Any]:
    """Shape, sum, abs-sum and N_SAMPLES values at evenly spaced flat indices of one feature level."""
    t = t.detach().double()
    flat = t.reshape(-1)
    idx = torch.linspace(0, flat.numel() - 1, N_SAMPLES).round().long()
    return {"shape": list(t.shape), "sum": flat.sum().item(), "abs_sum": flat.abs().sum().item(),
            "samples": flat[idx].tolist()}


def assert_matches(t: torch.Tensor, expected: dict[str, Any], rtol: float = 1e-4, name: str = "") -> None:
    """`t` agrees with a `summarize` record: equal shape; values within rtol * mean|x| per element,
    sums within rtol * abs-sum."""
    got = summarize(t)
    assert got["shape"] == expected["shape"], f"{name}: shape {got['shape']} != {expected['shape']}"
    scale = max(expected["abs_sum"] / max(1, t.numel()), 1e-12)
    for i, (a, b) in enumerate(zip(got["samples"], expected["samples"])):
        assert abs(a - b) <= rtol * scale + 1e-6, f"{name}: sample {i}: {a} != {b} (scale {scale:.3g})"
    assert abs(got["sum"] - expected["sum"]) <= rtol * expected["abs_sum"] + 1e-6, \
        f"{name}: sum {got['sum']} != {expected['sum']}"
    assert abs(got["abs_sum"] - expected["abs_sum"]) <= rtol * expected["abs_sum"] + 1e-6, \
        f"{name}: abs-sum {got['abs_sum']} != {expected['abs_sum']}"


def key_shapes(model: nn.Module) -> dict[str, list[int]]:
    """Every state_dict key of `model` with its shape (the fixtures' key list)."""
    return {k: list(v.shape) for k, v in model.state_dict().items()}
