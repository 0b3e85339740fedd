"""ViT-Adapter-B (Chen et al., ICLR 2023) as the official SAMRS code builds it (`backbone/vit_adapter.py`,
`models.py`: `ViTAdapter(patch_size=16, embed_dim=768, depth=12, num_heads=12, mlp_ratio=4,
drop_path_rate=0.3, conv_inplane=64, n_points=4, deform_num_heads=12, cffn_ratio=0.25,
deform_ratio=0.5, interaction_indexes=[[0, 2], [3, 5], [6, 8], [9, 11]])`), registered with timm as
`vit_adapter_b`.

A plain DeiT-B (with layer scale, no class token in the forward) runs beside a convolutional spatial
prior module (SPM) that gives stride-8/16/32 tokens. Four interaction blocks each inject the SPM tokens
into the ViT tokens (deformable cross-attention), run three ViT blocks, then extract the ViT tokens back
into the SPM tokens (deformable cross-attention + a depth-wise-conv FFN); the last one has two extra
extractors. The outputs are the SPM tokens at strides 4 (a transposed conv of stride 8 plus the stem),
8, 16, 32, plus the ViT tokens resized to those strides, each through a BatchNorm (SyncBN officially).

Differences from the official file, none of which changes a key, a shape or a number: the deformable
attention is the pure-PyTorch `ops.MSDeformAttn` (grid_sample, the official reference arithmetic),
BatchNorm2d stands in for SyncBatchNorm (convert with `SyncBatchNorm.convert_sync_batchnorm` or
Lightning's `sync_batchnorm` for multi-GPU runs), attention uses torch's fused scaled-dot-product
kernel, and the unused windowed-attention option is left out (SAMRS sets `window_attn=[False] * 12`).
Inputs must be multiples of 32 pixels (the official forward fails otherwise too).
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp, trunc_normal_
from timm.models._features import feature_take_indices
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from torch.utils.checkpoint import checkpoint
from torch import nn

from samrs.models.backbones.convert import drop_keys, keep_model_init, vit_b_cfg
from samrs.models.weights import unwrap_checkpoint
from samrs.models.backbones.ops import MSDeformAttn

__all__ = ["ViTAdapter", "checkpoint_filter_fn"]

LayerNorm6 = partial(nn.LayerNorm, eps=1e-6)
Shapes = Sequence[tuple[int, int]]


def reference_points(shapes: Shapes, device: torch.device) -> torch.Tensor:
    """(1, sum(H*W), 1, 2): the (x, y) centre of every cell of each level, in [0, 1]."""
    points = []
    for h, w in shapes:
        ys, xs = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
                                torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device), indexing="ij")
        points.append(torch.stack((xs.reshape(-1) / w, ys.reshape(-1) / h), -1))
    return torch.cat(points, 0)[None, :, None]


class PatchEmbed(nn.Module):
    """16x16 patches -> tokens (N, H*W, C), with the token grid (H, W)."""

    def __init__(self, img_size: int = 224, patch_size: int = 16, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.grid_size = (img_size // patch_size, img_size // patch_size)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return x.flatten(2).transpose(1, 2), h, w


class Attention(nn.Module):
    """Global multi-head self-attention (keys qkv, proj)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, attn_drop: float = 0.0,
                 proj_drop: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.attn_drop = attn_drop
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop if self.training else 0.0)
        return self.proj_drop(self.proj(x.transpose(1, 2).reshape(b, n, c)))


class Block(nn.Module):
    """Pre-norm transformer block with layer scale (gamma1, gamma2; the official default)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True, drop: float = 0.0,
                 attn_drop: float = 0.0, drop_path: float = 0.0, layer_scale: bool = True) -> None:
        super().__init__()
        self.norm1 = LayerNorm6(dim)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = LayerNorm6(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), drop=drop)
        if layer_scale:
            self.gamma1 = nn.Parameter(torch.ones(dim))
            self.gamma2 = nn.Parameter(torch.ones(dim))
        else:
            self.gamma1 = self.gamma2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attn(self.norm1(x))
        x = x + self.drop_path(attn if self.gamma1 is None else self.gamma1 * attn)
        mlp = self.mlp(self.norm2(x))
        return x + self.drop_path(mlp if self.gamma2 is None else self.gamma2 * mlp)


class DWConv(nn.Module):
    """Depth-wise 3x3 conv applied to each level of a multi-level token sequence."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        b, _, c = x.shape
        levels = x.split([h * w for h, w in shapes], dim=1)
        return torch.cat([self.dwconv(t.transpose(1, 2).reshape(b, c, h, w)).flatten(2).transpose(1, 2)
                          for t, (h, w) in zip(levels, shapes)], dim=1)


