"""The label job in one process: the subset it writes, resume, empty images, settings, configs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from labeljob_helpers import (
    TILING, RecordingLabeler, dota_source, expected_tiles, file_bytes, instances, mtimes, recorded, run_job,
)

from samrs.classes import subset_classes
from samrs.geometry import rasterize_polygon
from samrs.labeling.fill import BoxFillLabeler, PolygonFillLabeler, box_corners
from samrs.labeling.job import UsageError
from samrs.labeling.overlap import colorize
from samrs.label import label
from samrs.labeling.rle import rle_to_mask
from samrs.scenes.formats import write_format
from samrs.utils.hydra import config_dir
from samrs.utils.io import read_label, read_rgb


def painted(record, shape=lambda o: o.region()) -> np.ndarray:
    """The label map of a record's objects rasterised, the smaller instance on top."""
    full = [rasterize_polygon(shape(o), record.height, record.width) for o in record.objects]
    label = np.full((record.height, record.width), 255, np.uint8)
    for i in sorted(range(len(full)), key=lambda i: -full[i].sum()):
        label[full[i]] = record.objects[i].class_id
    return label


@pytest.fixture(scope="module")
def labeled(dota_root, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("labeled") / "sota"
    return out, run_job(dota_source(dota_root), out, progress=True)


def test_writes_the_subset_as_designed(dota_root, labeled):
    out, meta = labeled
    tiles = expected_tiles(dota_source(dota_root), TILING)
    assert len(tiles) == 42  # 7 source images, 6 tiles each
    names = sorted(tiles)
    for folder in ("images", "labels", "color"):
        assert sorted(p.stem for p in (out / folder).glob("*.png")) == names
    palette = subset_classes("sota").palette
    for name, tile in tiles.items():
        label = read_label(out / "labels" / f"{name}.png")
        np.testing.assert_array_equal(label, painted(tile))  # polygon_fill = the rasterised polygons
        np.testing.assert_array_equal(read_rgb(out / "color" / f"{name}.png"), colorize(label, palette))
        source_image = read_rgb(tile.image_path)
        np.testing.assert_array_equal(read_rgb(out / "images" / f"{name}.png"), TILING.crop(source_image, tile))

    coco = instances(out)
    assert sorted(Path(i["file_name"]).stem for i in coco["images"]) == names
    assert [c["name"] for c in coco["categories"]] == list(subset_classes("sota").names)
    by_id = {i["id"]: i for i in coco["images"]}
    for ann in coco["annotations"]:
        image = by_id[ann["image_id"]]
        tile = tiles[Path(image["file_name"]).stem]
        obj = tile.objects[ann["object_index"]]
        mask = rle_to_mask(ann["segmentation"])
        np.testing.assert_array_equal(mask, rasterize_polygon(obj.region(), 256, 256))
        assert ann["category_id"] == obj.class_id and ann["area"] == mask.sum()
        assert ann["truncated"] == obj.truncated and ann["prompt"] == "polygon_fill"
        assert image["offset"] == list(tile.offset) and image["source_image"] == tile.name.split("__")[0]
    assert any(a["truncated"] for a in coco["annotations"])
    assert len(coco["annotations"]) == sum(len(t.objects) for t in tiles.values())

    assert meta == json.loads((out / "meta.json").read_text())
    assert meta["source"] == "dota" and meta["labeler"] == "polygon_fill" and meta["prompt"] is None
    assert meta["subset"] == "sota" and meta["samrs_version"] and meta["tiling"]["size"] == 256
    assert meta["counts"]["images"] == 42 and meta["counts"]["instances"] == len(coco["annotations"])
    train = (out / "train.txt").read_text().split()
    val = (out / "val.txt").read_text().split()
    assert sorted(train + val) == names and val

    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["images"] == 42 and report["counts"]["source_items"] == 7
    empty = [n for n, t in tiles.items() if not t.objects]
    assert report["counts"]["empty_images"] == len(empty) == meta["counts"]["empty_images"]
    reported = [p["message"].split(":")[0] for p in report["problems"] if p["kind"] == "empty_image"]
    assert sorted(reported) == sorted(empty)
    assert not list(out.rglob(".*.tmp*"))


def test_resume_labels_only_what_is_missing(dota_root, labeled, tmp_path):
    done, _ = labeled
    out = tmp_path / "sota"
    run_job(dota_source(dota_root), out)
    # an interrupted run: some images without their part file (written, not yet recorded), some
    # without anything, and no instances.json yet
    parts = sorted((out / ".samrs_parts").iterdir())
    missing = [p.stem for p in parts[::5]]
    for name in missing[::2]:
        for folder in ("images", "labels", "color"):
            (out / folder / f"{name}.png").unlink()
    for name in missing:
        (out / ".samrs_parts" / f"{name}.json").unlink()
    (out / "instances.json").unlink()
    before = {f: mtimes(out / f) for f in ("images", "labels", ".samrs_parts")}

    log = tmp_path / "labeled.txt"
    run_job(dota_source(dota_root), out, labeler=RecordingLabeler(str(log)))
    assert sorted(name for _, name in recorded(log)) == missing
    after = {f: mtimes(out / f) for f in ("images", "labels", ".samrs_parts")}
    for folder, times in before.items():
        complete = {n: t for n, t in times.items() if Path(n).stem not in missing}
        assert complete and all(after[folder][n] == t for n, t in complete.items()), f"{folder}: rewritten"
    coco = instances(out)
    files = [i["file_name"] for i in coco["images"]]
    assert len(files) == len(set(files)) == 42
    assert coco == instances(done)  # the same subset as a run that was never interrupted, byte for byte
    resumed, whole = file_bytes(out), file_bytes(done)
    assert resumed.keys() == whole.keys() and [n for n in whole if resumed[n] != whole[n]] == []


class CutLabeler(PolygonFillLabeler):
    """polygon_fill whose masks of odd object indices report pixels `outside` their kept region, as
    SAM's masks do when the region cut them (5 per object index + 1)."""

    meta = {"outside_band_px": 8}

    def label(self, images, records):
        masks = super().label(images, records)
        for m in (m for image_masks in masks for m in image_masks):
            m.outside = 5 * (m.object_index + 1) if m.object_index % 2 else 0
        return masks


def test_pixels_outside_the_kept_region_are_totalled(dota_root, tmp_path, capsys):
    out = tmp_path / "sota"
    meta = run_job(dota_source(dota_root), out, labeler=CutLabeler())
    tiles = expected_tiles(dota_source(dota_root), TILING)
    odd = [i for t in tiles.values() for i in range(len(t.objects)) if i % 2]
    assert len(odd) > 10
    pixels = sum(5 * (i + 1) for i in odd)
    by_index = [(a["object_index"], a.get("outside")) for a in instances(out)["annotations"]]
    assert all(outside == (5 * (i + 1) if i % 2 else None) for i, outside in by_index)
    report = json.loads((out / "report.json").read_text())
    for counts in (meta["counts"], report["counts"]):
        assert counts["instances_with_outside"] == len(odd) and counts["outside_pixels"] == pixels
    assert f"masks cut at their kept region: {len(odd)} instances, {pixels} pixels outside it dropped" \
        in capsys.readouterr().out


def test_keep_empty_false_drops_images_without_objects(dota_root, tmp_path):
    out = tmp_path / "sota"
    meta = run_job(dota_source(dota_root), out, keep_empty=False)
    tiles = expected_tiles(dota_source(dota_root), TILING)
    empty = {n for n, t in tiles.items() if not t.objects}
    assert empty and meta["counts"]["images"] == 42 - len(empty) and meta["counts"]["empty_images"] == 0
    assert {p.stem for p in (out / "images").iterdir()} == set(tiles) - empty
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["by_kind"]["empty_image"] == {"dropped": len(empty)}


def test_a_resume_with_other_settings_is_refused(dota_root, labeled):
    out, _ = labeled
    with pytest.raises(UsageError, match="labeler was 'polygon_fill', now 'box_fill'"):
        run_job(dota_source(dota_root), out, labeler=BoxFillLabeler())
    with pytest.raises(UsageError, match="overlap"):
        run_job(dota_source(dota_root), out, overlap="nonsense")


def compose_label(overrides: list[str]):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("label", overrides=overrides)


def test_the_documented_command_composes_and_runs(dota_root, tmp_path):
    out = tmp_path / "sota"
    cfg = compose_label(["source=dota", f"source.root={dota_root}", "labeler=box_fill", f"output_dir={out}",
                         "num_workers=0", "progress=false", "trainer.accelerator=cpu", "trainer.devices=1",
                         f"paths.output_dir={tmp_path / 'run'}"])
    assert (cfg.tiling.size, cfg.tiling.gap, cfg.tiling.border) == (1024, 200, "shift")
    assert (cfg.overlap, cfg.strict, cfg.keep_empty, cfg.val_fraction) == ("smaller_on_top", False, True, 0.05)
    meta = label(cfg)
    assert meta["labeler"] == "box_fill" and meta["tiling"]["size"] == 1024
    # 300 x 500 images in one 1024 tile each, padded: labels 255 and pixels 0 beyond the image
    record = expected_tiles(dota_source(dota_root), TILING.__class__(size=1024))["P0000__1024__0___0"]
    labels = read_label(out / "labels" / "P0000__1024__0___0.png")
    np.testing.assert_array_equal(labels, painted(record, lambda o: box_corners(o.hbox)))
    assert (labels[300:] == 255).all() and (labels[:, 500:] == 255).all()
    assert (read_rgb(out / "images" / "P0000__1024__0___0.png")[300:] == 0).all()


@pytest.mark.parametrize(("choice", "size"), [("fair1m", 600), ("dior", None), ("hrsc2016", None), ("none", None)])
def test_tiling_configs(choice, size):
    cfg = compose_label(["source=dota", "labeler=polygon_fill", f"tiling={choice}"])
    assert cfg.tiling.size == size and cfg.tiling.gap == 200


def test_output_dir_is_required(dota_root):
    cfg = compose_label(["source=dota", f"source.root={dota_root}", "labeler=polygon_fill"])
    with pytest.raises(UsageError, match="output_dir is required"):
        label(cfg)


# Each other source through its own config (tiling picked by the source's name), on generated data.
OTHER_SOURCES = {
    "fair1m": dict(size=700, tile=600, overrides=[]),  # FAIR1M -> FAST: 600-px tiles
    "dior": dict(size=320, tile=None, overrides=["source.split=null"]),  # DIOR -> SIOR: whole images
    "hrsc2016": dict(size=320, tile=None, overrides=["source.split=null"]),
}


@pytest.mark.parametrize("name", sorted(OTHER_SOURCES))
def test_every_source_labels_through_its_config(name, tmp_path):
    spec = OTHER_SOURCES[name]
    root = write_format(name, tmp_path / name, count=4, size=spec["size"], seed=3, num_objects=(3, 6))
    out = tmp_path / "out"
    cfg = compose_label([f"source={name}", f"source.root={root}", "labeler=polygon_fill", f"output_dir={out}",
                         "num_workers=0", "progress=false", "trainer.accelerator=cpu", "trainer.devices=1",
                         f"paths.output_dir={tmp_path / 'run'}", *spec["overrides"]])
    assert cfg.tiling.size == spec["tile"]
    if name == "fair1m":  # one annotation cut short: reported with its line, the rest labeled
        xml = root / "train" / "labelXml" / "1.xml"
        xml.write_text(xml.read_text()[:1500])
    meta = label(cfg)
    source = instantiate(cfg.source)
    tiles = expected_tiles(source, instantiate(cfg.tiling))
    assert meta["counts"]["images"] == len(tiles) >= 4 and meta["subset"] == source.classes.name
    for tile_name, tile in tiles.items():
        np.testing.assert_array_equal(read_label(out / "labels" / f"{tile_name}.png"), painted(tile))
    problems = json.loads((out / "report.json").read_text())["problems"]
    if name == "fair1m":
        (bad,) = [p for p in problems if p["kind"] == "malformed_xml"]
        assert Path(bad["path"]).name == "1.xml" and bad["line"] > 1
        assert not any(n.startswith("1__") for n in tiles)


class DescribedLabeler(PolygonFillLabeler):
    """polygon_fill with a `meta` as SamLabeler has one."""

    name = "described"

    def __init__(self, **meta) -> None:
        self.meta = {"labeler": "described", "prompt": "hbox", "model_type": "vit_b", "sha256": "ab",
                     "checkpoint": "/ckpt/a.pth", "chunk_size": 64, **meta}


def test_labeler_meta_goes_to_meta_json_and_decides_what_a_resume_may_change(dota_root, tmp_path):
    out = tmp_path / "sota"
    meta = run_job(dota_source(dota_root), out, labeler=DescribedLabeler())
    assert (meta["labeler"], meta["prompt"], meta["model_type"], meta["sha256"]) == ("described", "hbox", "vit_b", "ab")
    # the checkpoint moved and smaller chunks after running out of memory: the same masks
    again = run_job(dota_source(dota_root), out, labeler=DescribedLabeler(checkpoint="/new/a.pth", chunk_size=8))
    assert again["chunk_size"] == 8 and again["counts"] == meta["counts"]
    for change in (dict(prompt="rhbox"), dict(sha256="cd"), dict(model_type="vit_h")):
        with pytest.raises(UsageError, match=next(iter(change))):
            run_job(dota_source(dota_root), out, labeler=DescribedLabeler(**change))
