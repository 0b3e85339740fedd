"""The SAM engine against SAM's own full-size masks (SamPredictor), with the tiny random SAM."""

from __future__ import annotations

import copy
import tracemalloc

import numpy as np
import pytest
import torch

from samrs.labeling.sam.build import build_tiny_sam
from samrs.labeling.sam.engine import SamEngine
from samrs.labeling.sam.prompts import PromptSpec
from tests.sam_helpers import ROUNDING, assert_same_mask, iou, predictor_for, random_objects, region_mask, sam_reference

# Non-square, not multiples of 16, upscaled and downscaled by ResizeLongestSide.
SIZES = [(300, 500), (777, 513), (37, 50), (1100, 900)]
SPECS = [["cp"], ["hbox"], ["rhbox"], ["hbox_m"], ["rbox_m"], ["rhbox_m"], ["hbox", "cp"], ["rhbox", "rbox_m"], ["hbox", "cp", "hbox_m"]]
# Every prompt type on some size, every size with some box and some mask prompt (not the whole product: time).
CASES = [(SIZES[i % len(SIZES)], spec) for i, spec in enumerate(SPECS)] + [
    (SIZES[1], ["cp"]),
    (SIZES[2], ["rhbox", "rbox_m"]),
    (SIZES[3], ["hbox"]),
]
OBJECTS = 9


@pytest.fixture(scope="module")
def sam():
    return build_tiny_sam().model


@pytest.fixture(scope="module")
def scenes(sam):
    """Per image size: image, objects, SamPredictor with the image set, and the engine's embedding."""
    rng = np.random.default_rng(0)
    out = {}
    for h, w in SIZES:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        objects = random_objects(rng, h, w, OBJECTS)
        embedding = SamEngine(sam, PromptSpec(["hbox"])).encode([image])
        out[(h, w)] = image, objects, predictor_for(sam, image), embedding
    return out


@pytest.mark.parametrize("size, types", CASES, ids=[f"{h}x{w}-{'+'.join(t)}" for (h, w), t in CASES])
def test_masks_equal_sam_full_size_inside_kept_region(sam, scenes, size, types):
    image, objects, predictor, embedding = scenes[size]
    engine = SamEngine(sam, PromptSpec(types), chunk_size=4, margin_frac=0.1, margin_px=3, outside_band_px=5)
    frame = engine.frame(*size)
    masks = engine.predict(embedding, frame, objects)
    full, scores = sam_reference(predictor, engine.prompt, objects, frame, multimask=False)
    kept, computed = engine.regions(objects, frame)
    assert [m.object_index for m in masks] == list(range(OBJECTS))
    for j, m in enumerate(masks):
        keep = region_mask(size, *kept[j])
        band = region_mask(size, *computed[j]) & ~keep
        assert_same_mask(m.full(*size), full[j, 0], keep)
        assert m.score == pytest.approx(float(scores[j, 0]), abs=1e-4)
        unsure = int((band & (np.abs(full[j, 0]) <= ROUNDING)).sum())
        assert abs(m.outside - int((band & (full[j, 0] > 0)).sum())) <= unsure
        assert m.prompt == "+".join(types)
        if m.area:  # the crop is the mask's bounding box
            assert m.mask[0].any() and m.mask[-1].any() and m.mask[:, 0].any() and m.mask[:, -1].any()
    assert sum(m.area for m in masks) > 0  # the random SAM does predict something here


def test_whole_image_gives_sam_masks_everywhere(sam, scenes):
    image, objects, predictor, embedding = scenes[(300, 500)]
    engine = SamEngine(sam, PromptSpec(["hbox"]), whole_image=True)
    masks = engine.predict(embedding, engine.frame(300, 500), objects)
    full, _ = sam_reference(predictor, engine.prompt, objects, engine.frame(300, 500), multimask=False)
    for j, m in enumerate(masks):
        assert m.outside == 0
        assert_same_mask(m.full(300, 500), full[j, 0])


def test_multimask_returns_the_best_predicted_mask(sam, scenes):
    image, objects, _, embedding = scenes[(777, 513)]
    sharp = copy.deepcopy(sam)  # a sharper IoU head, so that the random SAM's picks differ per object
    sharp.mask_decoder.iou_prediction_head.layers[-1].weight.data *= 100
    engine = SamEngine(sharp, PromptSpec(["cp"]), multimask=True, whole_image=True)
    masks = engine.predict(embedding, engine.frame(777, 513), objects)
    full, scores = sam_reference(predictor_for(sharp, image), engine.prompt, objects, engine.frame(777, 513), True)
    best = scores.argmax(axis=1)
    assert len(set(best.tolist())) > 1
    for j, m in enumerate(masks):
        assert m.score == pytest.approx(float(scores[j].max()), abs=1e-4)
        assert_same_mask(m.full(777, 513), full[j, best[j]])


