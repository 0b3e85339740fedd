"""samrs.predict: banded sliding windows equal whole-image inference; whole scenes become GeoTIFF
class maps (probabilities, polygons) in the scene's CRS; runs resume by scene."""

from __future__ import annotations

import json
import math
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
import torch
from geo_helpers import untrained_checkpoint
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from samrs.evaluate import read_checkpoint
from samrs.inference import SlidingWindow
from samrs.labeling.job import UsageError
from samrs.predict import InputReader, predict
from samrs.utils.geo import Stretch, raster_info
from samrs.utils.hydra import config_dir
from samrs.utils.io import read_label

NET = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 5, 5, padding=2))


@pytest.mark.parametrize("height,width,window,stride,flip,average", [
    (70, 95, 32, 20, False, "logits"), (70, 95, 32, None, True, "probs"), (20, 95, 32, 20, False, "logits"),
    (70, 25, 32, 20, True, "logits"), (32, 32, 32, 32, False, "logits"),
    (230, 30, 100, 90, False, "logits")])  # bands of 90 rows handed out in chunks of 64
def test_rows_equal_whole_image_inference(height, width, window, stride, flip, average):
    torch.manual_seed(0)
    net = NET.eval()
    image = torch.randn(1, 4, height, width)
    windows = SlidingWindow(window=window, stride=stride, flip=flip, average=average, batch_size=3)
    reads = []

    def read(top, bottom):
        reads.append((top, bottom))
        return image[0, :, top:bottom]

    bands = list(windows.rows(net, read, height, width))
    assert [top for top, _ in bands] == list(np.cumsum([0] + [b.shape[1] for _, b in bands[:-1]]))
    torch.testing.assert_close(torch.cat([b for _, b in bands], dim=1), windows(net, image)[0])
    assert all(bottom - top <= window for top, bottom in reads)  # one band of windows at a time
    assert max(b.shape[1] for _, b in bands) <= 64
    assert len(reads) == len(windows.passes()[0].tops(height))


def test_scales_are_passes_averaged():
    torch.manual_seed(0)
    net = NET.eval()
    image = torch.randn(4, 80, 90)

    def run(scales):
        windows = SlidingWindow(window=32, stride=24, scales=scales)
        return torch.cat([b for _, b in windows.rows(net, lambda t, b: image[:, t:b], 80, 90)], dim=1)

    torch.testing.assert_close(run((0.5, 1.0, 1.5)), (run((0.5,)) + run((1.0,)) + run((1.5,))) / 3)
    assert SlidingWindow(window=32, scales=(0.5, 1.0)).count_windows(80, 90) == 2 * 2 + 4 * 4  # 64 px every 44; 32 px every 22


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    small = ["model.net.backbone.name=mobilenetv3_small_050", "model.net.decoder.channels=16"]
    return {
        "geo": untrained_checkpoint(root / "geo.ckpt", ["experiment=geo_debug", "+model.net.backbone.in_chans=4",
                                                        "data.val_transform.crop_size=96", *small], {"geo": 5}),
        "rgb": untrained_checkpoint(root / "rgb.ckpt", ["experiment=demo", "model=demo", *small],
                                    {"sota": 4, "sior": 3}),
    }


def run_predict(ckpt: Path, inputs: Path, out: Path, *overrides: str) -> list[Path]:
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("predict", overrides=[f"ckpt_path={ckpt}", f"inputs={inputs}", f"output_dir={out}",
                                            "progress=false", "device=cpu", *overrides])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.work_dir = str(out), str(out)
    return predict(cfg)


