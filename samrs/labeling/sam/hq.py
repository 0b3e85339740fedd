"""SAM-HQ (the official segment-anything-hq package: hq_vit_h, hq_vit_l, hq_vit_b, tiny) as a family.

SAM-HQ is SAM 1 plus an HQ output token whose mask adds features of the image encoder (the first
global-attention block's output and the embedding, each upscaled per cell: computed once per image)
and two 3x3 convolutions on the upscaled embedding. Everything is per cell but those convolutions,
which reach 2 low-res pixels (half a cell) further: windows get one cell more on each side (`halo`),
so the window's logits equal MaskDecoderHQ's there. Frames, preprocessing and post-processing are
SAM 1's (SamPredictor of segment_anything_hq). `hq_token_only` as the official predictor's
(false: SAM's mask plus the HQ mask).

Why not transformers' SamHQModel: in transformers 5.25 its mask decoder upscales the image
embedding from before the two-way transformer, spatially transposed, instead of the transformer's
output as the official SAM-HQ does (docs/sam.md), so its masks are not SAM-HQ's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from samrs.labeling.sam.decoder import cells_to_spatial, decode_tokens, gather_window, hyper_logits, upscale_cells
from samrs.labeling.sam.family import Autocast, Decoded, TensorBatch, select_rows
from samrs.labeling.sam.sam1 import Sam1Family, choose_mask_token, hypernetworks


@dataclass
class HqContext:
    embedding: Tensor  # (1, C, h, w)
    image_pe: Tensor  # (1, C, h, w)
    hq_features: Tensor  # (4h * 4w, C/8): the image's HQ features, channel-last rows


class HqFamily(Sam1Family):
    """segment_anything_hq's Sam (MaskDecoderHQ)."""

    family = "sam_hq"
    halo = 1

    def __init__(self, sam: torch.nn.Module, hq_token_only: bool = False) -> None:
        super().__init__(sam)
        self.hq_token_only = hq_token_only

    def settings(self) -> dict[str, Any]:
        return {"hq_token_only": self.hq_token_only}

    def concat(self, parts: Sequence[TensorBatch]) -> TensorBatch:
        return TensorBatch.cat(parts)

    def encode(self, images: Sequence[np.ndarray], autocast: Autocast) -> TensorBatch:
        """(B, C, h, w) embeddings and (B, 4h, 4w, C/8) HQ features, as MaskDecoderHQ.forward computes them."""
        batch = []
        for image in images:
            resized = torch.as_tensor(self.resize.apply_image(image), device=self.device)
            batch.append(self.sam.preprocess(resized.permute(2, 0, 1).float()))
        decoder = self.sam.mask_decoder
        with autocast():
            embedding, interm = self.sam.image_encoder(torch.stack(batch))
            vit = interm[0].permute(0, 3, 1, 2)  # the first global-attention block's output
            hq = decoder.embedding_encoder(embedding) + decoder.compress_vit_feat(vit)
        return TensorBatch([embedding.float(), hq.float().permute(0, 2, 3, 1).contiguous()])

    def image_context(self, features: TensorBatch) -> HqContext:
        embedding, hq = features.tensors
        return HqContext(embedding, self.sam.prompt_encoder.get_dense_pe(), hq.reshape(-1, hq.shape[-1]))

    def decode(self, context: HqContext, points, boxes, masks, multimask: bool, autocast: Autocast) -> Decoded:
        sam, decoder = self.sam, self.sam.mask_decoder
        sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
        if masks is None:  # the same no-mask embedding for every prompt: shared image tokens
            dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        with autocast():
            tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight, decoder.hf_token.weight])
            out, image_tokens = decode_tokens(decoder.transformer, tokens, context.embedding, context.image_pe,
                                              sparse, dense)
            sam_tokens = decoder.num_mask_tokens - 1  # MaskDecoderHQ counts the HQ token in num_mask_tokens
            iou = decoder.iou_prediction_head(out[:, 0])
            index = choose_mask_token(iou[:, :sam_tokens], multimask)
            hyper = hypernetworks(decoder.output_hypernetworks_mlps, out[:, 1 : 1 + sam_tokens])
            hq_hyper = decoder.hf_mlp(out[:, 1 + sam_tokens])
        return Decoded(select_rows(iou, index), image_tokens, select_rows(hyper, index), {"hq": hq_hyper})

    def window_low_res(self, context: HqContext, decoded: Decoded, batch: Tensor, first: Tensor,
                       shape: tuple[int, int]) -> Tensor:
        decoder = self.sam.mask_decoder
        n, channels = decoded.image_tokens.shape[1:]
        side = self.embedding_side
        window = gather_window(decoded.image_tokens.reshape(-1, channels), batch * n, first, shape, side)
        conv1, norm, act1, conv2, act2 = decoder.output_upscaling
        features = upscale_cells(window, conv1, norm, conv2, act1, act2)
        # HQ path: 3x3 convolutions on the upscaled window (zero padding at its edges is wrong only in
        # the halo cells, which the kept region never reaches), plus the image's HQ features there.
        mconv1, mnorm, mact, mconv2 = decoder.embedding_maskfeature
        x = mconv1(cells_to_spatial(features, *shape).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = mact(F.layer_norm(x, (x.shape[-1],), mnorm.weight, mnorm.bias, mnorm.eps))
        x = mconv2(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = x + gather_window(context.hq_features, torch.zeros_like(batch), first, shape, 4 * side, 4).to(x.dtype)
        hq = torch.einsum("brcx,bx->brc", x, decoded.extra["hq"][batch].to(x.dtype)).float()
        if self.hq_token_only:
            return hq
        return hyper_logits(features, decoded.hyper[batch], *shape) + hq
