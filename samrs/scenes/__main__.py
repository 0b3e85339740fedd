"""python -m samrs.scenes --format dota|dior|fair1m|hrsc2016|coco|yolo_obb|geotiff|samrs --out DIR --count N --size S --seed K

Writes generated scenes with exact masks in a detection dataset's real layout (or, with
--format samrs, directly as a SAMRS-format subset; with --format geotiff, 16-bit multispectral
GeoTIFFs in a projected CRS with their boxes in EPSG:4326), for trying the label job without a dataset.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

from rich.progress import track

from samrs.errors import exit_on_user_error
from samrs.scenes.formats import FORMATS, write_format
from samrs.scenes.subset import write_generated_subset

# The label-job sources each format's scenes are read with: (source, folder under --out, split).
SOURCES = {
    "dota": [("dota", "DOTA", "train"), ("isaid", "iSAID", "train")],
    "dior": [("dior", "", "[train,val,test]")],
    "fair1m": [("fair1m", "", "train")],
    "hrsc2016": [("hrsc2016", "", "test")],
}
# formats read through other keys than source.root + source.split: source -> {key: path under out}
SOURCE_PATHS = {
    "geotiff": ("geo", {"source.images": "images", "source.vectors": "boxes.geojson"}),  # + every band kept
    "coco": ("coco", {"source.root": "images", "source.annotations": "annotations.json"}),
    "yolo_obb": ("yolo_obb", {"source.root": ""}),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m samrs.scenes", description=__doc__.split("\n\n")[1])
    parser.add_argument("--format", required=True, choices=FORMATS, help="layout to write")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--count", type=int, default=20, help="number of scenes (default 20)")
    parser.add_argument("--size", type=int, default=512, help="scene side in pixels (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--objects", type=int, nargs=2, default=(4, 10), metavar=("MIN", "MAX"),
                        help="objects drawn per scene (default 4 10)")
    parser.add_argument("--subset", default="sota", choices=("sota", "sior", "fast"),
                        help="class list of --format samrs (default sota)")
    geo = parser.add_argument_group("--format geotiff")
    geo.add_argument("--bands", type=int, default=4, help="bands: blue, green, red, nir, ... (default 4)")
    geo.add_argument("--crs", default="EPSG:32633", help="the scenes' CRS (default EPSG:32633, UTM 33N)")
    geo.add_argument("--gsd", type=float, default=0.5, help="pixel size in CRS units (default 0.5)")
    geo.add_argument("--block", type=int, default=1024,
                     help="scenes are drawn in blocks of this side, objects per block (default 1024)")
    args = parser.parse_args(argv)
    if args.count < 1 or args.size < 16:
        parser.error("--count must be >= 1 and --size >= 16")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.format == "samrs":
        out = write_generated_subset(args.out, args.subset, count=args.count, size=args.size,
                                     num_objects=tuple(args.objects), seed=args.seed)
    elif args.format == "geotiff":
        from samrs.scenes.geotiff import write_geotiff_scenes

        out = write_geotiff_scenes(args.out, args.count, args.size, args.seed, tuple(args.objects), bands=args.bands,
                                   crs=args.crs, gsd=args.gsd, block=args.block,
                                   wrap=lambda scenes: track(scenes, total=args.count, description="writing geotiff"))
    else:
        out = write_format(args.format, args.out, args.count, args.size, args.seed, tuple(args.objects),
                           wrap=lambda scenes: track(scenes, total=args.count, description=f"writing {args.format}"))
    print(f"wrote {args.count} {args.format} scenes to {out}")
    print(next_steps(args.format, out, args.subset))
    return out


def hydra_value(value: str) -> str:
    """`value` as a Hydra override value: quoted when Hydra would read it as a list, a sweep or an
    interpolation (spaces alone need no Hydra quotes)."""
    if re.search(r"[,'\"\[\]{}()=\\$]|^\s|\s$", value):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return value


def shell_arg(arg: str) -> str:
    """`arg` quoted for a POSIX shell, only when it must be."""
    if re.fullmatch(r"[\w./+\-=:@%]*", arg):
        return arg
    if "'" in arg and not re.search(r'["$`\\!]', arg):
        return f'"{arg}"'
    return shlex.quote(arg)


def next_steps(fmt: str, out: Path, subset: str) -> str:
    """The command that reads what was written: the label job's source.root and source.split, or
    the training data root of a subset."""
    if fmt == "samrs":
        root = hydra_value(str(out))
        return (f"train on it: python -m samrs.train data={subset} {shell_arg(f'data.subsets.{subset}.root={root}')}\n"
                f"look at it: python -m samrs.stats {shell_arg(f'subsets=[{root}]')}")
    if fmt in SOURCE_PATHS:
        source, paths = SOURCE_PATHS[fmt]
        keys = " ".join(shell_arg(f"{k}={hydra_value(str(out / v if v else out))}") for k, v in paths.items())
        labeled = hydra_value(str(out / "labeled" / source))
        bands = " output.bands=all" if fmt == "geotiff" else ""  # the N-band subset data=geo trains on
        note = ("\n(each scene holds one box on nodata on purpose: the label report lists it as nodata_box)"
                if fmt == "geotiff" else "")
        return (f"label it: python -m samrs.label source={source} {keys} labeler=polygon_fill{bands} "
                f"{shell_arg(f'output_dir={labeled}')}{note}")
    lines = []
    for source, folder, split in SOURCES[fmt]:
        root, labeled = hydra_value(str(out / folder if folder else out)), hydra_value(str(out / "labeled" / source))
        lines.append(f"label it: python -m samrs.label source={source} {shell_arg(f'source.root={root}')} "
                     f"{shell_arg(f'source.split={split}')} labeler=polygon_fill {shell_arg(f'output_dir={labeled}')}")
    return "\n".join(lines)


if __name__ == "__main__":
    exit_on_user_error(main)()
