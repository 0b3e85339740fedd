"""What the shared engine asks of a SAM model family (SAM 1, SAM-HQ, SAM 2, EdgeTAM, SAM 3).

A family wraps the model's own modules and weights and gives the engine:
- its frames (input side, low-res side, embedding side, square resize or longest side + pad);
- `encode`: image features as the family's own predictor computes them, for a batch of images;
- `image_context`: what one image's prompts share (embeddings, positional encoding, high-res features);
- `decode`: a chunk of prompts through the prompt encoder and the re-associated two-way transformer
  (decoder.py), with the family's output tokens and its choice of mask token;
- `window_low_res`: the low-res mask logits of a window of cells per prompt, equal to the family's
  full low-res logits there; the engine turns them into image pixels with the frame's taps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from samrs.errors import ConfigError
from samrs.labeling.sam.prompts import BOX_PROMPTS, MASK_PROMPTS, POINT_PROMPTS, PromptSpec

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
GEOMETRIC_PROMPTS = POINT_PROMPTS + BOX_PROMPTS + MASK_PROMPTS
Autocast = Callable[[], torch.autocast]


@dataclass
class TensorBatch:
    """Per-image tensors of a batch of images (first dimension = image), sliced like one tensor."""

    tensors: list[Tensor]

    def __getitem__(self, index: slice) -> TensorBatch:
        return TensorBatch([t[index] for t in self.tensors])

    def __len__(self) -> int:
        return len(self.tensors[0])

    @staticmethod
    def cat(parts: Sequence[TensorBatch]) -> TensorBatch:
        return TensorBatch([torch.cat(ts) for ts in zip(*(p.tensors for p in parts))])


@dataclass
class Decoded:
    """A chunk of prompts after the decoder: per prompt its score (B,), its image tokens after the
    two-way transformer (B, h*w, C) and its chosen mask token's hypernetwork vector (B, C/8);
    `extra` holds what a family needs besides (SAM-HQ's HQ vector, SAM 2's full low-res logits)."""

    scores: Tensor
    image_tokens: Tensor
    hyper: Tensor
    extra: dict[str, Any]


class SamFamily(torch.nn.Module):
    """Base of the family wrappers; an nn.Module so that `.to(device)` moves the model it holds."""

    family = "sam"  # what meta.json records
    square = False  # frame: resized to the square (SAM 2 and later) or longest side + pad (SAM 1, HQ)
    halo = 0  # window cells beyond an object's own (convolutions wider than a cell after upscaling)
    mask_threshold = 0.0
    prompt_types: tuple[str, ...] = GEOMETRIC_PROMPTS

    def __init__(self, img_size: int, low_res: int, embedding_side: int) -> None:
        super().__init__()
        self.img_size, self.low_res, self.embedding_side = img_size, low_res, embedding_side

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def check_prompt(self, prompt: PromptSpec) -> None:
        other = [t for t in prompt.types if t not in self.prompt_types]
        if other:
            raise ConfigError(f"prompt {prompt.name}: the {self.family} family takes no {', '.join(other)} prompt "
                              f"(it takes {', '.join(self.prompt_types)}); text prompts need sam=sam3")

    def settings(self) -> dict[str, Any]:
        """Family options that decide masks, for meta.json (and the resume check)."""
        return {}

    def concat(self, parts: Sequence[Any]) -> Any:
        return TensorBatch.cat(parts)

    def encode(self, images: Sequence[np.ndarray], autocast: Autocast) -> Any:
        raise NotImplementedError

    def image_context(self, features: Any) -> Any:
        raise NotImplementedError

    def decode(self, context: Any, points, boxes, masks, multimask: bool, autocast: Autocast) -> Decoded:
        raise NotImplementedError

    def window_low_res(self, context: Any, decoded: Decoded, batch: Tensor, first: Tensor, shape: tuple[int, int]) -> Tensor:
        raise NotImplementedError

    def concept_scores(self, context: Any, objects: Sequence, frame: Any) -> np.ndarray:
        raise ConfigError(f"the {self.family} family has no concept (text) prompt")


def as_family(model: torch.nn.Module) -> SamFamily:
    """`model` as a family: a SamFamily as it is, segment-anything's Sam wrapped as SAM 1."""
    if isinstance(model, SamFamily):
        return model
    from samrs.labeling.sam.sam1 import Sam1Family

    return Sam1Family(model)


def hf_prompt_inputs(points, boxes, masks) -> dict[str, Tensor | None]:
    """samrs' prompt tensors (engine layout: one row per prompt) as transformers' prompt encoders take
    them: one image holding the chunk's prompts as its point batch."""
    return {
        "input_points": None if points is None else points[0][None],
        "input_labels": None if points is None else points[1][None],
        "input_boxes": None if boxes is None else boxes[None],
        "input_masks": masks,
    }


def select_rows(values: Tensor, index: Tensor) -> Tensor:
    """values[i, index[i]] for every row i."""
    return values[torch.arange(len(index), device=index.device), index]
