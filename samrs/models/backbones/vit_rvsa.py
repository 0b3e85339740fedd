"""ViT-B with rotated varied-size window attention (RVSA; Wang et al., TGRS 2022) as the official SAMRS
code builds it (`backbone/vit_win_rvsa_v3_wsz7.py`, `vit_b_rvsa(args)`), registered with timm as
`vit_b_rvsa`.

A ViT-B/16 without absolute position embedding: blocks 3, 6, 9, 12 attend globally, the others in 7x7
windows whose key/value windows are regressed per head (offset, scale and rotation from the average-
pooled window, sampled by bilinear grid_sample), with decomposed relative position terms (rel_pos_h,
rel_pos_w) and a Swin-style relative position bias table. Blocks 4, 6, 8, 12 go through the official
neck: fpn1 (deconv, LayerNorm, GELU, deconv: stride 4), fpn2 (deconv: stride 8), fpn3 (identity:
stride 16), fpn4 (2x2 max-pool: stride 32). The final `norm` is kept (the MAE weights fill it) but,
as officially, not used.

`vit_b_rvsa(args)` reads `args.image_size` (only for the grid of a position embedding this model
does not have: `img_size`) and `args.use_ckpt` (gradient checkpointing: `set_grad_checkpointing`);
the fine-tuning framework passes `inchannels=3` (`in_chans`). Differences from the official file,
none of which changes a key, a shape or a number: the global attention uses torch's fused
scaled-dot-product kernel, and a feature map smaller than one window is an error (the official
forward divides by zero there).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from samrs.models.backbones.base import Norm2d
from samrs.models.backbones.convert import drop_keys, keep_model_init, vit_b_cfg
from samrs.models.weights import unwrap_checkpoint

__all__ = ["ViTRVSA", "checkpoint_filter_fn"]


def relative_position_index(window: int) -> torch.Tensor:
    """(window^2, window^2) index into a (2 * window - 1)^2 bias table (Swin's layout)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)
    return rel[..., 0] * (2 * window - 1) + rel[..., 1]


def _window_regressor(dim: int, out: int, window: int) -> nn.Sequential:
    """Average over each window -> LeakyReLU -> 1x1 conv (keys <name>.2.weight / .bias)."""
    return nn.Sequential(nn.AvgPool2d(window, window), nn.LeakyReLU(), nn.Conv2d(dim, out, 1))


class RotatedVariedSizeWindowAttention(nn.Module):
    """Window attention whose key/value windows each head moves, scales and rotates."""

    def __init__(self, dim: int, num_heads: int, window_size: int = 7, qkv_bias: bool = True,
                 qk_scale: float | None = None, proj_drop: float = 0.0) -> None:
        super().__init__()
        head_dim = dim // num_heads
        self.num_heads = num_heads
        self.dim = dim
        self.ws = window_size
        self.scale = qk_scale or head_dim ** -0.5
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * window_size - 1, head_dim))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * window_size - 1, head_dim))
        self.sampling_offsets = _window_regressor(dim, num_heads * 2, window_size)
        self.sampling_scales = _window_regressor(dim, num_heads * 2, window_size)
        self.sampling_angles = _window_regressor(dim, num_heads, window_size)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        trunc_normal_(self.relative_position_bias_table, std=0.02)

    def _sample_grid(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B*heads, H', W', 2) grid_sample coordinates (align_corners=True frame) of every key/value
        position: the window's pixel offsets, scaled, rotated about the window centre, shifted."""
        b, ws = x.shape[0], self.ws
        eh, ew = x.shape[-2:]  # padded size
        nh, nw = eh // ws, ew // ws
        device = x.device
        ref_y = torch.linspace(-1, 1, eh, device=device)
        ref_x = torch.linspace(-1, 1, ew, device=device)
        image_ref = torch.stack(torch.meshgrid(ref_x, ref_y, indexing="ij"), 0).permute(0, 2, 1).unsqueeze(0)
        window_ref = F.avg_pool2d(image_ref, kernel_size=ws).reshape(1, 2, nh, 1, nw, 1)
        # pixel offsets inside a window, centred, in the image's [-1, 1] frame
        base_y = torch.arange(ws, device=device) * 2 / (eh - 1)
        base_x = torch.arange(ws, device=device) * 2 / (ew - 1)
        base_y, base_x = (base_y - base_y.mean()).repeat(nh), (base_x - base_x.mean()).repeat(nw)
        window = torch.stack(torch.meshgrid(base_x, base_y, indexing="ij"), 0).permute(0, 2, 1)
        window = window.reshape(1, 2, nh, ws, nw, ws)

        n = b * self.num_heads
        offsets = self.sampling_offsets(x).reshape(n, 2, nh, nw)
        # official: the x offset is divided by the number of whole windows along the height, y by width
        offsets = offsets / torch.tensor([h // ws, w // ws], dtype=offsets.dtype, device=device).view(1, 2, 1, 1)
        scales = self.sampling_scales(x).reshape(n, 2, nh, nw)
        angle = self.sampling_angles(x).reshape(n, 1, nh, nw)[:, 0, :, None, :, None]
        window = window * (scales[:, :, :, None, :, None] + 1)
        wx, wy = window[:, 0], window[:, 1]
        cos, sin = torch.cos(angle), torch.sin(angle)
        rotated = torch.stack([-wy * sin + wx * cos, wy * cos + wx * sin], 1)
        coords = window_ref + rotated + offsets[:, :, :, None, :, None]
        return coords.permute(0, 2, 3, 4, 5, 1).reshape(n, ws * nh, ws * nw, 2)

    def _add_rel_pos(self, dots: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """dots + decomposed relative position terms (MViTv2 style) of (B', heads, ws^2, ws^2) logits."""
        ws = self.ws
        dist = torch.arange(ws, device=q.device)[:, None] - torch.arange(ws, device=q.device)[None, :] + ws - 1
        rh, rw = self.rel_pos_h[dist], self.rel_pos_w[dist]
        bq, heads, _, dim = q.shape
        r_q = q.reshape(bq, heads, ws, ws, dim)
        rel_h = torch.einsum("byhwc,hkc->byhwk", r_q, rh)
        rel_w = torch.einsum("byhwc,wkc->byhwk", r_q, rw)
        dots = dots.view(bq, heads, ws, ws, ws, ws) + rel_h[:, :, :, :, :, None] + rel_w[:, :, :, :, None, :]
        return dots.view(bq, heads, ws * ws, ws * ws)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        ws, heads = self.ws, self.num_heads
        hd = c // heads
        pad_h, pad_w = (ws - h % ws) % ws, (ws - w % ws) % ws
        pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)  # left, right, top, bottom
        eh, ew = h + pad_h, w + pad_w
        nh, nw = eh // ws, ew // ws

        grid = self._sample_grid(F.pad(x.transpose(1, 2).reshape(b, c, h, w), pads), h, w)
        qkv = self.qkv(x).transpose(1, 2).reshape(b, 3, heads, hd, h, w).transpose(0, 1)
        qkv = F.pad(qkv.reshape(3 * b * heads, hd, h, w), pads).reshape(3, b * heads, hd, eh, ew)
        q, k, v = qkv[0], qkv[1], qkv[2]
        k = F.grid_sample(k, grid, padding_mode="zeros", align_corners=True)
        v = F.grid_sample(v, grid, padding_mode="zeros", align_corners=True)

        def windows(t: torch.Tensor) -> torch.Tensor:  # (B*heads, hd, eh, ew) -> (B*nh*nw, heads, ws^2, hd)
            t = t.reshape(b, heads, hd, nh, ws, nw, ws).permute(0, 3, 5, 1, 4, 6, 2)
            return t.reshape(b * nh * nw, heads, ws * ws, hd)

        q, k, v = windows(q), windows(k), windows(v)
        dots = self._add_rel_pos((q @ k.transpose(-2, -1)) * self.scale, q)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(ws * ws, ws * ws, -1)
        attn = (dots + bias.permute(2, 0, 1).unsqueeze(0)).softmax(dim=-1)
        out = (attn @ v).reshape(b, nh, nw, heads, ws, ws, hd).permute(0, 3, 6, 1, 4, 2, 5).reshape(b, c, eh, ew)
        out = out[:, :, pads[2]:pads[2] + h, pads[0]:pads[0] + w]
        return self.proj_drop(self.proj(out.permute(0, 2, 3, 1).reshape(b, h * w, c)))


class Attention(nn.Module):
    """Global multi-head self-attention (keys qkv, proj)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0,
                                           scale=self.scale)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: float | None = None, drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 init_values: float | None = None, window_size: int | None = 7) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        if window_size:
            self.attn = RotatedVariedSizeWindowAttention(dim, num_heads, window_size, qkv_bias, qk_scale, drop)
        else:
            self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        # the official MLP drops after fc2 only
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), drop=(0.0, drop))
        if init_values is not None:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        attn = self.attn(self.norm1(x), h, w)
        x = x + self.drop_path(attn if self.gamma_1 is None else self.gamma_1 * attn)
        mlp = self.mlp(self.norm2(x))
        return x + self.drop_path(mlp if self.gamma_2 is None else self.gamma_2 * mlp)


class PatchEmbed(nn.Module):
    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.patch_shape = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.patch_shape[0] * self.patch_shape[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        x = self.proj(x)
        return x.flatten(2).transpose(1, 2), (x.shape[2], x.shape[3])


class ViTRVSA(nn.Module):
    """ViT + RVSA backbone; `forward_intermediates` gives the official 4 levels (strides 4, 8, 16, 32)."""

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        num_classes: int = 0,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.1,
        init_values: float | None = None,
        block_indices: Sequence[int] = (3, 5, 7, 11),
        interval: int = 3,
        window_size: int = 7,
    ) -> None:
        super().__init__()
        if num_classes:
            raise ValueError("vit_b_rvsa is a feature backbone without a classifier: num_classes must be 0")
        if patch_size != 16:
            raise ValueError(f"vit_b_rvsa: the official neck is for patch size 16, got {patch_size}")
        if len(block_indices) != 4 or max(block_indices) >= depth:
            raise ValueError(f"vit_b_rvsa: block_indices must name 4 of the {depth} blocks, got {list(block_indices)}")
        self.num_classes = 0
        self.num_features = self.embed_dim = embed_dim
        self.in_chans = in_chans
        self.block_indices = tuple(block_indices)
        self.window_size = window_size
        self.grad_checkpointing = False
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        # every `interval`-th block attends globally, the others in rotated varied-size windows
        self.blocks = nn.ModuleList([
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, dpr[i], init_values,
                  window_size=window_size if (i + 1) % interval else None)
            for i in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2), Norm2d(embed_dim), nn.GELU(),
                                  nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2))
        self.fpn3 = nn.Identity()
        self.fpn4 = nn.MaxPool2d(kernel_size=2, stride=2)
        self.feature_info = [dict(num_chs=embed_dim, reduction=2 ** (i + 2), module=f"fpn{i + 1}") for i in range(4)]
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """As the official constructor: truncated-normal linears, unit LayerNorms, then the output
        projections of block i scaled by 1 / sqrt(2 * (i + 1)); convolutions keep PyTorch's defaults."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for i, blk in enumerate(self.blocks):
            blk.attn.proj.weight.div_(math.sqrt(2.0 * (i + 1)))
            blk.mlp.fc2.weight.div_(math.sqrt(2.0 * (i + 1)))

    def _run_blocks(self, x: torch.Tensor, last: int) -> list[torch.Tensor]:
        """Block outputs at `block_indices` (up to block `last`), as (N, C, H/16, W/16) maps."""
        n, _, height, width = x.shape
        tokens, (h, w) = self.patch_embed(x)
        if h < self.window_size or w < self.window_size:
            raise ValueError(f"vit_b_rvsa needs at least {self.window_size} patches per side "
                             f"({16 * self.window_size} px), got {height}x{width}")
        tokens = self.pos_drop(tokens)
        maps = []
        for i, blk in enumerate(self.blocks[:last + 1]):
            if self.grad_checkpointing and tokens.requires_grad:
                tokens = checkpoint(blk, tokens, h, w, use_reentrant=False)
            else:
                tokens = blk(tokens, h, w)
            if i in self.block_indices:
                maps.append(tokens.transpose(1, 2).reshape(n, -1, h, w))
        return maps

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The 4 official levels through fpn1..fpn4 (`norm` changes nothing: the official forward
        does not use the final norm; `stop_early` stops after the last block a wanted level needs)."""
        if output_fmt != "NCHW":
            raise ValueError(f"vit_b_rvsa gives NCHW features, not {output_fmt}")
        take, max_index = feature_take_indices(len(self.feature_info), indices)
        last = self.block_indices[max_index] if stop_early and intermediates_only else len(self.blocks) - 1
        maps = self._run_blocks(x, last)
        necks = (self.fpn1, self.fpn2, self.fpn3, self.fpn4)
        levels = [necks[i](maps[i]) for i in take]
        if intermediates_only:
            return levels
        return necks[3](maps[3]), levels

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 4, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Nothing is removed, so the state_dict keys stay those of the official model."""
        take, _ = feature_take_indices(len(self.feature_info), indices)
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.fpn4(self._run_blocks(x, len(self.blocks) - 1)[3])

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Embeddings -> layer 0, block i -> i + 1; the final norm and the neck are left unmatched, so
        layer-wise lr decay gives them the full lr, as the official ViT constructor does."""
        return dict(stem=r"^cls_token|pos_embed|patch_embed", blocks=r"^blocks\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        return {"pos_embed", "cls_token"}

    def get_classifier(self) -> nn.Module:
        return nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if num_classes:
            raise ValueError("vit_b_rvsa has no classifier")


# In MAE / DeiT / timm ViT files but not in this model (it has no absolute position embedding).
_FOREIGN_KEYS = (r"cls_token$", r"pos_embed$", r"dist_token$", r"mask_token$", r"decoder_", r"head\.", r"head_dist\.",
                 r"fc_norm\.")
# What a plain ViT file cannot hold; the official init_weights (strict=False) leaves it as initialised.
_RVSA_KEYS = (r"blocks\.\d+\.attn\.(rel_pos_[hw]|relative_position_bias_table|relative_position_index|"
              r"sampling_(offsets|scales|angles)\.)", r"fpn\d\.", r"norm\.")


def checkpoint_filter_fn(state_dict: dict[str, Any], model: ViTRVSA) -> dict[str, torch.Tensor]:
    """MAE pre-training (`vit-b-checkpoint-1599.pth`, `{"model": ...}` with the MAE decoder), DeiT /
    timm ViT-B files, or a SAMRS checkpoint (`encoder.*`) -> this model's keys, as the official
    init_weights loads them: the position embedding (resized there, then not loaded: this model has
    none), class/mask tokens, MAE decoder and classifier dropped; the RVSA parts (window regressors,
    relative position tables and their index buffers), the neck and, where the file lacks it, the final
    norm keep the model's initialisation. With in_chans != 3 the patch embedding keeps its own, too."""
    patterns = list(_RVSA_KEYS)
    foreign = list(_FOREIGN_KEYS)
    if model.in_chans != 3:
        patterns.append(r"patch_embed\.proj\.")
        foreign.append(r"patch_embed\.proj\.")
    state = drop_keys(unwrap_checkpoint(state_dict, prefixes=("encoder.", "backbone.")), foreign)
    return keep_model_init(state, model, patterns)


# pretrained=True: timm's ImageNet MAE ViT-B (not in the paper, whose start is MAE on MillionAID,
# vit-b-checkpoint-1599.pth: give that file as the checkpoint).
default_cfgs = generate_default_cfgs({"vit_b_rvsa": vit_b_cfg(hf_hub_id="timm/vit_base_patch16_224.mae")})


@register_model
def vit_b_rvsa(pretrained: bool = False, **kwargs: Any) -> ViTRVSA:
    """ViT-B + RVSA of the official SAMRS code (MAE-initialised officially; drop path 0.1)."""
    return build_model_with_cfg(
        ViTRVSA, "vit_b_rvsa", pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)), **kwargs)
