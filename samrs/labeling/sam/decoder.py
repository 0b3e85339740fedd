"""SAM's mask decoder, evaluated in a cheaper, mathematically equivalent order, for every family.

SAM 1 (segment-anything), SAM-HQ, SAM 2, EdgeTAM and SAM 3's tracker share the two-way
transformer and the output upscaling of SAM's mask decoder; only module names differ
(segment-anything's `norm1`/`out_proj`, transformers' `layer_norm1`/`o_proj`), which the accessors
below hide. The families' own modules and weights are used; only the order of the arithmetic
changes, so the results equal theirs up to float rounding:

1. Image-side inputs shared by a chunk. With no mask prompt, the dense prompt embedding is the same
   `no_mask_embed` for every prompt, so the image tokens entering the transformer, and the first
   layer's key/value projections (token -> image) and query projection (image -> token) of them,
   are computed once per image instead of once per prompt.
2. Attention re-associated around the few prompt tokens (T = 5-8). Where image tokens are per
   prompt, token -> image attention projects the T queries into the input space instead of
   projecting 4096 keys and values: q.(W_k x + b_k) = (W_k^T q).x + const (the constant is the same
   for every key, which softmax ignores), and attn @ (W_v x + b_v) = W_v (attn @ x) + b_v (attention
   rows sum to 1). Image -> token attention folds W_q into the token keys and the output
   projection into the token values. Per prompt this is ~0.4 GMAC instead of ~0.9 GMAC.
3. Masks only in a window. The output upscaling (ConvTranspose2d, LayerNorm2d, GELU,
   ConvTranspose2d, GELU; SAM 2 adds its high-resolution features between them) maps each
   embedding cell to its own 4x4 low-res block, and the hypernetwork product is per pixel, so both
   run on the cells under an object's window only (as per-cell matmuls); `frames.py` taps, as small
   interpolation matrices, then give the post-processed values for the window's image pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from samrs.labeling.sam.frames import TAPS


# --- module names: segment-anything's or transformers' ---------------------------------------------


def _heads(attn: torch.nn.Module) -> int:
    return attn.num_heads if hasattr(attn, "num_heads") else attn.num_attention_heads


def _out_proj(attn: torch.nn.Module) -> torch.nn.Linear:
    return attn.out_proj if hasattr(attn, "out_proj") else attn.o_proj


def _norm(module: torch.nn.Module, name: str) -> torch.nn.Module:
    """segment-anything's `norm1` / `norm_final_attn` is transformers' `layer_norm1` / `layer_norm_final_attn`."""
    return getattr(module, name) if hasattr(module, name) else getattr(module, f"layer_{name}")


# --- the two-way transformer ----------------------------------------------------------------------


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """(..., n, heads * d) -> (..., heads, n, d)."""
    *lead, n, c = x.shape
    return x.reshape(*lead, n, heads, c // heads).transpose(-3, -2)


def _weight_heads(linear: torch.nn.Linear, heads: int) -> Tensor:
    """(heads, d, in) view of a projection to heads * d outputs."""
    return linear.weight.reshape(heads, -1, linear.weight.shape[1])


def _attention(attn: torch.nn.Module, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The attention module's own arithmetic for (B, T, C) tokens (the prompt tokens' self-attention)."""
    h = _heads(attn)
    q, k, v = (_split_heads(p(x), h) for p, x in ((attn.q_proj, q), (attn.k_proj, k), (attn.v_proj, v)))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    out = (weights @ v).transpose(1, 2)
    return _out_proj(attn)(out.reshape(*out.shape[:2], -1))


