"""Official SAMRS End_to_End Mask2Former weights (`--decoder mask2former`) in samrs'
`Mask2FormerSegmentor`, every tensor accounted for.

The official files hold `{"state_dict": model.state_dict(), ...}` of `SemsegPretrnFramework` (the
encoder, `decoder.*` = the shared `Decoupled_MMSEG_Mask2FormerDecoder`, and `semseghead_1..3.*` =
one `cls_embed` per subset, SOTA/SIOR/FAST) or of `SemsegFinetuneFramework` (one `semseghead.*`),
through DataParallel possibly with `module.` prefixes. mmdet's module names map onto transformers'
(`OFFICIAL_DECODER_KEYS`); the one change of layout is the self-attention's packed (3C, C) input
projection, which transformers holds as separate q, k and v projections.
"""

from __future__ import annotations

import re
from functools import partial
from typing import Any, Mapping, Sequence

import torch

from samrs.errors import BadFileError
from samrs.models.backbone import TimmBackbone
from samrs.models.mask2former import Mask2FormerDecoder, Mask2FormerSegmentor
from samrs.models.official import (check_official_fit, default_subsets, official_backbone_state, official_parts,
                                   strip_data_parallel)


_TD = r"transformer_decoder\.layers\.(\d+)\."
_PE = r"pixel_decoder\.encoder\.layers\.(\d+)\."
_MASK_EMBED = "transformer.decoder.mask_predictor.mask_embedder"
# official decoder key (regex, from its start) -> samrs decoder key; mmcv's ConvModule holds `conv`
# and `gn`, transformers' Sequential the same as items 0 and 1
OFFICIAL_DECODER_KEYS = [
    (r"pixel_decoder\.input_convs\.(\d+)\.conv\.", r"pixel_decoder.input_projections.\1.0."),
    (r"pixel_decoder\.input_convs\.(\d+)\.gn\.", r"pixel_decoder.input_projections.\1.1."),
    (_PE + r"self_attn\.", r"pixel_decoder.encoder.layers.\1.self_attn."),
    (_PE + r"ffn\.layers\.0\.0\.", r"pixel_decoder.encoder.layers.\1.fc1."),
    (_PE + r"ffn\.layers\.1\.", r"pixel_decoder.encoder.layers.\1.fc2."),
    (_PE + r"norms\.0\.", r"pixel_decoder.encoder.layers.\1.self_attn_layer_norm."),
    (_PE + r"norms\.1\.", r"pixel_decoder.encoder.layers.\1.final_layer_norm."),
    (r"pixel_decoder\.level_encoding\.weight$", "pixel_decoder.level_embed"),
    (r"pixel_decoder\.mask_feature\.", "pixel_decoder.mask_projection."),
    (_TD + r"cross_attn\.attn\.", r"transformer.decoder.layers.\1.cross_attn."),
    (_TD + r"self_attn\.attn\.out_proj\.", r"transformer.decoder.layers.\1.self_attn.out_proj."),
    (_TD + r"ffn\.layers\.0\.0\.", r"transformer.decoder.layers.\1.fc1."),
    (_TD + r"ffn\.layers\.1\.", r"transformer.decoder.layers.\1.fc2."),
    # mmdet's Mask2Former layer: cross-attention, norms.0, self-attention, norms.1, FFN, norms.2
    (_TD + r"norms\.0\.", r"transformer.decoder.layers.\1.cross_attn_layer_norm."),
    (_TD + r"norms\.1\.", r"transformer.decoder.layers.\1.self_attn_layer_norm."),
    (_TD + r"norms\.2\.", r"transformer.decoder.layers.\1.final_layer_norm."),
    (r"transformer_decoder\.post_norm\.", "transformer.decoder.layernorm."),
    (r"query_embed\.", "transformer.queries_embedder."),
    (r"query_feat\.", "transformer.queries_features."),
    (r"level_embed\.", "transformer.level_embed."),
    (r"mask_embed\.0\.", f"{_MASK_EMBED}.0.0."),
    (r"mask_embed\.2\.", f"{_MASK_EMBED}.1.0."),
    (r"mask_embed\.4\.", f"{_MASK_EMBED}.2.0."),
]
_PACKED = re.compile(_TD + r"self_attn\.attn\.in_proj_(weight|bias)$")
_FPN = re.compile(r"pixel_decoder\.(lateral|output)_convs\.(\d+)\.(conv|gn)\.(.+)$")


