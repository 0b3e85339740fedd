"""Bad input reaches report.json and the summary (file, line, what was done); strict stops."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from labeljob_helpers import dota_source, instances, run_job

from samrs.classes import subset_classes
from samrs.sources.base import BadInputError
from samrs.sources.dota import DotaSource
from samrs.sources.tiling import Tiling
from samrs.utils.io import read_label, write_png, write_text

GOOD = "10 10 40 10 40 40 10 40 plane 0"
LABELS = {
    "P0000": ["imagesource:GoogleEarth", "gsd:0.5",
              GOOD,  # line 3
              "10 10 40 10 40",  # 4: malformed
              "50 50 80 50 80 80 50 80 spaceship 0",  # 5: unknown class
              "20 20 20 20 20 20 20 20 ship 0",  # 6: degenerate
              "80 60 105 60 105 90 80 90 ship 0",  # 7: 80 % inside: clipped, truncated
              "200 200 220 200 220 220 200 220 ship 0",  # 8: wholly outside: dropped
              "95 10 125 10 125 40 95 40 ship 0",  # 9: 17 % inside (< min_visible 0.7): dropped
              "0 0 1e12 0 1e12 1e12 0 1e12 ship 0"],  # 10: a broken coordinate: implausible
    "P0001": [GOOD],  # no image
    "P0003": [GOOD],  # the image is truncated: its header reads, its pixels do not decode
    "P0004": ["imagesource:GoogleEarth", "gsd:0.5"],  # no object
}
EXPECTED = {  # (kind, file, line, action)
    ("malformed_line", "P0000.txt", 4, "skipped"),
    ("unknown_class", "P0000.txt", 5, "skipped"),
    ("degenerate_box", "P0000.txt", 6, "skipped"),
    ("out_of_image_box", "P0000.txt", 7, "clipped"),
    ("out_of_image_box", "P0000.txt", 8, "dropped"),
    ("out_of_image_box", "P0000.txt", 9, "dropped"),
    ("implausible_box", "P0000.txt", 10, "skipped"),
    ("missing_image", "P0001.txt", None, "skipped"),
    ("missing_annotation", "P0002.png", None, "skipped"),
    ("unreadable_image", "P0003.png", None, "skipped"),
    ("empty_image", "P0004.png", None, "kept"),
}


def write_messy_dota(root: Path, names=("P0000", "P0001", "P0002", "P0003", "P0004")) -> Path:
    split = root / "train"
    image = np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8)
    for name in names:
        if name != "P0001":
            write_png(split / "images" / f"{name}.png", image)
        if name in LABELS:
            write_text(split / "labelTxt" / f"{name}.txt", "\n".join(LABELS[name]) + "\n")
    if "P0003" in names:
        png = split / "images" / "P0003.png"
        png.write_bytes(png.read_bytes()[:2000])
    return root


def found(report: dict) -> set:
    return {(p["kind"], Path(p["path"]).name, p["line"], p["action"]) for p in report["problems"]}


def test_every_kind_of_bad_input_is_reported_and_skipped(tmp_path, capsys):
    source = dota_source(write_messy_dota(tmp_path / "DOTA"))
    out = tmp_path / "out"
    meta = run_job(source, out, tiling=Tiling())
    report = json.loads((out / "report.json").read_text())
    assert found(report) == EXPECTED
    assert report["counts"]["problems"] == len(EXPECTED)
    assert report["counts"]["by_kind"]["out_of_image_box"] == {"clipped": 1, "dropped": 2}
    for p in report["problems"]:
        assert p["message"] and p["path"] not in p["message"]  # the path starts the line already
    (unreadable,) = [p["message"] for p in report["problems"] if p["kind"] == "unreadable_image"]
    assert unreadable.startswith("cannot decode the image (") and unreadable.count("cannot decode") == 1
    # the good and the clipped box are labeled; the image without objects is kept, all 255
    assert [Path(i["file_name"]).stem for i in instances(out)["images"]] == ["P0000", "P0004"]
    label = read_label(out / "labels" / "P0000.png")
    assert (label[10:40, 10:40] == 4).all() and (label[60:90, 80:100] == 5).all()
    assert (label[:, 40:80] == 255).all()  # nothing of the dropped or implausible boxes
    assert [a["truncated"] for a in instances(out)["annotations"]] == [False, True]
    assert (read_label(out / "labels" / "P0004.png") == 255).all()
    assert meta["counts"]["empty_images"] == 1 and report["counts"]["empty_images"] == 1
    printed = capsys.readouterr().out
    for kind, *_ in EXPECTED:
        assert f"  {kind}: " in printed
    assert "problems: 11" in printed and f"output: {out}/" in printed
    assert "kept region" not in printed  # polygon_fill predicts nothing beyond a region

    # resuming a finished run reads everything again and loses no problem
    run_job(source, out, tiling=Tiling())
    assert found(json.loads((out / "report.json").read_text())) == EXPECTED


def test_problems_found_at_decode_time_survive_a_resume(tmp_path):
    root = write_messy_dota(tmp_path / "DOTA", names=("P0003", "P0004"))
    out = tmp_path / "out"
    run_job(dota_source(root), out, tiling=Tiling())
    shutil.rmtree(out / "images")  # the image of P0004 is written again, P0003 is tried again
    (out / ".samrs_parts" / "P0004.json").unlink()
    run_job(dota_source(root), out, tiling=Tiling())
    report = json.loads((out / "report.json").read_text())
    assert {(k, f) for k, f, *_ in found(report)} == {("unreadable_image", "P0003.png"), ("empty_image", "P0004.png")}


@pytest.mark.parametrize(
    ("names", "kind", "where"),
    [
        (("P0000", "P0001"), "missing_image", "P0001.txt"),  # found while listing, before anything runs
        (("P0000",), "malformed_line", "P0000.txt:4"),  # found while reading
        (("P0003",), "unreadable_image", "P0003.png"),  # found while decoding
    ],
)
def test_strict_stops_at_the_first_problem(tmp_path, names, kind, where):
    root = write_messy_dota(tmp_path / "DOTA", names=names)
    out = tmp_path / "out"
    with pytest.raises(BadInputError, match=where) as err:
        run_job(dota_source(root), out, tiling=Tiling(), strict=True)
    assert err.value.problem.kind == kind
    assert not (out / "instances.json").exists() and not list(out.glob("images/*"))


@pytest.mark.parametrize("progressive", [False, True])
def test_a_truncated_jpeg_is_skipped_as_unreadable(tmp_path, progressive):
    """Only PIL's decoding sees the cut: OpenCV would give the image grey below it."""
    split = tmp_path / "DOTA" / "train"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (100, 100, 3), dtype=np.uint8))
    (split / "images").mkdir(parents=True)
    for name in ("P0000", "P0003"):
        image.save(split / "images" / f"{name}.jpg", quality=90, progressive=progressive)
        write_text(split / "labelTxt" / f"{name}.txt", GOOD + "\n")
    cut = split / "images" / "P0003.jpg"
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size * 2 // 3])
    out = tmp_path / "out"
    source = DotaSource(tmp_path / "DOTA", subset_classes("sota"), image_suffixes=(".jpg",))
    meta = run_job(source, out, tiling=Tiling())
    assert meta["counts"]["images"] == 1 and [i["file_name"] for i in instances(out)["images"]] == ["images/P0000.png"]
    assert found(json.loads((out / "report.json").read_text())) == {("unreadable_image", "P0003.jpg", None, "skipped")}


