"""What a label run skipped and why: per-item problem files, report.json and the printed summary.

Problems found while reading and decoding a source item are kept in
`<output_dir>/.samrs_problems/<item>.json`, rewritten each time a run processes the item, so a
resumed run (which re-reads every item) ends with the problems of every item, including those
whose images an earlier run already wrote.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

from samrs.sources.base import Problem
from samrs.utils.io import write_json

PROBLEMS_DIR = ".samrs_problems"


class ProblemStore:
    """The problems of each source item of one output directory."""

    def __init__(self, output_dir: str | Path) -> None:
        self.dir = Path(output_dir) / PROBLEMS_DIR

    def save(self, item: str, problems: Sequence[Problem]) -> None:
        path = self.dir / f"{item}.json"
        if problems:
            write_json(path, [p.to_dict() for p in problems], indent=None)
        else:
            path.unlink(missing_ok=True)

    def load(self, items: Iterable[str]) -> list[Problem]:
        """The stored problems of `items`, in their order."""
        out = []
        for item in items:
            path = self.dir / f"{item}.json"
            if path.is_file():
                out.extend(Problem(**p) for p in json.loads(path.read_text()))
        return out


def make_report(problems: Sequence[Problem], counts: dict[str, Any], items: int, strict: bool) -> dict[str, Any]:
    """report.json: counts (per kind and action) and every problem, duplicates removed."""
    problems = list(dict.fromkeys(problems))
    by_kind: dict[str, dict[str, int]] = {}
    for (kind, action), n in sorted(Counter((p.kind, p.action) for p in problems).items()):
        by_kind.setdefault(kind, {})[action] = n
    return {
        "strict": strict,
        "counts": {
            "source_items": items,
            "images": counts["images"],
            "instances": counts["instances"],
            "empty_images": counts["empty_images"],
            "instances_with_outside": counts["instances_with_outside"],
            "outside_pixels": counts["outside_pixels"],
            "problems": len(problems),
            "by_kind": by_kind,
        },
        "problems": [p.to_dict() for p in problems],
    }


def summary(report: dict[str, Any], meta: dict[str, Any], output_dir: str | Path) -> str:
    """The lines printed at the end of a run."""
    c = report["counts"]
    folders = "" if not c["images"] else "images/ labels/ color/ " if meta.get("write_color") else "images/ labels/ "
    lines = [
        f"labeled {c['images']} images ({c['empty_images']} without objects) with {c['instances']} instances "
        f"from {c['source_items']} source images",
    ]
    if c["instances_with_outside"] or "outside_band_px" in meta:  # a labeler that can predict past its kept region
        lines.append(f"masks cut at their kept region: {c['instances_with_outside']} instances, {c['outside_pixels']} "
                     "pixels outside it dropped (annotation field `outside`; docs/sam.md)")
    lines.append(f"problems: {c['problems']}" + ("" if c["problems"] else " (none)"))
    for kind, actions in c["by_kind"].items():
        lines.append(f"  {kind}: " + ", ".join(f"{n} {action}" for action, n in actions.items()))
    lines.append(f"output: {Path(output_dir)}/")
    test = meta["counts"].get("test_images", 0)
    lines.append(f"  {folders}instances.json meta.json report.json "
                 f"train.txt ({meta['counts']['train_images']}) val.txt ({meta['counts']['val_images']})"
                 + (f" test.txt ({test}: the source's test split, kept out of train/val)" if test else ""))
    return "\n".join(lines)


def nothing_labeled(report: dict[str, Any], meta: dict[str, Any]) -> str:
    """The warning printed after a run that labeled no image: almost always a wrong path or suffix."""
    c = report["counts"]
    return (
        f"warning: no image was labeled ({c['source_items']} source images with an annotation under "
        f"{meta.get('source_root')}; {c['problems']} problems, listed above and in report.json). An empty "
        "result usually means the source points at the wrong files: check source.root, source.split, "
        "source.images_dir and the image suffix (source.image_suffix; DOTA: source.image_suffixes; source=geo: "
        "source.images, source.vectors and their CRS)."
    )
