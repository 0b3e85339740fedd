"""One backbone, a shared decoder, one classifier per subset (paper Sec. 4.1, official code)."""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from samrs.errors import ConfigError
from samrs.models.weights import load_pretrained


class ClassifierHead(nn.Sequential):
    """Dropout2d + conv (1x1 by default): the per-subset classifier of the official code."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1, kernel_size: int = 1) -> None:
        super().__init__(nn.Dropout2d(dropout), nn.Conv2d(channels, num_classes, kernel_size, padding=kernel_size // 2))


def _per_subset(factory: Callable[[], nn.Module], subsets: Sequence[str], shared: bool) -> nn.Module:
    return factory() if shared else nn.ModuleDict({k: factory() for k in subsets})


def _batch_dependent(module: nn.Module) -> bool:
    """True when a sample's output depends on the other samples of its batch (BatchNorm in training)."""
    return any(isinstance(m, _BatchNorm) and (m.training or not m.track_running_stats) for m in module.modules())


class MultiHeadSegmentor(nn.Module):
    """backbone [-> neck] -> decoder -> heads[subset]; logits are upsampled to the input size.

    `decoder`, `neck` and `aux_decoder` are factories taking `in_channels` (Hydra partials), so their
    widths follow the backbone. `heads` maps subset name to class count. `dropout` and
    `head_kernel_size` of the classifiers: None takes the official classifier of the decoder
    (UperNet: Dropout2d(0.1) + 1x1 conv; UNet: 3x3 conv without dropout). `shared_decoder=False` gives
    every subset its own decoder (and auxiliary decoder). `aux_decoder` (e.g. mmseg's FCN head on
    level 3) adds a second set of per-subset classifiers used for an auxiliary loss in training.
    `concat_subsets`: run the backbone once on all subsets' images concatenated instead of once per
    subset; "auto" does so only when that is exactly equivalent (no BatchNorm in training mode in
    the backbone); the neck, decoder and heads always see one subset at a time, as in the official
    code. `pretrained`: a pre-training export or checkpoint to start the trunk from (see
    `samrs.models.load_pretrained`; `pretrained_parts`, `decoder_from` are passed on).
    """

    def __init__(
        self,
        backbone: nn.Module,
        decoder: Callable[..., nn.Module],
        heads: Mapping[str, int],
        dropout: float | None = None,
        head_kernel_size: int | None = None,
        neck: Callable[..., nn.Module] | None = None,
        aux_decoder: Callable[..., nn.Module] | None = None,
        shared_decoder: bool = True,
        concat_subsets: bool | str = "auto",
        pretrained: str | None = None,
        pretrained_parts: Sequence[str] | None = None,
        decoder_from: str | None = None,
    ) -> None:
        super().__init__()
        if not heads:
            raise ConfigError("the segmentor needs at least one head (subset name -> class count)")
        if concat_subsets not in (True, False, "auto"):
            raise ConfigError(f"concat_subsets must be true, false or auto, got {concat_subsets!r}")
        subsets = list(heads)
        self.backbone = backbone
        self.neck = neck(in_channels=backbone.channels, strides=backbone.strides) if neck else None
        in_channels = self.neck.channels if self.neck else backbone.channels
        self.shared_decoder, self.concat_subsets = shared_decoder, concat_subsets
        decoder_module = _per_subset(lambda: decoder(in_channels=in_channels), subsets, shared_decoder)
        setattr(self, "decoder" if shared_decoder else "decoders", decoder_module)
        self.heads = self._classifiers(self._decoder_for(subsets[0]), heads, dropout, head_kernel_size)
        self.has_aux = aux_decoder is not None
        if aux_decoder is not None:
            aux_module = _per_subset(lambda: aux_decoder(in_channels=in_channels), subsets, shared_decoder)
            setattr(self, "aux_decoder" if shared_decoder else "aux_decoders", aux_module)
            self.aux_heads = self._classifiers(self._decoder_for(subsets[0], aux=True), heads, dropout, None)
        if pretrained:
            load_pretrained(self, pretrained, parts=pretrained_parts, decoder_from=decoder_from)

    @staticmethod
    def _classifiers(decoder: nn.Module, heads: Mapping[str, int], dropout: float | None,
                     kernel_size: int | None) -> nn.ModuleDict:
        """One ClassifierHead per subset after `decoder`, its official form unless told otherwise."""
        dropout = getattr(decoder, "head_dropout", 0.1) if dropout is None else dropout
        kernel_size = getattr(decoder, "head_kernel_size", 1) if kernel_size is None else kernel_size
        return nn.ModuleDict({k: ClassifierHead(decoder.channels, int(n), dropout, kernel_size) for k, n in heads.items()})

    @property
    def num_classes(self) -> dict[str, int]:
        return {k: head[1].out_channels for k, head in self.heads.items()}

    def _decoder_for(self, subset: str, aux: bool = False) -> nn.Module:
        name = "aux_decoder" if aux else "decoder"
        return getattr(self, name) if self.shared_decoder else getattr(self, f"{name}s")[subset]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Backbone levels (strides 4..32) for images (N, 3, H, W), before the neck."""
        return self.backbone(x)

    def decode(self, feats: Sequence[torch.Tensor], subset: str, size: Sequence[int]) -> dict[str, torch.Tensor]:
        """Logits of `subset` at `size` ("out"), and of its auxiliary head ("aux") when there is one."""
        if self.neck is not None:
            feats = self.neck(feats)
        out = {"out": self.heads[subset](self._decoder_for(subset)(feats))}
        if self.has_aux:
            out["aux"] = self.aux_heads[subset](self._decoder_for(subset, aux=True)(feats))
        return {k: F.interpolate(v, size=tuple(size), mode="bilinear", align_corners=False) for k, v in out.items()}

    def forward(self, x: torch.Tensor, subset: str) -> torch.Tensor:
        """Logits (N, classes of `subset`, H, W)."""
        return self.decode(self.features(x), subset, x.shape[2:])["out"]

    def forward_subsets(self, images: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
        """{subset: images} -> {subset: decode(...)}: one pre-training step's forward pass."""
        per_subset = features_per_subset(self, images)
        return {k: self.decode(per_subset[k], k, images[k].shape[2:]) for k in images}


