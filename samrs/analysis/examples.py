"""Figure 4: chosen or random images of a subset with their label maps overlaid."""

from __future__ import annotations

import random
from typing import Sequence

from matplotlib.figure import Figure

from samrs.analysis.subset import SubsetFiles
from samrs.errors import MissingPathError
from samrs.utils.io import read_label, read_rgb
from samrs.utils.logging import get_logger
from samrs.viz import Example, example_grid

log = get_logger(__name__)


def pick_examples(files: SubsetFiles, names: Sequence[str] | None, count: int, seed: int) -> list[str]:
    """`names` as given (each must have a label), else `count` names drawn with `seed` among the
    labels that have an image (possibly none)."""
    labeled = [p.stem for p in files.label_paths()]
    if names:
        missing = sorted(set(names) - set(labeled))
        if missing:
            raise MissingPathError(f"{files.labels_dir}: no label for {', '.join(missing)}")
        return list(names)
    available = [n for n in labeled if files.image_path(n) is not None]
    return sorted(random.Random(seed).sample(available, min(count, len(available))))


def load_example(files: SubsetFiles, name: str) -> Example:
    """The image and label map of `name`."""
    image_path = files.image_path(name)
    if image_path is None:
        raise MissingPathError(f"{files.images_dir}: no image named {name}")
    return Example(name, read_rgb(image_path), read_label(files.labels_dir / f"{name}.png"))


def examples_figure(
    files: SubsetFiles,
    names: Sequence[str],
    columns: int,
    alpha: float,
    tile_inches: float,
    show_image: bool,
) -> Figure | None:
    """The grid of `names` (loaded one by one; only the shown images are held). An unreadable image or
    label is left out with a warning (the statistics list it among the problems); None if none is left."""
    examples = []
    for name in names:
        try:
            examples.append(load_example(files, name))
        except (OSError, ValueError) as err:  # PIL's UnidentifiedImageError is an OSError
            log.warning("%s: example %s left out: %s", files.name, name, err)
    if not examples:
        return None
    return example_grid(examples, files.classes.names, files.classes.palette, columns=columns, alpha=alpha,
                        tile_inches=tile_inches, show_image=show_image, title=files.name)
