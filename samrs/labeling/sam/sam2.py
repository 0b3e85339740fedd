"""SAM 2.1, EdgeTAM and SAM 3's tracker (transformers' Sam2Model, EdgeTamModel, Sam3TrackerModel) as a family.

The three share SAM 2's prompt encoder and mask decoder; only the image encoder differs (Hiera,
RepViT, SAM 3's ViT). Frames: the image resized to the img_size square (1024; SAM 3: 1008), masks
from the low-res logits (256; 288) by one bilinear resize to the image (Sam2Processor's
post_process_masks). The decoder's upscaling adds the encoder's high-resolution features (2x and
4x the embedding) after each transposed convolution: still per cell, so windows are exact.

Dynamic multimask (the models' config, on in SAM 2's image predictor): a single-mask output whose
stability score (over the whole 256x256 low-res mask) is below a threshold is replaced by the best
of the 3 multimask outputs. The score needs the full low-res mask of every prompt, so with it the
upscaling runs over all cells, as the model does, in sub-batches; only the resize to the image is
windowed. `dynamic_multimask: false` returns output token 0 and windows everything (faster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from samrs.labeling.sam.decoder import decode_tokens, gather_window, hyper_logits, upscale_cells
from samrs.labeling.sam.family import Autocast, Decoded, SamFamily, TensorBatch, hf_prompt_inputs, select_rows
from samrs.labeling.sam.sam1 import choose_mask_token, hypernetworks

FULL_LOW_RES_BATCH = 8  # prompts per full-frame upscaling pass (dynamic multimask): bounds its memory


@dataclass
class Sam2Context:
    embedding: Tensor  # (1, C, h, w)
    image_pe: Tensor  # (1, C, h, w)
    feat_s1: Tensor  # (2h * 2w, C/4) channel-last rows
    feat_s0: Tensor  # (4h * 4w, C/8)


def pixel_values(image_processor: Any, images: Sequence[np.ndarray], device: torch.device) -> Tensor:
    """The family's own preprocessing (its image processor) of (H, W, 3) uint8 images."""
    out = image_processor(images=list(images), return_tensors="pt", device=device)
    return out["pixel_values"].to(device)


def channel_last(x: Tensor) -> Tensor:
    return x.float().permute(0, 2, 3, 1).contiguous()


