"""ViTAEv2-S as the official SAMRS code builds it (`ViTAE_Window_NoShift_basic`, `vitaev2_s()`), as a timm
model: `timm.create_model("vitaev2_s")`, `TimmBackbone(name="vitaev2_s")`.

Four stages, each a reduction cell (RC: parallel dilated convolutions (PRM) whose concatenated tokens go
through attention, plus a convolution branch (PCM)) followed by normal cells (NC: attention and a grouped
convolution branch in parallel, then an MLP). Stages 1-2 attend inside 7x7 windows that never shift (the
map is zero-padded at the bottom/right to whole windows, and the padded tokens take part in attention,
unmasked); stages 3-4 attend globally. vitaev2_s uses no performer cells: every stage is 'swin' or
'transformer' in the official configuration.

State-dict keys and shapes are the official module's, so an official SEP checkpoint's `encoder.*`, the
ImageNet `ViTAEv2-S.pth.tar` and the RSP `rsp-vitaev2-s-ckpt.pth` load as they are (`checkpoint_filter_fn`).
Parts the official forward never uses are kept for that reason: the per-level LayerNorms `norm0..3` and,
with `relative_pos=False` (the default), the relative position tables.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from samrs.models.weights import unwrap_checkpoint

__all__ = ["ViTAEv2", "checkpoint_filter_fn"]

TOKEN_TYPES = ("swin", "transformer")


def relative_position_index(window: int) -> torch.Tensor:
    """(window^2, window^2) index into a (2 * window - 1)^2 table of relative offsets (Swin's layout)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    offsets = coords[:, :, None] - coords[:, None, :] + (window - 1)
    return offsets[0] * (2 * window - 1) + offsets[1]


def layer_scale(enabled: bool, dim: int, init_values: float) -> nn.Parameter | float:
    """A learnable per-channel scale (`gamma=True`) or the constant 1 the official code multiplies by."""
    return nn.Parameter(init_values * torch.ones(dim)) if enabled else 1.0


class Attention(nn.Module):
    """Multi-head self-attention from `in_dim` to `out_dim` channels, on whole token sequences or on
    windows (`window_size`: then it owns Swin's relative position table and index, added to the scores
    only with `relative_pos`). `value_skip`: the output is v + proj(attention) (the reduction cell's
    token transformer, whose input and output widths differ), with an optional layer scale `gamma1`."""

    def __init__(self, in_dim: int, out_dim: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 window_size: int | None = None, relative_pos: bool = False, value_skip: bool = False,
                 gamma: bool = False, init_values: float = 1e-4) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (out_dim // num_heads) ** -0.5
        self.relative_pos = relative_pos and window_size is not None  # global attention has no table
        self.value_skip = value_skip
        if window_size is not None:
            self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
            self.register_buffer("relative_position_index", relative_position_index(window_size))
            trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.qkv = nn.Linear(in_dim, out_dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(out_dim, out_dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.gamma1 = layer_scale(value_skip and gamma, out_dim, init_values)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        bias = None
        if self.relative_pos:
            bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
            bias = bias.view(N, N, -1).permute(2, 0, 1).unsqueeze(0).to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=self.scale,
                                             dropout_p=self.attn_drop if self.training else 0.0)
        out = self.proj_drop(self.gamma1 * self.proj(out.transpose(1, 2).reshape(B, N, -1)))
        if self.value_skip:
            out = v.transpose(1, 2).reshape(B, N, -1) + out
        return out


def window_attention(attn: nn.Module, x: torch.Tensor, H: int, W: int, window: int) -> torch.Tensor:
    """`attn` inside non-overlapping `window` x `window` windows of the (B, H*W, C) tokens `x`. The map is
    zero-padded at the bottom and right to whole windows; padded tokens are attended to (no mask), and
    cropped off afterwards, as in the official code."""
    B, _, C = x.shape
    x = F.pad(x.view(B, H, W, C), (0, 0, 0, -W % window, 0, -H % window))
    nh, nw = x.shape[1] // window, x.shape[2] // window
    windows = x.view(B, nh, window, nw, window, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, C)
    out = attn(windows)
    out = out.view(B, nh, nw, window, window, -1).permute(0, 1, 3, 2, 4, 5).reshape(B, nh * window, nw * window, -1)
    return out[:, :H, :W].reshape(B, H * W, -1)


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C)."""
    return x.flatten(2).transpose(1, 2)


def to_map(x: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """(B, H*W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], -1, H, W)


def conv_branch(dims: Sequence[int], strides: Sequence[int], groups: int) -> nn.Sequential:
    """The parallel convolution module (PCM): three grouped 3x3 convolutions dims[0] -> dims[1] -> dims[2]
    -> dims[3], BatchNorm + SiLU after the first two."""
    layers: list[nn.Module] = []
    for i, stride in enumerate(strides):
        layers.append(nn.Conv2d(dims[i], dims[i + 1], 3, stride, 1, groups=groups))
        if i < 2:
            layers += [nn.BatchNorm2d(dims[i + 1]), nn.SiLU(inplace=True)]
    return nn.Sequential(*layers)


class PyramidReduction(nn.Module):
    """The pyramid reduction module (PRM): parallel `kernel_size` convolutions (+ GELU) with stride
    `downsample_ratio` at several dilations, concatenated along channels in dilation order, as tokens."""

    def __init__(self, in_chans: int, embed_dim: int, kernel_size: int, downsample_ratio: int,
                 dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Sequential(nn.Conv2d(in_chans, embed_dim, kernel_size, downsample_ratio,
                                    padding=-(-((kernel_size - 1) * d + 1 - downsample_ratio) // 2), dilation=d),
                          nn.GELU())
            for d in dilations
        )
        self.out_chans = embed_dim * len(dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_tokens(torch.cat([conv(x) for conv in self.convs], dim=1))


class SqueezeExcite(nn.Module):
    """Channel gating of (B, N, C) tokens by their mean (the official SELayer; off in vitaev2_s)."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(channels, channels // reduction, bias=False), nn.ReLU(inplace=True),
                                nn.Linear(channels // reduction, channels, bias=False), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean(dim=1)).unsqueeze(1)


class TokenBlock(nn.Module):
    """The reduction cell's attention block (official `SwinTransformerBlock` for 'swin', `Token_transformer`
    for 'transformer'); only its parts are used, in the order the reduction cell calls them."""

    def __init__(self, in_dim: int, out_dim: int, num_heads: int, window_size: int | None, relative_pos: bool,
                 gamma: bool, init_values: float, mlp_ratio: float = 1.0) -> None:
        super().__init__()
        windowed = window_size is not None
        self.norm1 = nn.LayerNorm(in_dim)
        # the window block has qkv biases, the token transformer none but a skip connection from v
        self.attn = Attention(in_dim, out_dim, num_heads, qkv_bias=windowed, window_size=window_size,
                              relative_pos=relative_pos, value_skip=not windowed, gamma=gamma, init_values=init_values)
        self.norm2 = nn.LayerNorm(out_dim)
        self.mlp = Mlp(out_dim, int(out_dim * mlp_ratio))


class ReductionCell(nn.Module):
    """Downsamples by `downsample_ratios`: attention over the PRM's multi-dilation tokens (in windows for
    'swin', globally for 'transformer') plus the strided PCM branch, then an MLP (no drop path: the
    official cells are built without it)."""

    def __init__(self, img_size: int, in_chans: int, embed_dims: int, token_dims: int, downsample_ratios: int,
                 kernel_size: int, num_heads: int, dilations: Sequence[int], tokens_type: str, group: int,
                 gamma: bool, init_values: float, SE: bool, window_size: int, relative_pos: bool) -> None:
        super().__init__()
        if downsample_ratios not in (2, 4, 8):
            raise ValueError(f"vitaev2: downsample_ratios must be 2, 4 or 8 per stage, got {downsample_ratios}")
        self.tokens_type = tokens_type
        self.downsample_ratios = downsample_ratios
        self.window_size = window_size
        # stride 2 in the first log2(ratio) convolutions of the PCM, 1 after
        strides = [2 if downsample_ratios >> (i + 1) else 1 for i in range(3)]
        self.PCM = conv_branch((in_chans, embed_dims, embed_dims, token_dims), strides, group)
        self.PRM = PyramidReduction(in_chans, embed_dims, kernel_size, downsample_ratios, dilations)
        # the official window block shrinks its window (and relative table) to a smaller construction-time
        # map; the cell still partitions with `window_size`
        block_window = min(img_size // downsample_ratios, window_size) if tokens_type == "swin" else None
        self.attn = TokenBlock(self.PRM.out_chans, token_dims, num_heads, block_window, relative_pos, gamma,
                               init_values)
        self.gamma2 = layer_scale(gamma, token_dims, init_values)
        self.gamma3 = layer_scale(gamma, token_dims, init_values)
        self.SE = SqueezeExcite(token_dims) if SE else nn.Identity()

    def forward(self, x: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, int, int]:
        if x.ndim == 3:
            x = to_map(x, H, W)
        H, W = H // self.downsample_ratios, W // self.downsample_ratios
        tokens = self.attn.norm1(self.PRM(x))
        if self.tokens_type == "swin":
            tokens = window_attention(self.attn.attn, tokens, H, W, self.window_size)
        else:
            tokens = self.attn.attn(tokens)
        tokens = tokens + to_tokens(self.PCM(x)) * self.gamma2
        tokens = tokens + self.gamma3 * self.attn.mlp(self.attn.norm2(tokens))
        return self.SE(tokens), H, W


class NormalCell(nn.Module):
    """Keeps the resolution: x + attention (in windows for 'swin', global for 'transformer') + the grouped
    PCM of x, then x + MLP; drop path on each branch."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, qk_scale: float | None,
                 drop: float, attn_drop: float, drop_path: float, group: int, tokens_type: str, gamma: bool,
                 init_values: float, SE: bool, window_size: int, relative_pos: bool) -> None:
        super().__init__()
        self.tokens_type = tokens_type
        self.window_size = window_size
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, dim, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop,
                              proj_drop=drop, window_size=window_size if tokens_type == "swin" else None,
                              relative_pos=relative_pos)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden, drop=drop)
        self.PCM = conv_branch((dim, hidden, dim, dim), (1, 1, 1), group)
        self.gamma1 = layer_scale(gamma, dim, init_values)
        self.gamma2 = layer_scale(gamma, dim, init_values)
        self.gamma3 = layer_scale(gamma, dim, init_values)
        self.SE = SqueezeExcite(dim) if SE else nn.Identity()

    def forward(self, x: torch.Tensor, H: int, W: int) -> torch.Tensor:
        y = self.norm1(x)
        if self.tokens_type == "swin":
            y = window_attention(self.attn, y, H, W, self.window_size)
        else:
            y = self.gamma1 * self.attn(y)  # the official global branch scales by gamma1 here and again below
        conv = self.drop_path(self.gamma2 * to_tokens(self.PCM(to_map(x, H, W))))
        x = x + self.drop_path(self.gamma1 * y) + conv
        x = x + self.drop_path(self.gamma3 * self.mlp(self.norm2(x)))
        return self.SE(x)


