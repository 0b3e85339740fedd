"""timm backbones that return 4 feature levels, NCHW, with optional local weight files."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Iterable, Sequence

import timm
import torch
from timm.models import group_parameters, load_state_dict
from torch import nn

from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.models.weights import describe_mismatch


class TimmBackbone(nn.Module):
    """Any timm model that offers `features_only`; `channels` and `strides` describe its outputs.

    `pretrained=True` loads timm's own weights (downloaded by timm, or from its cache); `checkpoint`
    loads a local file instead (a timm/torchvision/official state_dict, or one wrapped in
    {"state_dict": ...} / {"model": ...}), converted by the model's own timm filter. A file that does
    not fit the architecture is an error, not a partial load. Other keyword arguments go to
    `timm.create_model` (e.g. `drop_path_rate`, `dynamic_img_size`, or smaller depths for tests).
    """

    def __init__(
        self,
        name: str = "resnet50",
        pretrained: bool = False,
        checkpoint: str | None = None,
        out_indices: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.name = name
        if out_indices is None:
            # The last four levels: strides 4-32 for CNNs whose first level is the stride-2 stem.
            probe = timm.create_model(name, pretrained=False, features_only=True, **kwargs)
            n_levels = len(probe.feature_info)
            del probe
            if n_levels < 4:
                raise ConfigError(f"timm model {name} gives {n_levels} feature levels; the decoders need 4 "
                                  f"(set model.net.backbone.out_indices)")
            out_indices = range(n_levels - 4, n_levels)
        self.out_indices = tuple(out_indices)
        if checkpoint:
            check_weight_file(name, checkpoint, kwargs)
        weights = {"pretrained_cfg_overlay": {"file": str(checkpoint)}} if checkpoint else {}
        try:
            self.model = timm.create_model(name, pretrained=pretrained or bool(checkpoint), features_only=True,
                                           out_indices=self.out_indices, **weights, **kwargs)
        except OSError as err:  # the hub's or urllib's: no network and no cached copy
            if checkpoint or not pretrained:
                raise
            raise ConfigError(f"model.net.backbone.pretrained=true: timm cannot download the ImageNet weights of "
                              f"{name} ({type(err).__name__}: offline?). Pass a local copy of them: start.checkpoint=FILE "
                              "(or model.net.backbone.checkpoint=FILE)") from None
        self.channels = list(self.model.feature_info.channels())
        self.strides = list(self.model.feature_info.reduction())
        self._nhwc = str(getattr(self.model, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model(x)
        return [f.permute(0, 3, 1, 2).contiguous() for f in feats] if self._nhwc else list(feats)

    def layer_ids(self) -> dict[str, int]:
        """Depth index of the parameters (names relative to this module) that timm's group matcher
        places: 0 for the embeddings, i + 1 for block i. Used for layer-wise lr decay. Parameters it
        does not match (timm: "neck, head"; ViT-Adapter's adapter, RVSA's neck) are left out, so they
        get the lr of what follows the backbone, as in BEiT's and the official SAMRS constructors."""
        inner = getattr(self.model, "model", None)  # timm keeps the model whole for ViT-like nets
        if inner is None or not hasattr(inner, "group_matcher"):
            raise ConfigError(
                f"layer-wise lr decay needs a backbone whose timm features wrapper keeps the model's "
                f"group_matcher (ViT family); {self.name} has none: set model.param_groups.layer_decay=null"
            )
        matcher = inner.group_matcher(coarse=False)
        ids = group_parameters(inner, matcher, reverse=True)
        unmatched = unmatched_names(ids, matcher)
        return {f"model.model.{k}": v for k, v in ids.items() if k not in unmatched}


def unmatched_names(names: Iterable[str], matcher: Any) -> set[str]:
    """The names no pattern of a timm group matcher (a dict of regexes) matches; timm gives them the
    last layer id. A callable matcher places every name."""
    if not isinstance(matcher, dict):
        return set()
    specs = [s for spec in matcher.values() if spec is not None
             for s in (spec if isinstance(spec, (list, tuple)) else [spec])]
    patterns = [re.compile(s[0] if isinstance(s, (list, tuple)) else s) for s in specs]
    return {n for n in names if not any(p.match(n) for p in patterns)}


def check_weight_file(name: str, path: str | Path, kwargs: dict[str, Any]) -> None:
    """Fail with a clear message when a local weight file does not fit timm model `name`.

    timm itself only warns about unexpected keys once a model is wrapped for features; a file for
    another architecture must not load half-way silently.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"model.net.backbone.checkpoint={path}: no such file")
    model = timm.create_model(name, pretrained=False, **kwargs)
    state = load_state_dict(str(path))
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    classifier = model.pretrained_cfg.get("classifier") or ()
    classifier = (classifier,) if isinstance(classifier, str) else tuple(classifier)
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith(classifier)}
    found = {k: v for k, v in state.items() if not k.startswith(classifier)}
    problem = describe_mismatch(expected, found)
    if problem:
        raise BadFileError(f"{path} does not fit timm model {name}: {problem}. Give the weights of the "
                           f"same architecture (model.net.backbone.name and its keyword arguments).")
