"""The official SAMRS weight files in samrs: the one place that knows their key layouts.

The official code saves `{"state_dict": model.state_dict(), ...}` of its `SemsegPretrnFramework`
(pre-training: `encoder.*`, `decoder.*`, `semseghead_1..3.*` for SOTA, SIOR, FAST) or
`SemsegFinetuneFramework` (fine-tuning: one `semseghead.*`), plain or through DataParallel
(`module.` in front of everything, or after each part: `encoder.module.*`). Its encoders are the
samrs timm models of the same name (`resnet50`, `swin_t`, `vitaev2_s`, `internimage_t`, `vit_b`,
`vit_adapter_b`, `vit_b_rvsa`) with the same keys; its UperNet (mmseg's UPerHead without classifier)
and UNet (smp's decoder blocks) are samrs' `UperNetDecoder` and `UNetDecoder` under other names.

`load_official(path, backbone, decoder)` builds the samrs model of a file and loads every tensor;
`official_state(state, net)` converts a file's tensors for a given `MultiHeadSegmentor` (used by
`load_pretrained` to fine-tune from an official pre-training and by `samrs.evaluate`).
"""

from __future__ import annotations

import os
import re
from functools import partial
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.models.backbone import TimmBackbone, convert_weights, features_state
from samrs.models.segmentor import MultiHeadSegmentor
from samrs.models.unet import UNetDecoder
from samrs.models.upernet import UperNetDecoder
from samrs.models.weights import describe_mismatch
from samrs.utils.torchfiles import read_torch_file

# official --backbone name (and the spellings its scripts use) -> samrs timm model
BACKBONES = {
    "resnet50": "resnet50",
    "swin_t": "swin_t",
    "swint": "swin_t",
    "vitaev2_s": "vitaev2_s",
    "internimage_t": "internimage_t",
    "vit_b": "vit_b",
    "vit_adapter_b": "vit_adapter_b",
    "vitadapter_b": "vit_adapter_b",
    "vit_b_rvsa": "vit_b_rvsa",
}
DECODERS = {"upernet": UperNetDecoder, "unet": UNetDecoder}
# the pre-training heads semseghead_1..3, in this order
SEP_SUBSETS = ("sota", "sior", "fast")
# fine-tuning head (semseghead) -> subset name, by class count (Potsdam: 5, iSAID: 16 with background)
FINETUNE_SUBSETS = {5: "potsdam", 16: "isaid"}

# mmseg UPerHead module -> samrs UperNetDecoder module; mmcv's ConvModule holds `conv` and `bn`,
# samrs' conv_bn_relu the same as items 0 and 1
_UPERNET = [(r"psp_modules\.(\d+)\.1\.", r"ppm.stages.\1.1."), (r"bottleneck\.", "ppm.bottleneck."),
            (r"lateral_convs\.", "lateral."), (r"fpn_convs\.", "fpn."), (r"fpn_bottleneck\.", "fuse.")]


def is_official(state: Mapping[str, Any]) -> bool:
    """True for the tensors of an official SemsegPretrn/FinetuneFramework (after read_official)."""
    return any(k.startswith("encoder.") for k in state) and any(k.startswith("semseghead") for k in state)


