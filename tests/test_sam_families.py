"""Every SAM family's engine path against the family's own predictor / processor post-processing,
with its tiny random model (the `sam=<family>_tiny` builds): same masks inside the kept region, same
scores; SAM 3's concept scores against Sam3Processor's detections."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from samrs.labeling.sam.build import build_tiny_sam_hq
from samrs.labeling.sam.build_hf import build_tiny_family
from samrs.labeling.sam.engine import SamEngine
from samrs.labeling.sam.prompts import PromptSpec, build_prompts, concept_text, rhbox
from samrs.labeling.sam.sam3 import match_concept
from tests.sam_helpers import assert_same_mask, box_object, random_objects, region_mask

SIZE = (300, 500)  # non-square: the square families squash it, SAM-HQ pads it
OBJECTS = 7


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (*SIZE, 3), dtype=np.uint8)
    objects = random_objects(rng, *SIZE, OBJECTS)
    for i, obj in enumerate(objects):
        obj.name = ["ship", "small-vehicle"][i % 2]
    return image, objects


@pytest.fixture(scope="module")
def families(scene):
    """name -> (family, its features of the scene's image, the reference predictor's state)."""
    image, _ = scene
    out = {}
    for name in ("hq_tiny", "sam2.1_tiny", "edgetam_tiny", "sam3_tiny"):
        family = (build_tiny_sam_hq() if name == "hq_tiny" else build_tiny_family(name)).model
        engine = SamEngine(family, PromptSpec(["hbox", "text"] if name == "sam3_tiny" else ["hbox"]))
        out[name] = family, engine.encode([image]), reference_state(family, image)
    return out


def reference_state(family, image):
    if family.family == "sam_hq":
        from segment_anything_hq import SamPredictor

        predictor = SamPredictor(family.sam)
        predictor.set_image(image)
        return predictor
    from transformers import Sam2Processor

    processor = Sam2Processor(family.image_processor)
    pixels = processor(images=image, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return processor, family.model.get_image_embeddings(pixels)


def reference(family, state, spec: PromptSpec, objects, frame, multimask: bool):
    """The family's own full-size logits (N, M, H, W) and scores (N, M) for the objects' prompts."""
    masks = build_prompts(spec, objects, frame).encoder_inputs(np.arange(len(objects)), torch.device("cpu"))[2]
    if family.family == "sam_hq":  # the official predictor, all prompts at once
        points, boxes, _ = build_prompts(spec, objects, frame).encoder_inputs(np.arange(len(objects)), torch.device("cpu"))
        with torch.no_grad():
            full, scores, _ = state.predict_torch(points[0] if points else None, points[1] if points else None, boxes,
                                                  masks, multimask_output=multimask, return_logits=True,
                                                  hq_token_only=family.hq_token_only)
        return full.numpy(), scores.numpy()
    processor, embeddings = state  # transformers: the processor's prompts, one object at a time
    fulls, scores = [], []
    for j, obj in enumerate(objects):
        kwargs = {}
        if spec.box:
            kwargs["input_boxes"] = [[list(obj.hbox if spec.box == "hbox" else rhbox(obj))]]
        if spec.point:
            kwargs["input_points"], kwargs["input_labels"] = [[[list(obj.center())]]], [[[1]]]
        inputs = processor(original_sizes=[SIZE], return_tensors="pt", **kwargs)
        with torch.no_grad():
            out = family.model(image_embeddings=embeddings, input_points=inputs.get("input_points"),
                               input_labels=inputs.get("input_labels"), input_boxes=inputs.get("input_boxes"),
                               input_masks=None if masks is None else masks[j : j + 1], multimask_output=multimask)
        fulls.append(processor.post_process_masks(out.pred_masks, [SIZE], binarize=False)[0][0].numpy())
        scores.append(out.iou_scores[0, 0].numpy())
    return np.stack(fulls), np.stack(scores)


CASES = [
    ("hq_tiny", ["hbox"]), ("hq_tiny", ["cp", "hbox_m"]), ("hq_tiny", ["rhbox", "cp", "rbox_m"]),
    ("sam2.1_tiny", ["hbox"]), ("sam2.1_tiny", ["cp"]), ("sam2.1_tiny", ["rhbox", "rbox_m"]),
    ("edgetam_tiny", ["hbox"]), ("edgetam_tiny", ["hbox", "cp"]),
    ("sam3_tiny", ["hbox"]), ("sam3_tiny", ["rhbox", "hbox_m"]),
]


@pytest.mark.parametrize("name, types", CASES, ids=[f"{n}-{'+'.join(t)}" for n, t in CASES])
def test_masks_equal_the_family_own_post_processing_inside_kept_region(families, scene, name, types):
    image, objects = scene
    family, features, state = families[name]
    engine = SamEngine(family, PromptSpec(types), chunk_size=3, margin_frac=0.1, margin_px=3, outside_band_px=5)
    frame = engine.frame(*SIZE)
    masks = engine.predict(features, frame, objects)
    full, scores = reference(family, state, engine.prompt, objects, frame, multimask=False)
    kept, _ = engine.regions(objects, frame)
    for j, m in enumerate(masks):
        assert_same_mask(m.full(*SIZE), full[j, 0], region_mask(SIZE, *kept[j]))
        assert m.score == pytest.approx(float(scores[j, 0]), abs=1e-4)
    assert sum(m.area for m in masks) > 0


@pytest.mark.parametrize("name", ["hq_tiny", "sam2.1_tiny"])
def test_multimask_and_hq_token_only(families, scene, name, monkeypatch):
    image, objects = scene
    family, features, state = families[name]
    if name == "hq_tiny":
        monkeypatch.setattr(family, "hq_token_only", True)
    engine = SamEngine(family, PromptSpec(["cp"]), multimask=True, whole_image=True)
    frame = engine.frame(*SIZE)
    masks = engine.predict(features, frame, objects)
    full, scores = reference(family, state, engine.prompt, objects, frame, multimask=True)
    best = scores.argmax(axis=1)
    for j, m in enumerate(masks):
        assert m.score == pytest.approx(float(scores[j].max()), abs=1e-4)
        assert_same_mask(m.full(*SIZE), full[j, best[j]])


def test_sam2_dynamic_multimask_falls_back_as_the_model_does(families, scene, monkeypatch):
    """A stability threshold that some single masks miss: those become the best multimask output."""
    image, objects = scene
    family, features, state = families["sam2.1_tiny"]
    decoder = family.model.mask_decoder
    monkeypatch.setattr(decoder, "dynamic_multimask_stability_thresh", 0.97)
    engine = SamEngine(family, PromptSpec(["hbox"]))
    frame = engine.frame(*SIZE)
    masks = engine.predict(features, frame, objects)
    full, scores = reference(family, state, engine.prompt, objects, frame, multimask=False)
    singles = [m.score for m in SamEngine(family, PromptSpec(["hbox"])).predict(features, frame, objects)]
    monkeypatch.setattr(family, "dynamic_multimask", False)
    token0 = [m.score for m in engine.predict(features, frame, objects)]
    assert singles != token0  # some masks did fall back
    kept, _ = engine.regions(objects, frame)
    for j, m in enumerate(masks):
        assert m.score == pytest.approx(float(scores[j, 0]), abs=1e-4)
        assert_same_mask(m.full(*SIZE), full[j, 0], region_mask(SIZE, *kept[j]))


def test_sam3_concept_scores_are_the_detector_scores_at_the_box(families, scene):
    from transformers import Sam3Processor

    image, objects = scene
    family, features, _ = families["sam3_tiny"]
    family.concept_iou = 0.0  # every detection overlapping the box counts: the tiny model's boxes are random
    engine = SamEngine(family, PromptSpec(["hbox", "text"]))
    masks = engine.predict(features, engine.frame(*SIZE), objects)
    processor = Sam3Processor(image_processor=family.image_processor, tokenizer=family.tokenizer)
    for name in ("ship", "small-vehicle"):
        inputs = processor(images=image, text=concept_text(name), return_tensors="pt")
        with torch.no_grad():
            out = family.detector(**{k: v for k, v in inputs.items() if k != "original_sizes"})
        found = processor.post_process_object_detection(out, threshold=0.0, target_sizes=[SIZE])[0]
        for m, obj in zip(masks, objects):
            if obj.name == name:
                expected = match_concept(np.asarray(obj.hbox), found["boxes"].numpy(), found["scores"].numpy(), 0.0)
                assert m.concept_score == pytest.approx(expected, abs=1e-5) and expected > 0
    assert len({round(m.concept_score, 6) for m in masks}) > 1


def test_sam3_features_equal_the_tracker_own(families, scene):
    image, _ = scene
    family, features, (processor, embeddings) = families["sam3_tiny"]
    s0, s1, embedding = embeddings
    np.testing.assert_allclose(features.tensors[0].numpy(), embedding.numpy(), atol=1e-5)
    np.testing.assert_allclose(features.tensors[2][0].numpy(), s0[0].permute(1, 2, 0).numpy(), atol=1e-5)


def test_match_concept_takes_the_best_overlapping_detection():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 9, 10], [50, 50, 60, 60]], dtype=float)
    scores = np.array([0.2, 0.7, 0.9])
    assert match_concept(np.array([0, 0, 10, 10.0]), boxes, scores, 0.5) == pytest.approx(0.7)
    assert match_concept(np.array([20, 20, 30, 30.0]), boxes, scores, 0.5) == 0.0


def test_text_prompt_needs_sam3_and_a_box(families):
    family = families["sam2.1_tiny"][0]
    with pytest.raises(ValueError, match="takes no text prompt"):
        SamEngine(family, PromptSpec(["hbox", "text"]))
    with pytest.raises(ValueError, match="text .* comes after a box"):
        PromptSpec(["text"])
    assert concept_text("small-vehicle") == "small vehicle" and concept_text("plane", {"plane": "airplane"}) == "airplane"
    assert box_object(0, 0, 1, 1).name == "thing"


@pytest.mark.parametrize("name", ["hq_tiny", "sam2.1_tiny", "sam3_tiny"])
def test_bf16_autocast_path_runs_and_agrees(families, scene, name, monkeypatch):
    """The GPU path (autocast) exercised on the CPU: no dtype clashes, masks close to fp32's."""
    image, objects = scene
    family, features, _ = families[name]
    types = ["hbox", "text"] if name == "sam3_tiny" else ["rhbox", "cp", "rbox_m"]
    engine = SamEngine(family, PromptSpec(types))
    frame = engine.frame(*SIZE)
    reference = engine.predict(features, frame, objects)
    monkeypatch.setattr(engine, "autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    half = engine.predict(engine.encode([image]), frame, objects)
    overlap = [(a.full(*SIZE) & b.full(*SIZE)).sum() / max((a.full(*SIZE) | b.full(*SIZE)).sum(), 1)
               for a, b in zip(reference, half)]
    assert np.mean(overlap) >= 0.8
    assert [m.score for m in half] == pytest.approx([m.score for m in reference], abs=0.05)
    if name == "sam3_tiny":
        assert all(m.concept_score is not None for m in half)
