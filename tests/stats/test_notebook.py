"""notebooks/explore_subset.ipynb: kept without outputs, and runs top to bottom on a generated subset."""

from __future__ import annotations

import os

import nbformat
import pytest

NOTEBOOK = "notebooks/explore_subset.ipynb"


def test_notebook_is_stored_without_outputs(repo_root):
    nb = nbformat.read(repo_root / NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(repo_root, generated_subsets, monkeypatch):
    from nbclient import NotebookClient

    # as Jupyter runs it: the kernel in notebooks/, the subset relative to the repository root
    monkeypatch.setenv("SAMRS_SUBSET", os.path.relpath(generated_subsets["sota"], repo_root))
    nb = nbformat.read(repo_root / NOTEBOOK, as_version=4)
    kernel_dir = str(repo_root / "notebooks")
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": kernel_dir}}).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == 6  # four statistics figures, the examples, the instances
    text = "".join(o.get("data", {}).get("text/markdown", "") for o in outputs)
    assert "| sota | 12 | 18 |" in text
