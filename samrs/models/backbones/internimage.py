"""InternImage (Wang et al., CVPR 2023) with DCNv3, in pure PyTorch, as the official SAMRS code builds
its `internimage_t` encoder (`backbone/intern_image.py` + `ops_dcnv3`, arguments in `models.py`).

DCNv3's deformable sampling runs through `torch.nn.functional.grid_sample` (one call per layer for all
groups and kernel points), so the model needs no compiled op and runs on CPU, CUDA and MPS. Module
and parameter names are the official ones (the official CUDA `DCNv3` and its `DCNv3_pytorch` twin share
them), so official weight files load as they are: `state_dict()` of `timm.create_model("internimage_t")`
has exactly the keys and shapes of the official encoder. Activations stay channels-last (N, H, W, C)
between layers, as in the official code; `forward_intermediates` returns the four levels NCHW, each
after its stage norm and before the downsampling, as the official forward does.

Facts from the official code kept here: LayerNorm eps 1e-6 everywhere (the block norms are LayerNorm
whatever `norm_layer` says), exact GELU, DCNv3 kernel 3 / stride 1 / pad 1 / dilation 1 with a
depth-wise 3x3 conv -> norm -> GELU branch predicting offsets (x, y per point) and per-group softmaxed
masks, kernel points ordered x-major, drop path linear in depth, layer scale `gamma1` / `gamma2`.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn
from torch.utils.checkpoint import checkpoint

from samrs.models.weights import unwrap_checkpoint

__all__ = ["InternImage", "DCNv3", "dcnv3_sample", "checkpoint_filter_fn"]

# The published ImageNet-1k classification weights (OpenGVLab/InternImage), {"model": ...} with a
# classifier (conv_head, head) and no layer scale: see checkpoint_filter_fn.
INTERNIMAGE_T_URL = "https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_t_1k_224.pth"


# ---- layout helpers (parameter-free, kept as modules so that Sequential indices match the official) ----

class ToChannelsFirst(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class ToChannelsLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


def make_norm(dim: int, kind: str = "LN", in_fmt: str = "last", out_fmt: str = "last") -> nn.Sequential:
    """The official `build_norm_layer`: a Sequential of [permute,] norm [, permute] whose indices give
    the parameter names (e.g. `norm1.1.weight` for a channels-first LayerNorm)."""
    if kind == "LN":
        layers = [ToChannelsLast()] if in_fmt == "first" else []
        layers.append(nn.LayerNorm(dim, eps=1e-6))
        layers += [ToChannelsFirst()] if out_fmt == "first" else []
    elif kind == "BN":
        layers = [ToChannelsFirst()] if in_fmt == "last" else []
        layers.append(nn.BatchNorm2d(dim))
        layers += [ToChannelsLast()] if out_fmt == "last" else []
    else:
        raise ValueError(f"norm_layer={kind!r}: InternImage takes 'LN' or 'BN'")
    return nn.Sequential(*layers)


def make_act(kind: str) -> nn.Module:
    acts = {"GELU": nn.GELU, "ReLU": nn.ReLU, "SiLU": nn.SiLU}
    if kind not in acts:
        raise ValueError(f"act_layer={kind!r}: InternImage takes one of {', '.join(acts)}")
    return acts[kind]()


# ---- DCNv3 --------------------------------------------------------------------------------------------

def dcnv3_sample(
    value: torch.Tensor,
    offset: torch.Tensor,
    mask: torch.Tensor,
    kernel_size: int = 3,
    stride: int = 1,
    pad: int = 1,
    dilation: int = 1,
    group: int = 4,
    offset_scale: float = 1.0,
) -> torch.Tensor:
    """DCNv3's core: for every output pixel and group, the mask-weighted sum of the group's channels
    bilinearly sampled at the kernel points moved by their offsets (zeros outside the image).

    value (N, H, W, C); offset (N, Ho, Wo, group * K * K * 2) as (x, y) pairs, kernel points x-major;
    mask (N, Ho, Wo, group * K * K). Returns (N, Ho, Wo, C). Kernel point (i, j) of output pixel (x, y)
    samples the input at centre + (tap + offset) * offset_scale (pixel units), with
    tap = (i, j) * dilation - d and centre = (x, y) * stride - pad + d, d = dilation * (K - 1) // 2:
    the locations of the official CUDA kernel.
    """
    n, h, w, c = value.shape
    dtype = value.dtype
    _, ho, wo, _ = offset.shape
    points = kernel_size * kernel_size
    half = dilation * (kernel_size - 1) // 2
    # locations in at least fp32: bf16 would round a pixel coordinate of 100 to the nearest 0.5
    kw = dict(device=value.device, dtype=torch.promote_types(offset.dtype, torch.float32))
    taps = torch.arange(kernel_size, **kw) * dilation - half
    tap_x, tap_y = taps.repeat_interleave(kernel_size), taps.repeat(kernel_size)  # x-major, as official
    centre_y = (torch.arange(ho, **kw) * stride + (half - pad)).view(1, ho, 1, 1, 1)
    centre_x = (torch.arange(wo, **kw) * stride + (half - pad)).view(1, 1, wo, 1, 1)
    offset = offset.view(n, ho, wo, group, points, 2).to(kw["dtype"])
    loc_x = centre_x + (tap_x + offset[..., 0]) * offset_scale
    loc_y = centre_y + (tap_y + offset[..., 1]) * offset_scale
    # pixel -> grid_sample's [-1, 1] (align_corners=False: pixel p's centre is at (2p + 1) / size - 1)
    grid = torch.stack(((2 * loc_x + 1) / w - 1, (2 * loc_y + 1) / h - 1), dim=-1)
    grid = grid.permute(0, 3, 1, 2, 4, 5).reshape(n * group, ho * wo, points, 2)
    value = value.reshape(n, h * w, group, c // group).permute(0, 2, 3, 1).reshape(n * group, c // group, h, w)
    sampled = F.grid_sample(value.to(grid.dtype), grid, mode="bilinear", padding_mode="zeros",
                            align_corners=False)  # (N * group, C / group, Ho * Wo, K * K)
    weights = mask.view(n, ho * wo, group, points).transpose(1, 2).reshape(n * group, 1, ho * wo, points)
    out = (sampled * weights.to(grid.dtype)).sum(-1)
    return out.view(n, c, ho * wo).transpose(1, 2).reshape(n, ho, wo, c).to(dtype)


class DCNv3(nn.Module):
    """The official DCNv3 module (parameter names of both its CUDA and its PyTorch version): input
    projection, a depth-wise conv branch that predicts offsets and softmaxed masks, deformable
    sampling, output projection. Channels-last in and out."""

    def __init__(self, channels: int = 64, kernel_size: int = 3, stride: int = 1, pad: int = 1,
                 dilation: int = 1, group: int = 4, offset_scale: float = 1.0, act: str = "GELU",
                 norm_layer: str = "LN") -> None:
        super().__init__()
        if channels % group:
            raise ValueError(f"DCNv3: channels ({channels}) must be divisible by group ({group})")
        self.channels, self.kernel_size, self.stride, self.pad = channels, kernel_size, stride, pad
        self.dilation, self.group, self.offset_scale = dilation, group, offset_scale
        points = group * kernel_size * kernel_size
        self.dw_conv = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding=(kernel_size - 1) // 2, groups=channels),
            make_norm(channels, norm_layer, "first", "last"),
            make_act(act),
        )
        self.offset = nn.Linear(channels, points * 2)
        self.mask = nn.Linear(channels, points)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The official `_reset_parameters`: zero offsets and masks (a plain 3x3 average at start),
        Xavier projections."""
        for layer in (self.offset, self.mask):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        for layer in (self.input_proj, self.output_proj):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, h, w, _ = x.shape
        value = self.input_proj(x)
        branch = self.dw_conv(x.permute(0, 3, 1, 2))
        offset = self.offset(branch)
        mask = F.softmax(self.mask(branch).view(n, h, w, self.group, -1), -1).reshape(n, h, w, -1)
        out = dcnv3_sample(value, offset, mask.to(value.dtype), self.kernel_size, self.stride, self.pad,
                           self.dilation, self.group, self.offset_scale)
        return self.output_proj(out)


