"""python -m samrs.scenes: generated scenes written in every layout, read back by the readers."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest

from samrs.classes import subset_classes
from samrs.scenes.__main__ import main
from samrs.sources.dior import DiorSource
from samrs.sources.dota import DotaSource
from samrs.sources.fair1m import Fair1mSource
from samrs.sources.hrsc2016 import Hrsc2016Source
from samrs.sources.isaid import IsaidSource

READERS = {  # format -> (reader, its root under --out, options, subset)
    "dota": [(DotaSource, "DOTA", {"split": "train"}, "sota"), (IsaidSource, "iSAID", {"split": "train"}, "sota")],
    "dior": [(DiorSource, "", {}, "sior")],
    "fair1m": [(Fair1mSource, "", {"split": "train"}, "fast")],
    "hrsc2016": [(Hrsc2016Source, "", {"split": ["trainval", "test"]}, "hrsc2016")],
}

EXPECTED_FILES = {
    "dota": ["DOTA/train/images/P0000.png", "DOTA/train/labelTxt/P0002.txt", "iSAID/train/images/P0001.png",
             "iSAID/train/images/P0001_instance_id_RGB.png", "iSAID/train/images/P0001_instance_color_RGB.png"],
    "dior": ["JPEGImages-trainval/00001.jpg", "JPEGImages-test/00003.jpg", "ImageSets/Main/val.txt",
             "Annotations/Horizontal Bounding Boxes/00002.xml", "Annotations/Oriented Bounding Boxes/00003.xml"],
    "fair1m": ["train/images/0.tif", "train/labelXml/2.xml"],
    "hrsc2016": ["FullDataSet/AllImages/100000001.bmp", "FullDataSet/Annotations/100000003.xml",
                 "FullDataSet/Segmentations/100000003.png", "ImageSets/trainval.txt", "ImageSets/test.txt"],
}


@pytest.mark.parametrize("fmt", sorted(READERS))
def test_cli_writes_the_real_layout(tmp_path, problems, fmt):
    out = main(["--format", fmt, "--out", str(tmp_path), "--count", "3", "--size", "96", "--seed", "2"])
    assert out == tmp_path
    for name in EXPECTED_FILES[fmt]:
        assert (tmp_path / name).is_file(), name
    for reader, folder, options, subset in READERS[fmt]:
        source = reader(tmp_path / folder, subset_classes(subset), **options)
        records = [source.read(item, problems) for item in source.items(problems)]
        assert len(records) == 3 and sum(len(r.objects) for r in records) > 0
    assert problems == []


def test_cli_samrs_subset(tmp_path):
    main(["--format", "samrs", "--subset", "fast", "--out", str(tmp_path / "fast"), "--count", "4", "--size", "64"])
    meta = json.loads((tmp_path / "fast/meta.json").read_text())
    assert meta["source"] == "generated" and len(list((tmp_path / "fast/images").glob("*.png"))) == 4


def test_cli_module_entry_point_and_bad_arguments(tmp_path):
    run = subprocess.run([sys.executable, "-m", "samrs.scenes", "--format", "fair1m", "--out", str(tmp_path),
                          "--count", "1", "--size", "64"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "wrote 1 fair1m scenes" in run.stdout
    assert (tmp_path / "train/labelXml/0.xml").is_file()
    bad = subprocess.run([sys.executable, "-m", "samrs.scenes", "--format", "voc", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid choice: 'voc'" in bad.stderr
    with pytest.raises(SystemExit):
        main(["--format", "dota", "--out", str(tmp_path), "--size", "8"])


@pytest.mark.parametrize("fmt", ["dota", "dior", "hrsc2016", "coco", "yolo_obb", "geotiff"])
def test_cli_prints_the_source_root_and_split_to_label_it(tmp_path, capsys, fmt):
    """Under a folder with a space and a comma in its name: the printed overrides, split as a shell
    splits them, compose into a label config whose source lists the scenes of the split named."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate

    from samrs.utils.hydra import config_dir

    out = tmp_path / "my scenes, v2"
    main(["--format", fmt, "--out", str(out), "--count", "4", "--size", "64"])
    commands = [line.split(": ", 1)[1] for line in capsys.readouterr().out.splitlines() if line.startswith("label it")]
    assert len(commands) == len(READERS.get(fmt, [fmt]))
    for command in commands:
        args = shlex.split(command)
        assert args[:3] == ["python", "-m", "samrs.label"]
        with initialize_config_dir(config_dir(), version_base="1.3"):
            cfg = compose("label", overrides=args[3:])
        assert str(cfg.output_dir).startswith(str(out))
        listed = (out / "ImageSets" / "test.txt").read_text().split() if fmt == "hrsc2016" else range(4)  # its split
        assert len(instantiate(cfg.source).items(pytest.fail)) == len(listed) > 0
        # GeoTIFF scenes are labeled with every band kept: the subset that data=geo trains on
        assert cfg.output.bands == ("all" if fmt == "geotiff" else "rgb")
