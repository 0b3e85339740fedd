"""Fine-tuning scores (Potsdam F1/OA/mF1, iSAID IoU/mIoU without background) against an independent
computation, and the collector of Tables 3-6 (python -m samrs.finetune_table) with Vaihingen and LoveDA."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from samrs.finetune_table import collect
from samrs.metrics import SegmentationMetrics
from samrs.utils.hydra import config_dir


def reference(preds, labels, n: int, exclude=()):
    """Per-class IoU and F1 (NaN when a class is in neither), OA over labelled non-excluded pixels,
    means over the classes present and not excluded: plain numpy, class by class."""
    inter, area_p, area_l = np.zeros(n), np.zeros(n), np.zeros(n)
    for p, t in zip(preds, labels):
        keep = t != 255
        p, t = p[keep], t[keep]
        for c in range(n):
            inter[c] += np.sum((p == c) & (t == c))
            area_p[c] += np.sum(p == c)
            area_l[c] += np.sum(t == c)
    present = area_p + area_l > 0
    iou = np.full(n, np.nan)
    f1 = np.full(n, np.nan)
    iou[present] = inter[present] / (area_p + area_l - inter)[present]
    f1[present] = 2 * inter[present] / (area_p + area_l)[present]
    used = [c for c in range(n) if c not in exclude]
    oa = inter[used].sum() / area_l[used].sum()
    return iou, f1, oa, np.nanmean(iou[used]), np.nanmean(f1[used])


@pytest.mark.parametrize("n,exclude,absent", [(5, (), (4,)), (16, (0,), (14, 15))], ids=["potsdam", "isaid"])
def test_scores_equal_an_independent_computation(n, exclude, absent):
    rng = np.random.default_rng(n)
    metric = SegmentationMetrics(n, exclude=exclude)
    preds, labels = [], []
    present = [c for c in range(n) if c not in absent]
    for _ in range(3):
        label = rng.choice(present, (2, 24, 24)).astype(np.int64)
        label[rng.random(label.shape) < 0.15] = 255  # ignored pixels (clutter, borders)
        pred = rng.choice(present[:-1] + [absent[0]], (2, 24, 24))  # predicts a class the labels lack
        if n == 16:
            pred = np.where(rng.random(pred.shape) < 0.5, label.clip(0, 13), pred)
        metric.update(torch.from_numpy(pred), torch.from_numpy(label))
        preds.append(pred)
        labels.append(label)
    s = metric.compute()
    iou, f1, oa, miou, mf1 = reference(preds, labels, n, exclude)
    np.testing.assert_allclose(s["IoU"].numpy(), iou, equal_nan=True)
    np.testing.assert_allclose(s["F1"].numpy(), f1, equal_nan=True)
    assert np.isclose(s["OA"].item(), oa) and np.isclose(s["mIoU"].item(), miou) and np.isclose(s["mF1"].item(), mf1)
    assert s["IoU"][absent[0]] == 0 and all(np.isnan(s["IoU"][c]) for c in absent[1:])


# --- the collector ---------------------------------------------------------------------------------

POTSDAM = ["impervious-surface", "building", "low-vegetation", "tree", "car"]


def fake_run(root: Path, name: str, dataset: str, model: str, start: str, fraction: float, miou: float,
             classes: list[str], label: dict | None = None) -> Path:
    """A run directory as samrs.train leaves it: .hydra/config.yaml and metrics.json."""
    run = root / name
    (run / ".hydra").mkdir(parents=True)
    starts = {"imp": "IMP", "sep": "SEP", "imp_sep": "IMP+SEP"}
    cfg = {"data": {"name": dataset, "fraction": fraction}, "model_key": model, "name": "x",
           "model_label": label or {"decoder": "UperNet", "backbone": model},
           "start": {"key": start, "label": starts[start], "checkpoint": "${paths.log_dir}/x.pt"}}
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    n = len(classes)
    per_class = [miou + 0.01 * i for i in range(n)]
    scores = {"IoU": per_class, "F1": [v + 0.05 for v in per_class], "mIoU": miou, "mF1": miou + 0.05, "OA": 0.9}
    (run / "metrics.json").write_text(json.dumps({"scores": {dataset: scores}, "class_names": {dataset: classes}}))
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    return run


def collect_tables(runs: list[Path], out: Path, *overrides: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("finetune_table", overrides=[f"runs={[str(r) for r in runs]}".replace("'", ""),
                                                     f"output_dir={out}", "paths.output_dir=/unused", *overrides])
    return collect(cfg)


def test_table_rows_columns_and_averages(tmp_path):
    sweep = tmp_path / "multirun"
    runs = [
        fake_run(sweep, "0", "potsdam", "swin_t", "imp", 1.0, 0.70, POTSDAM),
        fake_run(sweep, "1", "potsdam", "r50_upernet", "sep", 1.0, 0.60, POTSDAM),
        fake_run(sweep, "2", "potsdam", "r50_upernet", "sep", 1.0, 0.64, POTSDAM),  # a second seed
        fake_run(sweep, "3", "potsdam", "r50_upernet", "imp", 1.0, 0.50, POTSDAM),
        fake_run(sweep, "4", "potsdam", "r50_upernet", "imp", 0.01, 0.30, POTSDAM),
        fake_run(sweep, "5", "potsdam", "r50_upernet", "imp", 0.05, 0.40, POTSDAM),
        fake_run(sweep, "6", "isaid", "r50_upernet", "imp_sep", 1.0, 0.55, ["background", "ship", "plane"]),
    ]
    # an evaluation (e.g. with flip) of run 3 replaces that run's own last validation
    evaluation = tmp_path / "evaluate" / "flip"
    evaluation.mkdir(parents=True)
    report = json.loads((runs[3] / "metrics.json").read_text())
    report["scores"]["potsdam"]["OA"] = 0.95
    report["checkpoint"] = str(runs[3] / "checkpoints" / "last.ckpt")
    (evaluation / "metrics.json").write_text(json.dumps(report))
    # a pre-training run (no start) is no fine-tuning result
    sep = tmp_path / "sep"
    (sep / ".hydra").mkdir(parents=True)
    (sep / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"model_key": "r50_upernet", "name": "sep"}))
    (sep / "metrics.json").write_text(json.dumps({"scores": {"sota": {}}, "class_names": {"sota": []}}))
    out = tmp_path / "tables"
    tables = collect_tables([sweep, evaluation.parent, sep], out,
                            "+paper.potsdam={1.0: {r50_upernet: {imp: {mF1: 91.5, car: 80.0}}}}")
    assert [t.title.split(":")[0] for t in tables] == ["potsdam", "potsdam", "isaid"]
    full, fractions, isaid = tables
    assert full.columns == [f"{c} F1" for c in POTSDAM] + ["OA", "mF1"]
    assert [(r[0], r[3]) for r in full.rows] == [(("UperNet", "r50_upernet", "IMP"), 1),
                                                  (("UperNet", "r50_upernet", "SEP"), 2), (("UperNet", "swin_t", "IMP"), 1)]
    imp, sep_row = full.rows[0], full.rows[1]
    assert imp[1][-2] == pytest.approx(95.0)  # the evaluation's OA
    assert sep_row[1][-1] == pytest.approx(67.0)  # mean mF1 of 65 and 69
    assert imp[2][-1] == 91.5 and imp[2][4] == 80.0 and sep_row[2][-1] is None
    assert fractions.columns == ["1% OA", "1% mF1", "5% OA", "5% mF1"]
    assert fractions.rows[0][1] == pytest.approx([90.0, 35.0, 90.0, 45.0])
    assert isaid.columns == ["ship IoU", "plane IoU", "mIoU"]  # background left out
    assert isaid.rows[0][0] == ("UperNet", "r50_upernet", "IMP+SEP") and isaid.rows[0][1][0] == pytest.approx(56.0)
    markdown = (out / "finetune_tables.md").read_text()
    assert "| UperNet | r50_upernet | IMP | 55.00 | 56.00 | 57.00 | 58.00 | 59.00 (80.00) | 95.00 | 55.00 (91.50) | 1 |" in markdown
    with open(out / "finetune_table2.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["1% mF1"] == "35.0000" and rows[0]["runs"] == "1"


def test_vaihingen_scored_like_potsdam_loveda_by_miou_over_seven(tmp_path):
    """Neither is in the paper: no figures in parentheses, Vaihingen's F1/OA/mF1 and LoveDA's IoU of
    all 7 classes (background included) and mIoU."""
    loveda = ["background", "building", "road", "water", "barren", "forest", "agricultural"]
    runs = [fake_run(tmp_path / "runs", "0", "vaihingen", "r50_upernet", "imp", 1.0, 0.60, POTSDAM),
            fake_run(tmp_path / "runs", "1", "vaihingen", "r50_upernet", "imp", 0.01, 0.40, POTSDAM),
            fake_run(tmp_path / "runs", "2", "loveda", "swin_t", "sep", 1.0, 0.50, loveda)]
    tables = {t.title: t for t in collect_tables(runs, tmp_path / "tables")}
    vaihingen = tables["vaihingen: F1 per class (%), all training tiles"]
    assert vaihingen.columns == [f"{c} F1" for c in POTSDAM] + ["OA", "mF1"]
    assert vaihingen.rows[0][1][-2:] == pytest.approx([90.0, 65.0])
    assert tables["vaihingen: OA, mF1 (%) by fraction of the training tiles"].columns == ["1% OA", "1% mF1"]
    table = tables["loveda: IoU per class (%), all training tiles"]
    assert table.columns == [f"{c} IoU" for c in loveda] + ["mIoU"]
    assert table.rows[0][1][0] == pytest.approx(50.0) and table.rows[0][1][-1] == pytest.approx(50.0)
    assert all(v is None for t in tables.values() for row in t.rows for v in row[2])
    assert "In parentheses" not in (tmp_path / "tables" / "finetune_tables.md").read_text()


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no fine-tuning metrics.json"):
        collect_tables([tmp_path], tmp_path / "out")