def expected_map(ckpt: Path, scene: Path, window: int) -> tuple[np.ndarray, torch.Tensor]:
    """Whole-scene sliding-window inference (samrs.evaluate's) on the whole scene read at once."""
    from hydra.utils import instantiate

    from samrs.evaluate import untrained_model_config

    train_cfg, state = read_checkpoint(str(ckpt))
    model = instantiate(untrained_model_config(train_cfg.model))
    model.load_state_dict(state)
    model.eval()
    info = raster_info(scene)
    image, valid = InputReader.from_training(train_cfg.data, None, Stretch()).reader(info)(0, info.height)
    logits = SlidingWindow(window=window)(lambda x: model(x, "geo"), image[None])[0]
    ids = logits.argmax(0).numpy().astype(np.uint8)
    ids[~valid] = 255
    return ids, logits


def test_predict_writes_georeferenced_maps_and_resumes(checkpoints, geo_scenes, tmp_path):
    out = tmp_path / "pred"
    maps = run_predict(checkpoints["geo"], geo_scenes / "images", out, "save_probabilities=true",
                       "save_polygons=true", "predict.batch_size=4")
    assert [m.name for m in maps] == ["scene_000.tif", "scene_001.tif"]
    scene = geo_scenes / "images" / "scene_000.tif"
    expected, logits = expected_map(checkpoints["geo"], scene, 96)
    with rasterio.open(maps[0]) as pred, rasterio.open(scene) as src:
        assert pred.crs == src.crs and pred.transform == src.transform and pred.shape == src.shape
        assert pred.profile["tiled"] and pred.profile["compress"] == "deflate" and pred.nodata == 255
        assert pred.colormap(1)[0][:3] == tuple(int(v) for v in pred.colormap(1)[0][:3])
        ids = pred.read(1)
        pixel_area = abs(src.transform.a * src.transform.e)
    np.testing.assert_array_equal(ids, expected)  # banded = whole-scene inference, nodata left out
    assert len(np.unique(ids)) >= 3 and (ids == 255).any()
    with rasterio.open(out / "scene_000_probs.tif") as probs:
        assert probs.count == 5 and probs.descriptions[0] == "class0"
        p = probs.read()
    want = (logits.softmax(0) * 255 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    assert np.abs(p.astype(int) - want).max() <= 1
    polygons = gpd.read_file(out / "scene_000.gpkg")
    assert polygons.crs == rasterio.open(scene).crs
    for class_id, group in polygons.groupby("class_id"):
        assert group.area.sum() == pytest.approx((ids == class_id).sum() * pixel_area)

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    (out / "scene_001.tif").unlink()  # as if the run had stopped in the second scene
    run_predict(checkpoints["geo"], geo_scenes / "images", out, "save_probabilities=true", "save_polygons=true",
                "predict.batch_size=4")
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    assert after["scene_000.tif"] == before["scene_000.tif"] and (out / "scene_001.tif").is_file()
    assert after["scene_001_probs.tif"] != before["scene_001_probs.tif"]  # the unfinished scene is redone
    with pytest.raises(UsageError, match="other settings"):
        run_predict(checkpoints["geo"], geo_scenes / "images", out, "predict.flip=true")


def test_rgb_model_on_plain_images_and_heads(checkpoints, tmp_path):
    from samrs.scenes.formats import write_format

    images = write_format("coco", tmp_path / "coco", count=2, size=100, seed=3, num_objects=(2, 3)) / "images"
    with pytest.raises(UsageError, match="2 heads .*sota, sior"):
        run_predict(checkpoints["rgb"], images, tmp_path / "a")
    maps = run_predict(checkpoints["rgb"], images / "*.png", tmp_path / "b", "head=sior", "predict.window=64",
                       "predict.scales=[0.75,1.0]", "predict.flip=true")
    assert [m.suffix for m in maps] == [".png", ".png"]
    ids = read_label(maps[0])
    assert ids.shape == (100, 100) and ids.max() < 3
    settings = json.loads((tmp_path / "b" / ".samrs_run.json").read_text())
    assert settings["head"] == "sior" and math.isclose(settings["predict"]["scales"][0], 0.75)
    with pytest.raises(UsageError, match="trained on bands"):
        run_predict(checkpoints["geo"], images, tmp_path / "c")
