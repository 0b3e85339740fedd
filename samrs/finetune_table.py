"""Collect fine-tuning runs into the paper's Tables 3-6: python -m samrs.finetune_table runs=DIR.

`runs`: a multirun directory (logs/train/multirun/<name>), run directories or evaluation directories,
searched recursively for metrics.json (what samrs.train writes after its last validation and
samrs.evaluate writes). A run is placed by its training config (.hydra/config.yaml of the run, or
of the checkpoint's run for an evaluation): dataset (data.name), model (model_key, model_label),
start (start.key, start.label) and fraction (data.fraction). An evaluation of a training run found
too (e.g. with flip or multi-scale) replaces that run's own final validation (the newest, if several). Per dataset, runs on all training
tiles make a per-class table (Potsdam: F1 per class, OA, mF1 as Table 3; iSAID: IoU per class and
mIoU as Table 4; Vaihingen as Potsdam, LoveDA as iSAID with all 7 classes: conf/finetune_table.yaml),
runs on fractions a table with a column group per fraction (Tables 5-6). Several
runs of one cell (seeds) are averaged and counted. Written as markdown and one CSV per table to
output_dir, with the paper's figures beside ours where conf/finetune_table.yaml lists them.

Every number says how it was produced: the protocol recorded in its metrics.json (`official`: the
tiles of the test split with flip and softmax averaging, as the official test script; `sliding`:
whole scenes; with any departing setting in parentheses), as a note under a table whose numbers
share one protocol, else beside each number that differs from the table's most common one; each
CSV row has a `protocol` column.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from samrs.errors import BadFileError, MissingPathError
from samrs.inference import protocol_label
from samrs.metrics import SCORES_JSON
from samrs.utils.hydra import samrs_main
from samrs.utils.io import write_text
from samrs.utils.runs import run_collector

HEAD = ("Method", "Backbone", "Pretrain")


@dataclass(frozen=True)
class Run:
    """One fine-tuning result: where it sits in the tables, and its scores."""

    dataset: str
    fraction: float
    model: str
    start: str
    labels: tuple[str, str, str]  # method (decoder), backbone, pretrain
    scores: Mapping[str, Any]
    class_names: Sequence[str]
    path: Path
    run_dir: Path  # the training run
    evaluation: bool  # written by samrs.evaluate (else by the training run itself)
    protocol: str  # how the scores were produced (samrs.inference.protocol_label)


def report_protocol(report: Mapping[str, Any]) -> str:
    """The protocol a metrics.json names; files written before protocols were recorded were scored
    on whole scenes (sliding windows, with their recorded inference settings)."""
    if report.get("protocol"):
        return str(report["protocol"])
    return protocol_label("whole", report.get("inference") or {"flip": False, "average": "logits"})


def training_run(metrics_file: Path, report: Mapping[str, Any]) -> tuple[Path, bool]:
    """The training run directory behind a metrics.json, and whether the file is an evaluation."""
    checkpoint = report.get("checkpoint")
    if checkpoint and Path(checkpoint).is_file():  # an evaluation: the checkpoint's run
        ckpt = Path(checkpoint)
        return (ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent).resolve(), True
    return metrics_file.parent.resolve(), False


def read_run(metrics_file: Path) -> Run | None:
    """The run of a metrics.json; None for runs that are no fine-tuning (no model_key or start)."""
    try:
        report = json.loads(metrics_file.read_text())
    except json.JSONDecodeError as err:
        raise BadFileError(f"{metrics_file}: not valid JSON ({err})") from None
    run_dir, evaluation = training_run(metrics_file, report)
    config = run_dir / ".hydra" / "config.yaml"
    if not config.is_file():
        raise MissingPathError(f"{metrics_file}: no training config at {config}")
    cfg = OmegaConf.load(config)
    dataset, model, start = (OmegaConf.select(cfg, k) for k in ("data.name", "model_key", "start.key"))
    if dataset is None or model is None or start is None:
        return None
    if dataset not in report["scores"]:
        raise BadFileError(f"{metrics_file}: no scores of {dataset} (it has {', '.join(report['scores'])})")
    label = OmegaConf.select(cfg, "model_label") or {}
    labels = (str(label.get("decoder", model)), str(label.get("backbone", "")), str(OmegaConf.select(cfg, "start.label")))
    return Run(dataset, float(OmegaConf.select(cfg, "data.fraction", default=1.0)), str(model), str(start), labels,
               report["scores"][dataset], report["class_names"][dataset], metrics_file, run_dir, evaluation,
               report_protocol(report))


def find_runs(paths: Iterable[str | Path]) -> list[Run]:
    runs = []
    for path in map(Path, paths):
        if not path.exists():
            raise MissingPathError(f"{path}: no such file or directory")
        files = [path] if path.is_file() else sorted(path.rglob(SCORES_JSON))
        runs += [run for run in map(read_run, files) if run is not None]
    if not runs:
        raise MissingPathError(f"no fine-tuning {SCORES_JSON} under {', '.join(map(str, paths))}")
    # one result per training run: its newest evaluation, else its own final validation
    chosen: dict[Path, Run] = {}
    for run in sorted(runs, key=lambda r: (r.evaluation, r.path.stat().st_mtime_ns)):
        chosen[run.run_dir] = run
    return list(chosen.values())


def mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None and not math.isnan(v)]
    return sum(kept) / len(kept) if kept else None


def protocol_of(runs: Sequence[Run]) -> str | None:
    """The protocol of the runs averaged into one number ("a + b" when they differ)."""
    return " + ".join(sorted({r.protocol for r in runs})) or None


@dataclass
class Table:
    """Rows (method, backbone, pretrain) x columns, values in percent (None: not available), and
    the protocol of each value."""

    title: str
    columns: list[str]
    rows: list[tuple[tuple[str, str, str], list[float | None], list[float | None], int]]  # labels, ours, paper, runs
    protocols: list[list[str | None]]  # per row, per column

    @property
    def protocol(self) -> str | None:
        """The most common protocol of the table's numbers."""
        counts = Counter(p for row in self.protocols for p in row if p)
        return counts.most_common(1)[0][0] if counts else None


