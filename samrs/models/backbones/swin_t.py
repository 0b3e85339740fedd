"""Swin-T as the official SAMRS code builds it (its backbone/swin.py, the Swin of
Swin-Transformer-Semantic-Segmentation), registered with timm as `swin_t`.

It differs from timm's `swin_tiny_patch4_window7_224` where the outputs change, and follows the
official code there:
- every second block shifts its windows, also in a stage no larger than one window (timm does not);
- a map whose side is not a multiple of the window is zero-padded before the cyclic shift (timm
  pads after it); padded tokens take part in attention unmasked, as in the official code;
- each of the four output levels has its own LayerNorm (`norm0` .. `norm3`).
The state_dict keys are the official encoder's: patch merging sits at the end of its stage
(`layers.<i>.downsample`), the relative position index is a saved buffer.
"""

from __future__ import annotations

import logging
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from samrs.models.backbones.base import LevelsBackbone, init_linear_and_norms
from samrs.models.weights import unwrap_checkpoint

log = logging.getLogger(__name__)


def relative_position_index(window: int) -> torch.Tensor:
    """(window², window²) index into the (2 window - 1)² bias table, row-major over (dy, dx)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def window_partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * nW, window², C), windows row-major."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).transpose(2, 3)
    return x.reshape(-1, window * window, c)


def window_merge(windows: torch.Tensor, window: int, h: int, w: int) -> torch.Tensor:
    """Inverse of window_partition: (B * nW, window², C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // window, w // window, window, window, c).transpose(2, 3)
    return x.reshape(-1, h, w, c)


def shift_mask(h: int, w: int, window: int, shift: int, device: torch.device) -> torch.Tensor:
    """(nW, window², window²) additive mask (0 / -100) that keeps the regions of a cyclic shift apart,
    for a padded map of h x w (official: regions by the slices [0, -window), [-window, -shift), [-shift, end))."""
    region = torch.zeros(1, h, w, 1, device=device)
    bounds = ((0, -window), (-window, -shift), (-shift, None))
    for i, (hs, he) in enumerate(bounds):
        for j, (ws, we) in enumerate(bounds):
            region[:, hs:he, ws:we, :] = 3 * i + j
    ids = window_partition(region, window).squeeze(-1)
    diff = ids.unsqueeze(1) - ids.unsqueeze(2)
    return torch.zeros_like(diff).masked_fill(diff != 0, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows, with a learned relative position bias."""

    def __init__(self, dim: int, window: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        self.window, self.num_heads, self.attn_drop = window, num_heads, attn_drop
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B * nW, N, C); mask: (nW, N, N) or None."""
        bw, n, c = x.shape
        q, k, v = self.qkv(x).view(bw, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, -1).permute(2, 0, 1).to(q.dtype)  # (heads, N, N)
        if mask is not None:  # group the windows of an image so that each gets its own mask
            nw = mask.shape[0]
            q, k, v = (t.view(bw // nw, nw, *t.shape[1:]) for t in (q, k, v))
            bias = bias.unsqueeze(0) + mask.unsqueeze(1).to(q.dtype)  # (nW, heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(out.reshape(bw, self.num_heads, n, -1).transpose(1, 2).reshape(bw, n, c)))


class SwinBlock(nn.Module):
    """(Shifted) window attention and MLP, pre-norm residuals; works on (B, H, W, C)."""

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float, qkv_bias: bool,
                 drop: float, attn_drop: float, drop_path: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window, num_heads, qkv_bias, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        b, h, w, c = x.shape
        y = self.norm1(x)
        pad_h, pad_w = (-h) % self.window, (-w) % self.window
        y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))  # official order: pad, then shift
        if self.shift:
            y = torch.roll(y, (-self.shift, -self.shift), dims=(1, 2))
        y = self.attn(window_partition(y, self.window), mask if self.shift else None)
        y = window_merge(y, self.window, h + pad_h, w + pad_w)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        x = x + self.drop_path(y[:, :h, :w])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated (official order), normed and projected to twice the width."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """`depth` blocks (every second one shifted) and the patch merging that leads to the next stage."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: int, mlp_ratio: float, qkv_bias: bool,
                 drop: float, attn_drop: float, drop_path: Sequence[float], downsample: bool) -> None:
        super().__init__()
        self.window, self.shift = window, window // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window, 0 if i % 2 == 0 else window // 2, mlp_ratio, qkv_bias, drop,
                      attn_drop, drop_path[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, H, W, C) -> this stage's output and the next stage's input (None after the last)."""
        h, w = x.shape[1:3]
        mask = shift_mask(-(-h // self.window) * self.window, -(-w // self.window) * self.window, self.window,
                          self.shift, x.device)
        for block in self.blocks:
            x = block(x, mask)
        return x, self.downsample(x) if self.downsample is not None else None


class PatchEmbed(nn.Module):
    """Non-overlapping patch x patch conv (the input padded to a multiple of the patch) and LayerNorm."""

    def __init__(self, patch: int, in_chans: int, dim: int) -> None:
        super().__init__()
        self.patch = patch
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        x = self.proj(F.pad(x, (0, (-w) % self.patch, 0, (-h) % self.patch)))
        return self.norm(x.permute(0, 2, 3, 1))  # (B, H, W, C)


class SwinTransformer(LevelsBackbone):
    """The official SAMRS Swin: four levels (strides 4-32), each through its own LayerNorm."""

    def __init__(
        self,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.3,
        patch_size: int = 4,
        in_chans: int = 3,
        num_classes: int = 0,
    ) -> None:
        super().__init__()
        self.check_no_classifier("swin_t", num_classes)
        self.num_classes = 0
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        widths = [embed_dim * 2**i for i in range(len(depths))]
        self.layers = nn.ModuleList(
            SwinStage(widths[i], depths[i], num_heads[i], window_size, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate,
                      dpr[sum(depths[:i]):sum(depths[:i + 1])], downsample=i < len(depths) - 1)
            for i in range(len(depths))
        )
        for i, width in enumerate(widths):
            self.add_module(f"norm{i}", nn.LayerNorm(width))
        self.num_features = self.head_hidden_size = widths[-1]
        self.feature_info = [dict(num_chs=c, reduction=patch_size * 2**i, module=f"norm{i}") for i, c in enumerate(widths)]
        self.apply(init_linear_and_norms)

    def forward_intermediates(self, x: torch.Tensor, indices: int | Sequence[int] | None = None, norm: bool = False,
                              stop_early: bool = False, output_fmt: str = "NCHW", intermediates_only: bool = False):
        """The official levels (each through its norm<i>), NCHW. `norm` is ignored: the official model
        always norms every level."""
        if output_fmt != "NCHW":
            raise ValueError("swin_t gives NCHW levels only")
        take, last = feature_take_indices(len(self.layers), indices)
        x = self.pos_drop(self.patch_embed(x))
        levels = []
        for i, stage in enumerate(self.layers):
            out, x = stage(x)
            if i in take:
                levels.append(getattr(self, f"norm{i}")(out).permute(0, 3, 1, 2).contiguous())
            if stop_early and i == last:
                break
        if intermediates_only:
            return levels
        return levels[-1], levels

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^patch_embed",
                    blocks=r"^layers\.(\d+)" if coarse else [(r"^layers\.(\d+)\.downsample", (0,)),
                                                              (r"^layers\.(\d+)\.blocks\.(\d+)", None),
                                                              (r"^norm\d", (99999,))])

    def no_weight_decay(self) -> set[str]:
        """The official no-decay names (besides every norm): relative position bias tables."""
        return {n for n, _ in self.named_parameters() if "relative_position_bias_table" in n}


# Keys of classification checkpoints (Microsoft's, RSP's, timm's) that the segmentation backbone has
# no place for: the classifier, its final norm, the saved shift masks and (ape=False) the absolute
# position embedding. The official init_weights drops them too (non-strict load).
_CLASSIFICATION_ONLY = ("head.", "norm.", "absolute_pos_embed")


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: SwinTransformer) -> dict[str, torch.Tensor]:
    """A published Swin weight file -> this model's keys, converted as the official init_weights does:
    relative position bias tables resized (bicubic) to the window; the relative position index is
    the model's own (it follows from the window). Official SAMRS encoders load as they are; Microsoft
    / RSP classification files and timm's layout (patch merging at the start of the next stage) are
    mapped, and the level norms they lack (norm0..3) start as initialised, as in the official code."""
    state = unwrap_checkpoint(state_dict)
    own = model.state_dict()
    if not any(".0.downsample." in k for k in state) and any(".1.downsample." in k for k in state):
        state = {_timm_to_official(k): v for k, v in state.items()}  # timm layout
    out = {}
    for k, v in state.items():
        if k.startswith(_CLASSIFICATION_ONLY) or k.endswith((".attn_mask", "relative_position_index")):
            continue
        if k.endswith("relative_position_bias_table") and k in own and v.shape != own[k].shape:
            v = _resize_bias_table(v, own[k].shape[0])
        out[k] = v
    dropped = sorted(set(state) - set(out))
    if dropped:
        log.info("swin_t: dropped %d classification-only tensors (%s, ...)", len(dropped), dropped[0])
    for k, v in own.items():  # derived buffers, and the level norms a classification file has no place for
        if k.endswith("relative_position_index") or (k.startswith("norm") and k not in out):
            out[k] = v
    return out


def _timm_to_official(key: str) -> str:
    """timm keeps stage i's patch merging at the start of stage i + 1."""
    parts = key.split(".")
    if len(parts) > 2 and parts[0] == "layers" and parts[2] == "downsample":
        parts[1] = str(int(parts[1]) - 1)
    return ".".join(parts)


def _resize_bias_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """(L1, heads) -> (L2, heads) by bicubic resampling of the square table, as the official loader."""
    s1, s2, heads = int(table.shape[0] ** 0.5), int(length**0.5), table.shape[1]
    grid = table.permute(1, 0).reshape(1, heads, s1, s1)
    return F.interpolate(grid, size=(s2, s2), mode="bicubic", align_corners=False).view(heads, length).permute(1, 0)


default_cfgs = generate_default_cfgs({
    "swin_t": dict(num_classes=0, input_size=(3, 224, 224), mean=IMAGENET_DEFAULT_MEAN, std=IMAGENET_DEFAULT_STD,
                   first_conv="patch_embed.proj", classifier=""),
})


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    return build_model_with_cfg(SwinTransformer, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
                                feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)), **kwargs)


@register_model
def swin_t(pretrained: bool = False, **kwargs: Any) -> SwinTransformer:
    """Swin-T (embed 96, depths 2-2-6-2, heads 3-6-12-24, window 7, drop path 0.3) as in SAMRS."""
    return _create("swin_t", pretrained, **kwargs)