class BasicLayer(nn.Module):
    """One stage: a reduction cell `RC`, then the normal cells `NC`."""

    def __init__(self, rc: ReductionCell, nc: Sequence[NormalCell]) -> None:
        super().__init__()
        self.RC = rc
        self.NC = nn.ModuleList(nc)

    def forward(self, x: torch.Tensor, H: int, W: int) -> tuple[torch.Tensor, int, int]:
        x, H, W = self.RC(x, H, W)
        for cell in self.NC:
            x = cell(x, H, W)
        return x, H, W


def official_drop_path_rates(depths: Sequence[int], rate: float) -> list[list[float]]:
    """Per-cell drop-path rates as the official code assigns them: a linear ramp 0..rate over all normal
    cells, but stage i > 0 takes its slice from index depths[i - 1], not from the cumulative depth, so
    later stages repeat earlier rates (vitaev2_s: stage 4 gets the rates of cells 9-10 of 14). Where
    the official slice would run short (it would crash), the last rate repeats."""
    ramp = torch.linspace(0, rate, sum(depths)).tolist()
    starts = [0] + list(depths[:-1])
    return [[ramp[min(start + j, len(ramp) - 1)] for j in range(depth)] for start, depth in zip(starts, depths)]


def per_stage(value: Any, stages: int) -> list[Any]:
    """A per-stage list from one value or a list (the official `repeatOrNot`)."""
    return list(value) if isinstance(value, (list, tuple)) else [value] * stages