def _row_order(runs: Sequence[Run], order: Mapping[str, Sequence[str]]) -> list[tuple[str, str]]:
    """(model, start) pairs in the configured order, unknown ones after them by name."""
    def rank(value: str, known: Sequence[str]) -> tuple[int, str]:
        return (list(known).index(value) if value in known else len(known), value)
    pairs = {(r.model, r.start) for r in runs}
    return sorted(pairs, key=lambda p: (rank(p[0], order["models"]), rank(p[1], order["starts"])))


def build_tables(runs: Sequence[Run], spec: Mapping[str, Any], paper: Mapping[str, Any]) -> list[Table]:
    """Per dataset: the per-class table (fraction 1) and the fraction table (fractions < 1)."""
    tables = []
    by_dataset: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        by_dataset[run.dataset].append(run)
    for dataset, group in by_dataset.items():
        metrics = {**spec["default"], **(spec["datasets"].get(dataset) or {})}
        figures = {float(f): cells for f, cells in (paper.get(dataset) or {}).items()}
        full = [r for r in group if r.fraction == 1.0]
        if full:
            tables.append(_class_table(dataset, full, metrics, spec["order"], figures))
        partial = [r for r in group if r.fraction < 1.0]
        if partial:
            tables.append(_fraction_table(dataset, partial, metrics, spec["order"], figures))
    return tables


def _figures(paper: Mapping[float, Any], fraction: float, model: str, start: str) -> Mapping[str, float]:
    """The paper's figures of one cell: {class name or summary key: percent}."""
    return ((paper.get(fraction) or {}).get(model) or {}).get(start) or {}


def _class_table(dataset: str, runs: Sequence[Run], metrics: Mapping[str, Any], order, paper) -> Table:
    per_class, summary = metrics["per_class"], list(metrics["summary"])
    skip = set(metrics.get("skip_classes") or [])
    names = [n for n in runs[0].class_names if n not in skip]
    columns = [f"{n} {per_class}" for n in names] + summary
    rows, protocols = [], []
    for model, start in _row_order(runs, order):
        cell = [r for r in runs if (r.model, r.start) == (model, start)]
        ours = [mean([_value(r, per_class, n) for r in cell]) for n in names]
        ours += [mean([_value(r, key) for r in cell]) for key in summary]
        figures = _figures(paper, 1.0, model, start)
        theirs = [figures.get(n) for n in names] + [figures.get(key) for key in summary]
        rows.append((cell[0].labels, ours, theirs, len(cell)))
        protocols.append([protocol_of(cell)] * len(columns))
    return Table(f"{dataset}: {per_class} per class (%), all training tiles", columns, rows, protocols)