def official_heads(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """semseghead name -> class count (rows of its cls_embed minus "no object"), in the official order."""
    heads = {k.split(".", 1)[0]: v.shape[0] - 1 for k, v in state.items()
             if k.startswith("semseghead") and k.endswith(".cls_embed.weight")}
    return dict(sorted(heads.items()))


def is_official_mask2former(state: Mapping[str, torch.Tensor]) -> bool:
    """True for the tensors of an official End_to_End Mask2Former (after read_official)."""
    return "decoder.query_feat.weight" in state and bool(official_heads(state))


def decoder_key(key: str, fpn_levels: int) -> str:
    """An official `decoder.` key (without that prefix) -> its samrs `decoder.` key; a key no rule
    knows comes back unchanged (the mismatch report names it)."""
    fpn = _FPN.match(key)
    if fpn:  # mmdet lists the extra FPN levels from low to high resolution, transformers numbers them up
        kind, index, item, rest = fpn.groups()
        name = "adapter" if kind == "lateral" else "layer"
        return f"pixel_decoder.{name}_{fpn_levels - int(index)}.{0 if item == 'conv' else 1}.{rest}"
    for pattern, repl in OFFICIAL_DECODER_KEYS:
        new, hits = re.subn(f"^{pattern}", repl, key)
        if hits:
            return new
    return key


def decoder_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The official decoder's tensors (keys without `decoder.`) under samrs' Mask2FormerDecoder keys."""
    fpn_levels = len({m.group(2) for k in state if (m := _FPN.match(k))})
    out = {}
    for key, value in state.items():
        packed = _PACKED.match(key)
        if packed:  # nn.MultiheadAttention packs q, k, v; transformers' attention keeps three Linear
            layer, kind = packed.groups()
            for name, part in zip("qkv", value.chunk(3)):
                out[f"transformer.decoder.layers.{layer}.self_attn.{name}_proj.{kind}"] = part
        else:
            out[decoder_key(key, fpn_levels)] = value
    return out


def official_mask2former_state(state: Mapping[str, torch.Tensor], net: Mask2FormerSegmentor,
                               parts: Sequence[str] = ("backbone", "decoder", "heads")) -> dict[str, torch.Tensor]:
    """An official file's tensors (`module.` prefixes removed) as `net`'s state_dict, for `parts`.
    The heads go to `net`'s subsets in order (semseghead_1..3, or the one fine-tuning head). Every
    tensor of a chosen part must find its place and every place its tensor: anything else is a
    BadFileError naming the keys."""
    by_part = official_parts(state)
    out: dict[str, torch.Tensor] = {}
    if "backbone" in parts:
        out.update(official_backbone_state(by_part.get("encoder", {}), net.backbone))
    if "decoder" in parts:
        out.update({f"decoder.{k}": v for k, v in decoder_state(by_part.get("decoder", {})).items()})
    if "heads" in parts:
        out.update(_head_state(by_part.get("heads", {}), net))
    return check_official_fit(net, parts, out, "the official Mask2Former weights")


def _head_state(state: Mapping[str, torch.Tensor], net: Mask2FormerSegmentor) -> dict[str, torch.Tensor]:
    heads = official_heads(state)
    if len(heads) != len(net.heads):
        raise BadFileError(f"the official file has {len(heads)} heads ({', '.join(heads)}), the model "
                         f"{len(net.heads)} ({', '.join(net.heads)})")
    out = {}
    for head, subset in zip(heads, net.heads):
        for key, value in state.items():
            if key.startswith(f"{head}."):
                out[f"heads.{subset}.{key.removeprefix(f'{head}.cls_embed.')}"] = value
    return out


def official_decoder_kwargs(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """Mask2FormerDecoder sizes read off an official file's tensors (the heads, 8 officially, are not
    in the weights)."""
    layers = {prefix: len({m.group(1) for k in state if (m := re.match(rf"decoder\.{prefix}\.(\d+)\.", k))})
              for prefix in (r"pixel_decoder\.encoder\.layers", r"transformer_decoder\.layers")}
    queries = state["decoder.query_feat.weight"]
    return {"hidden_dim": queries.shape[1], "num_queries": queries.shape[0],
            "encoder_layers": layers[r"pixel_decoder\.encoder\.layers"],
            "decoder_layers": layers[r"transformer_decoder\.layers"],
            "encoder_feedforward_dim": state["decoder.pixel_decoder.encoder.layers.0.ffn.layers.0.0.weight"].shape[0],
            "dim_feedforward": state["decoder.transformer_decoder.layers.0.ffn.layers.0.0.weight"].shape[0]}


def load_official_mask2former(state: Mapping[str, torch.Tensor], backbone: str = "resnet50",
                              subsets: Sequence[str] | None = None, num_heads: int = 8,
                              **backbone_kwargs: Any) -> Mask2FormerSegmentor:
    """A `Mask2FormerSegmentor` (eval mode) holding an official End_to_End Mask2Former state_dict:
    a pre-training (heads SOTA, SIOR, FAST) or a fine-tuning (one head, Potsdam or iSAID by its class
    count). `subsets` names the heads instead; `backbone_kwargs` go to the timm model."""
    state = strip_data_parallel(state)
    heads = official_heads(state)
    if not is_official_mask2former(state):
        raise BadFileError("not an official SAMRS Mask2Former state_dict (no decoder.query_feat and "
                         "semseghead*.cls_embed weights)")
    names = list(subsets) if subsets is not None else list(default_subsets(heads))
    if len(names) != len(heads):
        raise BadFileError(f"the file has {len(heads)} heads ({', '.join(heads)}); got subsets {names}")
    decoder = partial(Mask2FormerDecoder, num_heads=num_heads, **official_decoder_kwargs(state))
    net = Mask2FormerSegmentor(TimmBackbone(backbone, **backbone_kwargs), decoder, dict(zip(names, heads.values())))
    net.load_state_dict(official_mask2former_state(state, net), strict=True)
    return net.eval()