# ---- InternImage ----------------------------------------------------------------------------------------

class StemLayer(nn.Module):
    """Two 3x3 stride-2 convs (channels / 2, then channels) with norm and activation: stride 4,
    channels-last out."""

    def __init__(self, in_chans: int, out_chans: int, act: str, norm_layer: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans // 2, 3, stride=2, padding=1)
        self.norm1 = make_norm(out_chans // 2, norm_layer, "first", "first")
        self.act = make_act(act)
        self.conv2 = nn.Conv2d(out_chans // 2, out_chans, 3, stride=2, padding=1)
        self.norm2 = make_norm(out_chans, norm_layer, "first", "last")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.conv2(self.act(self.norm1(self.conv1(x)))))


class DownsampleLayer(nn.Module):
    """3x3 stride-2 conv without bias doubling the channels, then norm; channels-last in and out."""

    def __init__(self, channels: int, norm_layer: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1, bias=False)
        self.norm = make_norm(2 * channels, norm_layer, "first", "last")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x.permute(0, 3, 1, 2)))


class MLPLayer(nn.Module):
    def __init__(self, channels: int, hidden: int, act: str, drop: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.act = make_act(act)
        self.fc2 = nn.Linear(hidden, channels)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class InternImageLayer(nn.Module):
    """One block: x + DCNv3(LN(x)), then x + MLP(LN(x)) (post_norm: the norms after the branches),
    each branch scaled by gamma1 / gamma2 when layer_scale is set."""

    def __init__(self, channels: int, groups: int, mlp_ratio: float, drop: float, drop_path: float,
                 act: str, norm_layer: str, post_norm: bool, layer_scale: float | None,
                 offset_scale: float) -> None:
        super().__init__()
        self.post_norm = post_norm
        self.norm1 = make_norm(channels, "LN")
        self.dcn = DCNv3(channels, group=groups, offset_scale=offset_scale, act=act, norm_layer=norm_layer)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = make_norm(channels, "LN")
        self.mlp = MLPLayer(channels, int(channels * mlp_ratio), act, drop)
        self.layer_scale = layer_scale is not None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(channels))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(channels))

    def _branch(self, x: torch.Tensor, norm: nn.Module, fn: nn.Module, gamma: str) -> torch.Tensor:
        y = norm(fn(x)) if self.post_norm else fn(norm(x))
        return getattr(self, gamma) * y if self.layer_scale else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self._branch(x, self.norm1, self.dcn, "gamma1"))
        return x + self.drop_path(self._branch(x, self.norm2, self.mlp, "gamma2"))


