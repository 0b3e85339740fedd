"""timm backbones that return 4 feature levels, NCHW, with weights from timm or a local file."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import timm
import torch
from timm.models import adapt_input_conv, group_parameters
from torch import nn

from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.models.weights import describe_mismatch, unwrap_checkpoint
from samrs.utils.torchfiles import read_torch_file


class TimmBackbone(nn.Module):
    """Any timm model that offers `features_only`; `channels` and `strides` describe its outputs.

    Starting weights (all loaded strictly: a file that does not fit the architecture is an error
    naming the keys, not a partial load):
    - `pretrained=True`: timm's ImageNet weights of `pretrained_tag` (a timm `model.tag`, e.g.
      `resnet50.tv_in1k`; default: timm's default for `name`), downloaded by timm once. The tag's
      model may be another timm architecture with the same weights (`deit_base_patch16_224.fb_in1k`
      for `vit_b`); the model's converter maps them.
    - `checkpoint`: a local file (timm / torchvision / official classification layouts, bare or in
      {"state_dict": ...} / {"model": ...}, `module.` / `backbone.` / `encoder.` prefixes), converted
      by the model's `checkpoint_filter_fn`.
    Other keyword arguments go to `timm.create_model` (e.g. `drop_path_rate`, `img_size`, or smaller
    depths for tests). `in_chans` (multispectral images: 4 for RGB + near infrared) adapts the first
    layer of 3-channel weights as timm does (timm.models.adapt_input_conv: the RGB filters repeated
    over the bands and scaled by 3 / in_chans), for timm's weights and a local file alike.
    """

    def __init__(
        self,
        name: str = "resnet50",
        pretrained: bool = False,
        checkpoint: str | None = None,
        out_indices: Sequence[int] | None = None,
        pretrained_tag: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.name, self.kwargs = name, kwargs
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
        if checkpoint and not Path(checkpoint).is_file():
            raise MissingPathError(f"model.net.backbone.checkpoint={checkpoint}: no such file")
        self.model = timm.create_model(name, pretrained=False, features_only=True, out_indices=self.out_indices,
                                       **kwargs)
        if checkpoint:
            self.load_weights(read_torch_file(checkpoint, "weight file", weights_only=False, mmap=True), str(checkpoint))
        elif pretrained:
            tag = pretrained_tag or name
            self.load_weights(download_timm_weights(tag), f"timm's {tag} weights")
        self.in_chans = int(kwargs.get("in_chans", 3))
        self.channels = list(self.model.feature_info.channels())
        self.strides = list(self.model.feature_info.reduction())
        self._nhwc = str(getattr(self.model, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model(x)
        return [f.permute(0, 3, 1, 2).contiguous() for f in feats] if self._nhwc else list(feats)

    def load_weights(self, weights: Any, source: str) -> None:
        """Load a weight file's contents (any published layout of this architecture) strictly."""
        self.model.load_state_dict(features_state(self.model, convert_weights(self.name, weights, self.kwargs, source)))

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


def download_timm_weights(tag: str) -> dict[str, torch.Tensor]:
    """timm's pretrained weights of model `tag`, downloaded by timm (or from its cache); offline, a
    one-line error saying to pass a local copy."""
    try:
        return timm.create_model(tag, pretrained=True).state_dict()
    except OSError as err:  # the hub's or urllib's: no network and no cached copy
        raise ConfigError(f"model.net.backbone.pretrained=true: timm cannot download the ImageNet weights of {tag} "
                          f"({type(err).__name__}: offline?). Pass a local copy of them: start.checkpoint=FILE "
                          "(or model.net.backbone.checkpoint=FILE)") from None


def convert_weights(name: str, weights: Any, kwargs: Mapping[str, Any], source: str) -> dict[str, torch.Tensor]:
    """The state_dict of the whole timm model `name` (classifier left out) from a weight file's
    contents, through the model's own converter (`checkpoint_filter_fn` of its timm module). Anything
    missing, unexpected or of another shape is an error that names it."""
    # the weights are for 3 input channels; a multispectral model's first layer is adapted below
    model = timm.create_model(name, pretrained=False, **{k: v for k, v in kwargs.items() if k != "in_chans"})
    try:
        state = unwrap_checkpoint(weights)
    except ValueError as err:
        raise BadFileError(f"{source}: {err}") from None
    filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
    if filter_fn is not None:
        state = filter_fn(state, model)
    classifier = model.pretrained_cfg.get("classifier") or ()
    classifier = tuple(c for c in ((classifier,) if isinstance(classifier, str) else classifier) if c)
    expected = {k: v.shape for k, v in model.state_dict().items() if not k.startswith(classifier)}
    found = {k: v for k, v in state.items() if not k.startswith(classifier)}
    problem = describe_mismatch(expected, found)
    if problem:
        raise BadFileError(f"{source} does not fit timm model {name}: {problem}. Give the weights of the "
                           f"same architecture (model.net.backbone.name and its keyword arguments).")
    in_chans = int(kwargs.get("in_chans", 3))
    first = model.pretrained_cfg.get("first_conv") or ()
    for conv in ((first,) if isinstance(first, str) else first) if in_chans != 3 else ():
        if f"{conv}.weight" in found:  # timm's rule for 3-channel weights in a model of in_chans bands
            found[f"{conv}.weight"] = adapt_input_conv(in_chans, found[f"{conv}.weight"])
    return found


def features_state(features: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A whole model's state_dict renamed for its timm features wrapper (which prefixes `model.`
    or flattens `layers.0` to `layers_0`) and cut to the parts the wrapper keeps."""
    index = {k.replace("_", "."): k for k in state}
    out = {}
    for key in features.state_dict():
        norm = key.replace("_", ".")
        source = index.get(norm) or index.get(norm.removeprefix("model."))
        if source is None:
            raise ValueError(f"no weights for {key} of the features model")
        out[key] = state[source]
    return out