class ViTAEv2(nn.Module):
    """ViTAEv2 with non-shifted window attention (official `ViTAE_Window_NoShift_basic`); the defaults are
    the official `vitaev2_s()`. Returns four maps, strides 4, 8, 16, 32, without normalisation (the
    official forward leaves `norm0..3` unused; `forward_intermediates(norm=True)` applies them).

    `img_size` only decides the shapes of the reduction cells' relative position tables when a stage map
    would be smaller than a window (the official window block shrinks its window then); any input whose
    sides are multiples of 32 is taken. `num_classes > 0` adds the classification `head` of the official
    ImageNet / RSP models (mean of the last stage's tokens, then a linear layer).
    """

    def __init__(
        self,
        img_size: int = 512,
        in_chans: int = 3,
        num_classes: int = 0,
        stages: int = 4,
        embed_dims: Sequence[int] | int = (64, 64, 128, 256),
        token_dims: Sequence[int] | int = (64, 128, 256, 512),
        downsample_ratios: Sequence[int] | int = (4, 2, 2, 2),
        kernel_size: Sequence[int] | int = (7, 3, 3, 3),
        RC_heads: Sequence[int] | int = (1, 1, 2, 4),
        NC_heads: Sequence[int] | int = (1, 2, 4, 8),
        dilations: Sequence[Sequence[int]] = ((1, 2, 3, 4), (1, 2, 3), (1, 2), (1, 2)),
        RC_tokens_type: Sequence[str] | str = ("swin", "swin", "transformer", "transformer"),
        NC_tokens_type: Sequence[str] | str = ("swin", "swin", "transformer", "transformer"),
        RC_group: Sequence[int] | int = (1, 16, 32, 64),
        NC_group: Sequence[int] | int = (1, 32, 64, 128),
        NC_depth: Sequence[int] | int = (2, 2, 8, 2),
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.3,
        gamma: bool = False,
        init_values: float = 1e-4,
        SE: bool = False,
        window_size: int = 7,
        relative_pos: bool = False,
    ) -> None:
        super().__init__()
        embed_dims, downsample_ratios, kernel_size, RC_heads, NC_heads, RC_group, NC_group, NC_depth = (
            per_stage(v, stages)
            for v in (embed_dims, downsample_ratios, kernel_size, RC_heads, NC_heads, RC_group, NC_group, NC_depth))
        RC_tokens_type, NC_tokens_type = per_stage(RC_tokens_type, stages), per_stage(NC_tokens_type, stages)
        dilations = dilations if isinstance(dilations[0], (list, tuple)) else [dilations] * stages
        # an int token_dims doubles per stage (the official rule)
        self.tokens_dims = per_stage(token_dims, stages) if isinstance(token_dims, (list, tuple)) else [
            token_dims * 2 ** i for i in range(stages)]
        for kind in (*RC_tokens_type, *NC_tokens_type):
            if kind not in TOKEN_TYPES:
                raise ValueError(f"vitaev2: token type {kind!r} is not built here; vitaev2_s uses {TOKEN_TYPES}")
        self.num_classes = num_classes
        self.relative_pos = relative_pos
        self.reduction = 1
        self.feature_info: list[dict[str, Any]] = []
        layers = []
        for i, rates in enumerate(official_drop_path_rates(NC_depth, drop_path_rate)):
            dim = self.tokens_dims[i]
            rc = ReductionCell(img_size, in_chans, embed_dims[i], dim, downsample_ratios[i], kernel_size[i],
                               RC_heads[i], dilations[i], RC_tokens_type[i], RC_group[i], gamma, init_values, SE,
                               window_size, relative_pos)
            nc = [NormalCell(dim, NC_heads[i], mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, rate,
                             NC_group[i], NC_tokens_type[i], gamma, init_values, SE, window_size, relative_pos)
                  for rate in rates]
            layers.append(BasicLayer(rc, nc))
            img_size //= downsample_ratios[i]
            in_chans = dim
            self.reduction *= downsample_ratios[i]
            self.feature_info.append(dict(num_chs=dim, reduction=self.reduction, module=f"layers.{i}"))
        self.pos_drop = nn.Dropout(drop_rate)  # official attribute; the official forward never calls it
        self.layers = nn.ModuleList(layers)
        for i, dim in enumerate(self.tokens_dims):
            self.add_module(f"norm{i}", nn.LayerNorm(dim, eps=1e-6))
        self.num_features = self.head_hidden_size = self.tokens_dims[-1]
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    # timm's model interface ---------------------------------------------------------------------------

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """The first reduction cell is the embedding (group 0); then every cell in order: a stage's
        reduction cell, then its normal cells. The per-level norms join the last group."""
        return dict(
            stem=r"^layers\.0\.RC",
            blocks=r"^layers\.(\d+)" if coarse else [
                (r"^layers\.(\d+)\.RC", (-1,)),
                (r"^layers\.(\d+)\.NC\.(\d+)", None),
                (r"^norm\d", (99999,)),
            ],
        )

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The official optimiser's exclusions: every parameter whose name contains 'norm' (the
        LayerNorms; not the PCM's BatchNorms, named by index) or 'relative_position_bias_table'."""
        return {n for n, _ in self.named_parameters() if "norm" in n or "relative_position_bias_table" in n}

    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def _check_size(self, x: torch.Tensor) -> None:
        H, W = x.shape[-2:]
        if H % self.reduction or W % self.reduction:
            raise ValueError(f"vitaev2 takes inputs whose sides are multiples of {self.reduction} (every stage "
                             f"halves an even map); got {H}x{W}")

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The stage outputs `indices` (timm's convention) as NCHW maps, exactly as the official forward
        returns them (norm=False), or through the per-level LayerNorms `norm<i>` (norm=True)."""
        if output_fmt != "NCHW":
            raise ValueError(f"vitaev2 gives NCHW features, not {output_fmt}")
        self._check_size(x)
        take, max_index = feature_take_indices(len(self.layers), indices)
        stages = self.layers[:max_index + 1] if stop_early or intermediates_only else self.layers
        H, W = x.shape[-2:]
        intermediates = []
        for i, stage in enumerate(stages):
            x, H, W = stage(x, H, W)
            if i in take:
                level = getattr(self, f"norm{i}")(x) if norm else x
                intermediates.append(to_map(level, H, W).contiguous())
        if intermediates_only:
            return intermediates
        return to_map(x, H, W).contiguous(), intermediates

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last of `indices`. The per-level norms stay whatever `prune_norm`
        says: they are part of the official state_dict layout."""
        take, max_index = feature_take_indices(len(self.layers), indices)
        self.layers = self.layers[:max_index + 1]
        if prune_head:
            self.reset_classifier(0)
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's map, (B, C, H/32, W/32)."""
        self._check_size(x)
        H, W = x.shape[-2:]
        for stage in self.layers:
            x, H, W = stage(x, H, W)
        return to_map(x, H, W)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(2, 3))  # the official classifier averages the last stage's tokens
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Weight files --------------------------------------------------------------------------------------------

