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
`fill_like_official(model, fan_in=True)` (an extension; the default is the rule above) gives weights
with 2 or more dimensions normal / sqrt(numel / shape[0]) instead, so that long paths of small weights
(e.g. an FFN after a deformable attention) still move the outputs by more than the tolerance.
Input: `official_input(size)`, a smooth deterministic pattern of shape (1, 3, H, W) in about [-1, 1].
A fixture level is summarised by `summarize`: shape, sum, abs-sum and 8 values at evenly spaced flat
indices; `assert_matches` compares with atol relative to the level's scale (mean |x|).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

N_SAMPLES = 8


def fill_tensor(key: str, tensor: torch.Tensor, fan_in: bool = False) -> torch.Tensor:
    """The value the fill rule gives the tensor `key` (same shape and dtype)."""
    gen = torch.Generator().manual_seed(zlib.crc32(key.encode()))
    shape = tuple(tensor.shape)
    if key.endswith("running_var"):
        value = 0.5 + torch.rand(shape, generator=gen)
    elif tensor.ndim == 1 and key.endswith("weight"):
        value = 1.0 + 0.1 * torch.randn(shape, generator=gen)
    elif fan_in and tensor.ndim >= 2 and key.endswith("weight"):
        value = torch.randn(shape, generator=gen) / (tensor.numel() / shape[0]) ** 0.5
    else:
        value = 0.02 * torch.randn(shape, generator=gen)
    return value.to(tensor.dtype)


@torch.no_grad()
def fill_like_official(model: nn.Module, fan_in: bool = False) -> nn.Module:
    """Fill every floating tensor of `model.state_dict()` by the rule above, in place; returns model."""
    state = model.state_dict()
    filled = {k: fill_tensor(k, v, fan_in) if v.is_floating_point() else v for k, v in state.items()}
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


FIXTURES = Path(__file__).parent / "official_fixtures"


def load_fixture(name: str) -> dict[str, Any]:
    """tests/models/official_fixtures/<name>.json, written by a script from the official model:
    `keys` ([key, shape] of the full-size model, in state_dict order) and `reduced` (`samrs_kwargs`,
    `input_size`, one `summarize` record per output level of the filled reduced model)."""
    return json.loads((FIXTURES / f"{name}.json").read_text())


def assert_official_keys(model: nn.Module, fixture: dict[str, Any]) -> None:
    """The model's state_dict keys, their order and shapes are the official model's."""
    expected = [(k, list(shape)) for k, shape in fixture["keys"]]
    got = list(key_shapes(model).items())
    missing = sorted({k for k, _ in expected} - {k for k, _ in got})
    extra = sorted({k for k, _ in got} - {k for k, _ in expected})
    assert not missing and not extra, f"missing {missing[:5]}, unexpected {extra[:5]}"
    assert got == expected


def assert_official_outputs(levels: list[torch.Tensor], fixture: dict[str, Any], rtol: float = 1e-4) -> None:
    """Each output level agrees with the official reduced model's (same fill, same input)."""
    expected = fixture["reduced"]["levels"]
    assert len(levels) == len(expected)
    for i, (level, record) in enumerate(zip(levels, expected)):
        assert_matches(level, record, rtol=rtol, name=f"level {i}")
