"""python -m samrs.stats: the report files, figures and examples of a run, and its config errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from samrs.stats import run_stats

FIGURES = ("class_distribution", "mask_sizes", "objects_per_image", "labeled_fraction")


@pytest.fixture(scope="module")
def full_run(generated_subsets, stats_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("stats_run")
    subsets = ",".join(str(generated_subsets[n]) for n in ("sota", "sior", "fast"))
    report = run_stats(stats_cfg(f"subsets=[{subsets}]", f"output_dir={out}", "figures.dpi=40",
                                 "examples.count=3", "examples.tile_inches=1.5"))
    return out, report


def assert_png(path, min_side=50):
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as im:
        im.verify()
    with Image.open(path) as im:
        assert im.format == "PNG" and min(im.size) >= min_side
        assert len(set(im.convert("L").getdata())) > 2  # something is drawn


def test_report_files_hold_the_counts(full_run):
    out, report = full_run
    saved = json.loads((out / "stats.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert [s["subset"] for s in saved["subsets"]] == ["sota", "sior", "fast"]
    rows = {r["dataset"]: r for r in saved["table2"]}
    assert rows["total"]["images"] == sum(s["images"] for s in saved["subsets"]) == 36
    assert rows["total"]["instances"] == sum(s["instances"] for s in saved["subsets"])
    assert rows["fast"]["classes"] == 37 and rows["sota"]["image_size"] == "64×64"
    assert {r["dataset"]: r["paper_images"] for r in saved["paper"]} == {"sota": 17480, "sior": 23463, "fast": 64147}
    markdown = (out / "stats.md").read_text()
    sota = rows["sota"]
    assert f"| sota | {sota['images']} | 18 | {sota['instances']} | 3 | 64×64 |" in markdown
    for stem in FIGURES:
        assert f"(figures/{stem}.png)" in markdown


def test_figures_are_written_and_not_empty(full_run):
    out, _ = full_run
    for stem in FIGURES:
        assert_png(out / "figures" / f"{stem}.png")
    for subset in ("sota", "sior", "fast"):
        assert_png(out / "figures" / f"examples_{subset}.png")


def test_examples_only_with_chosen_names(generated_subsets, stats_cfg, tmp_path):
    root = generated_subsets["sior"]
    cfg = stats_cfg(f"subsets=[{root}]", f"output_dir={tmp_path}", "compute_stats=false",
                    "examples.names=[sior_000002,sior_000005]", "examples.show_image=true", "figures.dpi=40")
    assert run_stats(cfg) == {"subsets": []}
    assert not (tmp_path / "stats.json").exists()
    assert_png(tmp_path / "figures" / "examples_sior.png")
    cfg = stats_cfg(f"subsets=[{root}]", f"output_dir={tmp_path}", "compute_stats=false",
                    "examples.names=[nope]")
    with pytest.raises(FileNotFoundError, match="no label for nope"):
        run_stats(cfg)


def test_same_subset_twice_gets_distinct_names(generated_subsets, stats_cfg, tmp_path):
    root = generated_subsets["sota"]
    cfg = stats_cfg(f"subsets=[{root},{root}]", f"output_dir={tmp_path}", "figures.enabled=false",
                    "examples.enabled=false")
    report = run_stats(cfg)
    assert [s["subset"] for s in report["subsets"]] == ["sota", "sota-2"]
    assert report["subsets"][0]["classes"] == report["subsets"][1]["classes"]


@pytest.mark.parametrize(("override", "message"), [
    ("subsets=[]", "subsets is empty"),
    ("figures.class_pixels=area", "class_pixels"),
    ("objects_per_image_edges=[1,2]", "start at 0"),
])
def test_config_errors_are_clear(generated_subsets, stats_cfg, tmp_path, override, message):
    cfg = stats_cfg(f"subsets=[{generated_subsets['sota']}]", f"output_dir={tmp_path}", "examples.enabled=false",
                    override)
    with pytest.raises(ValueError, match=message):
        run_stats(cfg)


@pytest.mark.slow
def test_command_line(generated_subsets, repo_root, tmp_path):
    env = {**os.environ, "SAMRS_ROOT": str(tmp_path)}
    cmd = [sys.executable, "-m", "samrs.stats", f"subsets=[{generated_subsets['fast']}]", "progress=false",
           "extras.print_config=false", "figures.dpi=40", "examples.count=2", "name=check"]
    result = subprocess.run(cmd, cwd=repo_root, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    run_dir = tmp_path / "logs" / "stats" / "check"
    stats = json.loads((run_dir / "stats.json").read_text())
    assert stats["subsets"][0]["subset"] == "fast"
    assert_png(run_dir / "figures" / "mask_sizes.png")


def test_random_examples_skip_labels_without_images(overlap_subset, stats_cfg, tmp_path):
    for name in ("a", "b", "c"):
        (overlap_subset / "images" / f"{name}.png").unlink()
    cfg = stats_cfg(f"subsets=[{overlap_subset}]", f"output_dir={tmp_path}", "compute_stats=false",
                    "examples.count=4", "figures.dpi=40")
    run_stats(cfg)
    assert_png(tmp_path / "figures" / "examples_sota.png")  # only d could be drawn
    (overlap_subset / "images" / "d.png").unlink()
    run_stats(stats_cfg(f"subsets=[{overlap_subset}]", f"output_dir={tmp_path / 'none'}", "compute_stats=false"))
    assert not (tmp_path / "none" / "figures").exists()


def test_unreadable_example_files_are_left_out_and_the_report_still_written(overlap_subset, stats_cfg, tmp_path):
    (overlap_subset / "images" / "a.png").write_bytes(b"junk")
    (overlap_subset / "labels" / "b.png").write_bytes(b"junk")
    report = run_stats(stats_cfg(f"subsets=[{overlap_subset}]", f"output_dir={tmp_path}", "examples.count=4",
                                 "figures.dpi=40"))
    problems = report["subsets"][0]["problems"]
    assert problems["counts"]["unreadable_image"] == 1 and problems["counts"]["unreadable_label"] == 1
    assert (tmp_path / "stats.json").is_file() and (tmp_path / "stats.md").is_file()
    assert_png(tmp_path / "figures" / "examples_sota.png")  # c and d
    for name in ("c", "d"):
        (overlap_subset / "images" / f"{name}.png").write_bytes(b"junk")
    run_stats(stats_cfg(f"subsets=[{overlap_subset}]", f"output_dir={tmp_path / 'none'}", "compute_stats=false"))
    assert not (tmp_path / "none" / "figures").exists()
