"""samrs.viz: overlays, prediction panels, example grids and figure files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from samrs.viz import Example, example_grid, label_edges, overlay, prediction_panel, save_figure

PALETTE = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def scene() -> tuple[np.ndarray, np.ndarray]:
    image = np.full((20, 30, 3), 100, dtype=np.uint8)
    label = np.full((20, 30), 255, dtype=np.uint8)
    label[2:8, 3:12] = 0
    label[10:18, 15:28] = 2
    return image, label


def test_overlay_blends_labeled_pixels_and_leaves_the_rest():
    image, label = scene()
    out = overlay(image, label, PALETTE, alpha=0.25, outline=False)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert (out[label == 255] == 100).all()
    assert out[4, 5].tolist() == [round(0.75 * 100 + 0.25 * 255), 75, 75]
    assert out[12, 20].tolist() == [75, 75, round(0.75 * 100 + 0.25 * 255)]
    full = overlay(image, label, PALETTE, alpha=1.0, outline=False)
    assert full[4, 5].tolist() == [255, 0, 0]


def test_outline_draws_region_borders_in_full_colour():
    image, label = scene()
    edges = label_edges(label)
    assert edges[2, 5] and edges[7, 5] and edges[4, 3] and not edges[4, 6] and not edges[0, 0]
    out = overlay(image, label, PALETTE, alpha=0.2, outline=True)
    assert out[2, 5].tolist() == [255, 0, 0]
    assert out[4, 6].tolist() != [255, 0, 0]


def test_overlay_accepts_gray_and_float_images_and_rejects_mismatched_labels():
    _, label = scene()
    gray = np.linspace(0, 1, 600, dtype=np.float32).reshape(20, 30)
    assert overlay(gray, label, PALETTE).shape == (20, 30, 3)
    with pytest.raises(ValueError, match="does not match"):
        overlay(gray, label[:10], PALETTE)


def test_prediction_panel_puts_image_truth_and_prediction_side_by_side():
    image, target = scene()
    prediction = np.full_like(target, 1)
    chw = np.moveaxis(image, -1, 0)  # a tensor's layout
    panel = prediction_panel(chw, target, prediction, PALETTE, alpha=1.0, gap=2)
    assert panel.shape == (20, 3 * 30 + 2 * 2, 3)
    truth, pred = panel[:, 32:62], panel[:, 64:94]
    assert (panel[:, :30] == 100).all()
    assert truth[4, 5].tolist() == [255, 0, 0] and truth[0, 0].tolist() == [100, 100, 100]
    assert (pred == [0, 255, 0]).all()
    assert (panel[:, 30:32] == 255).all()
    normalized = np.random.default_rng(0).normal(size=(3, 20, 30)).astype(np.float32)  # rescaled to 8 bit
    assert prediction_panel(normalized, target, prediction, PALETTE).shape == (20, 98, 3)


def test_example_grid_has_a_legend_of_the_classes_shown(tmp_path):
    image, label = scene()
    examples = [Example("one", image, label), Example("two", image, np.full_like(label, 255))]
    names = ["zero", "one", "two"]
    fig = example_grid(examples, names, PALETTE, columns=4, show_image=True)
    legend_texts = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert legend_texts == ["0 zero", "2 two"]
    images = [ax for ax in fig.axes if ax.images]
    assert len(images) == 4
    path = tmp_path / "grid.png"
    save_figure(fig, path, dpi=50)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 50
    with pytest.raises(ValueError, match="at least one"):
        example_grid([], names, PALETTE)
