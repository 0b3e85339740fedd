"""The documented commands end to end: two multiruns of python -m samrs.label_quality (the
model-free labelers, and the tiny SAM with two prompts) on generated HRSC2016 scenes, then
python -m samrs.quality_table; and the label job refusing to score a source without masks, or a run
that labeled no image."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from samrs.errors import exit_on_user_error
from samrs.label import label, run_job
from samrs.labeling.job import UsageError
from samrs.utils.hydra import config_dir

COMMON = ["source.segmented_only=true", "progress=false", "num_workers=0", "extras.print_config=false",
          "trainer.accelerator=cpu"]


def run(tmp_path: Path, module: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SAMRS_ROOT": str(tmp_path)}  # logs/ go to tmp_path
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_multiruns_and_table(hrsc_root, tmp_path):
    fills = run(tmp_path, "samrs.label_quality", "-m", f"source.root={hrsc_root}", "labeler=box_fill,polygon_fill",
                *COMMON)
    assert fills.stdout.count("label quality (labeler ") == 2
    sams = run(tmp_path, "samrs.label_quality", "-m", f"source.root={hrsc_root}", "sam=tiny", "prompt=hbox,cp",
               *COMMON)
    assert sams.stdout.count("masks cut at their kept region: ") == 2 and "kept region" not in fills.stdout
    sweeps = sorted((tmp_path / "logs/label_quality/multirun/hrsc2016").iterdir())
    assert len(sweeps) == 2  # one directory per sweep, a sub-directory per job
    results = {}
    for sweep in sweeps:
        for job in ("0", "1"):
            report = json.loads((sweep / job / "subset" / "quality.json").read_text())
            assert report["counts"]["source_images"] == 4 and report["instances"] > 0
            results[report["labeler"], report.get("prompt")] = report
            outside = [a.get("outside", 0) for a in json.loads((sweep / job / "subset" / "instances.json").read_text())
                       ["annotations"]]
            counts = json.loads((sweep / job / "subset" / "report.json").read_text())["counts"]
            assert counts["outside_pixels"] == sum(outside) and counts["instances_with_outside"] == sum(
                n > 0 for n in outside)
    assert set(results) == {("box_fill", None), ("polygon_fill", None), ("sam", "hbox"), ("sam", "cp")}
    assert results["sam", "hbox"]["model_type"] == "tiny"

    table = run(tmp_path, "samrs.quality_table", f"output_dir={tmp_path / 'table'}")
    markdown = (tmp_path / "table" / "table1.md").read_text()
    assert markdown in table.stdout
    rows = [line.split(" | ")[0] for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows == ["| Setting", "| CP", "| H-Box", "| box_fill (H-Box filled)", "| polygon_fill (R-Box filled)"]
    with open(tmp_path / "table" / "table1.csv") as f:
        lines = list(csv.DictReader(f))
    assert [(r["labeler"], r["prompt"]) for r in lines] == [("sam", "cp"), ("sam", "hbox"), ("box_fill", ""),
                                                           ("polygon_fill", "")]
    for line in lines:
        report = results[line["labeler"], line["prompt"] or None]
        assert float(line["mIoU_I"]) == pytest.approx(100 * report["mIoU_I"], abs=1e-4)
        assert float(line["mIoU_P"]) == pytest.approx(100 * report["mIoU_P"], abs=1e-4)
        assert line["paper_mIoU_I"] == ""  # the paper's figures are SAM ViT-H's, not the tiny model's


def test_scoring_a_source_without_masks_is_refused_before_labeling(tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("label", overrides=["source=dota", f"source.root={tmp_path}", "labeler=polygon_fill",
                                          f"output_dir={tmp_path / 'out'}", "quality.enabled=true"])
    with pytest.raises(UsageError, match="source dota has no ground-truth masks"):
        label(cfg)
    assert not (tmp_path / "out").exists()


def test_a_run_without_segmented_images_ends_with_nothing_to_score(hrsc_root, tmp_path, capsys):
    """label_quality with segmented_only=true on an HRSC2016 copy without its Segmentations/."""
    root = tmp_path / "hrsc"
    shutil.copytree(hrsc_root, root, ignore=shutil.ignore_patterns("Segmentations"))
    out = tmp_path / "subset"
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("label_quality", overrides=[f"source.root={root}", "labeler=polygon_fill", f"output_dir={out}",
                                                  f"trainer.default_root_dir={tmp_path}", *COMMON])
    with pytest.raises(SystemExit) as exit_status:
        exit_on_user_error(run_job)(cfg)  # as samrs_main runs it
    assert exit_status.value.code == 2
    printed = capsys.readouterr()
    assert printed.err.count("\n") == 2 and "\nerror: label quality: nothing to score" in printed.err
    assert "labeled 0 images" in printed.out and "warning: no image was labeled" in printed.err
    assert "nothing to score, no image with ground-truth masks was labeled" in printed.err
    assert "source.segmentation_dir" in printed.err and str(root) in printed.err
    assert json.loads((out / "report.json").read_text())["counts"]["images"] == 0
    assert not (out / "quality.json").exists()
