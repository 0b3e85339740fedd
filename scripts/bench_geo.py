"""Peak memory of labeling and predicting georeferenced scenes against the scenes' size.

python scripts/bench_geo.py [--small 2500] [--large 8000] [--tile 1024] [--tiles-per-item 4] [--window 512] [--keep DIR]

Generates two 4-band uint16 GeoTIFF scenes (`--small`, `--large` px square, UTM 33N, boxes in
EPSG:4326) and measures, each in a fresh process (its peak resident memory, VmHWM):

1. imports only (torch, lightning, rasterio, geopandas, samrs): the baseline every job pays;
2. naive: reading a whole scene with rasterio (what a reader without windows holds at least);
3. the label job (polygon_fill, `--tile` tiles with a 200 px gap read `--tiles-per-item` at a time,
   every band kept, GeoTIFF tiles);
4. samrs.predict (a MobileNetV3-small + UperNet-32 with 4 input bands and 18 classes, random
   weights: memory and speed do not depend on them) with `--window` windows, no overlap.

It prints, per scene, the peak memory above the imports' baseline and its ratio to the scene's
raw size. Windowed reads keep the label job flat in the scene size (both scenes have more than
`--tiles-per-item` tiles) and predict growing with one band of windows (the scene's width), while
the naive read grows with the scene. `--keep DIR` keeps (and reuses) the generated scenes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 2**20


def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def imports() -> None:
    import geopandas  # noqa: F401
    import lightning  # noqa: F401
    import rasterio  # noqa: F401
    import torch  # noqa: F401

    import samrs.labeling.job  # noqa: F401
    import samrs.predict  # noqa: F401
    import samrs.sources.geo  # noqa: F401


def child(args: argparse.Namespace) -> dict:
    imports()
    start = time.perf_counter()
    if args.child == "naive":
        import rasterio

        with rasterio.open(args.scene) as ds:
            ds.read()
    elif args.child == "label":
        label(args)
    elif args.child == "predict":
        predict(args)
    return {"peak": peak_rss(), "seconds": time.perf_counter() - start}


def label(args: argparse.Namespace) -> None:
    import functools

    import lightning as L

    from samrs.labeling.fill import PolygonFillLabeler
    from samrs.labeling.job import run_labeling
    from samrs.sources.geo import GeoSource
    from samrs.sources.tiling import Tiling

    scenes = Path(args.scene).parent.parent
    source = GeoSource(Path(args.scene).parent, scenes / "boxes.geojson")
    trainer = functools.partial(L.Trainer, accelerator="cpu", devices=1, enable_model_summary=False)
    run_labeling(source, PolygonFillLabeler(), args.out, tiling=Tiling(size=args.tile, gap=200), progress=False,
                 make_trainer=trainer, output_format="geotiff", output_bands="all", write_color=False,
                 tiles_per_item=args.tiles_per_item)


def predict(args: argparse.Namespace) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from samrs.predict import predict as run
    from samrs.utils.hydra import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("predict", overrides=[f"ckpt_path={args.ckpt}", f"inputs={args.scene}", f"output_dir={args.out}",
                                            "progress=false", "device=cpu", f"predict.window={args.window}",
                                            f"predict.stride={args.window}"])
    with open_dict(cfg):
        cfg.paths.output_dir = cfg.paths.work_dir = str(args.out)
    run(cfg)


def checkpoint(path: Path) -> Path:
    """A randomly initialised geo_debug-like model (4 bands, 18 classes) saved as samrs.train would."""
    import torch
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from omegaconf import OmegaConf, open_dict

    from samrs.classes import SOTA
    from samrs.utils.hydra import config_dir

    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=geo_debug", "+model.net.backbone.in_chans=4",
                                          "paths.output_dir=/tmp/unused", "paths.work_dir=/tmp"])
    with open_dict(cfg):
        cfg.model.net.heads = {"geo": len(SOTA)}
        cfg.model.class_names = {"geo": list(SOTA)}
    model = instantiate(cfg.model)
    torch.save({"state_dict": model.state_dict(), "samrs_config": OmegaConf.to_container(cfg, resolve=True)}, path)
    return path


def measure(kind: str, work: Path, **options) -> dict:
    command = [sys.executable, __file__, "--child", kind, *[f"--{k}={v}" for k, v in options.items()]]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=work)
    if done.returncode:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", type=int, default=2500)
    parser.add_argument("--large", type=int, default=8000)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--tiles-per-item", type=int, default=4)
    parser.add_argument("--window", type=int, default=512)
    parser.add_argument("--keep", type=Path, default=None, help="work folder to keep (default: a temporary one)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scene", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        run_benchmark(args, work)


def run_benchmark(args: argparse.Namespace, work: Path) -> None:
    from samrs.scenes.geotiff import write_geotiff_scenes

    scenes = {}
    for side in (args.small, args.large):
        scenes[side] = work / f"scenes{side}" / "images" / "scene_000.tif"
        if not scenes[side].is_file():
            start = time.perf_counter()
            write_geotiff_scenes(work / f"scenes{side}", count=1, size=side, seed=side, num_objects=(6, 12))
            print(f"generated a {side} x {side} x 4 uint16 scene in {time.perf_counter() - start:.0f} s")
    ckpt = checkpoint(work / "model.ckpt")
    base = measure("imports", work)["peak"]
    print(f"\nimports (torch, lightning, rasterio, geopandas, samrs): peak {base / MIB:.0f} MiB\n")
    print("| scene | raw size | naive whole read | label job (tile {t}) | predict (window {w}) |".format(
        t=args.tile, w=args.window))
    print("|---|---|---|---|---|")
    for side, scene in scenes.items():
        raw = side * side * 4 * 2
        naive = measure("naive", work, scene=scene)
        for folder in (work / f"label{side}", work / f"pred{side}"):
            shutil.rmtree(folder, ignore_errors=True)  # a kept work folder: measure the whole job again
        labeled = measure("label", work, scene=scene, out=work / f"label{side}", tile=args.tile,
                          **{"tiles-per-item": args.tiles_per_item})
        predicted = measure("predict", work, scene=scene, out=work / f"pred{side}", ckpt=ckpt, window=args.window)
        cells = [f"{(r['peak'] - base) / MIB:.0f} MiB ({(r['peak'] - base) / raw:.2f}x, {r['seconds']:.0f} s)"
                 for r in (naive, labeled, predicted)]
        print(f"| {side} x {side} | {raw / MIB:.0f} MiB | " + " | ".join(cells) + " |")
    print("\npeak memory above the imports' baseline (its ratio to the scene's raw size, wall time)")


if __name__ == "__main__":
    main()
