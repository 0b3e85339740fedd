"""DOTA labelTxt reader: the real devkit files, generated scenes, and every kind of bad input."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from samrs.classes import DOTA_CLASSES, subset_classes
from samrs.geometry import hbox_of, mask_hbox, polygon_area
from samrs.sources.base import BadInputError, raise_problem
from samrs.sources.common import ObjectChecker
from samrs.sources.dota import DotaSource, parse_label_lines, read_text_lines
from samrs.utils.io import image_size, read_rgb

SOTA = subset_classes("sota")


def file_objects(path: Path) -> list[list[str]]:
    """The object lines of a labelTxt file, split into fields (headers skipped)."""
    return [line.split() for line in path.read_text().splitlines() if len(line.split()) == 10]


def read_all(source, problems):
    return {item.name: source.read(item, problems) for item in source.items(problems)}


@pytest.mark.parametrize("folder, split, names", [
    ("dota_devkit", "example", ["P0706", "P1888"]),
    ("dota_devkit_yolo", "DOTA_demo", ["P0003", "P1478__1__853___962"]),
])
def test_real_files_counts_and_boxes(samples_dir, problems, folder, split, names):
    source = DotaSource(samples_dir / folder, SOTA, split=split, version="1.0")
    records = read_all(source, problems)
    assert sorted(records) == names
    for name, record in records.items():
        lines = file_objects(record.annotation_path)
        # Lines the reader must refuse: zero-area boxes (the devkit's crops write them for objects
        # cut down to a line on the crop border).
        zero = [f for f in lines if polygon_area(np.array(f[:8], float).reshape(4, 2)) < 1]
        expected = Counter(f[8] for f in lines) - Counter(f[8] for f in zero)
        assert Counter(o.name for o in record.objects) == expected
        assert all(o.class_id == SOTA.id_of(o.name) for o in record.objects)
        with Image.open(record.image_path) as im:
            assert (record.width, record.height) == im.size
        for obj in record.objects:
            if obj.polygon is None:
                np.testing.assert_array_equal(obj.hbox, hbox_of(obj.corners))
            else:  # clipped to the image
                assert obj.hbox[0] >= 0 and obj.hbox[2] <= record.width and obj.hbox[3] <= record.height
    assert [p.kind for p in problems.of("degenerate_box")] == ["degenerate_box"] * sum(
        polygon_area(np.array(f[:8], float).reshape(4, 2)) < 1
        for r in records.values() for f in file_objects(r.annotation_path))


def test_header_lines_become_extras(samples_dir, problems):
    source = DotaSource(samples_dir / "dota_devkit", SOTA, split="example", version="1.0")
    record = read_all(source, problems)["P0706"]
    assert record.extras == {"imagesource": "GoogleEarth", "gsd": pytest.approx(0.255589285596)}
    assert len(record.objects) == 536
    # The five label files whose images the devkit snapshot lacks are reported, not skipped silently.
    assert {Path(p.path).name for p in problems.of("missing_image")} == {
        "P0770.txt", "P1088.txt", "P1234.txt", "P2598.txt", "P2709.txt"}
    # P0706 line 3 reaches x = 1112 in a 1111 px wide image: clipped, kept.
    assert ("out_of_image_box", "P0706.txt", 3) in problems.where()
    clipped = [o for o in record.objects if o.polygon is not None]
    assert len(clipped) == 1 and clipped[0].hbox[2] == 1111


def test_split_crop_difficulty_2_is_truncated(samples_dir, problems):
    source = DotaSource(samples_dir / "dota_devkit_yolo", SOTA, split="DOTA_demo", version="1.0")
    record = read_all(source, problems)["P1478__1__853___962"]
    lines = file_objects(record.annotation_path)
    assert sum(o.truncated for o in record.objects) == 3  # 5 lines with difficulty 2, 2 of them zero-area
    assert all(o.difficult == 2 for o in record.objects if o.truncated)
    assert sum(f[9] == "2" for f in lines) == 5
    assert {(p.kind, p.line) for p in problems.of("degenerate_box")} == {("degenerate_box", 2), ("degenerate_box", 3)}


def test_labels_in_other_pixel_frame_are_dropped(samples_dir, problems):
    """mmrotate's 170 px test crop keeps its labels in 1024 px coordinates: every plane is outside."""
    source = DotaSource(samples_dir / "mmrotate/tests/data", SOTA, split="dota", version="1.0")
    record = read_all(source, problems)["P2805__1024__0___0"]
    assert record.objects == [] and record.extras == {}
    assert [(p.kind, p.line, p.action) for p in problems] == [("out_of_image_box", i, "dropped") for i in (1, 2, 3, 4)]


