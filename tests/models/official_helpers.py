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
_TORCH_RAND = torch.rand  # the original, for shape_keyed_rand while torch.rand is patched


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


def official_features(channels: list[int], sizes: list[tuple[int, int]], batch: int = 2) -> list[torch.Tensor]:
    """Deterministic stand-ins for backbone levels (batch, channels[i], *sizes[i]), standard normal."""
    return [torch.randn(batch, c, *hw, generator=torch.Generator().manual_seed(100 + i))
            for i, (c, hw) in enumerate(zip(channels, sizes))]


def official_labels(batch: int, height: int, width: int, classes: int, ignore_index: int = 255) -> torch.Tensor:
    """Deterministic label maps (batch, H, W): blocks of varying class ids (some absent per image), a
    band of ignore_index, and the last image all ignored but for one block."""
    ys = torch.arange(height)[:, None] // 8
    xs = torch.arange(width)[None, :] // 12
    out = torch.empty(batch, height, width, dtype=torch.long)
    for b in range(batch):
        out[b] = (ys * 3 + xs * (b + 2) + b) % (classes + 1)
        out[b][out[b] == classes] = ignore_index
    out[:, height // 3: height // 3 + 4] = ignore_index
    out[-1, :, : width // 2] = ignore_index
    return out


def shape_keyed_rand(*size: Any, generator: Any = None, **kwargs: Any) -> torch.Tensor:
    """A stand-in for torch.rand whose values depend on the requested shape alone (a generator seeded
    by it), so that two implementations that draw the same shapes in different orders draw the same
    numbers: Mask2Former's point sampling compared with the official head's."""
    shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else tuple(size)
    gen = torch.Generator().manual_seed(zlib.crc32(repr(shape).encode()))
    kwargs.pop("requires_grad", None)
    return _TORCH_RAND(shape, generator=gen, dtype=kwargs.pop("dtype", None) or torch.float32).to(**kwargs)


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


def assert_official_outputs(levels: list[torch.Tensor], fixture: dict[str, Any], rtol: float = 1e-4,
                            record: str = "levels") -> None:
    """Each output level agrees with the official reduced model's (same fill, same input); record
    "levels_fan_in" holds the outputs under `fill_like_official(model, fan_in=True)`."""
    expected = fixture["reduced"][record]
    assert len(levels) == len(expected)
    for i, (level, record) in enumerate(zip(levels, expected)):
        assert_matches(level, record, rtol=rtol, name=f"level {i}")


def assert_loads_samrs_checkpoint(name: str, kwargs: dict[str, Any], model: nn.Module, path: Path) -> None:
    """A checkpoint as the official SAMRS scripts save it (the DDP-wrapped framework's state_dict under
    "state_dict", `model`'s weights as its `encoder`, beside a decoder and classifiers), written to
    `path`, loads into samrs' TimmBackbone(name, **kwargs) whole."""
    from samrs.models import TimmBackbone

    state = {f"module.encoder.{k}": v for k, v in model.state_dict().items()}
    state["module.decoder.fpn_bottleneck.conv.weight"] = torch.zeros(8, 8, 3, 3)
    state["module.semseghead_1.1.weight"] = torch.zeros(18, 8, 1, 1)
    torch.save({"state_dict": state, "iteration": 80000}, path)
    loaded = TimmBackbone(name, checkpoint=str(path), **kwargs).model.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())


def assert_official_model_outputs(name: str, fixture: dict[str, Any], fan_in: bool) -> None:
    """timm model `name` with the fixture's reduced kwargs, filled by the rule (`fan_in` or not), gives
    the official reduced model's outputs on official_input(input_size)."""
    import timm

    reduced = fixture["reduced"]
    model = fill_like_official(timm.create_model(name, **reduced["samrs_kwargs"]), fan_in=fan_in).eval()
    with torch.no_grad():
        levels = model.forward_intermediates(official_input(reduced["input_size"]), intermediates_only=True)
    assert_official_outputs(levels, fixture, record="levels_fan_in" if fan_in else "levels")


def backbone_lr_groups(name: str, kwargs: dict[str, Any], **group_kwargs: Any) -> dict[str, dict[str, Any]]:
    """Parameter name (relative to the timm model) -> its optimiser group, for a UperNet segmentor on
    backbone `name` built with `kwargs`, grouped by samrs.tasks.optim.param_groups(lr=1, **group_kwargs)."""
    from functools import partial

    from samrs.models import MultiHeadSegmentor, TimmBackbone, UperNetDecoder
    from samrs.tasks.optim import param_groups

    net = MultiHeadSegmentor(TimmBackbone(name, **kwargs), partial(UperNetDecoder, channels=8), {"sota": 3})
    groups = param_groups(net, lr=1.0, **group_kwargs)
    by_param = {id(p): g for g in groups for p in g["params"]}
    prefix = "backbone.model.model."
    return {n[len(prefix):]: by_param[id(p)] for n, p in net.named_parameters() if n.startswith(prefix)}


def assert_experiments_configured(model_key: str, backbone: dict[str, Any], optimizer: dict[str, Any]) -> None:
    """sep_<key>, ft_potsdam_<key>, ft_isaid_<key> build backbone `backbone` (name and keyword values)
    with optimiser settings `optimizer` (lr, weight_decay, layer_decay, min_lr, decoder_channels)."""
    from test_train_sep import compose_train

    for experiment in (f"sep_{model_key}", f"ft_potsdam_{model_key}", f"ft_isaid_{model_key}"):
        cfg = compose_train([f"experiment={experiment}"], Path("/nonexistent"))
        assert cfg.model_key == model_key
        assert {k: cfg.model.net.backbone[k] for k in backbone} == backbone, experiment
        got = {"lr": cfg.model.optimizer.lr, "weight_decay": cfg.model.optimizer.weight_decay,
               "layer_decay": cfg.model.param_groups.layer_decay, "min_lr": cfg.model.scheduler.min_lr,
               "decoder_channels": cfg.model.net.decoder.channels}
        assert got == optimizer, experiment
        assert cfg.model.net.neck is None  # the backbone gives 4 levels itself


def assert_debug_experiment_runs(experiment: str, out: Path, subsets: dict[str, Path]) -> None:
    """`python -m samrs.train experiment=<experiment>` (4 steps, validation at 2 and 4) trains and validates."""
    from test_train_sep import run

    metrics = run(experiment, out, subsets)
    assert 0.0 <= metrics["val/mIoU"] <= 1.0
    assert (out / "pretrained.pt").is_file()
