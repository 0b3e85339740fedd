"""timm backbones that return 4 feature levels, NCHW, with optional local weight files."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

import timm
import torch
from timm.models import group_parameters, load_state_dict
from torch import nn

from samrs.models.weights import describe_mismatch


class TimmBackbone(nn.Module):
    """Any timm model that offers `features_only`; `channels` and `strides` describe its outputs.

    `pretrained=True` loads timm's own weights (downloaded by timm, or from its cache); `checkpoint`
    loads a local file instead (a timm/torchvision/official state_dict, or one wrapped in
    {"state_dict": ...} / {"model": ...}), converted by the model's own timm filter. A file that does
    not fit the architecture is an error, not a partial load. Other keyword arguments go to
    `timm.create_model` (e.g. `drop_path_rate`, `dynamic_img_size`, or smaller depths for tests);
    `in_chans` (multispectral images: 4 for RGB + near infrared) makes timm adapt the first layer of
    3-channel weights (timm.models.adapt_input_conv: the RGB filters repeated over the bands and
    scaled by 3 / in_chans), for its own weights and for a local file alike.
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
                raise ValueError(f"timm model {name} gives {n_levels} feature levels; the decoders need 4 "
                                 f"(set model.net.backbone.out_indices)")
            out_indices = range(n_levels - 4, n_levels)
        self.out_indices = tuple(out_indices)
        if checkpoint:
            check_weight_file(name, checkpoint, kwargs)
        weights = {"pretrained_cfg_overlay": {"file": str(checkpoint)}} if checkpoint else {}
        self.model = timm.create_model(name, pretrained=pretrained or bool(checkpoint), features_only=True,
                                       out_indices=self.out_indices, **weights, **kwargs)
        self.in_chans = int(kwargs.get("in_chans", 3))
        self.channels = list(self.model.feature_info.channels())
        self.strides = list(self.model.feature_info.reduction())
        self._nhwc = str(getattr(self.model, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model(x)
        return [f.permute(0, 3, 1, 2).contiguous() for f in feats] if self._nhwc else list(feats)

    def layer_ids(self) -> dict[str, int]:
        """Depth index of every parameter (names relative to this module), from timm's group matcher:
        0 for the embeddings, i + 1 for block i. Used for layer-wise lr decay."""
        inner = getattr(self.model, "model", None)  # timm keeps the model whole for ViT-like nets
        if inner is None or not hasattr(inner, "group_matcher"):
            raise ValueError(
                f"layer-wise lr decay needs a backbone whose timm features wrapper keeps the model's "
                f"group_matcher (ViT family); {self.name} has none: set model.param_groups.layer_decay=null"
            )
        ids = group_parameters(inner, inner.group_matcher(coarse=False), reverse=True)
        return {f"model.model.{k}": v for k, v in ids.items()}


def check_weight_file(name: str, path: str | Path, kwargs: dict[str, Any]) -> None:
    """Fail with a clear message when a local weight file does not fit timm model `name`.

    timm itself only warns about unexpected keys once a model is wrapped for features; a file for
    another architecture must not load half-way silently.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model.net.backbone.checkpoint={path}: no such file")
    # the file holds 3-channel weights: timm adapts the first layer to in_chans when it loads them
    model = timm.create_model(name, pretrained=False, **{k: v for k, v in kwargs.items() if k != "in_chans"})
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
        raise ValueError(f"{path} does not fit timm model {name}: {problem}. Give the weights of the "
                         f"same architecture (model.net.backbone.name and its keyword arguments).")