# Keys the official init_weights leaves as the model built them (it deletes them from the file, or the file
# lacks them and the load is not strict): index buffers and masks, and parameters the official forward
# never reads.
_REBUILT = ("relative_position_index", "relative_coords_table", "attn_mask")
_UNUSED = re.compile(r"^norm\d\.")


def _resize_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """A (S1^2, heads) relative position table bicubically resized to (length, heads), as init_weights."""
    s1, s2, heads = int(table.shape[0] ** 0.5), int(length ** 0.5), table.shape[1]
    grid = table.permute(1, 0).reshape(1, heads, s1, s1).float()
    out = F.interpolate(grid, size=(s2, s2), mode="bicubic")
    return out.view(heads, length).permute(1, 0).contiguous().to(table.dtype)


def checkpoint_filter_fn(state_dict: dict[str, Any], model: ViTAEv2) -> dict[str, torch.Tensor]:
    """Published ViTAEv2 weights -> this model's state_dict, as the official `init_weights` reads them:
    ImageNet `ViTAEv2-S.pth.tar` ({"state_dict": ...}, window cells without relative tables), RSP
    `rsp-vitaev2-s-ckpt.pth` ({"model": ...}), mmseg/mmdet (`backbone.`), DDP (`module.`) and official SAMRS
    SEP checkpoints (`encoder.`). The classifier is dropped unless the model has one; index buffers and
    masks are rebuilt; relative tables of another window size are resized bicubically; what the official
    load leaves at its initial values (the unused per-level norms, and with relative_pos=False the unused
    relative tables) is taken from `model` where the file lacks it. Everything else is passed on, so a
    file of another architecture still fails a strict load."""
    state = unwrap_checkpoint(state_dict, wrappers=("state_dict", "state_dict_ema", "model"))
    own = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("head.") and key not in own:
            continue
        if any(part in key for part in _REBUILT):
            continue
        if key.endswith("relative_position_bias_table") and key in own:
            want = own[key].shape
            if value.shape != want and value.shape[1] == want[1]:
                value = _resize_table(value, want[0])
        out[key] = value
    for key, value in own.items():
        unused_table = key.endswith("relative_position_bias_table") and not model.relative_pos
        if key not in out and (key.endswith(_REBUILT) or _UNUSED.match(key) or unused_table):
            out[key] = value
    return out


