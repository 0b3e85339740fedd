"""Table 1 from quality.json files: rows, their order, the paper's figures, duplicates, CSV."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from samrs.labeling.quality.table import build_tables, find_runs, prompt_label, render_csv, render_markdown
from samrs.utils.io import write_json

PAPER = {"hrsc2016": {"model_type": "vit_h", "prompts": {"cp": [16.14, 2.72], "hbox": [89.97, 79.40]}}}
ORDER = ["cp", "hbox", "rhbox", "hbox+cp"]
HRSC = {"source": "hrsc2016", "root": "/data/HRSC2016", "split": "test"}


def write_run(path: Path, labeler: str, prompt: str | None, miou: tuple[float, float], dataset=HRSC,
              model: str | None = "vit_h", per_class: dict | None = None, age: float = 0) -> Path:
    report = {"dataset": dataset, "labeler": labeler, "prompt": prompt, "mIoU_I": miou[0], "mIoU_P": miou[1],
              "instances": 10, "per_class": per_class or {"ship": {"instances": 10, "mIoU_I": miou[0],
                                                                   "mIoU_P": miou[1]}},
              "counts": {"source_images": 4, "unprompted": 1, "no_truth": 0}}
    if labeler == "sam":
        report["model_type"] = model
    write_json(path / "quality.json", report)
    if age:
        stamp = (path / "quality.json").stat().st_mtime - age
        os.utime(path / "quality.json", (stamp, stamp))
    return path / "quality.json"


def test_prompt_names():
    assert prompt_label("hbox+cp") == "H-Box + CP"
    assert prompt_label("rhbox+rbox_m") == "RH-Box + R-Box-M"


def test_rows_in_the_papers_order_with_its_figures(tmp_path):
    runs_dir = tmp_path / "runs"
    write_run(runs_dir / "a", "polygon_fill", None, (0.7, 0.72))
    write_run(runs_dir / "b", "sam", "hbox+cp", (0.85, 0.75))
    old = write_run(runs_dir / "c", "sam", "hbox", (0.5, 0.5), age=100)  # replaced by the newer run "d"
    write_run(runs_dir / "d", "sam", "hbox", (0.9012, 0.7944))
    write_run(runs_dir / "e" / "nested", "sam", "cp", (0.1614, 0.0272))
    write_run(runs_dir / "f", "box_fill", None, (0.4, 0.38))
    write_run(runs_dir / "g", "sam", "hbox", (0.8, 0.7), model="vit_b")
    tables = build_tables(find_runs([runs_dir]), PAPER, ORDER)
    assert len(tables) == 1 and tables[0].replaced == [old]
    rows = [(r.label, r.run.setting[2], r.paper) for r in tables[0].rows]
    assert rows == [("H-Box", "vit_b", None), ("CP", "vit_h", (16.14, 2.72)), ("H-Box", "vit_h", (89.97, 79.40)),
                    ("H-Box + CP", "vit_h", None), ("box_fill (H-Box filled)", "", None),
                    ("polygon_fill (R-Box filled)", "", None)]
    markdown = render_markdown(tables)
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| Setting | model | mIoU_I | mIoU_P | paper mIoU_I | paper mIoU_P")
    assert lines[3] == "| H-Box | vit_h | 90.12 | 79.44 | 89.97 | 79.40 | 10 | unprompted 1 |"
    assert lines[6] == "| polygon_fill (R-Box filled) | – | 70.00 | 72.00 | – | – | 10 | unprompted 1 |"
    assert "Per class" not in markdown  # one class: Table 1 says it all
    assert str(old) in markdown
    table = list(csv.DictReader(io.StringIO(render_csv(tables))))
    assert [(r["setting"], r["model_type"], r["class"]) for r in table] == [
        (label, model, "all") for label, model, _ in rows]
    assert table[2]["mIoU_I"] == "90.1200" and table[2]["paper_mIoU_I"] == "89.97" and table[2]["unprompted"] == "1"
    assert table[4]["paper_mIoU_I"] == ""


def test_one_table_per_dataset_and_per_class_figures(tmp_path):
    isaid = {"source": "isaid", "root": "/data/iSAID", "split": "val"}
    classes = {"small-vehicle": {"instances": 8, "mIoU_I": 0.6, "mIoU_P": 0.5},
               "plane": {"instances": 2, "mIoU_I": 0.9, "mIoU_P": 0.95}}
    write_run(tmp_path / "a", "sam", "hbox", (0.66, 0.8), dataset=isaid, per_class=classes)
    write_run(tmp_path / "b", "polygon_fill", None, (0.5, 0.5), dataset=isaid, per_class=classes)
    write_run(tmp_path / "c", "sam", "hbox", (0.9, 0.8))
    tables = build_tables(find_runs([tmp_path / "a", tmp_path / "b", tmp_path / "c" / "quality.json"]), PAPER, ORDER)
    assert [t.dataset[0] for t in tables] == ["hrsc2016", "isaid"]
    assert tables[1].rows[0].paper is None  # the paper's figures are HRSC2016's
    markdown = render_markdown(tables)
    assert "| small-vehicle | 60.00 / 50.00 | 60.00 / 50.00 |" in markdown
    table = list(csv.DictReader(io.StringIO(render_csv(tables))))
    assert [(r["source"], r["labeler"], r["class"]) for r in table] == [
        ("hrsc2016", "sam", "all"), ("isaid", "sam", "all"), ("isaid", "sam", "small-vehicle"),
        ("isaid", "sam", "plane"), ("isaid", "polygon_fill", "all"), ("isaid", "polygon_fill", "small-vehicle"),
        ("isaid", "polygon_fill", "plane")]


def test_nothing_to_collect(tmp_path):
    with pytest.raises(FileNotFoundError, match="no quality.json under"):
        find_runs([tmp_path])
    with pytest.raises(FileNotFoundError, match="no such file"):
        find_runs([tmp_path / "missing"])
    (tmp_path / "quality.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        find_runs([tmp_path])


def test_a_column_per_sam_model(tmp_path):
    write_run(tmp_path / "a", "sam", "hbox", (0.9, 0.8), model="vit_h")
    write_run(tmp_path / "b", "sam", "hbox", (0.95, 0.85), model="sam2.1_hiera_l")
    write_run(tmp_path / "c", "sam", "cp", (0.2, 0.1), model="sam2.1_hiera_l")
    write_run(tmp_path / "d", "box_fill", None, (0.4, 0.38))
    markdown = render_markdown(build_tables(find_runs([tmp_path]), PAPER, ORDER))
    block = markdown.split("Per model, mIoU_I / mIoU_P (hrsc2016):")[1].strip().splitlines()
    assert block[0] == "| Setting | sam2.1_hiera_l | vit_h |"
    assert block[2:4] == ["| CP | 20.00 / 10.00 | – |", "| H-Box | 95.00 / 85.00 | 90.00 / 80.00 |"]
    assert len(block) == 4  # model-free labelers are rows of Table 1, not of the model comparison
