"""SAM's mask decoder, evaluated in a cheaper, mathematically equivalent order.

Uses segment-anything's own modules and weights; only the order of the arithmetic changes, so the
results equal SAM's up to float rounding:

1. Image-side inputs shared by a chunk. With no mask prompt, the dense prompt embedding is the same
   `no_mask_embed` for every prompt, so the image tokens entering the transformer, and the first
   layer's key/value projections (token -> image) and query projection (image -> token) of them,
   are computed once per image instead of once per prompt.
2. Attention re-associated around the few prompt tokens (T = 5-7). Where image tokens are per
   prompt, token -> image attention projects the T queries into the input space instead of
   projecting 4096 keys and values: q.(W_k x + b_k) = (W_k^T q).x + const (the constant is the same
   for every key, which softmax ignores), and attn @ (W_v x + b_v) = W_v (attn @ x) + b_v (attention
   rows sum to 1). Image -> token attention folds W_q into the token keys and the output
   projection into the token values. Per prompt this is ~0.4 GMAC instead of ~0.9 GMAC (the
   decoder is the same for vit_h, vit_l and vit_b).
3. Masks only in a window. The output upscaling (ConvTranspose2d, LayerNorm2d, GELU,
   ConvTranspose2d, GELU) maps each 64x64 cell to its own 4x4 low-res block, and the hypernetwork
   product is per pixel, so both run on the cells under an object's window only (as per-cell
   matmuls); `frames.py` taps, as small interpolation matrices, then give SAM's postprocess_masks
   values for the window's image pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam
from segment_anything.modeling.transformer import Attention, TwoWayAttentionBlock
from torch import Tensor

from samrs.labeling.sam.frames import TAPS


def _split_heads(x: Tensor, heads: int) -> Tensor:
    """(..., n, heads * d) -> (..., heads, n, d)."""
    *lead, n, c = x.shape
    return x.reshape(*lead, n, heads, c // heads).transpose(-3, -2)


def _weight_heads(linear: torch.nn.Linear, heads: int) -> Tensor:
    """(heads, d, in) view of a projection to heads * d outputs."""
    return linear.weight.reshape(heads, -1, linear.weight.shape[1])


def _token_to_image(attn: Attention, queries: Tensor, keys: Tensor, values: Tensor) -> Tensor:
    """attn(q=queries (B, T, C), k=keys, v=values), keys/values (1, N, C) shared or (B, N, C)."""
    b, t, _ = queries.shape
    h = attn.num_heads
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
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, h * d))


def _image_to_token(attn: Attention, image: Tensor, tokens_k: Tensor, tokens_v: Tensor, residual: Tensor) -> Tensor:
    """residual + attn(q=image, k=tokens_k (B, T, C), v=tokens_v), image (1, N, C) shared or (B, N, C).

    Attention weights are laid out (B, h*T, N) so softmax runs over T with N contiguous.
    """
    b, t, _ = tokens_k.shape
    h = attn.num_heads
    k = _split_heads(attn.k_proj(tokens_k), h)  # (B, h, T, d)
    d = k.shape[-1]
    k = k / math.sqrt(d)
    out_w = attn.out_proj.weight.reshape(-1, h, d)  # (C, h, d)
    # Output projection folded into the values; its bias too, spread over the h heads whose
    # attention weights each sum to 1: (B, h*T, C).
    v_out = torch.einsum("bhtd,chd->bhtc", _split_heads(attn.v_proj(tokens_v), h), out_w).flatten(1, 2)
    v_out = v_out + attn.out_proj.bias / h
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


def _block(layer: TwoWayAttentionBlock, queries: Tensor, keys: Tensor, query_pe: Tensor, key_pe: Tensor):
    """TwoWayAttentionBlock.forward, with the attention of `_token_to_image` / `_image_to_token`."""
    if layer.skip_first_layer_pe:
        queries = layer.self_attn(q=queries, k=queries, v=queries)
    else:
        q = queries + query_pe
        queries = queries + layer.self_attn(q=q, k=q, v=queries)
    queries = layer.norm1(queries)
    keys_pe = keys + key_pe
    queries = layer.norm2(queries + _token_to_image(layer.cross_attn_token_to_image, queries + query_pe, keys_pe, keys))
    queries = layer.norm3(queries + layer.mlp(queries))
    q = queries + query_pe
    keys = layer.norm4(_image_to_token(layer.cross_attn_image_to_token, keys_pe, q, queries, keys))
    return queries, keys


@torch.no_grad()
def decode_tokens(
    sam: Sam, image_embedding: Tensor, image_pe: Tensor, sparse: Tensor, dense: Tensor | None
) -> tuple[Tensor, Tensor]:
    """SAM's two-way transformer for a chunk of prompts on one image.

    image_embedding (1, C, h, w); image_pe (1, C, h, w) = prompt_encoder.get_dense_pe(); sparse
    (B, T', C) from the prompt encoder; dense (B, C, h, w) mask prompt embeddings, or None for no
    mask prompt (then the shared `no_mask_embed` is used).
    Returns the output tokens (B, T, C) and the image tokens (B, h*w, C), as MaskDecoder.predict_masks
    has them after `self.transformer`.
    """
    decoder = sam.mask_decoder
    transformer = decoder.transformer
    b = sparse.shape[0]
    output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
    tokens = torch.cat([output_tokens.unsqueeze(0).expand(b, -1, -1).to(sparse.dtype), sparse], dim=1)
    if dense is None:
        dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    keys = (image_embedding + dense).flatten(2).transpose(1, 2)  # (1 or B, N, C)
    key_pe = image_pe.flatten(2).transpose(1, 2)
    queries = tokens
    for layer in transformer.layers:
        queries, keys = _block(layer, queries, keys, tokens, key_pe)
    final = transformer.final_attn_token_to_image
    queries = queries + _token_to_image(final, queries + tokens, keys + key_pe, keys)
    return transformer.norm_final_attn(queries), keys


@torch.no_grad()
def choose_masks(sam: Sam, tokens: Tensor, multimask: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Mask token index (B,), predicted IoU (B,) and hypernetwork vector (B, C/8) of each prompt.

    Single-mask output is token 0, as MaskDecoder with multimask_output=False; multimask picks the
    best of tokens 1..3 by predicted IoU.
    """
    decoder = sam.mask_decoder
    iou = decoder.iou_prediction_head(tokens[:, 0])  # (B, num_mask_tokens)
    if multimask:
        index = 1 + iou[:, 1:].argmax(dim=1)
    else:
        index = torch.zeros(len(iou), dtype=torch.long, device=iou.device)
    rows = torch.arange(len(iou), device=iou.device)
    hyper = torch.stack(
        [mlp(tokens[:, 1 + i]) for i, mlp in enumerate(decoder.output_hypernetworks_mlps)], dim=1
    )  # (B, num_mask_tokens, C/8)
    return index, iou[rows, index], hyper[rows, index]


def _upscaled_logits(sam: Sam, window: Tensor, hyper: Tensor) -> Tensor:
    """MaskDecoder's output_upscaling and hypernetwork product on (b, r, c, C) cells: (b, 4r, 4c).

    Each ConvTranspose2d(kernel 2, stride 2) is a matmul per cell into its 2x2 block, and
    LayerNorm2d normalises each pixel over channels, so the cells are processed channel-last as rows
    of matrices (faster than the convolutions on CPU, same arithmetic).
    """
    conv1, norm, act1, conv2, act2 = sam.mask_decoder.output_upscaling
    b, r, c, channels = window.shape
    c1, c2 = conv1.out_channels, conv2.out_channels
    w1 = conv1.weight.permute(0, 2, 3, 1).reshape(channels, 4 * c1)  # (in, (dy, dx, out))
    x = torch.addmm(conv1.bias.repeat(4), window.reshape(-1, channels), w1).view(-1, 4, c1)
    x = act1(F.layer_norm(x, (c1,), norm.weight, norm.bias, norm.eps))
    w2 = conv2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2)
    x = act2(torch.addmm(conv2.bias.repeat(4), x.reshape(-1, c1), w2).view(b, -1, c2))  # (b, r*c*2*2*2*2, c2)
    logits = (x @ hyper.to(x.dtype)[:, :, None]).view(b, r, c, 2, 2, 2, 2)  # cell row, col, dy, dx, dy2, dx2
    return logits.permute(0, 1, 3, 5, 2, 4, 6).reshape(b, 4 * r, 4 * c).float()


