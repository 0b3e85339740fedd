"""Every family's tiny config end to end: one python -m samrs.label_quality sweep over the families
on generated HRSC2016 scenes, python -m samrs.quality_table with a column per model, and SAM 3's
hbox_text prompt with min_concept_score dropping objects into report.json."""

from __future__ import annotations

import json

import pytest

from tests.quality.test_cli import COMMON, run

FAMILIES = {"hq_tiny": "sam_hq", "sam2.1_tiny": "sam2", "edgetam_tiny": "edgetam", "sam3_tiny": "sam3"}


@pytest.mark.slow
def test_one_sweep_over_the_families_and_a_column_per_model(hrsc_root, tmp_path):
    sweep = run(tmp_path, "samrs.label_quality", "-m", f"source.root={hrsc_root}", f"sam={','.join(FAMILIES)}",
                "prompt=hbox", *COMMON)
    assert sweep.stdout.count("label quality (labeler ") == len(FAMILIES)
    (runs,) = (tmp_path / "logs/label_quality/multirun/hrsc2016").iterdir()
    for job, (model, family) in enumerate(FAMILIES.items()):
        subset = runs / str(job) / "subset"
        meta = json.loads((subset / "meta.json").read_text())
        assert (meta["family"], meta["model_type"], meta["prompt"]) == (family, model, "hbox")
        quality = json.loads((subset / "quality.json").read_text())
        assert quality["family"] == family and quality["instances"] > 0
    table = run(tmp_path, "samrs.quality_table", f"output_dir={tmp_path / 'table'}")
    columns = next(line for line in table.stdout.splitlines() if line.startswith("| Setting | ") and "hq_tiny" in line)
    assert all(f" {model} " in columns for model in FAMILIES)


@pytest.mark.slow
def test_sam3_concept_scores_and_min_concept_score(hrsc_root, tmp_path):
    common = [f"source.root={hrsc_root}", "sam=sam3_tiny", "prompt=hbox_text", *COMMON]
    run(tmp_path, "samrs.label_quality", *common, "name=all")
    kept = json.loads((tmp_path / "logs/label_quality/all/subset/instances.json").read_text())["annotations"]
    scores = sorted(a["concept_score"] for a in kept)
    assert kept and all(0.0 <= s <= 1.0 for s in scores)
    # a limit in the widest gap between two scores (the runs' floats may differ in the last digits)
    gap = max(range(1, len(scores)), key=lambda i: scores[i] - scores[i - 1])
    limit = round((scores[gap - 1] + scores[gap]) / 2, 6)
    run(tmp_path, "samrs.label_quality", *common, "name=some", f"labeler.min_concept_score={limit}")
    subset = tmp_path / "logs/label_quality/some/subset"
    written = json.loads((subset / "instances.json").read_text())["annotations"]
    assert sorted(a["concept_score"] for a in written) == pytest.approx([s for s in scores if s >= limit], abs=1e-4)
    dropped = [p for p in json.loads((subset / "report.json").read_text())["problems"] if p["kind"] == "labeler_dropped"]
    assert len(dropped) == sum(s < limit for s in scores) > 0
    assert all("min_concept_score" in p["message"] and "'ship'" in p["message"] for p in dropped)
    assert json.loads((subset / "meta.json").read_text())["min_concept_score"] == limit