@pytest.mark.parametrize("types", [["hbox"], ["rhbox", "rbox_m"]], ids="+".join)
def test_chunk_and_window_batch_sizes_do_not_change_masks(sam, scenes, types):
    image, objects, _, embedding = scenes[(300, 500)]
    results = []
    for chunk_size, max_window_pixels in ((64, 1 << 22), (1, 1 << 22), (4, 1 << 22), (64, 1)):
        engine = SamEngine(sam, PromptSpec(types), chunk_size=chunk_size, max_window_pixels=max_window_pixels)
        results.append(engine.predict(embedding, engine.frame(300, 500), objects))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert (a.full(300, 500) != b.full(300, 500)).sum() <= 2
            assert a.score == pytest.approx(b.score, abs=1e-5)
            assert a.outside == pytest.approx(b.outside, abs=2)


def test_bf16_autocast_path_runs_and_agrees(sam, scenes, monkeypatch):
    """The GPU path (autocast) exercised on the CPU: no dtype clashes, masks close to fp32's."""
    image, objects, _, embedding = scenes[(300, 500)]
    engine = SamEngine(sam, PromptSpec(["rhbox", "cp", "rbox_m"]))
    reference = engine.predict(embedding, engine.frame(300, 500), objects)
    monkeypatch.setattr(engine, "autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    for a, b in zip(reference, engine.predict(embedding, engine.frame(300, 500), objects)):
        assert iou(a.full(300, 500), b.full(300, 500)) >= 0.95
        assert a.score == pytest.approx(b.score, abs=0.01)


def _peak_memory(fn) -> tuple[int, int]:
    """Largest single torch CPU allocation of an op, and tracemalloc's peak (numpy), while running fn."""
    tracemalloc.start()
    try:
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
            fn()
        numpy_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return max(max(e.cpu_memory_usage, 0) for e in prof.events()), numpy_peak


def test_memory_holds_no_full_size_mask_per_object(sam):
    size, count = (1024, 1024), 16
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    objects = random_objects(rng, *size, count)
    for o in objects:  # small objects, as in a tile of vehicles
        o.corners = o.corners.mean(axis=0) + (o.corners - o.corners.mean(axis=0)) / 8
        o.hbox = np.concatenate([o.corners.min(axis=0), o.corners.max(axis=0)])
    engine = SamEngine(sam, PromptSpec(["hbox"]), chunk_size=count)
    embedding = engine.encode([image])
    frame = engine.frame(*size)
    budget = count * size[0] * size[1]  # one byte per pixel per object: a bool full-size mask each
    masks = []
    torch_peak, numpy_peak = _peak_memory(lambda: masks.extend(engine.predict(embedding, frame, objects)))
    assert torch_peak < budget and numpy_peak < budget / 4
    kept, _ = engine.regions(objects, frame)
    for m, (x0, y0, x1, y1) in zip(masks, kept):
        assert m.mask.shape[0] <= y1 - y0 and m.mask.shape[1] <= x1 - x0
    # SAM's own path, by contrast, makes full-size masks for the whole chunk: the measure can fail.
    predictor = predictor_for(sam, image)
    assert _peak_memory(lambda: sam_reference(predictor, engine.prompt, objects, frame, False))[0] >= budget


def test_label_batches_images_and_handles_images_without_objects(sam):
    rng = np.random.default_rng(2)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(200, 300), (120, 90), (64, 64)]]
    objects = [random_objects(rng, 200, 300, 3), [], random_objects(rng, 64, 64, 2)]
    engine = SamEngine(sam, PromptSpec(["hbox"]), encoder_batch_size=2)
    encoded = []
    encode = engine.encode
    engine.encode = lambda batch: encoded.append([im.shape for im in batch]) or encode(batch)
    out = engine.label(images, objects)
    assert [len(o) for o in out] == [3, 0, 2]
    assert encoded == [[(200, 300, 3), (64, 64, 3)]]  # the image without objects is never encoded
    single = engine.predict(engine.encode(images[2:]), engine.frame(64, 64), objects[2])
    for a, b in zip(out[2], single):
        assert np.array_equal(a.full(64, 64), b.full(64, 64))
    assert engine.stopwatch.seconds["encoder"] > 0 and engine.stopwatch.seconds["decoder"] > 0


@pytest.mark.parametrize(
    "options, message",
    [({"precision": "fp8"}, "precision"), ({"chunk_size": 0}, "chunk_size"), ({"max_window_pixels": 0}, "max_window"), ({"margin_px": -1}, "margin")],
)
def test_bad_engine_options(sam, options, message):
    with pytest.raises(ValueError, match=message):
        SamEngine(sam, PromptSpec(["hbox"]), **options)