class ConvFFN(nn.Module):
    """fc1 -> depth-wise conv per level -> GELU -> fc2."""

    def __init__(self, in_features: int, hidden_features: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.dwconv = DWConv(hidden_features)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, in_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        x = self.drop(self.act(self.dwconv(self.fc1(x), shapes)))
        return self.drop(self.fc2(x))


class Injector(nn.Module):
    """ViT tokens += gamma * deformable attention over the SPM tokens (3 levels)."""

    def __init__(self, dim: int, num_heads: int, n_points: int, n_levels: int, deform_ratio: float,
                 init_values: float) -> None:
        super().__init__()
        self.query_norm = LayerNorm6(dim)
        self.feat_norm = LayerNorm6(dim)
        self.attn = MSDeformAttn(d_model=dim, n_levels=n_levels, n_heads=num_heads, n_points=n_points, ratio=deform_ratio)
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, query: torch.Tensor, points: torch.Tensor, feat: torch.Tensor, shapes: Shapes) -> torch.Tensor:
        return query + self.gamma * self.attn(self.query_norm(query), points, self.feat_norm(feat), shapes)


class Extractor(nn.Module):
    """SPM tokens += deformable attention over the ViT tokens, then += ConvFFN (with drop path)."""

    def __init__(self, dim: int, num_heads: int, n_points: int, deform_ratio: float, with_cffn: bool,
                 cffn_ratio: float, drop: float, drop_path: float) -> None:
        super().__init__()
        self.query_norm = LayerNorm6(dim)
        self.feat_norm = LayerNorm6(dim)
        self.attn = MSDeformAttn(d_model=dim, n_levels=1, n_heads=num_heads, n_points=n_points, ratio=deform_ratio)
        self.with_cffn = with_cffn
        if with_cffn:
            self.ffn = ConvFFN(dim, int(dim * cffn_ratio), drop=drop)
            self.ffn_norm = LayerNorm6(dim)
            self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()

    def forward(self, query: torch.Tensor, points: torch.Tensor, feat: torch.Tensor, feat_shape: tuple[int, int],
                query_shapes: Shapes) -> torch.Tensor:
        query = query + self.attn(self.query_norm(query), points, self.feat_norm(feat), [feat_shape])
        if self.with_cffn:
            query = query + self.drop_path(self.ffn(self.ffn_norm(query), query_shapes))
        return query


class InteractionBlock(nn.Module):
    """Injector -> the ViT blocks of this stage (owned by the backbone) -> extractor(s)."""

    def __init__(self, dim: int, num_heads: int, n_points: int, init_values: float, drop: float, drop_path: float,
                 with_cffn: bool, cffn_ratio: float, deform_ratio: float, extra_extractor: bool) -> None:
        super().__init__()
        self.injector = Injector(dim, num_heads, n_points, n_levels=3, deform_ratio=deform_ratio, init_values=init_values)
        make_extractor = partial(Extractor, dim, num_heads, n_points, deform_ratio, with_cffn, cffn_ratio, drop, drop_path)
        self.extractor = make_extractor()
        self.extra_extractors = nn.Sequential(make_extractor(), make_extractor()) if extra_extractor else None

    def forward(self, x: torch.Tensor, c: torch.Tensor, blocks: Callable[[torch.Tensor], torch.Tensor],
                vit_points: torch.Tensor, spm_points: torch.Tensor, vit_shape: tuple[int, int],
                spm_shapes: Shapes) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.injector(x, vit_points, c, spm_shapes)
        x = blocks(x)
        extractors = [self.extractor, *(self.extra_extractors or [])]
        for extractor in extractors:
            c = extractor(c, spm_points, x, vit_shape, spm_shapes)
        return x, c


def _conv_bn_relu(in_ch: int, out_ch: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]