class InternImageBlock(nn.Module):
    """One stage (the official name): its layers, a LayerNorm (unless post_norm), and the
    downsampling into the next stage. `forward` returns (input of the next stage, this level)."""

    def __init__(self, channels: int, depth: int, groups: int, downsample: bool, drop_path: Sequence[float],
                 norm_layer: str, post_norm: bool, **layer_kwargs: Any) -> None:
        super().__init__()
        self.grad_checkpointing = False
        self.blocks = nn.ModuleList(
            InternImageLayer(channels, groups, drop_path=drop_path[i], norm_layer=norm_layer,
                             post_norm=post_norm, **layer_kwargs)
            for i in range(depth)
        )
        self.norm = None if post_norm else make_norm(channels, "LN")
        self.downsample = DownsampleLayer(channels, norm_layer) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        for blk in self.blocks:
            if self.grad_checkpointing and x.requires_grad and not torch.jit.is_scripting():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        level = x if self.norm is None else self.norm(x)
        return (level if self.downsample is None else self.downsample(level)), level


class InternImage(nn.Module):
    """InternImage backbone, official arguments and defaults of the SAMRS encoder (T: channels 64,
    depths 4-4-18-4, groups 4-8-16-32). `num_classes > 0` adds the official classification head
    (1x1 conv to cls_scale x the last width, BatchNorm, act, global pool, linear), for ImageNet use;
    the default, 0, is the headless encoder whose keys are the official SAMRS encoder's.
    `layer_scale` None or False: no layer scale (timm.create_model drops None arguments: pass False)."""

    def __init__(
        self,
        core_op: str = "DCNv3",
        channels: int = 64,
        depths: Sequence[int] = (4, 4, 18, 4),
        groups: Sequence[int] = (4, 8, 16, 32),
        mlp_ratio: float = 4.0,
        drop_rate: float = 0.0,
        drop_path_rate: float = 0.2,
        drop_path_type: str = "linear",
        act_layer: str = "GELU",
        norm_layer: str = "LN",
        layer_scale: float | None | bool = None,
        offset_scale: float = 1.0,
        post_norm: bool = False,
        with_cp: bool = False,
        num_classes: int = 0,
        cls_scale: float = 1.5,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        if core_op not in ("DCNv3", "DCNv3_pytorch"):
            raise ValueError(f"core_op={core_op!r}: samrs builds InternImage with DCNv3 (pure PyTorch)")
        if drop_path_type not in ("linear", "uniform"):
            raise ValueError(f"drop_path_type={drop_path_type!r}: 'linear' or 'uniform'")
        if layer_scale is False:
            layer_scale = None
        self.depths, self.channels = list(depths), channels
        self.num_levels = len(depths)
        widths = [channels * 2 ** i for i in range(self.num_levels)]
        self.num_features = self.head_hidden_size = widths[-1]
        self.num_classes = num_classes
        self.patch_embed = StemLayer(in_chans, channels, act_layer, norm_layer)
        self.pos_drop = nn.Dropout(drop_rate)
        dpr = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        if drop_path_type == "uniform":
            dpr = [drop_path_rate] * sum(depths)
        starts = [sum(depths[:i]) for i in range(self.num_levels)]
        self.levels = nn.ModuleList(
            InternImageBlock(
                widths[i], depths[i], groups[i], downsample=i < self.num_levels - 1,
                drop_path=dpr[starts[i]:starts[i] + depths[i]], norm_layer=norm_layer, post_norm=post_norm,
                mlp_ratio=mlp_ratio, drop=drop_rate, act=act_layer, layer_scale=layer_scale,
                offset_scale=offset_scale,
            )
            for i in range(self.num_levels)
        )
        self.feature_info = [dict(num_chs=widths[i], reduction=4 * 2 ** i, module=f"levels.{i}")
                             for i in range(self.num_levels)]
        if num_classes > 0:
            hidden = int(widths[-1] * cls_scale)
            self.conv_head = nn.Sequential(nn.Conv2d(widths[-1], hidden, 1, bias=False),
                                           make_norm(hidden, "BN", "first", "first"), make_act(act_layer))
            self.head = nn.Linear(hidden, num_classes)
            self.head_hidden_size = hidden
        self.apply(_init_weights)
        for m in self.modules():  # after the generic init, as the official _init_deform_weights
            if isinstance(m, DCNv3):
                m.reset_parameters()
        self.set_grad_checkpointing(with_cp)

    # ---- timm interface ----

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any] | Callable[[str], int]:
        """Parameter groups for layer-wise lr decay. Fine: the official InternImage rule (mmcv_custom/
        custom_layer_decay_optimizer_constructor.py): stem 0, layer j of stage s 1 + sum(depths[:s]) + j,
        a stage's norm and downsampling with the first layer of the next stage (the last stage's norm
        with its own first layer), the classifier last."""
        if coarse:
            return dict(stem=r"^patch_embed", blocks=r"^levels\.(\d+)")
        return self._layer_id

    def _layer_id(self, name: str) -> int:
        if name.startswith("patch_embed"):
            return 0
        found = re.match(r"levels\.(\d+)\.blocks\.(\d+)\.", name)
        if found:
            stage, layer = int(found[1]), int(found[2])
            return 1 + sum(self.depths[:stage]) + layer
        found = re.match(r"levels\.(\d+)\.", name)
        if found:
            return 1 + sum(self.depths[:min(int(found[1]) + 1, self.num_levels - 1)])
        return 1 + sum(self.depths)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Nothing by name: the official InternImage optimiser exempts every 1-d parameter (norms,
        biases, gamma1/gamma2), which timm and samrs' `no_decay_bias` do by shape."""
        return set()

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        for level in self.levels:
            level.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return getattr(self, "head", nn.Identity())

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | Sequence[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """The official forward's levels (each stage's output after its norm, NCHW). `norm` changes
        nothing: the stage norms are part of every level, there is no other final norm."""
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt={output_fmt!r}: InternImage gives NCHW levels")
        take, max_index = feature_take_indices(len(self.levels), indices)
        x = self.pos_drop(self.patch_embed(x))
        levels = self.levels[:max_index + 1] if stop_early else self.levels
        intermediates, level = [], x
        for i, stage in enumerate(levels):
            x, level = stage(x)
            if i in take:
                intermediates.append(level.permute(0, 3, 1, 2).contiguous())
        if intermediates_only:
            return intermediates
        return level.permute(0, 3, 1, 2).contiguous(), intermediates

    def prune_intermediate_layers(self, indices: int | Sequence[int] = 1, prune_norm: bool = False,
                                  prune_head: bool = True) -> list[int]:
        """Drop the stages after the last level taken (and the classifier); stage norms are kept,
        since they belong to the levels."""
        take, max_index = feature_take_indices(len(self.levels), indices)
        self.levels = self.levels[:max_index + 1]
        self.levels[-1].downsample = None
        self.feature_info = self.feature_info[:max_index + 1]
        if prune_head:
            self.reset_classifier(0)
        return take

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Only removing the classifier is supported (the official head has BatchNorm-ed width)."""
        if num_classes:
            raise ValueError("InternImage.reset_classifier: build the model with num_classes instead")
        for name in ("conv_head", "head"):
            if hasattr(self, name):
                delattr(self, name)
        self.num_classes, self.head_hidden_size = 0, self.num_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last level, NCHW."""
        return self.forward_intermediates(x, indices=[len(self.levels) - 1], intermediates_only=True)[-1]

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """The official classifier (conv_head, average pool, head); without one, the pooled features."""
        if hasattr(self, "conv_head"):
            x = self.conv_head(x)
        x = x.mean((2, 3))
        return x if pre_logits or not hasattr(self, "head") else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def load_pretrained(self, path: str) -> None:
        """timm's custom loader (pretrained_cfg custom_load): the official choice of weights in a file
        (`state_dict`, else `model`, else the file itself; timm would prefer an EMA copy), converted by
        `checkpoint_filter_fn` and loaded strictly."""
        obj = torch.load(path, map_location="cpu", weights_only=True)
        self.load_state_dict(checkpoint_filter_fn(obj, self), strict=True)


def _init_weights(m: nn.Module) -> None:
    """The official `_init_weights`: truncated normal (std 0.02) linear weights, zero biases, unit
    LayerNorms."""
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ---- weight files ----------------------------------------------------------------------------------------

_WRAPPERS = ("encoder.", "backbone.", "model.")  # SAMRS SEP files, mmseg files, Hugging Face files


def checkpoint_filter_fn(state_dict: dict[str, Any], model: InternImage) -> dict[str, torch.Tensor]:
    """Turn a published InternImage weight file into `model`'s keys.

    Takes `state_dict`, else `model` (the official order), from a wrapped file; keeps only the
    `encoder.` (SAMRS pre-training), `backbone.` (mmseg) or `model.` (Hugging Face) part when there is
    one and strips `module.` (DDP / DataParallel); renames Hugging Face's `layer_scale1/2` to
    `gamma1/2`; drops the classifier (`conv_head`, `head`) when `model` has none. The ImageNet files
    come from models without layer scale: as the official loading (strict=False) leaves `gamma1` /
    `gamma2` at their initial value `layer_scale`, they are filled from `model` when the file has none.
    """
    state = unwrap_checkpoint(state_dict, prefixes=_WRAPPERS)
    state = {re.sub(r"\.layer_scale([12])$", r".gamma\1", k): v for k, v in state.items()}
    own = model.state_dict()
    if not hasattr(model, "head"):
        state = {k: v for k, v in state.items() if not k.startswith(("conv_head.", "head."))}
    gammas = [k for k in own if k.endswith((".gamma1", ".gamma2"))]
    if gammas and not any(k in state for k in gammas):
        state.update({k: own[k].clone() for k in gammas})
    return state


# ---- timm registration -----------------------------------------------------------------------------------

def _cfg(url: str = "", **kwargs: Any) -> dict[str, Any]:
    return dict(url=url, num_classes=0, input_size=(3, 224, 224), pool_size=(7, 7), crop_pct=0.875,
                interpolation="bicubic", mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                first_conv="patch_embed.conv1", classifier="head", custom_load=True, license="mit",
                **kwargs)


def _create_internimage(variant: str, pretrained: bool = False, **kwargs: Any) -> InternImage:
    return build_model_with_cfg(
        InternImage, variant, pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=(0, 1, 2, 3)),
        **kwargs,
    )


default_cfgs = generate_default_cfgs({"internimage_t": _cfg(INTERNIMAGE_T_URL)})


@register_model
def internimage_t(pretrained: bool = False, **kwargs: Any) -> InternImage:
    """InternImage-T as the SAMRS encoder: channels 64, depths 4-4-18-4, groups 4-8-16-32, MLP ratio 4,
    drop path 0.2, LayerNorm, layer scale 1.0, offset scale 1.0, no post-norm (official `models.py`)."""
    args = dict(core_op="DCNv3", channels=64, depths=(4, 4, 18, 4), groups=(4, 8, 16, 32), mlp_ratio=4.0,
                drop_path_rate=0.2, norm_layer="LN", layer_scale=1.0, offset_scale=1.0, post_norm=False)
    return _create_internimage("internimage_t", pretrained, **{**args, **kwargs})