def _fraction_table(dataset: str, runs: Sequence[Run], metrics: Mapping[str, Any], order, paper) -> Table:
    keys = list(metrics["fraction_summary"])
    fractions = sorted({r.fraction for r in runs})
    columns = [f"{f * 100:g}% {k}" for f in fractions for k in keys]
    rows, protocols = [], []
    for model, start in _row_order(runs, order):
        cell = [r for r in runs if (r.model, r.start) == (model, start)]
        ours, theirs, used, count = [], [], [], 0
        for f in fractions:
            here = [r for r in cell if r.fraction == f]
            count = max(count, len(here))
            figures = _figures(paper, f, model, start)
            ours += [mean([_value(r, k) for r in here]) for k in keys]
            theirs += [figures.get(k) for k in keys]
            used += [protocol_of(here)] * len(keys)
        rows.append((cell[0].labels, ours, theirs, count))
        protocols.append(used)
    return Table(f"{dataset}: {', '.join(keys)} (%) by fraction of the training tiles", columns, rows, protocols)


def _value(run: Run, key: str, class_name: str | None = None) -> float | None:
    """A score in percent: a summary (mIoU, OA, ...) or one class's per-class score."""
    value = run.scores[key] if class_name is None else run.scores[key][list(run.class_names).index(class_name)]
    return None if value is None or math.isnan(value) else 100 * value


def _cell(ours: float | None, theirs: float | None, digits: int, protocol: str | None, usual: str | None) -> str:
    text = "-" if ours is None else f"{ours:.{digits}f}"
    if ours is not None and protocol != usual:
        text += f" [{protocol}]"
    return text if theirs is None else f"{text} ({float(theirs):.{digits}f})"


def render_markdown(tables: Sequence[Table], digits: int) -> str:
    out = []
    for t in tables:
        usual = t.protocol
        out += [f"## {t.title}", "", "| " + " | ".join([*HEAD, *t.columns, "runs"]) + " |",
                "|" + "---|" * len(HEAD) + "---:|" * (len(t.columns) + 1)]
        out += ["| " + " | ".join([*labels, *(_cell(o, p, digits, used, usual)
                                              for o, p, used in zip(ours, theirs, protocols)), str(n)]) + " |"
                for (labels, ours, theirs, n), protocols in zip(t.rows, t.protocols)]
        out.append("")
        mixed = any(p != usual for row, protocols in zip(t.rows, t.protocols)
                    for v, p in zip(row[1], protocols) if v is not None)
        out.append(f"Protocol: {usual}" + ("; numbers marked [...] by the protocol named there." if mixed else "."))
        if any(v is not None for _, _, theirs, _ in t.rows for v in theirs):
            out.append("In parentheses: the paper's figures.")
        out.append("")
    return "\n".join(out)


def _row_protocol(columns: Sequence[str], protocols: Sequence[str | None]) -> str:
    """A CSV row's protocol: one name, or "column: protocol" for each column when they differ."""
    if len({p for p in protocols if p}) <= 1:
        return next((p for p in protocols if p), "")
    return "; ".join(f"{c}: {p}" for c, p in zip(columns, protocols) if p)


def render_csv(table: Table) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*HEAD, *table.columns, *(f"paper {c}" for c in table.columns), "runs", "protocol"])
    for (labels, ours, theirs, n), protocols in zip(table.rows, table.protocols):
        writer.writerow([*labels, *("" if v is None else f"{v:.4f}" for v in ours),
                         *("" if v is None else v for v in theirs), n, _row_protocol(table.columns, protocols)])
    return buffer.getvalue()


def collect(cfg: DictConfig) -> list[Table]:
    """Build the tables of `cfg.runs` and write them to `cfg.output_dir`."""
    paths = [cfg.runs] if isinstance(cfg.runs, str) else list(cfg.runs)
    spec = OmegaConf.to_container(cfg.tables)
    tables = build_tables(find_runs(paths), spec, OmegaConf.to_container(cfg.paper))
    out = Path(cfg.output_dir)
    markdown = render_markdown(tables, int(cfg.digits))
    write_text(out / cfg.files.markdown, markdown)
    for i, table in enumerate(tables, start=1):
        write_text(out / f"{cfg.files.csv_prefix}{i}.csv", render_csv(table))
    print(markdown)
    print(f"written: {out / cfg.files.markdown}, {len(tables)} CSV files {out / cfg.files.csv_prefix}*.csv")
    return tables


@samrs_main("finetune_table")
def main(cfg: DictConfig) -> None:
    run_collector(collect, cfg)


if __name__ == "__main__":
    main()
