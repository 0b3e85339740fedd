"""ViT-B/16 as the official SAMRS code builds it (its backbone/vit.py), registered with timm as `vit_b`.

No class token: the position embedding covers the patches only, one table for the image size the
model was built for (`img_size`, 224 in pre-training, the crop size in fine-tuning); other sizes
resample it (bicubic, as the official loader does once). All four levels come from the last block,
after the final norm: deconv-LayerNorm-GELU-deconv (stride 4), deconv (8), identity (16) and 2x2
max-pool (32). The state_dict keys are the official encoder's (`fpn1.1.ln.*` included).
"""

from __future__ import annotations

import logging
import math
from functools import partial
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from timm.models.vision_transformer import Block
from torch import nn

from samrs.models.backbones.base import LevelsBackbone, Norm2d, init_linear_and_norms
from samrs.models.weights import unwrap_checkpoint

log = logging.getLogger(__name__)


class PatchEmbed(nn.Module):
    """patch x patch conv, no norm (the official ViT's)."""

    def __init__(self, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


def resize_pos_embed(pos_embed: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
    """(1, h*w, C) on a square grid -> (1, grid[0]*grid[1], C), bicubic (align_corners=False, no
    antialiasing), as the official loaders resize."""
    side = math.isqrt(pos_embed.shape[1])
    if side * side != pos_embed.shape[1]:
        raise ValueError(f"a position embedding of {pos_embed.shape[1]} tokens is not a square grid")
    if (side, side) == tuple(grid):
        return pos_embed
    table = pos_embed.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    table = F.interpolate(table.float(), size=tuple(grid), mode="bicubic", align_corners=False).to(pos_embed.dtype)
    return table.permute(0, 2, 3, 1).flatten(1, 2)


class VisionTransformer(LevelsBackbone):
    """The official SAMRS ViT: pre-norm blocks, absolute position embedding, levels from the last block."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.15,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.check_no_classifier("vit_b", num_classes)
        self.num_classes, self.patch_size = 0, patch_size
        self.grid = (img_size // patch_size, img_size // patch_size)
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias=qkv_bias, proj_drop=drop_rate, attn_drop=attn_drop_rate,
                  drop_path=dpr[i], norm_layer=norm)
            for i in range(depth)
        )
        self.norm = norm(embed_dim)
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2), Norm2d(embed_dim), nn.GELU(),
                                  nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2))
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(2, 2)
        self.num_features = self.head_hidden_size = embed_dim
        self.feature_info = [dict(num_chs=embed_dim, reduction=patch_size * s, module=f"fpn{i + 1}")
                             for i, s in enumerate((0.25, 0.5, 1, 2))]
        self._init_official()

    def _init_official(self) -> None:
        """The official initialisation: truncated normal 0.02 for linear weights and the position
        embedding, zero biases, unit norms, and each block's output projections scaled by
        1 / sqrt(2 * (block index + 1))."""
        trunc_normal_(self.pos_embed, std=0.02)
        self.apply(init_linear_and_norms)
        with torch.no_grad():
            for i, block in enumerate(self.blocks):
                block.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
                block.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """The four official levels (strides 4, 8, 16, 32), NCHW, all from the normed last block.
        `norm` is ignored: the official model always applies the final norm."""
        if output_fmt != "NCHW":
            raise ValueError("vit_b gives NCHW levels only")
        take, _ = feature_take_indices(4, indices)
        if x.shape[2] % self.patch_size or x.shape[3] % self.patch_size:
            raise ValueError(f"vit_b takes sides that are multiples of {self.patch_size}, got {tuple(x.shape[2:])}")
        x = self.patch_embed(x)
        grid = x.shape[2:]
        x = self.pos_drop(x.flatten(2).transpose(1, 2) + resize_pos_embed(self.pos_embed, grid))
        for block in self.blocks:
            x = block(x)
        x = self.norm(x).transpose(1, 2).reshape(x.shape[0], -1, *grid)
        levels = [fpn(x) for i, fpn in enumerate((self.fpn1, self.fpn2, self.fpn3, self.fpn4)) if i in take]
        if intermediates_only:
            return levels
        return x, levels

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Layer ids for lr decay as timm's ViT: embeddings 0, block i -> i + 1, the final norm and the
        fpn with the last block ((99999,) is timm's "same group as the previous")."""
        return dict(stem=r"^pos_embed|^patch_embed", blocks=[(r"^blocks\.(\d+)", None), (r"^norm|^fpn", (99999,))])

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}


# Tensors of published files that the official ViT has no place for (its init_weights loads
# non-strictly and drops them): classifiers, the class token, MAE's decoder, BEiT's relative
# position biases, separate q/v biases and layer scales.
_NOT_IN_OFFICIAL = ("head.", "fc_norm.", "cls_token", "dist_token", "mask_token", "decoder", "rel_pos_bias.")
_BEIT_ONLY = ("attn.q_bias", "attn.v_bias", "attn.relative_position_bias_table", "attn.relative_position_index",
              "gamma_1", "gamma_2")


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: VisionTransformer) -> dict[str, torch.Tensor]:
    """A published ViT-B file -> this model's keys, as the official init_weights converts: official
    SAMRS encoders as they are; DeiT / timm / MAE / BEiT classification files without their class token
    (the position embedding loses its first token), the position table resized (bicubic) to the model's
    grid, classifier and decoder dropped; the parts such files lack start as initialised, as in the
    official code: fpn1/fpn2 always; for BEiT (relative positions, separate q/v biases, layer scales,
    which the official model has no place for) also the position embedding, the qkv biases and the
    final norm."""
    state = unwrap_checkpoint(state_dict)
    own = model.state_dict()
    out = {k: v for k, v in state.items() if not k.startswith(_NOT_IN_OFFICIAL) and not k.endswith(_BEIT_ONLY)}
    dropped = sorted(set(state) - set(out))
    if dropped:
        log.info("vit_b: dropped %d tensors the official ViT has no place for (%s, ...)", len(dropped), dropped[0])
    if "pos_embed" in out:
        pos = out["pos_embed"]
        if math.isqrt(pos.shape[1] - 1) ** 2 == pos.shape[1] - 1:  # a class token's entry first
            pos = pos[:, 1:]
        out["pos_embed"] = resize_pos_embed(pos, model.grid)
    initialised = [k for k in own if k.startswith(("fpn1.", "fpn2."))]
    if any(k.endswith("attn.q_bias") for k in state):  # BEiT
        initialised += [k for k in own if k == "pos_embed" or k.endswith("attn.qkv.bias") or k.startswith("norm.")]
    for k in initialised:
        out.setdefault(k, own[k])
    return out


default_cfgs = generate_default_cfgs({
    "vit_b": dict(num_classes=0, input_size=(3, 224, 224), mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                  first_conv="patch_embed.proj", classifier=""),
})


@register_model
def vit_b(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """ViT-B/16 (768 wide, 12 blocks, 12 heads, qkv bias, drop path 0.15) as in SAMRS."""
    return build_model_with_cfg(VisionTransformer, "vit_b", pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)), **kwargs)
