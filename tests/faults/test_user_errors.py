"""User errors are one line, `error: <message>`, exit status 2; the traceback only with
HYDRA_FULL_ERROR=1 (issue 18, defect 4), and the messages say the right thing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fault_helpers import environment, job
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from samrs.errors import ConfigError, exit_on_user_error
from samrs.utils.hydra import config_dir
from samrs.utils.io import write_text


def error_line(run) -> str:
    """The job's error: its last line on stderr, the only one that says `error:`, no traceback."""
    assert run.returncode == 2, run.stdout[-2000:] + run.stderr[-3000:]
    lines = run.stderr.strip().splitlines()
    assert "Traceback" not in run.stderr and [line for line in lines if "error:" in line] == [lines[-1]]
    assert lines[-1].startswith("error: ")
    return lines[-1]


def label_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["source=dota", f"source.root={root}", "labeler=polygon_fill", f"output_dir={out}", "num_workers=0",
            "progress=false", "extras.print_config=false", *extra]


def test_label_user_errors_are_one_line(dota_root, tmp_path):
    env = environment(tmp_path)
    no_images = tmp_path / "DOTA"
    shutil.copytree(dota_root / "train" / "labelTxt", no_images / "train" / "labelTxt")
    missing = job("samrs.label", *label_args(no_images, tmp_path / "a"), env=env, cwd=tmp_path)
    assert f"{no_images / 'train' / 'images'}: DOTA images folder not found" in error_line(missing)

    (tmp_path / "file").write_text("")  # output_dir below a file: not a folder anyone can create
    unwritable = job("samrs.label", *label_args(dota_root, tmp_path / "file" / "out"), env=env, cwd=tmp_path)
    assert f"output_dir={tmp_path / 'file' / 'out'}: cannot create it" in error_line(unwritable)

    full = job("samrs.label", *label_args(no_images, tmp_path / "a"), env=environment(tmp_path, HYDRA_FULL_ERROR="1"),
               cwd=tmp_path)
    assert full.returncode != 0 and "Traceback" in full.stderr and "DOTA images folder not found" in full.stderr


def test_strict_mode_says_stopped(dota_root, tmp_path):
    root = tmp_path / "DOTA"
    shutil.copytree(dota_root, root)
    label = root / "train" / "labelTxt" / "P0001.txt"
    write_text(label, label.read_text() + "10 10 40\n")
    run = job("samrs.label", *label_args(root, tmp_path / "out", "strict=true"), env=environment(tmp_path),
              cwd=tmp_path)
    line = error_line(run)
    assert f"{label}:" in line and "(stopped); strict=true stops at the first bad input" in line
    assert "(skipped)" not in line


def train_cfg(tmp_path: Path, *overrides: str):
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", overrides=[f"paths.data_dir={tmp_path}", f"paths.log_dir={tmp_path / 'logs'}",
                                           *overrides])


def prepared(data_cfg) -> None:
    module = instantiate(data_cfg)
    module.prepare_data()
    module.setup("fit")


@pytest.mark.parametrize("damage", ["bad label", "missing split file"])
def test_bad_training_data_is_one_line(generated_subsets, tmp_path, capsys, damage):
    root = tmp_path / "sota"
    shutil.copytree(generated_subsets["sota"], root)
    overrides = ["data=sota", f"data.subsets.sota.root={root}", "data.num_workers=0"]  # the cache checks each file
    if damage == "bad label":
        name = (root / "train.txt").read_text().split()[0]
        (root / "labels" / f"{name}.png").write_bytes(b"not a png")
        expected = f"sota/train: 1 of 9 images are unusable ({root / 'labels' / name}.png"
    else:
        (root / "train.txt").unlink()
        expected = f"{root / 'train.txt'}: split file not found"
    cfg = train_cfg(tmp_path, *overrides)
    with pytest.raises(SystemExit) as end:
        exit_on_user_error(prepared)(cfg.data)
    err = capsys.readouterr().err
    assert end.value.code == 2 and err.count("\n") == 1 and err.startswith("error: ") and expected in err


@pytest.mark.slow
def test_a_missing_checkpoint_to_evaluate_leaves_nothing_behind(tmp_path):
    run = job("samrs.evaluate", f"ckpt_path={tmp_path / 'none.ckpt'}", env=environment(tmp_path), cwd=tmp_path)
    line = error_line(run)
    assert f"ckpt_path={tmp_path / 'none.ckpt'}: no checkpoint at" in line and "esum" not in line  # no resuming
    evaluations = tmp_path / "logs" / "evaluate"
    assert not evaluations.is_dir() or not list(evaluations.iterdir())  # no empty run folder
    # samrs.predict says the same, as every job: one `error:` line, status 2
    (tmp_path / "scenes").mkdir()
    run = job("samrs.predict", f"ckpt_path={tmp_path / 'none.ckpt'}", f"inputs={tmp_path / 'scenes'}",
              f"output_dir={tmp_path / 'maps'}", env=environment(tmp_path), cwd=tmp_path)
    assert f"ckpt_path={tmp_path / 'none.ckpt'}: no checkpoint at" in error_line(run)


def test_sep_start_of_a_debug_experiment_names_the_debug_pretraining(tmp_path):
    from samrs.train import check_start

    cfg = train_cfg(tmp_path, "experiment=ft_potsdam_r50_upernet_debug", "start=imp_sep")
    with pytest.raises(FileNotFoundError, match=r"python -m samrs.train experiment=sep_r50_upernet_debug start=imp\)"):
        check_start(cfg)


def test_offline_imagenet_weights_ask_for_a_local_file(tmp_path, monkeypatch):
    import huggingface_hub.constants

    from samrs.models.backbone import TimmBackbone

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    with pytest.raises(ConfigError, match=r"cannot download the ImageNet weights of resnet18 .*start.checkpoint=FILE"):
        TimmBackbone("resnet18", pretrained=True)
