"""The quality.json files of many label runs as the paper's Table 1: one table per dataset, a row per
labeling setting (SAM model and prompt, model-free labeler), mIoU_I and mIoU_P in percent beside the
paper's figures where it gives them; with several SAM models (families) a table with a column per
model; per-class tables for datasets with several classes.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

from samrs.errors import BadFileError, MissingPathError
from samrs.labeling.quality.evaluate import QUALITY_FILE

# How the paper writes each prompt type (Sec. 2.3); combinations are joined with " + ".
PROMPT_NAMES = {"cp": "CP", "hbox": "H-Box", "rhbox": "RH-Box", "hbox_m": "H-Box-M", "rbox_m": "R-Box-M",
                "rhbox_m": "RH-Box-M"}
# The model-free labelers, after the SAM rows, in this order.
MODEL_FREE = {"box_fill": "box_fill (H-Box filled)", "polygon_fill": "polygon_fill (R-Box filled)"}
COUNT_COLUMNS = ("empty_predictions", "no_truth", "empty_truth", "unprompted")
CSV_COLUMNS = ("source", "root", "split", "setting", "labeler", "prompt", "model_type", "class", "mIoU_I", "mIoU_P",
               "paper_mIoU_I", "paper_mIoU_P", "instances", *COUNT_COLUMNS, "quality_json")


@dataclass
class Run:
    """One scored labeling run (its quality.json)."""

    path: Path
    report: dict[str, Any]

    @property
    def dataset(self) -> tuple[str, str, str]:
        d = self.report.get("dataset") or {}
        split = d.get("split")
        return (str(d.get("source")), str(d.get("root")),
                ",".join(map(str, split)) if isinstance(split, list) else str(split))

    @property
    def setting(self) -> tuple[str, str, str]:
        """(labeler, prompt, model): what made the labels."""
        return (str(self.report.get("labeler")), str(self.report.get("prompt") or ""),
                str(self.report.get("model_type") or ""))


@dataclass
class Row:
    run: Run
    label: str
    paper: tuple[float, float] | None  # the paper's mIoU_I, mIoU_P (percent)


@dataclass
class Table:
    dataset: tuple[str, str, str]
    rows: list[Row]
    replaced: list[Path] = field(default_factory=list)  # older runs of a setting that a newer run replaced

    @property
    def classes(self) -> list[str]:
        names: dict[str, None] = {}
        for row in self.rows:
            names.update(dict.fromkeys(row.run.report.get("per_class") or {}))
        return list(names)


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    """Every quality.json at or under `paths` (files or directories searched recursively)."""
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise MissingPathError(f"{path}: no such file or directory")
        for file in [path] if path.is_file() else sorted(path.rglob(QUALITY_FILE)):
            try:
                runs.append(Run(file, json.loads(file.read_text())))
            except json.JSONDecodeError as err:
                raise BadFileError(f"{file}: not valid JSON ({err})") from None
    if not runs:
        raise MissingPathError(f"no {QUALITY_FILE} under {', '.join(map(str, paths))}: score runs first "
                               "(python -m samrs.label_quality, or samrs.label with quality.enabled=true)")
    return runs


def prompt_label(prompt: str) -> str:
    """'hbox+cp' -> 'H-Box + CP'."""
    return " + ".join(PROMPT_NAMES.get(t, t) for t in prompt.split("+"))


def setting_label(run: Run) -> str:
    """The row's name: the prompt of a SAM run, the labeler otherwise."""
    labeler, prompt, _ = run.setting
    if labeler in MODEL_FREE:
        return MODEL_FREE[labeler]
    return prompt_label(prompt) if prompt else labeler


def sort_key(run: Run, order: Sequence[str]) -> tuple:
    """SAM rows by model and then the paper's prompt order; model-free labelers last."""
    labeler, prompt, model = run.setting
    if labeler in MODEL_FREE:
        return (2, list(MODEL_FREE).index(labeler), "", "")
    if labeler == "sam":
        return (0, model, order.index(prompt) if prompt in order else len(order), prompt)
    return (1, labeler, model, prompt)


def paper_figures(run: Run, paper: dict[str, Any]) -> tuple[float, float] | None:
    """The paper's (mIoU_I, mIoU_P) for the run's setting, when the paper reports it."""
    reported = paper.get(run.dataset[0])
    labeler, prompt, model = run.setting
    if not reported or labeler != "sam" or model != reported.get("model_type"):
        return None
    figures = (reported.get("prompts") or {}).get(prompt)
    return None if figures is None else (float(figures[0]), float(figures[1]))