def read_official(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of an official file, `module.` prefixes removed (also after each part's name)."""
    path = Path(path)
    if not path.is_file():
        raise MissingPathError(f"{path}: no such weight file")
    obj = read_torch_file(path, "official SAMRS model file", weights_only=False, mmap=True)
    state = obj.get("state_dict", obj.get("model", obj)) if isinstance(obj, dict) else obj
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise BadFileError(f"{path}: not a weight file (a state_dict, plain or under 'state_dict')")
    return strip_data_parallel(state)


def strip_data_parallel(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`module.encoder.x` and `encoder.module.x` -> `encoder.x`."""
    out = {}
    for k, v in state.items():
        k = k.removeprefix("module.")
        part, _, rest = k.partition(".")
        out[f"{part}.{rest.removeprefix('module.')}" if rest else k] = v
    return out


def file_heads(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Head name -> class count of an official file, in the official order."""
    counts = {}
    for k, v in state.items():
        head = k.split(".", 1)[0]
        if head.startswith("semseghead") and k.endswith("weight") and v.ndim == 4:
            counts[head] = v.shape[0]
    return dict(sorted(counts.items()))


def default_subsets(heads: Mapping[str, int]) -> dict[str, int]:
    """samrs subset names for an official file's heads: SOTA/SIOR/FAST for semseghead_1..3; the
    fine-tuning head by its class count (potsdam: 5, isaid: 16, else `finetune`)."""
    if list(heads) == ["semseghead"]:
        n = heads["semseghead"]
        return {FINETUNE_SUBSETS.get(n, "finetune"): n}
    return {SEP_SUBSETS[int(h.rsplit("_", 1)[1]) - 1]: n for h, n in heads.items()}


# official ViTs built for one crop size (`img_size`): one position-table entry per patch, no class token
PER_CROP_POSITIONS = ("vit_b", "vit_b_rvsa")


def file_backbone_kwargs(name: str, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Build arguments that follow from a file: the image size of the official ViTs, whose position
    table holds one entry per patch of the crop size they were trained at."""
    pos, proj = state.get("encoder.pos_embed"), state.get("encoder.patch_embed.proj.weight")
    if name in PER_CROP_POSITIONS and pos is not None and proj is not None:
        side = int(round(pos.shape[1] ** 0.5))
        if side * side == pos.shape[1]:
            return {"img_size": side * proj.shape[-1]}
    return {}


def file_decoder_kwargs(decoder: str, state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The decoder widths a file holds (official: UperNet as wide as the second level, UNet 512-256-128-64)."""
    if decoder == "upernet" and "decoder.fpn_bottleneck.conv.weight" in state:
        return {"channels": state["decoder.fpn_bottleneck.conv.weight"].shape[0]}
    widths = [state[f"decoder.blocks.{i}.conv2.0.weight"].shape[0] for i in range(4)
              if f"decoder.blocks.{i}.conv2.0.weight" in state]
    return {"decoder_channels": widths} if decoder == "unet" and len(widths) == 4 else {}


def official_state(state: Mapping[str, torch.Tensor], net: MultiHeadSegmentor,
                   parts: Sequence[str] = ("backbone", "decoder", "heads")) -> dict[str, torch.Tensor]:
    """An official file's tensors (after read_official) as `net`'s state_dict keys, for `parts` of
    backbone, decoder and heads. Every tensor of a chosen part must find its place and every place
    its tensor: anything else is an error naming the keys. A Mask2FormerSegmentor takes an official
    End_to_End Mask2Former file (samrs.models.official_mask2former)."""
    from samrs.models.mask2former import Mask2FormerSegmentor  # (whose converter builds on this module)

    if isinstance(net, Mask2FormerSegmentor):
        from samrs.models.official_mask2former import official_mask2former_state

        return official_mask2former_state(state, net, parts)
    if not isinstance(net.backbone, TimmBackbone) or net.neck is not None or not net.shared_decoder or net.has_aux:
        raise ConfigError("an official file fits a MultiHeadSegmentor with a TimmBackbone, no neck, one shared "
                          "decoder and no auxiliary head (the official model)")
    by_part = official_parts(state)
    out: dict[str, torch.Tensor] = {}
    if "backbone" in parts:
        out.update(official_backbone_state(by_part.get("encoder", {}), net.backbone))
    if "decoder" in parts:
        out.update({f"decoder.{k}": v for k, v in _decoder_state(by_part.get("decoder", {}), net.decoder).items()})
    if "heads" in parts:
        out.update(_head_state(by_part.get("heads", {}), net))
    return check_official_fit(net, parts, out, "the official weights")


def official_parts(state: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """An official file's tensors by part: "encoder" and "decoder" (keys without the part's name) and
    "heads" (semseghead*, keys whole); any other part is an error."""
    by_part: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in state.items():
        part, _, rest = k.partition(".")
        head = part.startswith("semseghead")
        by_part.setdefault("heads" if head else part, {})[k if head else rest] = v
    unknown = sorted(set(by_part) - {"encoder", "decoder", "heads"})
    if unknown:
        raise BadFileError(f"not an official SAMRS model: unexpected parts {unknown} (expected encoder, decoder, "
                           f"semseghead*)")
    return by_part


def check_official_fit(net: nn.Module, parts: Sequence[str], found: dict[str, torch.Tensor],
                       what: str) -> dict[str, torch.Tensor]:
    """`found` when it holds every tensor of `net`'s `parts` (samrs' part names: backbone, decoder,
    heads) in its shape and nothing else; else an error naming the keys."""
    expected = {k: v.shape for k, v in net.state_dict().items() if k.split(".", 1)[0] in parts}
    problem = describe_mismatch(expected, found)
    if problem:
        raise BadFileError(f"{what} do not fit this model: {problem}")
    return found


def official_backbone_state(encoder: Mapping[str, torch.Tensor], backbone: TimmBackbone) -> dict[str, torch.Tensor]:
    """An official encoder's tensors (keys without `encoder.`) as `backbone.model.*` keys of a samrs
    TimmBackbone, through the timm model's converter (also for Mask R-CNN's backbone)."""
    full = convert_weights(backbone.name, encoder, backbone.kwargs, "the official encoder")
    return {f"backbone.model.{k}": v for k, v in features_state(backbone.model, full).items()}


def _decoder_state(state: Mapping[str, torch.Tensor], decoder: nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(decoder, UperNetDecoder):
        return {_rename_upernet(k): v for k, v in state.items()}
    if isinstance(decoder, UNetDecoder):  # smp's decoder blocks under the same names
        return {f"unet.{k}": v for k, v in state.items()}
    raise ConfigError(f"no official layout for a {type(decoder).__name__}: official decoders are upernet and unet")


def _rename_upernet(key: str) -> str:
    for pattern, repl in _UPERNET:
        new = re.sub(f"^{pattern}", repl, key)
        if new != key:
            return re.sub(r"\.conv\.", ".0.", re.sub(r"\.bn\.", ".1.", new))
    return key  # left for the mismatch report


def _head_state(state: Mapping[str, torch.Tensor], net: MultiHeadSegmentor) -> dict[str, torch.Tensor]:
    """semseghead_k / semseghead -> heads.<subset>, in order; the official classifier's conv is the
    last item of its Sequential (UperNet: Dropout2d, conv; UNet: conv, identity, identity)."""
    counts = file_heads(state)
    subsets = list(net.heads)
    if len(counts) != len(subsets):
        raise BadFileError(f"the official file has {len(counts)} heads ({', '.join(counts)}), the model "
                           f"{len(subsets)} ({', '.join(subsets)})")
    out = {}
    for (head, n), subset in zip(counts.items(), subsets):
        if net.num_classes[subset] != n:
            raise BadFileError(f"the official {head} has {n} classes, the model's {subset} head "
                               f"{net.num_classes[subset]}")
        weights = {k.split(".")[-1]: v for k, v in state.items() if k.startswith(f"{head}.")}
        stray = [k for k in state if k.startswith(f"{head}.") and not k.endswith((".weight", ".bias"))]
        if stray or set(weights) != {"weight", "bias"}:
            raise BadFileError(f"the official {head} is not one conv: {sorted(k for k in state if k.startswith(head + '.'))}")
        out.update({f"heads.{subset}.1.{name}": v for name, v in weights.items()})
    return out


def build_official(backbone: str, decoder: str, heads: Mapping[str, int], decoder_kwargs: Mapping[str, Any] | None = None,
                   **backbone_kwargs: Any) -> MultiHeadSegmentor:
    """The samrs model of an official `--backbone` / `--decoder` pair: the official decoder width
    (UperNet: the second level's channels) and classifier, randomly initialised."""
    if backbone not in BACKBONES:
        raise ConfigError(f"unknown official backbone {backbone!r}: one of {', '.join(sorted(BACKBONES))}")
    if decoder not in DECODERS:
        raise ConfigError(f"unknown official decoder {decoder!r}: one of {', '.join(DECODERS)}, mask2former")
    return MultiHeadSegmentor(TimmBackbone(BACKBONES[backbone], **backbone_kwargs),
                              partial(DECODERS[decoder], **(decoder_kwargs or {})), heads)


def load_official(path: str | os.PathLike, backbone: str, decoder: str, subsets: Sequence[str] | None = None,
                  decoder_kwargs: Mapping[str, Any] | None = None, **backbone_kwargs: Any) -> MultiHeadSegmentor:
    """A samrs `MultiHeadSegmentor` (eval mode) holding an official SAMRS model file: a pre-training
    (SemsegPretrnFramework, heads SOTA/SIOR/FAST) or a fine-tuning (SemsegFinetuneFramework). `backbone`
    and `decoder` are the official `--backbone` / `--decoder` names. Its logits equal the official
    model's (the official code applies the head at full resolution after a bilinear x4 upsampling;
    samrs applies it first and upsamples the logits: the same numbers, as both are linear).
    `subsets` names the heads (default: sota/sior/fast, or potsdam / isaid by class count);
    `backbone_kwargs` go to the timm model; the image size of vit_b and the decoder's widths follow
    from the file; `decoder_kwargs` set what the weights do not hold (Mask2Former's `num_heads`, 8)."""
    state = read_official(path)
    if not is_official(state):
        raise BadFileError(f"{path}: not an official SAMRS model (no encoder.* and semseghead* weights)")
    if decoder == "mask2former":
        from samrs.models.official_mask2former import load_official_mask2former

        try:
            return load_official_mask2former(state, BACKBONES.get(backbone, backbone), subsets,
                                             **(decoder_kwargs or {}), **backbone_kwargs)
        except BadFileError as err:
            raise BadFileError(f"{path} (--backbone {backbone} --decoder mask2former): {err}") from None
    heads = file_heads(state)
    names = list(subsets) if subsets is not None else list(default_subsets(heads))
    if len(names) != len(heads):
        raise BadFileError(f"{path} has {len(heads)} heads ({', '.join(heads)}); got subsets {names}")
    kwargs = {**file_backbone_kwargs(BACKBONES.get(backbone, backbone), state), **backbone_kwargs}
    net = build_official(backbone, decoder, dict(zip(names, heads.values())),
                         {**file_decoder_kwargs(decoder, state), **(decoder_kwargs or {})}, **kwargs)
    try:
        net.load_state_dict(official_state(state, net), strict=True)
    except ValueError as err:
        raise BadFileError(f"{path} (--backbone {backbone} --decoder {decoder}): {err}") from None
    return net.eval()
