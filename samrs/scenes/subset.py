"""Generated scenes written directly as a SAMRS-format subset (exact masks, no labeler)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rich.progress import track

from samrs.classes import subset_classes
from samrs.geometry import mask_hbox
from samrs.labeling.base import InstanceMask
from samrs.labeling.writer import SubsetWriter
from samrs.scenes.folder import NEW_OUT, claim_folder, mark_complete
from samrs.scenes.generate import Scene, generate_scenes


def scene_instances(scene: Scene) -> list[InstanceMask]:
    """Each object's exact mask as an InstanceMask cropped to its box."""
    out = []
    for i, obj in enumerate(scene.objects):
        x0, y0, x1, y1 = (int(v) for v in mask_hbox(obj.mask))
        out.append(InstanceMask(obj.mask[y0:y1, x0:x1], x0, y0, i, obj.class_id, prompt="exact"))
    return out


def write_generated_subset(
    output_dir: str | Path,
    subset: str,
    count: int = 40,
    size: int | Sequence[int] = 128,
    num_objects: int | Sequence[int] = (4, 10),
    seed: int = 0,
    val_fraction: float = 0.2,
    progress: bool = True,
    instead: str = NEW_OUT,
) -> Path:
    """Write `count` generated scenes of `subset` as a SAMRS subset into a new or empty folder; a
    second call with the same parameters finishes or reuses it (samrs.scenes.folder: any other
    folder is refused, with `instead` saying what to do)."""
    root = Path(output_dir)
    params = {"subset": subset, "count": count, "size": _plain(size), "num_objects": _plain(num_objects),
              "seed": seed, "val_fraction": val_fraction}
    if claim_folder(root, params, instead):
        return root
    classes = subset_classes(subset)
    writer = SubsetWriter(root, classes, val_fraction=val_fraction)
    scenes = generate_scenes(classes, count, seed=seed, size=size, num_objects=num_objects)
    for scene in track(scenes, total=count, description=f"generating {subset}", disable=not progress):
        if not writer.is_done(scene.name):
            writer.write(scene.name, scene.image, scene_instances(scene),
                         rboxes=[o.corners for o in scene.objects])
    writer.finalize({"source": "generated", "labeler": "exact", "prompt": None, "generator": params})
    mark_complete(root, params)
    return root


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value