def test_generated_scenes_match_masks(generated, scenes, problems, covers):
    source = DotaSource(generated["dota"] / "DOTA", SOTA, split="train")
    records = read_all(source, problems)
    assert problems == []
    assert sorted(records) == sorted(scenes["dota"])
    for name, record in records.items():
        scene = scenes["dota"][name]
        assert record.extras == {"imagesource": "generated", "gsd": 0.15}
        assert [o.name for o in record.objects] == [o.class_name for o in scene.objects]
        for obj, truth in zip(record.objects, scene.objects):
            assert obj.class_id == truth.class_id
            np.testing.assert_array_equal(obj.hbox, hbox_of(obj.corners))
            assert covers(obj.corners, truth.mask)
            extent = mask_hbox(truth.mask)
            assert np.all(obj.hbox[:2] <= extent[:2]) and np.all(obj.hbox[2:] >= extent[2:])
    assert (generated["dota"] / "DOTA/train/labelTxt/P0000.txt").read_bytes().startswith(b"imagesource:generated\r\n")


def test_version_selects_class_list(tmp_path, problems):
    labels = "imagesource:GoogleEarth\ngsd:0.5\n10 10 40 10 40 40 10 40 container-crane 0\n50 40 90 40 90 70 50 70 helipad 1\n"
    root = _dataset(tmp_path, {"P0001": labels})
    v15 = read_all(DotaSource(root, SOTA, version="1.5"), problems)["P0001"]
    assert [o.name for o in v15.objects] == ["container-crane"]
    assert problems.where() == {("unknown_class", "P0001.txt", 4)}
    problems.clear()
    v20 = read_all(DotaSource(root, SOTA, version="2.0"), problems)["P0001"]
    assert [o.class_id for o in v20.objects] == [SOTA.id_of("container-crane"), SOTA.id_of("helipad")]
    assert v20.objects[1].difficult == 1 and problems == []
    with pytest.raises(ValueError, match="unknown DOTA version"):
        DotaSource(root, SOTA, version="3.0")


BAD_LABELS = "\n".join([
    "imagesource:GoogleEarth",
    "gsd:null",
    "10 10 40 10 40 40 10 40 plane 0",  # 3: fine
    "10 10 40 10 40 40 10 40 plane",  # 4: nine fields: difficulty 0, as the devkit reads it
    "10 10 40 10 40 40 plane 0",  # 5: too few fields
    "10 10 40 x 40 40 10 40 plane 0",  # 6: not a number
    "10 10 40 10 40 40 10 40 plane hard",  # 7: bad difficulty
    "10 10 40 10 40 40 10 40 spaceship 0",  # 8: unknown class
    "10 10 10 10 10 10 10 10 plane 0",  # 9: zero area
    "10 10 nan 10 40 40 10 40 plane 0",  # 10: NaN
    "80 10 105 10 105 40 80 40 ship 0",  # 11: 80 % inside the 100x80 image: clipped
    "200 10 240 10 240 40 200 40 ship 0",  # 12: wholly outside: dropped
    "-2 -2 20 -2 20 20 -2 20 ship 0",  # 13: negative coordinates, 83 % inside: clipped
])


def test_every_bad_line_is_reported_with_its_line(tmp_path, problems):
    root = _dataset(tmp_path, {"P0001": BAD_LABELS})
    record = read_all(DotaSource(root, SOTA), problems)["P0001"]
    assert problems.where() == {
        ("malformed_line", "P0001.txt", 5), ("malformed_line", "P0001.txt", 6),
        ("malformed_line", "P0001.txt", 7), ("unknown_class", "P0001.txt", 8),
        ("degenerate_box", "P0001.txt", 9), ("degenerate_box", "P0001.txt", 10),
        ("out_of_image_box", "P0001.txt", 11), ("out_of_image_box", "P0001.txt", 12),
        ("out_of_image_box", "P0001.txt", 13),
    }
    assert [p.action for p in problems.of("out_of_image_box")] == ["clipped", "dropped", "clipped"]
    assert record.extras == {"imagesource": "GoogleEarth", "gsd": None}
    assert [o.name for o in record.objects] == ["plane", "plane", "ship", "ship"]
    partly = record.objects[2]
    np.testing.assert_array_equal(partly.hbox, [80, 10, 100, 40])
    np.testing.assert_array_equal(partly.corners[0], [80, 10])  # the file's box is kept as given
    assert polygon_area(partly.polygon) == pytest.approx(20 * 30)
    assert partly.truncated and partly.extras["visible_fraction"] == 0.8
    np.testing.assert_array_equal(record.objects[3].hbox, [0, 0, 20, 20])