# timm registration ------------------------------------------------------------------------------------------

def _cfg(**kwargs: Any) -> dict[str, Any]:
    first_convs = ("layers.0.RC.PCM.0", *(f"layers.0.RC.PRM.convs.{i}.0" for i in range(4)))
    return {"url": "", "num_classes": 0, "input_size": (3, 224, 224), "pool_size": None, "crop_pct": 0.9,
            "interpolation": "bicubic", "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD,
            "first_conv": first_convs, "classifier": "head", "license": "mit", **kwargs}


default_cfgs = generate_default_cfgs({"vitaev2_s": _cfg()})


def _create(variant: str, pretrained: bool = False, **kwargs: Any) -> ViTAEv2:
    return build_model_with_cfg(
        ViTAEv2, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)), **kwargs,
    )


@register_model
def vitaev2_s(pretrained: bool = False, **kwargs: Any) -> ViTAEv2:
    """ViTAEv2-S as the official SAMRS `vitaev2_s()`: 19M parameters, widths 64-128-256-512, 2-2-8-2 normal
    cells, window 7 (no shift) in stages 1-2, global attention in 3-4, drop path 0.3. No downloadable
    weights: give the official files with `pretrained_cfg_overlay=dict(file=...)` (TimmBackbone's
    `checkpoint`)."""
    return _create("vitaev2_s", pretrained, **kwargs)
