"""SAM 3 as a family: masks from its tracker (the SAM 2-style interactive head, `sam2.py`), and for
`prompt=hbox_text` a concept score per object from its detector prompted with the class name.

Both heads read one ViT backbone (SAM 3's checkpoint stores it once; transformers' Sam3TrackerModel
loads the detector's backbone), so the backbone runs once per image and feeds the tracker's neck
and, with a text prompt, the detector's.

Concept score of an object (prompt hbox_text): the detector, given the object's class name as text
(one pass per class name present in the image, batched), returns up to num_queries detections with
scores sigmoid(logit) * sigmoid(presence) (Sam3Processor.post_process_object_detection). The
object's concept score is the highest score of a detection whose box overlaps the object's box with
IoU >= concept_iou, or 0 when none does. The class name is the concept and the box says which
detection is the object: given as a positive exemplar, the box would make the object an instance of
the concept by definition, and its score would not confirm the class (docs/sam.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from samrs.labeling.sam.family import Autocast, TensorBatch
from samrs.labeling.sam.prompts import PromptSpec, concept_text
from samrs.labeling.sam.sam2 import Sam2Context, Sam2Family, pixel_values
from samrs.sources.records import ObjectRecord

TEXT_LENGTH = 32  # tokens per text, as Sam3Processor pads them


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x0, y0, x1, y1 box with (Q, 4) boxes."""
    lo, hi = np.maximum(box[:2], boxes[:, :2]), np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2])
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    return inter / np.maximum(area + areas - inter, 1e-9)


def match_concept(box: np.ndarray, boxes: np.ndarray, scores: np.ndarray, min_iou: float) -> float:
    """The best score of a detection (boxes (Q, 4), scores (Q,)) overlapping `box` with IoU >= min_iou; 0 if none."""
    overlapping = box_iou(box, boxes) >= min_iou
    return float(scores[overlapping].max()) if overlapping.any() else 0.0


@dataclass
class Sam3Context(Sam2Context):
    detector: list[Tensor] | None = None  # backbone output, the detector neck's levels and position encodings


class Sam3Family(Sam2Family):
    """Sam3TrackerModel (masks) and Sam3Model (concept scores) sharing one backbone; `processor` is
    Sam3Processor (image processor and CLIP tokenizer)."""

    prompt_types = Sam2Family.prompt_types + ("text",)

    def __init__(self, tracker: torch.nn.Module, detector: torch.nn.Module, processor: Any,
                 concept_iou: float = 0.5, concept_names: dict[str, str] | None = None,
                 dynamic_multimask: bool | None = None) -> None:
        super().__init__(tracker, processor.image_processor, "sam3", dynamic_multimask)
        self.detector = detector.eval()
        self.tokenizer = processor.tokenizer
        self.concept_iou = concept_iou
        self.concept_names = dict(concept_names or {})
        self.with_concept = False

    def settings(self) -> dict[str, Any]:
        concept = {"concept_iou": self.concept_iou, "concept_names": self.concept_names} if self.with_concept else {}
        return {**super().settings(), **concept}

    def check_prompt(self, prompt: PromptSpec) -> None:
        super().check_prompt(prompt)
        self.with_concept = prompt.text

    def encode(self, images: Sequence[np.ndarray], autocast: Autocast) -> TensorBatch:
        """The tracker's features (and with a text prompt the detector's), from one backbone pass."""
        tracker = self.model
        with autocast():
            pixels = pixel_values(self.image_processor, images, self.device)
            hidden = self.detector.vision_encoder.backbone(pixels).last_hidden_state
            side = self.embedding_side
            spatial = hidden.view(len(pixels), side, side, -1).permute(0, 3, 1, 2)
            # as Sam3TrackerModel.get_image_features / get_image_embeddings: the no-memory embedding
            # goes to the neck's last level, then the first len(backbone_feature_sizes) levels are kept
            levels = list(tracker.vision_encoder.neck(spatial)[0])
            levels[0] = tracker.mask_decoder.conv_s0(levels[0])
            levels[1] = tracker.mask_decoder.conv_s1(levels[1])
            levels[-1] = levels[-1] + tracker.no_memory_embedding.view(1, -1, 1, 1)
            out = self.features(levels[: len(tracker.backbone_feature_sizes)])
            if self.with_concept:
                fpn, position = self.detector.vision_encoder.neck(spatial)
                out.tensors += [hidden.float()] + [t.float() for t in fpn + position]
        return out

    def image_context(self, features: TensorBatch) -> Sam3Context:
        base = super().image_context(TensorBatch(features.tensors[:3]))
        context = Sam3Context(base.embedding, base.image_pe, base.feat_s1, base.feat_s0)
        context.detector = features.tensors[3:] or None
        return context

    @torch.no_grad()
    def detect(self, context: Sam3Context, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Per text: (K, Q) scores sigmoid(logit) * sigmoid(presence) and (K, Q, 4) boxes x0, y0, x1, y1
        normalised to [0, 1], as Sam3Model gives them for the image and that text."""
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        hidden, *rest = context.detector
        half = len(rest) // 2
        k = len(texts)
        vision = Sam3VisionEncoderOutput(
            last_hidden_state=hidden.expand(k, -1, -1),
            fpn_hidden_states=tuple(t.expand(k, -1, -1, -1) for t in rest[:half]),
            fpn_position_encoding=tuple(t.expand(k, -1, -1, -1) for t in rest[half:]),
        )
        text = self.tokenizer(list(texts), padding="max_length", max_length=TEXT_LENGTH, return_tensors="pt")
        out = self.detector(vision_embeds=vision, input_ids=text["input_ids"].to(self.device),
                            attention_mask=text["attention_mask"].to(self.device))
        scores = out.pred_logits.sigmoid()
        if out.presence_logits is not None:
            scores = scores * out.presence_logits.sigmoid()
        return scores.float(), out.pred_boxes.float()

    def concept_scores(self, context: Sam3Context, objects: Sequence[ObjectRecord], frame: Any) -> np.ndarray:
        """(N,) concept score of every object: its class name's detection at its box (module docstring)."""
        texts = [concept_text(o.name, self.concept_names) for o in objects]
        unique = list(dict.fromkeys(texts))
        scores, boxes = self.detect(context, unique)
        scale = np.array([frame.width, frame.height] * 2, dtype=np.float64)
        scores, boxes = scores.cpu().numpy(), boxes.cpu().numpy() * scale
        which = {t: i for i, t in enumerate(unique)}
        out = np.empty(len(objects))
        for i, (obj, text) in enumerate(zip(objects, texts)):
            k = which[text]
            out[i] = match_concept(np.asarray(obj.hbox, dtype=np.float64), boxes[k], scores[k], self.concept_iou)
        return out