class SpatialPriorModule(nn.Module):
    """ResNet-like stem and three stride-2 convs; 1x1 convs project strides 4..32 to the ViT width."""

    def __init__(self, inplanes: int = 64, embed_dim: int = 768) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_relu(3, inplanes, 2), *_conv_bn_relu(inplanes, inplanes, 1),
                                  *_conv_bn_relu(inplanes, inplanes, 1), nn.MaxPool2d(3, 2, 1))
        self.conv2 = nn.Sequential(*_conv_bn_relu(inplanes, 2 * inplanes, 2))
        self.conv3 = nn.Sequential(*_conv_bn_relu(2 * inplanes, 4 * inplanes, 2))
        self.conv4 = nn.Sequential(*_conv_bn_relu(4 * inplanes, 4 * inplanes, 2))
        self.fc1 = nn.Conv2d(inplanes, embed_dim, 1)
        self.fc2 = nn.Conv2d(2 * inplanes, embed_dim, 1)
        self.fc3 = nn.Conv2d(4 * inplanes, embed_dim, 1)
        self.fc4 = nn.Conv2d(4 * inplanes, embed_dim, 1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """[c1 (N, C, H/4, W/4), c2, c3, c4 as tokens (N, HW, C) at strides 8, 16, 32]."""
        c1 = self.stem(x)
        c2 = self.conv2(c1)
        c3 = self.conv3(c2)
        c4 = self.conv4(c3)
        return [self.fc1(c1)] + [fc(c).flatten(2).transpose(1, 2) for fc, c in ((self.fc2, c2), (self.fc3, c3), (self.fc4, c4))]


class ViTAdapter(nn.Module):
    """ViT-Adapter backbone; `forward_intermediates` gives the official 4 levels (strides 4, 8, 16, 32)."""

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
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.3,
        layer_scale: bool = True,
        conv_inplane: int = 64,
        n_points: int = 4,
        deform_num_heads: int = 12,
        init_values: float = 0.0,
        interaction_indexes: Sequence[Sequence[int]] = ((0, 2), (3, 5), (6, 8), (9, 11)),
        with_cffn: bool = True,
        cffn_ratio: float = 0.25,
        deform_ratio: float = 0.5,
        add_vit_feature: bool = True,
        use_extra_extractor: bool = True,
    ) -> None:
        super().__init__()
        if num_classes:
            raise ValueError("vit_adapter_b is a feature backbone without a classifier: num_classes must be 0")
        self.num_classes = 0
        self.num_features = self.embed_dim = embed_dim
        self.interaction_indexes = [tuple(ix) for ix in interaction_indexes]
        self.add_vit_feature = add_vit_feature
        self.grad_checkpointing = False
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim)
        # the class token's position is kept (DeiT's layout) but the forward has no class token
        self.pos_embed = nn.Parameter(torch.zeros(1, self.patch_embed.num_patches + 1, embed_dim))
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, depth, device="cpu").tolist()
        self.blocks = nn.Sequential(*[
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, drop_rate, attn_drop_rate, dpr[i], layer_scale)
            for i in range(depth)])
        self.level_embed = nn.Parameter(torch.zeros(3, embed_dim))
        self.spm = SpatialPriorModule(conv_inplane, embed_dim)
        last = len(self.interaction_indexes) - 1
        # the extractors' drop path is the full rate, not the blocks' linear ramp (official)
        self.interactions = nn.Sequential(*[
            InteractionBlock(embed_dim, deform_num_heads, n_points, init_values, drop_rate, drop_path_rate, with_cffn,
                             cffn_ratio, deform_ratio, extra_extractor=use_extra_extractor and i == last)
            for i in range(len(self.interaction_indexes))])
        self.up = nn.ConvTranspose2d(embed_dim, embed_dim, 2, 2)
        self.norm1 = nn.BatchNorm2d(embed_dim)
        self.norm2 = nn.BatchNorm2d(embed_dim)
        self.norm3 = nn.BatchNorm2d(embed_dim)
        self.norm4 = nn.BatchNorm2d(embed_dim)
        self.feature_info = [dict(num_chs=embed_dim, reduction=2 ** (i + 2), module=f"norm{i + 1}") for i in range(4)]
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """As the official constructor: the ViT part keeps PyTorch's defaults (the DeiT weights replace
        it), the adapter parts get truncated-normal linears and He-normal convs, the deformable
        attentions their own start, the level embedding a standard normal."""
        for part in (self.up, self.spm, self.interactions):
            part.apply(_init_adapter_module)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m.reset_parameters()
        nn.init.normal_(self.level_embed)

    def _pos_embed(self, h: int, w: int) -> torch.Tensor:
        grid = self.patch_embed.grid_size
        pos = self.pos_embed[:, 1:].reshape(1, grid[0], grid[1], -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
        return pos.reshape(1, -1, h * w).permute(0, 2, 1)

    def _run_blocks(self, first: int, last: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def run(x: torch.Tensor) -> torch.Tensor:
            for blk in self.blocks[first:last + 1]:
                x = checkpoint(blk, x, use_reentrant=False) if self.grad_checkpointing and x.requires_grad else blk(x)
            return x
        return run

    def _levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        n, _, h, w = x.shape
        if h % 32 or w % 32:
            raise ValueError(f"vit_adapter_b takes images whose sides are multiples of 32 pixels, got {h}x{w}")
        spm_shapes = [(h // 8, w // 8), (h // 16, w // 16), (h // 32, w // 32)]
        vit_shape = spm_shapes[1]
        vit_points = reference_points([vit_shape], x.device)
        spm_points = reference_points(spm_shapes, x.device)

        c1, c2, c3, c4 = self.spm(x)
        c = torch.cat([c2 + self.level_embed[0], c3 + self.level_embed[1], c4 + self.level_embed[2]], dim=1)
        tokens, gh, gw = self.patch_embed(x)
        tokens = self.pos_drop(tokens + self._pos_embed(gh, gw))
        dim = tokens.shape[-1]

        vit_maps = []
        for (first, last), layer in zip(self.interaction_indexes, self.interactions):
            tokens, c = layer(tokens, c, self._run_blocks(first, last), vit_points, spm_points, vit_shape, spm_shapes)
            vit_maps.append(tokens.transpose(1, 2).reshape(n, dim, gh, gw))

        c2, c3, c4 = [t.transpose(1, 2).reshape(n, dim, hh, ww)
                      for t, (hh, ww) in zip(c.split([hh * ww for hh, ww in spm_shapes], dim=1), spm_shapes)]
        c1 = self.up(c2) + c1
        levels = [c1, c2, c3, c4]
        if self.add_vit_feature:
            scales = (4, 2, 1, 0.5)
            levels = [lv + (v if s == 1 else F.interpolate(v, scale_factor=s, mode="bilinear", align_corners=False))
                      for lv, v, s in zip(levels, vit_maps, scales)]
        return [norm(lv) for norm, lv in zip((self.norm1, self.norm2, self.norm3, self.norm4), levels)]

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The 4 official levels (their BatchNorms included; `norm` and `stop_early` change nothing:
        every level needs the whole network)."""
        if output_fmt != "NCHW":
            raise ValueError(f"vit_adapter_b gives NCHW features, not {output_fmt}")
        take, _ = feature_take_indices(len(self.feature_info), indices)
        levels = self._levels(x)
        picked = [levels[i] for i in take]
        return picked if intermediates_only else (levels[-1], picked)

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 4, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Nothing to prune (every level comes out of the last interaction), so the keys stay official."""
        take, _ = feature_take_indices(len(self.feature_info), indices)
        return take

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self._levels(x)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return x.mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        """Embeddings -> layer 0, block i -> i + 1; the adapter (SPM, interactions, level embedding,
        output norms) is left unmatched, so layer-wise lr decay gives it the full lr, as the official
        constructor gives every parameter outside `patch_embed`, `pos_embed` and `blocks`."""
        return dict(stem=r"^pos_embed|patch_embed", blocks=r"^blocks\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """The names the official ViT-Adapter optimizer constructor exempts from weight decay."""
        return {"pos_embed", "cls_token", "visual_embed"}

    def get_classifier(self) -> nn.Module:
        return nn.Identity()

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        if num_classes:
            raise ValueError("vit_adapter_b has no classifier")


def _init_adapter_module(m: nn.Module) -> None:
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.LayerNorm, nn.BatchNorm2d)):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
        m.weight.normal_(0, math.sqrt(2.0 / fan_out))
        if m.bias is not None:
            m.bias.zero_()


# Classification-only parts of DeiT / timm ViT files: dropped.
_CLASSIFIER_KEYS = (r"cls_token$", r"dist_token$", r"norm\.", r"fc_norm\.", r"head\.", r"head_dist\.")
# What a DeiT file cannot hold; the official init_weights (strict=False) leaves it as initialised.
_ADAPTER_KEYS = (r"level_embed$", r"spm\.", r"interactions\.", r"up\.", r"norm[1-4]\.", r"blocks\.\d+\.gamma[12]$")


def checkpoint_filter_fn(state_dict: dict[str, Any], model: ViTAdapter) -> dict[str, torch.Tensor]:
    """DeiT / timm ViT-B classification weights (`{"model": ...}`, plain, `module.`/`backbone.`
    prefixes) or a SAMRS checkpoint (`encoder.*`) -> this model's keys, as the official init_weights
    loads them: the classifier, final norm and class token dropped; the adapter and the layer scales,
    which such files lack, keep the model's initialisation. The position embedding is loaded as it is
    (the official code does not resize it): a file for another grid fails the strict load."""
    state = drop_keys(unwrap_checkpoint(state_dict, prefixes=("encoder.", "backbone.")), _CLASSIFIER_KEYS)
    return keep_model_init(state, model, _ADAPTER_KEYS)


# pretrained=True: DeiT-B, the official IMP start (deit_base_patch16_224-b5f2ef4d.pth), from timm's hub.
default_cfgs = generate_default_cfgs({"vit_adapter_b": vit_b_cfg(hf_hub_id="timm/deit_base_patch16_224.fb_in1k")})


@register_model
def vit_adapter_b(pretrained: bool = False, **kwargs: Any) -> ViTAdapter:
    """ViT-Adapter-B of the official SAMRS code (DeiT-B trunk, 4 interactions, deform ratio 0.5)."""
    return build_model_with_cfg(
        ViTAdapter, "vit_adapter_b", pretrained, pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)), **kwargs)