def _token_to_image(attn: torch.nn.Module, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """attn(q=queries (B, T, C), k=keys, v=values), keys/values (1, N, C) shared or (B, N, C)."""
    b, t, _ = queries.shape
    h = _heads(attn)
    q = _split_heads(attn.q_proj(queries), h)  # (B, h, T, d)
    d = q.shape[-1]
    q = q / math.sqrt(d)
    if keys.shape[0] == 1:  # shared image tokens: project them once, fold prompts into rows
        k = _split_heads(attn.k_proj(keys[0]), h)  # (h, N, d)
        v = _split_heads(attn.v_proj(values[0]), h)
        q = q.transpose(0, 1).reshape(h, b * t, d)
        weights = torch.softmax(q @ k.transpose(1, 2), dim=-1)
        out = (weights @ v).reshape(h, b, t, d).transpose(0, 1)  # (B, h, T, d)
    else:
        qk = torch.einsum("bhtd,hdc->bhtc", q, _weight_heads(attn.k_proj, h)).flatten(1, 2)
        weights = torch.softmax(qk @ keys.transpose(1, 2), dim=-1)  # (B, h*T, N)
        mixed = (weights @ values).unflatten(1, (h, t))  # (B, h, T, C)
        out = torch.einsum("bhtc,hdc->bhtd", mixed, _weight_heads(attn.v_proj, h))
        out = out + attn.v_proj.bias.reshape(h, 1, d)
    return _out_proj(attn)(out.transpose(1, 2).reshape(b, t, h * d))


def _image_to_token(attn: torch.nn.Module, image: Tensor, tokens_k: Tensor, tokens_v: Tensor, residual: Tensor) -> Tensor:
    """residual + attn(q=image, k=tokens_k (B, T, C), v=tokens_v), image (1, N, C) shared or (B, N, C).

    Attention weights are laid out (B, h*T, N) so softmax runs over T with N contiguous.
    """
    b, t, _ = tokens_k.shape
    h = _heads(attn)
    out_proj = _out_proj(attn)
    k = _split_heads(attn.k_proj(tokens_k), h)  # (B, h, T, d)
    d = k.shape[-1]
    k = k / math.sqrt(d)
    out_w = out_proj.weight.reshape(-1, h, d)  # (C, h, d)
    # Output projection folded into the values; its bias too, spread over the h heads whose
    # attention weights each sum to 1: (B, h*T, C).
    v_out = torch.einsum("bhtd,chd->bhtc", _split_heads(attn.v_proj(tokens_v), h), out_w).flatten(1, 2)
    v_out = v_out + out_proj.bias / h
    if image.shape[0] == 1:  # shared image tokens: one query projection, prompts folded into rows
        q = _split_heads(attn.q_proj(image[0]), h)  # (h, N, d)
        scores = k.transpose(0, 1).reshape(h, b * t, d) @ q.transpose(1, 2)  # (h, B*T, N)
        scores = scores.unflatten(1, (b, t)).transpose(0, 1)  # (B, h, T, N)
    else:
        q_w = _weight_heads(attn.q_proj, h)  # (h, d, C)
        folded = torch.einsum("hdc,bhtd->bhtc", q_w, k).flatten(1, 2)  # (B, h*T, C)
        bias = torch.einsum("hd,bhtd->bht", attn.q_proj.bias.reshape(h, d), k).flatten(1)
        scores = torch.baddbmm(bias[:, :, None], folded, image.transpose(1, 2)).unflatten(1, (h, t))
    weights = torch.softmax(scores, dim=2).flatten(1, 2)  # (B, h*T, N)
    return torch.baddbmm(residual.expand(b, -1, -1), weights.transpose(1, 2), v_out)


def _block(layer: torch.nn.Module, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor):
    """TwoWayAttentionBlock.forward, with the attention of `_token_to_image` / `_image_to_token`."""
    if layer.skip_first_layer_pe:
        queries = _attention(layer.self_attn, queries, queries, queries)
    else:
        q = queries + query_pe
        queries = queries + _attention(layer.self_attn, q, q, queries)
    queries = _norm(layer, "norm1")(queries)
    keys_pe = keys + key_pe
    t2i = _token_to_image(layer.cross_attn_token_to_image, queries + query_pe, keys_pe, keys)
    queries = _norm(layer, "norm2")(queries + t2i)
    queries = _norm(layer, "norm3")(queries + layer.mlp(queries))
    q = queries + query_pe
    keys = _norm(layer, "norm4")(_image_to_token(layer.cross_attn_image_to_token, keys_pe, q, queries, keys))
    return queries, keys


@torch.no_grad()
def decode_tokens(
    transformer: torch.nn.Module,
    output_tokens: Tensor,
    image_embedding: Tensor,
    image_pe: Tensor,
    sparse: Tensor,
    dense: Tensor,
) -> tuple[Tensor, Tensor]:
    """A mask decoder's two-way transformer for a chunk of prompts on one image.

    output_tokens (T0, C) the decoder's learned tokens in its order (SAM: iou + mask tokens; HQ: +
    hq token; SAM 2: object-score token first); image_embedding (1, C, h, w); image_pe (1, C, h, w);
    sparse (B, T', C) from the prompt encoder; dense (B, C, h, w) mask prompt embeddings, or the
    shared no-mask embedding (1, C, 1, 1). Returns the output tokens (B, T0 + T', C) and the image
    tokens (1 or B, h*w, C), as the decoder has them after its transformer.
    """
    b = sparse.shape[0]
    tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1).to(sparse.dtype), sparse], dim=1)
    keys = (image_embedding + dense).flatten(2).transpose(1, 2)  # (1 or B, N, C)
    key_pe = image_pe.flatten(2).transpose(1, 2)
    queries = tokens
    for layer in transformer.layers:
        queries, keys = _block(layer, queries, keys, tokens, key_pe)
    final = transformer.final_attn_token_to_image
    queries = queries + _token_to_image(final, queries + tokens, keys + key_pe, keys)
    return _norm(transformer, "norm_final_attn")(queries), keys


# --- windows of cells and the output upscaling ----------------------------------------------------


def gather_window(flat: Tensor, base: Tensor, first: Tensor, shape: tuple[int, int], width: int, scale: int = 1) -> Tensor:
    """(b, scale*R, scale*C, channels) windows of a grid stored as rows of `flat` (M, channels).

    Window i starts at grid position scale * first[i] (row, col) of the grid of `width` columns
    whose first row in `flat` is base[i] (a per-prompt or a per-image grid).
    """
    rows = scale * first[:, 0, None] + torch.arange(scale * shape[0], device=first.device)
    cols = scale * first[:, 1, None] + torch.arange(scale * shape[1], device=first.device)
    index = base[:, None, None] + rows[:, :, None] * width + cols[:, None, :]
    return flat.index_select(0, index.flatten()).view(len(first), scale * shape[0], scale * shape[1], -1)


