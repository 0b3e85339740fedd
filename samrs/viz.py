"""Pictures of label maps: overlays on the image, prediction panels, example grids with a legend.

Everything here draws with matplotlib's object-oriented API (`Figure`, never pyplot), so nothing
depends on a display or changes the global backend: it works the same on a headless server, in
a DataLoader worker and in a notebook. `overlay` and `prediction_panel` return plain uint8 arrays
that any logger (wandb, TensorBoard, CSV + PNG) can take.
"""

from __future__ import annotations

import io
import os
from math import ceil
from typing import NamedTuple, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from samrs.classes import IGNORE_INDEX
from samrs.labeling.overlap import colorize
from samrs.utils.io import atomic_path, to_uint8_rgb


class Example(NamedTuple):
    """One image and its label map, to be drawn in a grid."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8
    label: np.ndarray  # (H, W) uint8 class ids, IGNORE_INDEX where unlabeled


def label_edges(label: np.ndarray, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """(H, W) bool: labeled pixels whose 4-neighbour has another value (the outline of each region)."""
    edges = np.zeros(label.shape, dtype=bool)
    vertical = label[1:] != label[:-1]
    horizontal = label[:, 1:] != label[:, :-1]
    edges[1:] |= vertical
    edges[:-1] |= vertical
    edges[:, 1:] |= horizontal
    edges[:, :-1] |= horizontal
    return edges & (label != ignore_index)


def overlay(
    image: np.ndarray,
    label: np.ndarray,
    palette: Sequence[Sequence[int]],
    alpha: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
    outline: bool = True,
) -> np.ndarray:
    """(H, W, 3) uint8: `image` with each labeled pixel blended with its class colour.

    `image` may be gray, RGB(A), 16-bit or float (rescaled to 8 bit); `label` holds class ids with
    `ignore_index` where nothing is labeled. `outline` draws region borders at full colour, so small
    objects stay visible at low alpha.
    """
    rgb = to_uint8_rgb(image)
    label = np.asarray(label)
    if label.shape != rgb.shape[:2]:
        raise ValueError(f"label of shape {label.shape} does not match image of shape {rgb.shape[:2]}")
    label = label.astype(np.uint8)
    colors = colorize(label, palette)
    labeled = label != ignore_index
    out = rgb.copy()
    blended = (1.0 - alpha) * rgb[labeled] + alpha * colors[labeled]
    out[labeled] = np.clip(blended + 0.5, 0, 255).astype(np.uint8)
    if outline:
        edges = label_edges(label, ignore_index)
        out[edges] = colors[edges]
    return out


def prediction_panel(
    image: np.ndarray,
    target: np.ndarray,
    prediction: np.ndarray,
    palette: Sequence[Sequence[int]],
    alpha: float = 0.5,
    ignore_index: int = IGNORE_INDEX,
    gap: int = 4,
) -> np.ndarray:
    """(H, 3W + 2 gap, 3) uint8 strip: the image, its true mask overlaid, the predicted mask overlaid.

    For logging sample predictions during training: pass numpy arrays (tensor.cpu().numpy()), the
    image as (H, W, 3) or (3, H, W) in any dtype; pixels where `prediction` is `ignore_index` are
    left uncoloured.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[0] in (1, 3) and image.shape[-1] not in (1, 3):
        image = np.moveaxis(image, 0, -1)  # CHW -> HWC
    rgb = to_uint8_rgb(image)
    panels = [rgb, overlay(rgb, target, palette, alpha, ignore_index), overlay(rgb, prediction, palette, alpha, ignore_index)]
    spacer = np.full((rgb.shape[0], gap, 3), 255, dtype=np.uint8)
    return np.concatenate([panels[0], spacer, panels[1], spacer, panels[2]], axis=1)


def legend_handles(
    class_ids: Sequence[int], names: Sequence[str], palette: Sequence[Sequence[int]]
) -> list[Patch]:
    """Matplotlib legend entries "id name" in each class's colour."""
    return [
        Patch(facecolor=np.asarray(palette[i], dtype=float) / 255.0, edgecolor="black", linewidth=0.5,
              label=f"{i} {names[i]}")
        for i in class_ids
        if 0 <= i < len(names)
    ]


def example_grid(
    examples: Sequence[Example],
    names: Sequence[str],
    palette: Sequence[Sequence[int]],
    columns: int = 4,
    alpha: float = 0.5,
    tile_inches: float = 3.0,
    show_image: bool = False,
    title: str | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Figure:
    """A grid of label overlays (with the plain image beside each when `show_image`) and a legend of
    the classes that appear in them."""
    if not examples:
        raise ValueError("example_grid needs at least one example")
    per_example = 2 if show_image else 1
    cols = max(1, min(columns, len(examples))) * per_example
    rows = ceil(len(examples) * per_example / cols)
    fig = Figure(figsize=(cols * tile_inches, rows * tile_inches + 0.8), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.set_axis_off()
    for k, ex in enumerate(examples):
        panels = [overlay(ex.image, ex.label, palette, alpha, ignore_index)]
        if show_image:
            panels.insert(0, to_uint8_rgb(ex.image))
        for j, panel in enumerate(panels):
            ax = axes[k * per_example + j]
            ax.imshow(panel, interpolation="nearest")
            ax.set_title(ex.name if j == 0 else "label", fontsize=8)
    present = sorted({int(v) for ex in examples for v in np.unique(ex.label) if v != ignore_index})
    handles = legend_handles(present, names, palette)
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    return fig


def figure_png(fig: Figure, dpi: int = 100) -> bytes:
    """`fig` as PNG bytes (for IPython.display.Image, or a logger that takes encoded images)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> None:
    """Write `fig` as PNG, atomically (a reader never sees a half-written file)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
