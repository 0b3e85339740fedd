"""Pure-PyTorch operators shared by the zoo backbones: multi-scale deformable attention (Deformable DETR,
as ViT-Adapter uses it), sampled with `torch.nn.functional.grid_sample` instead of the compiled CUDA op.

The parameter names, the initialisation and the arithmetic follow the official `MSDeformAttn` module
(`ops/modules/ms_deform_attn.py` of Deformable DETR / ViT-Adapter / SAMRS), including ViT-Adapter's
`ratio` (value projection to `ratio * d_model` channels), so official weights load unchanged.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def ms_deform_attn_core(
    value: torch.Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Attention-weighted bilinear samples of multi-level values.

    value: (N, sum(H*W), heads, D); spatial_shapes: (H, W) per level, in the order of `value`;
    sampling_locations: (N, Lq, heads, levels, points, 2) as (x, y) in [0, 1] of each level (outside:
    zeros, as the CUDA op); attention_weights: (N, Lq, heads, levels, points). Returns (N, Lq, heads*D).
    """
    n, _, heads, dim = value.shape
    _, n_query, _, levels, points, _ = sampling_locations.shape
    sizes = [int(h) * int(w) for h, w in spatial_shapes]
    grids = 2 * sampling_locations - 1  # grid_sample's [-1, 1] frame (align_corners=False)
    sampled = []
    for level, (value_l, (h, w)) in enumerate(zip(value.split(sizes, dim=1), spatial_shapes)):
        # (N, H*W, heads, D) -> (N*heads, D, H, W)
        value_l = value_l.flatten(2).transpose(1, 2).reshape(n * heads, dim, int(h), int(w))
        # (N, Lq, heads, points, 2) -> (N*heads, Lq, points, 2)
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(value_l, grid_l, mode="bilinear", padding_mode="zeros", align_corners=False))
    # (N*heads, D, Lq, levels*points) weighted by (N*heads, 1, Lq, levels*points)
    weights = attention_weights.transpose(1, 2).reshape(n * heads, 1, n_query, levels * points)
    out = (torch.stack(sampled, dim=-2).flatten(-2) * weights).sum(-1)
    return out.view(n, heads * dim, n_query).transpose(1, 2).contiguous()


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention: each query looks at `n_points` learned offsets around its
    reference point on each of `n_levels` feature levels, with softmax weights over levels x points.

    Keys: sampling_offsets, attention_weights, value_proj, output_proj (as the official module).
    """

    def __init__(self, d_model: int = 256, n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 ratio: float = 1.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"MSDeformAttn: d_model {d_model} is not divisible by n_heads {n_heads}")
        self.d_model = d_model
        self.n_levels = n_levels
        self.n_heads = n_heads
        self.n_points = n_points
        self.ratio = ratio
        value_dim = int(d_model * ratio)
        self.sampling_offsets = nn.Linear(d_model, n_heads * n_levels * n_points * 2)
        self.attention_weights = nn.Linear(d_model, n_heads * n_levels * n_points)
        self.value_proj = nn.Linear(d_model, value_dim)
        self.output_proj = nn.Linear(value_dim, d_model)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The official start: no offset weights, offset biases pointing each head in its own direction
        (at 1, 2, ... n_points steps), uniform attention, xavier projections."""
        nn.init.zeros_(self.sampling_offsets.weight)
        thetas = torch.arange(self.n_heads, dtype=torch.float32) * (2.0 * math.pi / self.n_heads)
        grid = torch.stack([thetas.cos(), thetas.sin()], -1)
        grid = (grid / grid.abs().max(-1, keepdim=True)[0]).view(self.n_heads, 1, 1, 2)
        grid = grid.repeat(1, self.n_levels, self.n_points, 1)
        grid *= torch.arange(1, self.n_points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        self.sampling_offsets.bias.copy_(grid.view(-1))
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: torch.Tensor, reference_points: torch.Tensor, input_flatten: torch.Tensor,
                spatial_shapes: Sequence[tuple[int, int]], padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """query (N, Lq, C); reference_points (N or 1, Lq, levels or 1, 2) as (x, y) in [0, 1];
        input_flatten (N, sum(H*W), C) with the levels of `spatial_shapes` one after the other;
        padding_mask (N, sum(H*W)), True where the input is padding. Returns (N, Lq, C)."""
        n, n_query, _ = query.shape
        n_in = input_flatten.shape[1]
        if sum(int(h) * int(w) for h, w in spatial_shapes) != n_in:
            raise ValueError(f"MSDeformAttn: spatial shapes {list(spatial_shapes)} do not add up to {n_in} inputs")
        if reference_points.shape[-1] != 2:
            raise ValueError("MSDeformAttn: reference points must be (x, y) pairs")
        value = self.value_proj(input_flatten)
        if padding_mask is not None:
            value = value.masked_fill(padding_mask[..., None], 0.0)
        value = value.view(n, n_in, self.n_heads, -1)
        offsets = self.sampling_offsets(query).view(n, n_query, self.n_heads, self.n_levels, self.n_points, 2)
        weights = self.attention_weights(query).view(n, n_query, self.n_heads, self.n_levels * self.n_points)
        weights = weights.softmax(-1).view(n, n_query, self.n_heads, self.n_levels, self.n_points)
        # offsets are in pixels of each level: divide by that level's (W, H)
        normalizer = torch.tensor([(w, h) for h, w in spatial_shapes], dtype=query.dtype, device=query.device)
        locations = reference_points[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None, :]
        return self.output_proj(ms_deform_attn_core(value, spatial_shapes, locations, weights))