def test_strict_keeps_going_on_images_without_objects(tmp_path):
    root = write_messy_dota(tmp_path / "DOTA", names=("P0004",))
    meta = run_job(dota_source(root), tmp_path / "out", tiling=Tiling(), strict=True)
    assert meta["counts"]["images"] == 1 and meta["counts"]["empty_images"] == 1


@pytest.mark.parametrize(
    ("names", "problems"),
    [
        (("P0001",), {("missing_image", "P0001.txt", None, "skipped")}),  # nothing to list: no predict loop
        ((), set()),  # an empty source folder
        (("P0003",), {("unreadable_image", "P0003.png", None, "skipped")}),  # listed, but nothing decodes
    ],
)
def test_a_run_that_labels_no_image_writes_an_empty_subset_and_warns(tmp_path, capsys, names, problems):
    root = write_messy_dota(tmp_path / "DOTA", names=names)
    for folder in ("images", "labelTxt"):
        (root / "train" / folder).mkdir(parents=True, exist_ok=True)
    out = tmp_path / "out"
    meta = run_job(dota_source(root), out, tiling=Tiling())
    assert meta == json.loads((out / "meta.json").read_text())
    assert meta["counts"]["images"] == 0 and meta["subset"] == "sota"
    coco = instances(out)
    assert coco["images"] == [] and coco["annotations"] == [] and len(coco["categories"]) == 18
    assert (out / "train.txt").read_text() == "" and (out / "val.txt").read_text() == ""
    report = json.loads((out / "report.json").read_text())
    assert found(report) == problems and report["counts"]["images"] == 0
    printed = capsys.readouterr()
    assert "labeled 0 images" in printed.out and f"problems: {len(problems)}" in printed.out
    assert "\n  instances.json meta.json report.json" in printed.out  # no image folders named: none were written
    assert "warning: no image was labeled" in printed.err
    assert str(root) in printed.err and "source.root" in printed.err and "image suffix" in printed.err
