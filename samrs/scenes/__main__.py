"""python -m samrs.scenes --format dota|dior|fair1m|hrsc2016|coco|yolo_obb|geotiff|samrs --out DIR --count N --size S --seed K

Writes generated scenes with exact masks in a detection dataset's real layout (or, with
--format samrs, directly as a SAMRS-format subset; with --format geotiff, 16-bit multispectral
GeoTIFFs in a projected CRS with their boxes in EPSG:4326), for trying the label job without a dataset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.progress import track

from samrs.scenes.formats import FORMATS, write_format
from samrs.scenes.subset import write_generated_subset


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
    return out


if __name__ == "__main__":
    main()
