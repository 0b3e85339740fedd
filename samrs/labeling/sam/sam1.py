"""SAM 1 (segment-anything's own classes: vit_h, vit_l, vit_b, tiny) as a family of the shared engine.

Frames, preprocessing and post-processing are SamPredictor's: ResizeLongestSide to 1024 and pad,
`Sam.preprocess`, masks from the 256x256 low-res logits through postprocess_masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from segment_anything.modeling import Sam
from segment_anything.utils.transforms import ResizeLongestSide
from torch import Tensor

from samrs.labeling.sam.decoder import decode_tokens, gather_window, hyper_logits, upscale_cells
from samrs.labeling.sam.family import Autocast, Decoded, SamFamily, select_rows


@dataclass
class Sam1Context:
    embedding: Tensor  # (1, C, h, w)
    image_pe: Tensor  # (1, C, h, w)


def choose_mask_token(iou: Tensor, multimask: bool) -> Tensor:
    """(B,) mask token index: single-mask output is token 0, multimask the best of tokens 1.. by predicted IoU."""
    if multimask:
        return 1 + iou[:, 1:].argmax(dim=1)
    return torch.zeros(len(iou), dtype=torch.long, device=iou.device)


def hypernetworks(mlps: Sequence[torch.nn.Module], mask_tokens: Tensor) -> Tensor:
    """(B, M, C/8) hypernetwork vectors of the M mask tokens (B, M, C)."""
    return torch.stack([mlp(mask_tokens[:, i]) for i, mlp in enumerate(mlps)], dim=1)


class Sam1Family(SamFamily):
    """segment-anything's Sam: the engine's SAM 1 path, as fast and exact as before the families."""

    family = "sam"

    def __init__(self, sam: Sam) -> None:
        pe = sam.prompt_encoder
        super().__init__(sam.image_encoder.img_size, pe.mask_input_size[0], pe.image_embedding_size[0])
        self.sam = sam
        self.mask_threshold = sam.mask_threshold
        self.resize = ResizeLongestSide(self.img_size)

    def concat(self, parts: Sequence[Tensor]) -> Tensor:
        return torch.cat(parts)

    def encode(self, images: Sequence[np.ndarray], autocast: Autocast) -> Tensor:
        """(B, C, h, w) float32 image embeddings, as SamPredictor.set_image."""
        batch = []
        for image in images:
            resized = torch.as_tensor(self.resize.apply_image(image), device=self.device)
            batch.append(self.sam.preprocess(resized.permute(2, 0, 1).float()))
        with autocast():
            return self.sam.image_encoder(torch.stack(batch)).float()

    def image_context(self, embedding: Tensor) -> Sam1Context:
        return Sam1Context(embedding, self.sam.prompt_encoder.get_dense_pe())

    def decode(self, context: Sam1Context, points, boxes, masks, multimask: bool, autocast: Autocast) -> Decoded:
        sam, decoder = self.sam, self.sam.mask_decoder
        # Prompt and positional encodings (sin/cos of coordinates) stay fp32; they are cheap.
        sparse, dense = sam.prompt_encoder(points=points, boxes=boxes, masks=masks)
        if masks is None:  # the same no-mask embedding for every prompt: shared image tokens
            dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        with autocast():
            tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
            out, image_tokens = decode_tokens(decoder.transformer, tokens, context.embedding, context.image_pe,
                                              sparse, dense)
            iou = decoder.iou_prediction_head(out[:, 0])
            index = choose_mask_token(iou, multimask)
            hyper = hypernetworks(decoder.output_hypernetworks_mlps, out[:, 1 : 1 + decoder.num_mask_tokens])
        return Decoded(select_rows(iou, index), image_tokens, select_rows(hyper, index), {})

    def window_low_res(self, context: Sam1Context, decoded: Decoded, batch: Tensor, first: Tensor,
                       shape: tuple[int, int]) -> Tensor:
        n, channels = decoded.image_tokens.shape[1:]
        window = gather_window(decoded.image_tokens.reshape(-1, channels), batch * n, first, shape, self.embedding_side)
        conv1, norm, act1, conv2, act2 = self.sam.mask_decoder.output_upscaling
        features = upscale_cells(window, conv1, norm, conv2, act1, act2)
        return hyper_logits(features, decoded.hyper[batch], *shape)
