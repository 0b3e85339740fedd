"""The paper's statistics figures, drawn from the stats dicts (so stats.json can be re-plotted).

Figure 5: pixels (top row) and instances (bottom row) per class, one column per subset.
Figure 6: instances per mask-size bin, one panel per subset. Also objects per image and the
per-image labeled fraction. Bars take the subset's palette colours where they are per class.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

Stats = dict[str, Any]


def _panels(n: int, rows: int, width: Sequence[float], height: float) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(sum(width), height * rows), layout="constrained")
    axes = fig.subplots(rows, n, squeeze=False, gridspec_kw={"width_ratios": list(width)})
    return fig, axes


def _class_bars(ax: Axes, stats: Stats, key: str, log: bool) -> None:
    classes = stats["classes"]
    values = [c[key] for c in classes]
    colors = [np.asarray(stats["palette"][c["id"]], dtype=float) / 255.0 for c in classes]
    x = np.arange(len(classes))
    ax.bar(x, values, color=colors, edgecolor="black", linewidth=0.3)
    ax.set_xticks(x, [c["name"] for c in classes], rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(classes) - 0.4)
    if log and any(v > 0 for v in values):
        ax.set_yscale("log")
        ax.yaxis.set_minor_formatter(NullFormatter())  # no "4x10^0" labels between decades


def class_distribution(stats: Sequence[Stats], log: bool = True, pixel_key: str = "pixels",
                       inches_per_class: float = 0.28, height: float = 3.2) -> Figure:
    """Figure 5: pixels per class (top) and instances per class (bottom), per subset.

    `pixel_key` "pixels" counts label-map pixels; "instance_pixels" sums the instances' mask areas
    (overlapping pixels counted once per instance, as the official SAMRS statistics do).
    """
    widths = [max(3.0, inches_per_class * s["num_classes"] + 1.0) for s in stats]
    fig, axes = _panels(len(stats), 2, widths, height)
    for j, s in enumerate(stats):
        _class_bars(axes[0, j], s, pixel_key, log)
        axes[0, j].set_title(s["subset"])
        _class_bars(axes[1, j], s, "instances", log)
    axes[0, 0].set_ylabel("pixels")
    axes[1, 0].set_ylabel("instances")
    return fig


def _bars(ax: Axes, labels: Sequence[str], counts: Sequence[int], title: str, xlabel: str) -> None:
    x = np.arange(len(counts))
    ax.bar(x, counts, color="#4c72b0")
    ax.set_xticks(x, labels, rotation=45, ha="right", fontsize=7)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    total = sum(counts)
    for xi, c in zip(x, counts):
        if total and c:
            ax.annotate(f"{100 * c / total:.1f}%", (xi, c), ha="center", va="bottom", fontsize=6)


def _bar_panels(stats: Sequence[Stats], bars: Callable[[Stats], tuple[list[str], list[int]]], xlabel: str,
                ylabel: str, panel_inches: float, height: float) -> Figure:
    """One panel of bars per subset; `bars` gives a subset's bar labels and counts."""
    fig, axes = _panels(len(stats), 1, [panel_inches] * len(stats), height)
    for j, s in enumerate(stats):
        _bars(axes[0, j], *bars(s), s["subset"], xlabel)
    axes[0, 0].set_ylabel(ylabel)
    return fig


def mask_size_distribution(stats: Sequence[Stats], panel_inches: float = 4.0, height: float = 3.2) -> Figure:
    """Figure 6: number of instances per mask-size bin (area in px, as side²), per subset."""
    return _bar_panels(stats, lambda s: (s["mask_size"]["bins"], s["mask_size"]["instances"]),
                       "mask size (px)", "instances", panel_inches, height)


def _objects_bars(s: Stats) -> tuple[list[str], list[int]]:
    o = s["objects_per_image"]
    edges = o["edges"]
    labels = [_range_label(a, b) for a, b in zip(edges, [*edges[1:], None])]
    return labels, o["counts"] or [0] * len(edges)


def objects_per_image(stats: Sequence[Stats], panel_inches: float = 4.0, height: float = 3.2) -> Figure:
    """Images per number-of-instances bin, per subset."""
    return _bar_panels(stats, _objects_bars, "instances per image", "images", panel_inches, height)


def _fraction_bars(s: Stats) -> tuple[list[str], list[int]]:
    f = s["labeled_fraction_per_image"]
    edges = f["edges"]
    return [f"{a:.0%}–{b:.0%}" for a, b in zip(edges[:-1], edges[1:])], f["images"]


def labeled_fraction(stats: Sequence[Stats], panel_inches: float = 4.0, height: float = 3.2) -> Figure:
    """Images per bin of labeled-pixel fraction, per subset."""
    return _bar_panels(stats, _fraction_bars, "labeled pixels per image", "images", panel_inches, height)


def _range_label(lo: int, hi: int | None) -> str:
    if hi is None:
        return f"≥{lo}"
    return str(lo) if hi == lo + 1 else f"{lo}–{hi - 1}"
