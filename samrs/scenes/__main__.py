"""python -m samrs.scenes --format dota|dior|fair1m|hrsc2016|samrs --out DIR --count N --size S --seed K

Writes generated scenes with exact masks in a detection dataset's real layout (or, with
--format samrs, directly as a SAMRS-format subset), for trying the label job without a dataset.
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
    args = parser.parse_args(argv)
    if args.count < 1 or args.size < 16:
        parser.error("--count must be >= 1 and --size >= 16")
    return args


def main(argv: list[str] | None = None) -> Path:
    args = parse_args(argv)
    if args.format == "samrs":
        out = write_generated_subset(args.out, args.subset, count=args.count, size=args.size,
                                     num_objects=tuple(args.objects), seed=args.seed)
    else:
        out = write_format(args.format, args.out, args.count, args.size, args.seed, tuple(args.objects),
                           wrap=lambda scenes: track(scenes, total=args.count, description=f"writing {args.format}"))
    print(f"wrote {args.count} {args.format} scenes to {out}")
    return out


if __name__ == "__main__":
    main()