def _cell_major(x: Tensor, scale: int) -> Tensor:
    """(b, scale*R, scale*C, ch) spatial -> (b, R*C, scale*scale, ch) per cell, in the (dy1, dx1, dy2,
    dx2) order of two stride-2 transposed convolutions (scale 2: (dy, dx))."""
    b, rr, cc, ch = x.shape
    r, c = rr // scale, cc // scale
    if scale == 2:
        return x.view(b, r, 2, c, 2, ch).permute(0, 1, 3, 2, 4, 5).reshape(b, r * c, 4, ch)
    x = x.view(b, r, 2, 2, c, 2, 2, ch).permute(0, 1, 4, 2, 5, 3, 6, 7)
    return x.reshape(b, r * c, 16, ch)


def cells_to_spatial(x: Tensor, r: int, c: int) -> Tensor:
    """(b, R*C*16, ...) per-cell upscaled values -> (b, 4R, 4C, ...) spatial."""
    b, rest = x.shape[0], x.shape[2:]
    x = x.view(b, r, c, 2, 2, 2, 2, *rest).permute(0, 1, 3, 5, 2, 4, 6, *range(7, 7 + len(rest)))
    return x.reshape(b, 4 * r, 4 * c, *rest)


def upscale_cells(
    window: Tensor,
    conv1: torch.nn.ConvTranspose2d,
    norm: torch.nn.Module,
    conv2: torch.nn.ConvTranspose2d,
    act1: torch.nn.Module,
    act2: torch.nn.Module,
    skip1: Tensor | None = None,
    skip0: Tensor | None = None,
) -> Tensor:
    """The output upscaling on (b, r, c, C) cells: (b, r*c*16, C/8) features, cell-major.

    Each ConvTranspose2d(kernel 2, stride 2) is a matmul per cell into its 2x2 block, and the
    channels-first LayerNorm normalises each pixel over channels, so the cells are processed
    channel-last as rows of matrices (faster than the convolutions on CPU, same arithmetic).
    SAM 2's high-resolution features are added after each convolution: skip1 (b, 2r, 2c, C/4) and
    skip0 (b, 4r, 4c, C/8), spatial windows at 2x and 4x the cells' resolution.
    """
    b, r, c, channels = window.shape
    c1, c2 = conv1.out_channels, conv2.out_channels
    w1 = conv1.weight.permute(0, 2, 3, 1).reshape(channels, 4 * c1)  # (in, (dy, dx, out))
    x = torch.addmm(conv1.bias.repeat(4), window.reshape(-1, channels), w1.to(window.dtype)).view(b, r * c, 4, c1)
    if skip1 is not None:
        x = x + _cell_major(skip1, 2).to(x.dtype)
    x = act1(F.layer_norm(x, (c1,), norm.weight, norm.bias, norm.eps))
    w2 = conv2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
    x = torch.addmm(conv2.bias.repeat(4), x.reshape(-1, c1), w2.to(x.dtype)).view(b, r * c, 16, c2)
    if skip0 is not None:
        x = x + _cell_major(skip0, 4).to(x.dtype)
    return act2(x).view(b, r * c * 16, c2)


def hyper_logits(features: Tensor, hyper: Tensor, r: int, c: int) -> Tensor:
    """(b, 4r, 4c) float32 logits of cell-major features (b, r*c*16, C/8) and hypernetwork vectors (b, C/8)."""
    logits = features @ hyper.to(features.dtype)[:, :, None]
    return cells_to_spatial(logits[..., 0], r, c).float()


def _taps_matrix(start: Tensor, weights: Tensor, size: int) -> Tensor:
    """(b, n, size) dense interpolation matrix from taps (start (b, n), weights (b, n, TAPS)).

    Taps past `size` carry weight 0 (or belong to padding rows, which are discarded): clamped.
    """
    index = (start[:, :, None] + torch.arange(TAPS, device=start.device)).clamp_(0, size - 1)
    matrix = torch.zeros(*start.shape, size, dtype=weights.dtype, device=weights.device)
    return matrix.scatter_add_(2, index, weights)


def apply_taps(low_res: Tensor, row_taps: tuple[Tensor, Tensor], col_taps: tuple[Tensor, Tensor]) -> Tensor:
    """(b, oh, ow) image-pixel logits from window-local low-res logits (b, lr, lc) and their taps
    (start (b, oh) in window-local low-res rows, weights (b, oh, TAPS); columns likewise)."""
    along_rows = _taps_matrix(*row_taps, low_res.shape[1])  # (b, oh, lr)
    along_cols = _taps_matrix(*col_taps, low_res.shape[2])  # (b, ow, lc)
    with torch.autocast(low_res.device.type, enabled=False):  # fp32 logits decide the threshold
        return along_rows @ low_res.float() @ along_cols.transpose(1, 2)
