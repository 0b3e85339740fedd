"""Pre-trained weights in and out: the exported trunk (backbone + neck + decoder) of a pre-training
run, and loading it into a model with new classifiers (fine-tuning).

An export is a torch file {"format": EXPORT_FORMAT, "state_dict": {...}, "meta": {...}} whose keys
are those of `MultiHeadSegmentor` (backbone.*, neck.*, decoder.* or decoders.<subset>.*,
aux_decoder.*); the per-subset classifiers are left out on purpose.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.utils.io import atomic_path
from samrs.utils.torchfiles import read_torch_file
from samrs.utils.logging import get_logger

log = get_logger(__name__)

EXPORT_FORMAT = "samrs-pretrained-v1"
# Top-level parts of MultiHeadSegmentor that a pre-training passes on (classifiers are not).
TRUNK_PARTS = ("backbone", "neck", "decoder", "decoders", "aux_decoder", "aux_decoders")


def describe_mismatch(expected: Mapping[str, torch.Size], found: Mapping[str, torch.Tensor], limit: int = 4) -> str:
    """'' when `found` has exactly the keys and shapes of `expected`, else what differs, briefly."""

    def some(keys: list[str]) -> str:
        return ", ".join(keys[:limit]) + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")

    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} {tuple(found[k].shape)} vs {tuple(expected[k])}" for k in expected
              if k in found and tuple(found[k].shape) != tuple(expected[k])]
    parts = []
    if missing:
        parts.append(f"missing {some(missing)}")
    if unexpected:
        parts.append(f"unexpected {some(unexpected)}")
    if shapes:
        parts.append(f"other shapes (file vs model) {some(shapes)}")
    return "; ".join(parts)


def unwrap_checkpoint(obj: Any, prefixes: Sequence[str] = ("backbone.", "encoder."),
                      wrappers: Sequence[str] = ("state_dict", "model")) -> dict[str, torch.Tensor]:
    """The backbone tensors of a published weight file, as the official loaders read them: the dict
    under the first of `wrappers` present (or the file itself), without DataParallel's `module.`
    components and, when any key has one, only the keys under the first of `prefixes` found (a
    segmentation or MoBY checkpoint: `backbone.*` / `encoder.*`; its decoder and heads are not
    backbone weights). Every backbone's `checkpoint_filter_fn` starts here."""
    for key in wrappers:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not all(torch.is_tensor(v) for v in obj.values()):
        raise ValueError("not a weight file: expected a state_dict, plain or under 'state_dict' / 'model'")
    # `module.` anywhere: DataParallel around the whole model, or around a part (`encoder.module.*`)
    state = {_MODULE.sub(r"\1", k): v for k, v in obj.items()}
    for prefix in prefixes:
        if any(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return state


_MODULE = re.compile(r"(^|\.)module\.")


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Segmentor weights (keys as in `MultiHeadSegmentor.state_dict()`) and metadata from an export of
    this package, a Lightning checkpoint of `SegmentationTask`, or a bare state_dict file. An official
    SAMRS model file comes back with its own keys and meta {"official": True} (see samrs.models.official)."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"{path}: no such weight file")
    # Lightning checkpoints pickle their hyper-parameters, so weights_only=False; mmap reads lazily.
    obj = read_torch_file(path, "weight file", weights_only=False, mmap=True)
    if isinstance(obj, dict) and obj.get("format") == EXPORT_FORMAT:
        return dict(obj["state_dict"]), dict(obj.get("meta") or {})
    if isinstance(obj, dict) and "pytorch-lightning_version" in obj:
        state = {k[4:]: v for k, v in obj["state_dict"].items() if k.startswith("net.")}
        if not state:
            raise BadFileError(f"{path}: a Lightning checkpoint, but not of a samrs SegmentationTask "
                               "(no net.* weights)")
        return state, {"global_step": obj.get("global_step")}
    official = _official_state(obj)
    if official is not None:
        return official, {"official": True, "epoch": obj.get("epoch")}
    if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
        return dict(obj), {}
    raise BadFileError(f"{path}: neither a samrs export, a Lightning checkpoint, an official SAMRS model nor a state_dict")


def _official_state(obj: Any) -> dict[str, torch.Tensor] | None:
    """The tensors of an official SAMRS model file ({"state_dict": ...} of its Semseg*Framework), or None."""
    from samrs.models.official import is_official, strip_data_parallel  # official builds on this module

    inner = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(inner, dict) or not inner or not all(torch.is_tensor(v) for v in inner.values()):
        return None
    state = strip_data_parallel(inner)
    return state if is_official(state) else None


def trunk_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The backbone, neck and decoder weights of a segmentor state_dict (no classifiers)."""
    return {k: v for k, v in state.items() if k.split(".", 1)[0] in TRUNK_PARTS}


def export_pretrained(state: Mapping[str, torch.Tensor], path: str | os.PathLike, meta: Mapping[str, Any]) -> Path:
    """Write the trunk of a segmentor state_dict, with `meta`, atomically to `path`."""
    path = Path(path)
    payload = {"format": EXPORT_FORMAT, "state_dict": trunk_state_dict(state), "meta": dict(meta)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def _select_decoder(state: dict[str, torch.Tensor], decoder_from: str | None) -> dict[str, torch.Tensor]:
    """Map a per-subset decoder (decoders.<subset>.*) onto a shared one (decoder.*)."""
    subsets = sorted({k.split(".")[1] for k in state if k.startswith(("decoders.", "aux_decoders."))})
    if not subsets:
        return state
    if decoder_from not in subsets:
        raise ConfigError(f"the weights hold one decoder per subset ({', '.join(subsets)}): choose the one to "
                          f"start from with decoder_from=<subset> (got {decoder_from!r})")
    out = {}
    for k, v in state.items():
        head, _, rest = k.partition(".")
        if head in ("decoders", "aux_decoders"):
            subset, _, rest = rest.partition(".")
            if subset == decoder_from:
                out[f"{head[:-1]}.{rest}"] = v
        else:
            out[k] = v
    return out


def load_pretrained(
    net: nn.Module,
    path: str | os.PathLike,
    parts: Sequence[str] | None = None,
    decoder_from: str | None = None,
) -> list[str]:
    """Load pre-trained backbone/neck/decoder weights into `net` (a `MultiHeadSegmentor`, e.g. with
    the classifier of a fine-tuning set), leaving its classifiers as initialised.

    `path`: an export (`pretrained.pt` of a pre-training run), a pre-training Lightning checkpoint,
    a bare state_dict, or an official SAMRS model file (its encoder and decoder). `parts`: which top-level parts to load; default: backbone, neck and
    decoder as far as `net` has them, and the auxiliary decoder when both sides have one; use
    ("backbone",) to start from the backbone alone. `decoder_from`: the subset whose decoder to take
    when the pre-training had one decoder per subset. Anything that does not fit (a missing key, an
    extra one, another shape) is an error that names the keys. Returns the parts loaded.
    """
    state, meta = read_state_dict(path)
    if meta.get("official"):
        return _load_official_trunk(net, state, path, parts)
    state = _select_decoder(trunk_state_dict(state), decoder_from)
    own = net.state_dict()
    own_parts = {k.split(".", 1)[0] for k in own}
    file_parts = {k.split(".", 1)[0] for k in state}
    if parts is None:
        parts = [p for p in ("backbone", "neck", "decoder") if p in own_parts]
        parts += [p for p in ("aux_decoder",) if p in own_parts and p in file_parts]
    chosen = set(parts)
    expected = {k: v.shape for k, v in own.items() if k.split(".", 1)[0] in chosen}
    found = {k: v for k, v in state.items() if k.split(".", 1)[0] in chosen}
    problem = describe_mismatch(expected, found)
    if problem:
        origin = f" (written for backbone {meta['backbone']}, decoder {meta.get('decoder')})" if meta.get("backbone") else ""
        raise BadFileError(f"{path}{origin} does not fit this model's {', '.join(sorted(chosen))}: {problem}. Build "
                           f"the model with the pre-training's backbone and decoder settings, or load fewer parts.")
    net.load_state_dict(found, strict=False)
    log.info("loaded %s (%d tensors) from %s; the rest as initialised", ", ".join(sorted(chosen)), len(found), path)
    return sorted(chosen)


def _load_official_trunk(net: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike,
                         parts: Sequence[str] | None) -> list[str]:
    """The encoder and decoder (or `parts` of backbone, decoder) of an official SAMRS model file."""
    from samrs.models.official import official_state

    chosen = list(parts) if parts is not None else ["backbone", "decoder"]
    if not set(chosen) <= {"backbone", "decoder"}:
        raise ValueError(f"{path} is an official SAMRS model: its parts are backbone and decoder, got {chosen}")
    try:
        found = official_state(state, net, parts=chosen)
    except ValueError as err:
        raise ValueError(f"{path} (official SAMRS model): {err}. Build the model with the official run's backbone "
                         f"and decoder (model=<backbone>_<decoder> config).") from None
    net.load_state_dict(found, strict=False)
    log.info("loaded %s (%d tensors) from the official model %s; the rest as initialised",
             ", ".join(sorted(chosen)), len(found), path)
    return sorted(chosen)