def features_per_subset(net: nn.Module, images: Mapping[str, torch.Tensor]) -> dict[str, list[torch.Tensor]]:
    """`net.features` of every subset's images: one pass over all subsets' images concatenated when
    `net.concat_subsets` is true, or "auto" and that is exactly equivalent (no BatchNorm in training
    mode in `net.backbone`), else one pass per subset."""
    sizes = {tuple(x.shape[1:]) for x in images.values()}
    concat = net.concat_subsets is True or (
        net.concat_subsets == "auto" and len(images) > 1 and len(sizes) == 1 and not _batch_dependent(net.backbone)
    )
    if concat and len(sizes) > 1:
        raise ConfigError(f"concat_subsets=true needs crops of one size from every subset, got {sorted(sizes)}")
    if not concat:
        return {k: net.features(x) for k, x in images.items()}
    counts = [len(x) for x in images.values()]
    levels = [lvl.split(counts) for lvl in net.features(torch.cat(list(images.values())))]
    return {k: [lvl[i] for lvl in levels] for i, k in enumerate(images)}


def check_input_sizes(net: MultiHeadSegmentor, sizes: Mapping[str, int]) -> None:
    """Fail before training when the model cannot take a crop size ({config key: size}): one
    forward pass of a blank image per distinct size (crop and window sizes are often the same), on the
    model's current device, in eval mode."""
    first_key: dict[int, str] = {}
    for key, size in sizes.items():
        first_key.setdefault(int(size), key)
    subset = next(iter(net.heads))
    device = next(net.parameters()).device
    was_training = net.training
    net.eval()
    try:
        with torch.no_grad():
            for size, key in first_key.items():
                try:
                    net(torch.zeros(1, getattr(net.backbone, "in_chans", 3), size, size, device=device), subset)
                except Exception as err:  # noqa: BLE001 - any failure here means "this size does not fit"
                    stride = max(getattr(net.backbone, "strides", [32]))
                    raise ConfigError(
                        f"{key}={size}: the model cannot take {size}x{size} inputs ({type(err).__name__}: {err}). "
                        f"Choose a multiple of the backbone's largest stride ({stride}); timm models built for one "
                        f"image size (Swin, ViT) also need model.net.backbone.dynamic_img_size=true."
                    ) from err
    finally:
        net.train(was_training)