class Sam2Family(SamFamily):
    """A SAM 2-style model and its image processor; `family` is what meta.json records."""

    square = True

    def __init__(self, model: torch.nn.Module, image_processor: Any, family: str = "sam2",
                 dynamic_multimask: bool | None = None) -> None:
        pe = model.prompt_encoder
        super().__init__(pe.input_image_size, pe.mask_input_size[0], pe.image_embedding_size[0])
        self.model = model.eval()
        self.image_processor = image_processor
        self.family = family
        decoder = model.mask_decoder
        self.dynamic_multimask = decoder.dynamic_multimask_via_stability if dynamic_multimask is None else dynamic_multimask

    def settings(self) -> dict[str, Any]:
        return {"dynamic_multimask": bool(self.dynamic_multimask)}

    def features(self, embeddings: Sequence[Tensor]) -> TensorBatch:
        """get_image_embeddings' [s0, s1, embedding] as the engine keeps them."""
        s0, s1, embedding = embeddings
        return TensorBatch([embedding.float(), channel_last(s1), channel_last(s0)])

    def encode(self, images: Sequence[np.ndarray], autocast: Autocast) -> TensorBatch:
        with autocast():
            return self.features(self.model.get_image_embeddings(pixel_values(self.image_processor, images, self.device)))

    def image_context(self, features: TensorBatch) -> Sam2Context:
        embedding, s1, s0 = features.tensors
        pe = self.model.get_image_wide_positional_embeddings()
        return Sam2Context(embedding, pe, s1.reshape(-1, s1.shape[-1]), s0.reshape(-1, s0.shape[-1]))

    def decode(self, context: Sam2Context, points, boxes, masks, multimask: bool, autocast: Autocast) -> Decoded:
        model, decoder = self.model, self.model.mask_decoder
        if points is None and boxes is None:  # as Sam2Model.forward: an empty point (label -1) per prompt
            zeros = torch.zeros(len(masks), 1, 2, device=masks.device)
            points = (zeros, -torch.ones(len(masks), 1, dtype=torch.int32, device=masks.device))
        sparse, dense = model.prompt_encoder(**hf_prompt_inputs(points, boxes, masks))
        if masks is None:  # the same no-mask embedding for every prompt: shared image tokens
            dense = model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        with autocast():
            tokens = torch.cat([decoder.obj_score_token.weight, decoder.iou_token.weight, decoder.mask_tokens.weight])
            out, image_tokens = decode_tokens(decoder.transformer, tokens, context.embedding, context.image_pe,
                                              sparse[0], dense)
            iou = decoder.iou_prediction_head(out[:, 1])
            hyper = hypernetworks(decoder.output_hypernetworks_mlps, out[:, 2 : 2 + decoder.num_mask_tokens])
        index = choose_mask_token(iou, multimask)
        decoded = Decoded(select_rows(iou, index), image_tokens, select_rows(hyper, index), {})
        if not multimask and self.dynamic_multimask:
            self._dynamic(context, decoded, iou, hyper, autocast)
        return decoded

    def _dynamic(self, context: Sam2Context, decoded: Decoded, iou: Tensor, hyper: Tensor, autocast: Autocast) -> None:
        """Sam2MaskDecoder._dynamic_multimask_via_stability on the full low-res logits: the chosen
        logits (B, 4h, 4w) go into decoded.extra["low_res"], the scores are replaced."""
        decoder = self.model.mask_decoder
        side = self.embedding_side
        best = 1 + iou[:, 1:].argmax(dim=1)
        low_res = []
        for start in range(0, len(iou), FULL_LOW_RES_BATCH):
            rows = torch.arange(start, min(start + FULL_LOW_RES_BATCH, len(iou)), device=iou.device)
            first = torch.zeros(len(rows), 2, dtype=torch.long, device=iou.device)
            with autocast():
                features = self._upscale(context, decoded, rows, first, (side, side))
                single = hyper_logits(features, hyper[rows, 0], side, side)
                multi = hyper_logits(features, select_rows(hyper[rows], best[rows]), side, side)
            flat = single.flatten(1)
            delta = decoder.dynamic_multimask_stability_delta
            area_i, area_u = (flat > delta).sum(1).float(), (flat > -delta).sum(1).float()
            stable = torch.where(area_u > 0, area_i / area_u, 1.0) >= decoder.dynamic_multimask_stability_thresh
            low_res.append(torch.where(stable[:, None, None], single, multi))
            decoded.scores[rows] = torch.where(stable, iou[rows, 0], select_rows(iou[rows], best[rows])).to(decoded.scores.dtype)
        decoded.extra["low_res"] = torch.cat(low_res)

    def _upscale(self, context: Sam2Context, decoded: Decoded, batch: Tensor, first: Tensor, shape: tuple[int, int]) -> Tensor:
        decoder = self.model.mask_decoder
        side = self.embedding_side
        n, channels = decoded.image_tokens.shape[1:]
        window = gather_window(decoded.image_tokens.reshape(-1, channels), batch * n, first, shape, side)
        zero = torch.zeros_like(batch)
        skip1 = gather_window(context.feat_s1, zero, first, shape, 2 * side, 2)
        skip0 = gather_window(context.feat_s0, zero, first, shape, 4 * side, 4)
        act = decoder.activation
        return upscale_cells(window, decoder.upscale_conv1, decoder.upscale_layer_norm, decoder.upscale_conv2,
                             act, act, skip1, skip0)

    def window_low_res(self, context: Sam2Context, decoded: Decoded, batch: Tensor, first: Tensor,
                       shape: tuple[int, int]) -> Tensor:
        if "low_res" in decoded.extra:  # dynamic multimask: the full low-res logits exist, cut the window
            full = decoded.extra["low_res"]
            flat = full.reshape(-1, 1)
            base = batch * full.shape[1] * full.shape[2]
            return gather_window(flat, base, first, shape, full.shape[2], 4)[..., 0]
        features = self._upscale(context, decoded, batch, first, shape)
        return hyper_logits(features, decoded.hyper[batch], *shape)