def test_unpaired_unreadable_and_non_utf8_files(tmp_path, problems):
    root = _dataset(tmp_path, {"P0001": "10 10 40 10 40 40 10 40 plane 0\n", "P0002": "", "P0003": "",
                               "P0004": b"10 10 40 10 40 40 10 40 pl\xffane 0\n"})
    (root / "train/labelTxt/P0002.txt").unlink()  # image without annotation
    (root / "train/images/P0003.png").unlink()  # annotation without image
    (root / "train/images/P0005.png").write_bytes(b"not a png")  # unreadable image with a label
    (root / "train/labelTxt/P0005.txt").write_text("10 10 40 10 40 40 10 40 plane 0\n")
    source = DotaSource(root, SOTA)
    items = source.items(problems)
    assert [i.name for i in items] == ["P0001", "P0004", "P0005"]
    assert problems.where() == {("missing_annotation", "P0002.png", None), ("missing_image", "P0003.txt", None)}
    problems.clear()
    assert source.read(items[1], problems) is None
    assert source.read(items[2], problems) is None
    assert problems.where() == {("malformed_line", "P0004.txt", 1), ("unreadable_image", "P0005.png", None)}


def test_strict_mode_raises_at_the_first_problem(tmp_path):
    root = _dataset(tmp_path, {"P0001": BAD_LABELS})
    source = DotaSource(root, SOTA)
    with pytest.raises(BadInputError, match=r"P0001.txt:5: expected 10 fields") as err:
        source.read(source.items(raise_problem)[0], raise_problem)
    assert err.value.problem.kind == "malformed_line"


def test_missing_folder_is_a_configuration_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset root not found"):
        DotaSource(tmp_path / "nowhere", SOTA)
    with pytest.raises(FileNotFoundError, match="DOTA images folder not found"):
        DotaSource(tmp_path, SOTA, split="val").items(raise_problem)


def _dataset(root: Path, labels: dict[str, str | bytes], size=(100, 80)) -> Path:
    """A DOTA folder <root>/train/{images,labelTxt} with one gray image per label file."""
    for name, text in labels.items():
        (root / "train/images").mkdir(parents=True, exist_ok=True)
        (root / "train/labelTxt").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", size, (90, 90, 90)).save(root / f"train/images/{name}.png")
        path = root / f"train/labelTxt/{name}.txt"
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return root


@pytest.mark.parametrize("name", ["P0770", "P1088", "P1234", "P2598", "P2709"])
def test_label_files_without_images_parse(samples_dir, problems, name):
    """The devkit's five label files whose images the snapshot lacks: parsed against an image large
    enough for any of their boxes, every line is an object of its class."""
    path = samples_dir / "dota_devkit/example/labelTxt" / f"{name}.txt"
    checker = ObjectChecker(SOTA, 10**5, 10**5, path, problems, source_names=DOTA_CLASSES["1.0"], source_label="DOTA v1.0")
    header, objects = parse_label_lines(read_text_lines(path, problems), checker, truncated_difficulty=2)
    assert set(header) == {"imagesource", "gsd"} and isinstance(header["gsd"], float)
    assert Counter(o.name for o in objects) == Counter(f[8] for f in file_objects(path))
    assert problems == []


def test_every_sample_image_reads_as_rgb(samples_dir):
    """Every image of the detection samples (RGB and RGBA png, jpg): 8-bit RGB of its header's size."""
    folders = ("dota_devkit", "dota_devkit_yolo", "isaid_devkit", "mmrotate")
    paths = [p for folder in folders for p in sorted((samples_dir / folder).rglob("*")) if p.suffix in (".png", ".jpg")]
    assert len(paths) == 13
    for path in paths:
        image = read_rgb(path)
        assert image.dtype == np.uint8 and image.shape == (*image_size(path)[::-1], 3)