def _taps_matrix(start: Tensor, weights: Tensor, size: int) -> Tensor:
    """(b, n, size) dense interpolation matrix from taps (start (b, n), weights (b, n, TAPS)).

    Taps past `size` carry weight 0 (or belong to padding rows, which are discarded): clamped.
    """
    index = (start[:, :, None] + torch.arange(TAPS, device=start.device)).clamp_(0, size - 1)
    matrix = torch.zeros(*start.shape, size, dtype=weights.dtype, device=weights.device)
    return matrix.scatter_add_(2, index, weights)


@torch.no_grad()
def window_logits(
    sam: Sam,
    image_tokens: Tensor,
    hyper: Tensor,
    batch: Tensor,
    cells: Tensor,
    cell_shape: tuple[int, int],
    row_taps: tuple[Tensor, Tensor],
    col_taps: tuple[Tensor, Tensor],
) -> Tensor:
    """SAM's mask logits at image pixels, computed from a window of embedding cells per prompt.

    image_tokens (B, h*w, C) and hyper (B, C/8) from the decoder; batch (b,) the prompts to compute;
    cells (b, 2) their window's top-left cell (row, col), cell_shape its (rows, cols); row_taps =
    (start (b, oh) in window-local low-res rows, weights (b, oh, TAPS)) for the image rows wanted,
    col_taps likewise. Returns (b, oh, ow) float32 logits equal to SAM's postprocess_masks there.
    """
    n, channels = image_tokens.shape[1:]
    side = sam.prompt_encoder.image_embedding_size[1]
    rows = cells[:, 0, None] + torch.arange(cell_shape[0], device=cells.device)
    cols = cells[:, 1, None] + torch.arange(cell_shape[1], device=cells.device)
    flat_index = batch[:, None, None] * n + rows[:, :, None] * side + cols[:, None, :]
    window = image_tokens.reshape(-1, channels).index_select(0, flat_index.flatten())
    logits = _upscaled_logits(sam, window.view(len(batch), *cell_shape, channels), hyper[batch])
    along_rows = _taps_matrix(*row_taps, logits.shape[1])  # (b, oh, 4r)
    along_cols = _taps_matrix(*col_taps, logits.shape[2])  # (b, ow, 4c)
    with torch.autocast(logits.device.type, enabled=False):  # fp32 logits decide the threshold
        return along_rows @ logits @ along_cols.transpose(1, 2)