def build_tables(runs: Sequence[Run], paper: dict[str, Any], order: Sequence[str]) -> list[Table]:
    """One table per dataset; of several runs of one setting the newest quality.json counts."""
    tables = []
    for dataset in sorted({run.dataset for run in runs}):
        newest: dict[tuple, Run] = {}
        replaced = []
        for run in sorted((r for r in runs if r.dataset == dataset), key=lambda r: r.path.stat().st_mtime):
            if run.setting in newest:
                replaced.append(newest[run.setting].path)
            newest[run.setting] = run
        chosen = sorted(newest.values(), key=lambda r: sort_key(r, order))
        rows = [Row(r, setting_label(r), paper_figures(r, paper)) for r in chosen]
        tables.append(Table(dataset, rows, replaced))
    return tables


def percent(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f}"


def figure(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def render_markdown(tables: Sequence[Table], digits: int = 2) -> str:
    """Table 1 as markdown: per dataset its rows, then per-class figures when it has several classes."""
    out = []
    for table in tables:
        source, root, split = table.dataset
        counts = table.rows[0].run.report.get("counts", {})
        out.append(f"## Label quality on {source} (split {split}): {counts.get('source_images', '?')} images\n")
        out.append(f"`{root}`; mIoU in percent, paper = SAMRS Table 1 (SAM ViT-H).\n")
        out.append("| Setting | model | mIoU_I | mIoU_P | paper mIoU_I | paper mIoU_P | instances | left out |")
        out.append("|---|---|---:|---:|---:|---:|---:|---|")
        for row in table.rows:
            r = row.run.report
            c = r.get("counts", {})
            left = ", ".join(f"{k} {c[k]}" for k in COUNT_COLUMNS if c.get(k))
            paper = row.paper or (None, None)
            out.append(f"| {row.label} | {row.run.setting[2] or '–'} | {percent(r.get('mIoU_I'), digits)} | {percent(r.get('mIoU_P'), digits)} | "
                       f"{figure(paper[0], digits)} | {figure(paper[1], digits)} | {r.get('instances', 0)} | "
                       f"{left or '–'} |")
        out.append("")
        if len(sam_models(table)) > 1:
            out.extend(per_model_markdown(table, digits))
        if len(table.classes) > 1:
            out.extend(per_class_markdown(table, digits))
        if table.replaced:
            out.append("Older runs of the same settings, not shown: " + ", ".join(f"`{p}`" for p in table.replaced))
            out.append("")
    return "\n".join(out)


def sam_models(table: Table) -> list[str]:
    """The SAM models (`sam=` options) of a table's rows, in row order."""
    return list(dict.fromkeys(row.run.setting[2] for row in table.rows if row.run.setting[0] == "sam"))


def per_model_markdown(table: Table, digits: int) -> list[str]:
    """SAM prompts as rows, models (families) as columns, each cell 'mIoU_I / mIoU_P': the models
    compared on the same dataset and prompts."""
    models = sam_models(table)
    cells: dict[str, dict[str, str]] = {}
    for row in table.rows:
        labeler, _, model = row.run.setting
        if labeler == "sam":
            r = row.run.report
            cells.setdefault(row.label, {})[model] = f"{percent(r.get('mIoU_I'), digits)} / {percent(r.get('mIoU_P'), digits)}"
    lines = [f"Per model, mIoU_I / mIoU_P ({table.dataset[0]}):\n",
             "| Setting | " + " | ".join(models) + " |",
             "|---|" + "---:|" * len(models)]
    for label, by_model in cells.items():
        lines.append(f"| {label} | " + " | ".join(by_model.get(m, "–") for m in models) + " |")
    lines.append("")
    return lines


def per_class_markdown(table: Table, digits: int) -> list[str]:
    """Classes as rows, settings as columns, each cell 'mIoU_I / mIoU_P'."""
    names = [f"{row.label} ({row.run.setting[2]})" if row.run.setting[2] else row.label for row in table.rows]
    lines = [f"Per class, mIoU_I / mIoU_P ({table.dataset[0]}):\n",
             "| Class | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(table.rows)]
    for name in table.classes:
        cells = []
        for row in table.rows:
            totals = (row.run.report.get("per_class") or {}).get(name)
            cells.append("–" if totals is None else
                         f"{percent(totals['mIoU_I'], digits)} / {percent(totals['mIoU_P'], digits)}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def render_csv(tables: Sequence[Table]) -> str:
    """One line per setting (class "all"), and per class for datasets with several classes."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for table in tables:
        per_class = len(table.classes) > 1
        for row in table.rows:
            r = row.run.report
            labeler, prompt, model = row.run.setting
            groups = [("all", r)] + (list((r.get("per_class") or {}).items()) if per_class else [])
            for name, totals in groups:
                paper = row.paper if name == "all" and row.paper else (None, None)
                counts = [r.get("counts", {}).get(k, "") if name == "all" else "" for k in COUNT_COLUMNS]
                writer.writerow([*table.dataset, row.label, labeler, prompt, model, name,
                                 _csv_percent(totals.get("mIoU_I")), _csv_percent(totals.get("mIoU_P")),
                                 *("" if v is None else v for v in paper), totals.get("instances", 0), *counts,
                                 str(row.run.path)])
    return buffer.getvalue()


def _csv_percent(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.4f}"
