"""stats.json and stats.md: the per-subset dicts, a Table 2 row per subset, and readable tables."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

Stats = dict[str, Any]


def image_size_text(sizes: Mapping[str, Any]) -> str:
    """"1024×1024" for one size, "600×600 ~ 1000×800" (min ~ max) when the images differ."""
    if not sizes.get("min"):
        return "–"
    (w0, h0), (w1, h1) = sizes["min"], sizes["max"]
    if sizes.get("distinct", 1) == 1:
        return f"{w0}×{h0}"
    return f"{w0}×{h0} ~ {w1}×{h1}"


def table2_rows(stats: Sequence[Stats]) -> list[dict[str, Any]]:
    """One row per subset (and a total row for several): the quantities of the paper's Table 2 that
    can be measured from the files."""
    rows = [
        {"dataset": s["subset"], "images": s["images"], "classes": s["num_classes"], "instances": s["instances"],
         "channels": "/".join(map(str, s["channels"])) if s["channels"] else "–",
         "image_size": image_size_text(s["image_sizes"]), "labeled_fraction": s["pixels"]["labeled_fraction"]}
        for s in stats
    ]
    if len(stats) > 1:
        pixels = sum(s["pixels"]["total"] for s in stats)
        rows.append({"dataset": "total", "images": sum(s["images"] for s in stats), "classes": "–",
                     "instances": sum(s["instances"] for s in stats), "channels": "–", "image_size": "–",
                     "labeled_fraction": sum(s["pixels"]["labeled"] for s in stats) / pixels if pixels else 0.0})
    return rows


def build_report(stats: Sequence[Stats], settings: Mapping[str, Any], paper: Mapping[str, Any]) -> dict[str, Any]:
    """The stats.json content."""
    return {"settings": dict(settings), "table2": table2_rows(stats), "paper": _paper_rows(stats, paper),
            "subsets": list(stats)}


def _paper_rows(stats: Sequence[Stats], paper: Mapping[str, Any]) -> list[dict[str, Any]]:
    """This run's numbers beside the paper's, for subsets the paper reports (matched by name)."""
    rows = []
    for s in stats:
        ref = paper.get(s["subset"].lower())
        if ref:
            rows.append({"dataset": s["subset"], "images": s["images"], "paper_images": ref["images"],
                         "classes": s["num_classes"], "paper_classes": ref["classes"],
                         "image_size": image_size_text(s["image_sizes"]), "paper_image_size": ref["image_size"]})
    return rows


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines + [""]


def _cell(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "–" if v is None else str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.2f}%" if whole else "–"


def render_markdown(report: Mapping[str, Any], figures: Mapping[str, str] | None = None) -> str:
    """stats.md: Table 2 rows, the paper comparison, then per subset its class, mask-size,
    objects-per-image and problem tables; `figures` maps a caption to a relative PNG path."""
    out = ["# Dataset statistics", "", "## Table 2", ""]
    out += _table(["Dataset", "#Images", "#Classes", "#Instances", "#Channels", "Image size", "Labeled pixels"],
                  [[r["dataset"], r["images"], r["classes"], r["instances"], r["channels"], r["image_size"],
                    f"{100 * r['labeled_fraction']:.2f}%"] for r in report["table2"]])
    if report["paper"]:
        out += ["Compared with the paper (SAMRS, Table 2):", ""]
        out += _table(["Dataset", "#Images", "paper", "#Classes", "paper", "Image size", "paper"],
                      [[r["dataset"], r["images"], r["paper_images"], r["classes"], r["paper_classes"],
                        r["image_size"], r["paper_image_size"]] for r in report["paper"]])
    for s in report["subsets"]:
        out += _subset_markdown(s)
    if figures:
        out += ["## Figures", ""] + [f"![{caption}]({path})" for caption, path in figures.items()] + [""]
    return "\n".join(out)


def _subset_markdown(s: Stats) -> list[str]:
    px, o, m = s["pixels"], s["objects_per_image"], s["mask_size"]
    out = [f"## {s['subset']}", "", f"`{s['root']}`: {s['images']:,} images "
           f"({', '.join(f'{k} {v:,}' for k, v in s['splits'].items()) or 'no split files'}), "
           f"{s['instances']:,} instances from {s['annotations_source'] or 'no instance file'}.", ""]
    out += [f"- labeled pixels: {_pct(px['labeled'], px['total'])} of {px['total']:,} "
            f"(mean per image {100 * s['labeled_fraction_per_image']['mean']:.2f}%)"]
    if o["images"]:
        out += [f"- instances per image: mean {o['mean']:.2f}, median {o['median']:g}, max {o['max']:,}; "
                f"{o['without_instances']:,} images without instances"]
    if m["mean"] is not None:
        out += [f"- mask size: mean {m['mean']:,.1f} px, min {m['min']:,}, max {m['max']:,}; "
                + ", ".join(f"{k} {_pct(v, s['instances'])}" for k, v in m["groups"].items())]
    out += ["", "### Per class", ""]
    groups = list(m["groups"])
    out += _table(["id", "class", "pixels", "% of labeled", "instances", "instance pixels", *groups],
                  [[c["id"], c["name"], c["pixels"], _pct(c["pixels"], px["labeled"]), c["instances"],
                    c["instance_pixels"], *[c["size_groups"][g] for g in groups]] for c in s["classes"]])
    out += ["### Mask sizes", ""]
    out += _table(["mask size (px)", "instances", "share"],
                  [[b, n, _pct(n, s["instances"])] for b, n in zip(m["bins"], m["instances"])])
    if o["images"]:
        edges = o["edges"]
        out += ["### Instances per image", ""]
        out += _table(["instances", "images"],
                      [[f"{a}–{b - 1}" if b - 1 > a else a, n] for a, b, n in zip(edges, edges[1:], o["counts"])]
                      + [[f"≥{edges[-1]}", o["counts"][-1]]])
    problems = s["problems"]
    if problems["counts"]:
        out += ["### Problems", ""]
        out += _table(["kind", "count"], sorted(problems["counts"].items()))
        out += [f"- `{p['path']}`: {p['message']} ({p['action']})" for p in problems["examples"]] + [""]
    return out
