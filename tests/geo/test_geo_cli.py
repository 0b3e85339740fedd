"""The three commands of the README's "Your own imagery", end to end: label GeoTIFF scenes with boxes
in EPSG:4326, train the geo_debug experiment (4 bands, 16 bit), predict whole scenes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
import torch

pytestmark = pytest.mark.slow


def run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAMRS_ROOT": str(tmp_path)}  # data/ and logs/ under tmp_path
    done = subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_label_train_predict(tmp_path):
    scenes = tmp_path / "scenes"
    run(["samrs.scenes", "--format", "geotiff", "--out", str(scenes), "--count", "2", "--size", "256",
         "--block", "256"], tmp_path)
    subset = tmp_path / "subset"
    run(["samrs.label", "source=geo", f"source.images={scenes}/images", f"source.vectors={scenes}/boxes.geojson",
         "labeler=polygon_fill", "output.bands=all", "tiling.size=128", "tiling.gap=32", f"output_dir={subset}",
         "num_workers=0", "progress=false", "extras.print_config=false"], tmp_path)
    meta = json.loads((subset / "meta.json").read_text())
    assert meta["output_format"] == "geotiff" and meta["counts"]["images"] == 2 * 9  # x, y = 0, 96, 128
    with rasterio.open(next((subset / "labels").glob("*.tif"))) as label:
        assert label.crs.to_epsg() == 32633

    run(["samrs.train", "experiment=geo_debug", "logger=csv", "extras.print_config=false"], tmp_path)
    run_dir = tmp_path / "logs" / "train" / "geo_debug"
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert checkpoint["samrs_config"]["model"]["net"]["backbone"]["in_chans"] == 4

    out = tmp_path / "predicted"
    done = run(["samrs.predict", f"ckpt_path={run_dir}", f"inputs={scenes}/images/*.tif", f"output_dir={out}",
                "save_polygons=true", "extras.print_config=false"], tmp_path)
    for scene in sorted((scenes / "images").glob("*.tif")):
        with rasterio.open(out / scene.name) as pred, rasterio.open(scene) as src:
            assert pred.crs == src.crs and pred.transform == src.transform
            ids = pred.read(1)
            assert (ids[src.dataset_mask() == 0] == 255).all() and (ids[src.dataset_mask() > 0] < 18).all()
        assert (out / f"{scene.stem}.gpkg").is_file()
    again = run(["samrs.predict", f"ckpt_path={run_dir}", f"inputs={scenes}/images/*.tif", f"output_dir={out}",
                 "save_polygons=true", "extras.print_config=false"], tmp_path)
    assert "2 of 2 scenes are complete" in again.stdout + again.stderr
