"""SAM prompts and frames: where points, boxes and mask prompts land for non-square images."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from samrs.labeling.sam.frames import SamFrame
from samrs.labeling.sam.prompts import PromptSpec, build_prompts, rasterize_low_res, rhbox
from tests.sam_helpers import box_object, rotated_object

# 300 high, 600 wide: ResizeLongestSide gives 512 x 1024, so image -> input scale is 1024/600 on
# both axes (512/300 = 1.7067 too), and the low-res frame is that / 4.
WIDE = SamFrame.for_image(300, 600, 1024, 256)
SCALE = 1024 / 600


def sam_postprocess(low_res: torch.Tensor, frame: SamFrame) -> torch.Tensor:
    """Sam.postprocess_masks, written out (the reference the taps must reproduce)."""
    x = F.interpolate(low_res, (frame.img_size, frame.img_size), mode="bilinear", align_corners=False)
    x = x[..., : frame.input_height, : frame.input_width]
    return F.interpolate(x, (frame.height, frame.width), mode="bilinear", align_corners=False)


@pytest.mark.parametrize(
    "size, input_size", [((300, 600), (512, 1024)), ((777, 513), (1024, 676)), ((37, 50), (758, 1024))]
)
def test_frame_input_size_is_resize_longest_side(size, input_size):
    frame = SamFrame.for_image(*size, 1024, 256)
    assert (frame.input_height, frame.input_width) == input_size


@pytest.mark.parametrize("size", [(300, 600), (777, 513), (37, 50), (2000, 1500), (1024, 1024)])
def test_taps_reproduce_sam_postprocess(size):
    frame = SamFrame.for_image(*size, 1024, 256)
    logits = torch.randn(1, 1, 256, 256, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    expected = sam_postprocess(logits, frame)[0, 0].numpy()
    row_start, row_w, col_start, col_w = frame.taps()
    padded = np.pad(logits[0, 0].numpy(), ((0, 3), (0, 3)))
    rows = sum(row_w[:, k, None] * padded[row_start + k] for k in range(3))
    got = sum(col_w[None, :, k] * rows[:, col_start + k] for k in range(3))
    assert got.shape == size
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_box_and_point_prompts_in_input_frame():
    obj = box_object(60, 30, 180, 90)
    prompts = build_prompts(PromptSpec(["hbox", "cp"]), [obj], WIDE)
    np.testing.assert_allclose(prompts.boxes[0], np.array([60, 30, 180, 90]) * SCALE)
    np.testing.assert_allclose(prompts.points[0, 0], np.array([120, 60]) * SCALE)
    (coords, labels), boxes, masks = prompts.encoder_inputs(np.array([0]), torch.device("cpu"))
    assert coords.shape == (1, 1, 2) and labels.tolist() == [[1]] and boxes.shape == (1, 4) and masks is None


def test_rhbox_spans_the_rotated_corners_or_the_clipped_polygon():
    obj = rotated_object(100, 100, 40, 20, 30)
    np.testing.assert_allclose(rhbox(obj), [*obj.corners.min(axis=0), *obj.corners.max(axis=0)])
    obj.polygon = np.array([[90.0, 95.0], [120.0, 95.0], [120.0, 110.0]])  # clipped to a tile
    np.testing.assert_allclose(rhbox(obj), [90, 95, 120, 110])
    prompts = build_prompts(PromptSpec(["rhbox"]), [obj], WIDE)
    np.testing.assert_allclose(prompts.boxes[0], np.array([90, 95, 120, 110]) * SCALE)


def test_hbox_mask_prompt_cells_in_low_res_frame():
    obj = box_object(60, 30, 180, 90)
    prompts = build_prompts(PromptSpec(["hbox_m"]), [obj], WIDE)
    _, _, masks = prompts.encoder_inputs(np.array([0]), torch.device("cpu"))
    assert masks.shape == (1, 1, 256, 256)
    # The box in the low-res frame is [25.6, 12.8, 76.8, 38.4]: cells whose centre (j + 0.5) is inside.
    expected = np.full((256, 256), -1000.0, dtype=np.float32)
    expected[13:38, 26:77] = 1000.0
    np.testing.assert_array_equal(masks[0, 0].numpy(), expected)


@pytest.mark.parametrize("size", [(300, 600), (777, 513), (37, 50)])
def test_mask_prompt_lands_under_its_box_through_sam_postprocess(size):
    """A mask prompt, read back as SAM reads its low-res masks, covers the box in the image."""
    h, w = size
    frame = SamFrame.for_image(h, w, 1024, 256)
    box = np.array([0.2 * w, 0.3 * h, 0.7 * w, 0.9 * h])
    prompts = build_prompts(PromptSpec(["hbox_m"]), [box_object(*box)], frame)
    _, _, masks = prompts.encoder_inputs(np.array([0]), torch.device("cpu"))
    back = sam_postprocess(masks.double(), frame)[0, 0].numpy() > 0
    ys, xs = np.nonzero(back)
    cell = max(h, w) / 256  # one low-res cell in image pixels
    np.testing.assert_allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=cell + 1)


def test_rotated_mask_prompt_is_the_polygon():
    obj = rotated_object(300, 150, 200, 60, 35)
    prompts = build_prompts(PromptSpec(["rbox_m"]), [obj], WIDE)
    cells = prompts.mask_polygons[0]
    np.testing.assert_allclose(cells, obj.corners * SCALE / 4)
    grid = rasterize_low_res([cells], 256, 1000.0)[0, 0]
    assert set(np.unique(grid)) == {-1000.0, 1000.0}
    # Reference: a cell centre is inside the convex polygon when it is on the same side of all edges.
    centres = np.stack(np.meshgrid(np.arange(256) + 0.5, np.arange(256) + 0.5), axis=-1)
    edges = np.roll(cells, -1, axis=0) - cells
    to_centre = centres[:, :, None, :] - cells  # (256, 256, 4, 2)
    cross = edges[:, 0] * to_centre[..., 1] - edges[:, 1] * to_centre[..., 0]
    inside = np.all(cross > 0, axis=-1) | np.all(cross < 0, axis=-1)
    near_edge = np.any(np.abs(cross) / np.linalg.norm(edges, axis=1) < 1e-6, axis=-1)
    assert inside.sum() > 300
    np.testing.assert_array_equal((grid > 0)[~near_edge], inside[~near_edge])


def test_combined_prompts_give_every_input():
    objects = [box_object(10, 10, 50, 40), rotated_object(200, 100, 60, 30, 20)]
    spec = PromptSpec(["hbox", "cp", "rbox_m"])
    (coords, labels), boxes, masks = build_prompts(spec, objects, WIDE).encoder_inputs(np.arange(2), torch.device("cpu"))
    assert coords.shape == (2, 1, 2) and labels.shape == (2, 1)
    assert boxes.shape == (2, 4) and masks.shape == (2, 1, 256, 256)
    assert spec.name == "hbox+cp+rbox_m"
    assert (masks > 0).sum(dim=(1, 2, 3)).tolist()[0] > 0


@pytest.mark.parametrize(
    "types, message",
    [([], "one or more"), (["box"], "one or more"), (["hbox", "rhbox"], "at most one"), (["hbox_m", "rbox_m"], "at most one")],
)
def test_prompt_spec_rejects_bad_combinations(types, message):
    with pytest.raises(ValueError, match=message):
        PromptSpec(types)
