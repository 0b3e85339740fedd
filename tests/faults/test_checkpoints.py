"""A cut or foreign checkpoint is one line naming the file (issue 18, defect 3)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from samrs.errors import BadFileError, exit_on_user_error
from samrs.evaluate import read_checkpoint
from samrs.labeling.sam.build import _read_state_dict
from samrs.utils.runs import check_resume_checkpoint, read_lightning_checkpoint


def broken_files(tmp_path: Path, payload: dict) -> dict[str, Path]:
    """The ways a checkpoint file goes wrong: cut short (an interrupted copy), not a torch file."""
    whole = tmp_path / "whole.ckpt"
    torch.save(payload, whole)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint\n")
    return {"truncated": cut, "not torch": text}


@pytest.fixture
def lightning_files(tmp_path) -> dict[str, Path]:
    model = torch.nn.Linear(3, 2)
    return broken_files(tmp_path, {"state_dict": model.state_dict(), "samrs_config": {}, "global_step": 5})


@pytest.mark.parametrize("kind", ["truncated", "not torch"])
def test_train_and_evaluate_name_the_unreadable_checkpoint(lightning_files, kind, capsys):
    path = lightning_files[kind]
    expected = f"{path}: not a readable Lightning checkpoint (truncated or not a torch file)"
    for read in (read_lightning_checkpoint, read_checkpoint,  # samrs.evaluate
                 lambda p: check_resume_checkpoint(torch.nn.Linear(3, 2), p)):  # samrs.train ckpt_path=...
        with pytest.raises(BadFileError, match=re.escape(expected)):
            read(path)
    with pytest.raises(SystemExit) as end:
        exit_on_user_error(read_checkpoint)(path)
    assert end.value.code == 2 and capsys.readouterr().err == f"error: {expected}\n"


def test_a_truncated_sam_checkpoint_says_truncated(tmp_path):
    files = broken_files(tmp_path, {"image_encoder.pos_embed": torch.zeros(1, 4, 4, 8)})
    with pytest.raises(BadFileError, match=f"{re.escape(str(files['truncated']))}: truncated SAM checkpoint"):
        _read_state_dict(files["truncated"])
    with pytest.raises(BadFileError, match="not a SAM checkpoint") as err:
        _read_state_dict(files["not torch"])
    assert "truncated SAM" not in str(err.value)
