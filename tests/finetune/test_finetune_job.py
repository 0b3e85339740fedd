"""The fine-tuning experiments: the paper's settings, and the commands of docs/finetune.md end to end
(pre-training -> fine-tuning sweep -> evaluation with predictions -> result tables)."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from finetune_helpers import compose_train
from hydra.utils import instantiate
from omegaconf import OmegaConf

from samrs.classes import subset_classes
from samrs.data.labels import LabelCoding
from samrs.models import check_input_sizes
from samrs.utils.io import read_label

MODELS = ["r50_upernet", "r50_unet", "swin_t", "vit_b", "convnext_t"]
# lr, weight decay, min lr, layer decay of the official fine-tuning code (ConvNeXt: its pre-training's)
OPTIMISER = {"r50_upernet": (1e-3, 1e-4, 5e-6, None), "r50_unet": (1e-3, 1e-4, 5e-6, None),
             "swin_t": (6e-5, 0.01, 0.0, None), "vit_b": (6e-5, 0.05, 0.0, 0.9), "convnext_t": (1e-4, 0.05, 0.0, None)}
TILES = {"potsdam": (512, 320), "isaid": (896, 512), "vaihingen": (512, 256), "loveda": (1024, 1024)}
DATASETS = list(TILES)
QUICK = ["logger=csv", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null", "extras.print_config=false",
         "trainer.num_sanity_val_steps=0"]


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_experiment_has_the_papers_settings(dataset, model):
    cfg = compose_train([f"experiment=ft_{dataset}_{model}"])
    assert cfg.name == f"ft_{dataset}_{model}_imp_f1.0" and cfg.start.key == "imp"
    assert (cfg.trainer.max_steps, cfg.data.batch_size, cfg.trainer.gradient_clip_val) == (80000, 8, 5.0)
    size, stride = TILES[dataset]
    assert (cfg.data.tiling.size, cfg.data.tiling.stride) == (size, stride)
    assert cfg.data.train_transform.crop_size == cfg.model.inference.window == size
    lr, wd, min_lr, layer_decay = OPTIMISER[model]
    assert (cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay, cfg.model.scheduler.min_lr) == (lr, wd, min_lr)
    assert cfg.model.param_groups.layer_decay == layer_decay
    # the pre-training's network (so that its weights load), but for the ImageNet start
    net = OmegaConf.to_container(cfg.model.net, resolve=True)
    assert net["backbone"].pop("pretrained") is True
    sep = json.loads(sep_net(model))
    assert sep["backbone"].pop("pretrained") is False and net == sep


@functools.cache
def sep_net(model: str) -> str:
    """The network config of sep_<model> (as JSON: callers get their own copy), composed once."""
    return json.dumps(OmegaConf.to_container(compose_train([f"experiment=sep_{model}"]).model.net, resolve=True))


@functools.cache
def debug_net(net_config: str):
    """A debug network built once per config (the datasets' debug experiments share them)."""
    return instantiate(OmegaConf.create(json.loads(net_config)))


@pytest.mark.parametrize("dataset", DATASETS)
@pytest.mark.parametrize("model", MODELS)
def test_debug_model_takes_its_tiles_and_windows(dataset, model):
    cfg = compose_train([f"experiment=ft_{dataset}_{model}_debug", "model.net.heads={any: 5}"])
    assert cfg.trainer.accelerator == "cpu" and cfg.start.key == "random" and cfg.data.generate
    net = debug_net(json.dumps(OmegaConf.to_container(cfg.model.net, resolve=True)))
    check_input_sizes(net, {"crop": cfg.data.train_transform.crop_size, "window": cfg.model.inference.window})


@pytest.mark.parametrize("dataset", DATASETS)
def test_a_dataset_combines_with_any_model(dataset):
    """ft_<dataset> + ft_model=<model> is ft_<dataset>_<model>: a new backbone needs no new dataset file."""
    combined = compose_train([f"experiment=ft_{dataset}", "ft_model=swin_t"])
    named = compose_train([f"experiment=ft_{dataset}_swin_t"])
    assert OmegaConf.to_container(combined) == OmegaConf.to_container(named)
    assert combined.data.name == dataset and combined.model_key == "swin_t"


def run_cli(module: str, args: list[str], cwd: Path) -> None:
    env = {**os.environ, "SAMRS_ROOT": str(cwd), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_pretrain_finetune_sweep_evaluate_and_tabulate(generated_subsets, tmp_path):
    data = [f"data.subsets.{k}.root={v}" for k, v in generated_subsets.items()] + ["data.generate=null"]
    run_cli("samrs.train", ["experiment=sep_r50_upernet_debug", "name=sep", "trainer.max_steps=2",
                            "trainer.val_check_interval=2", "trainer.limit_val_batches=1", *QUICK, *data], tmp_path)
    sep = tmp_path / "logs" / "train" / "sep" / "pretrained.pt"
    run_cli("samrs.train", ["-m", "name=tables", "experiment=ft_potsdam_r50_upernet_debug", "start=sep",
                            f"start.checkpoint={sep}", "data.fraction=0.25,1.0", "trainer.max_steps=4",
                            "trainer.val_check_interval=2", *QUICK], tmp_path)
    jobs = sorted((tmp_path / "logs" / "train" / "multirun" / "tables").glob("[0-9]"))
    assert len(jobs) == 2 and all((j / "metrics.json").is_file() for j in jobs)
    assert all(json.loads((j / "metrics.json").read_text())["protocol"] == "official" for j in jobs)
    full = jobs[1]
    run_cli("samrs.evaluate", [f"ckpt_path={full}", "name=flip", "evaluate.protocol=sliding", "evaluate.flip=true",
                               "evaluate.save_predictions=true"], tmp_path)
    evaluation = tmp_path / "logs" / "evaluate" / "flip"
    report = json.loads((evaluation / "metrics.json").read_text())
    assert report["inference"]["flip"] is True and report["split"] == "val"
    assert report["protocol"] == "sliding (flip)"

    # the scores are those of the written predictions against the label files
    cfg = compose_train(["experiment=ft_potsdam_r50_upernet_debug"])
    decode = LabelCoding(**OmegaConf.to_container(cfg.data.labels)).decoder(subset_classes("potsdam"))
    root = tmp_path / "data" / "generated" / "potsdam"
    inter, pred_area, label_area = np.zeros(5), np.zeros(5), np.zeros(5)
    for name in ("2_13", "2_14"):
        pred = read_label(evaluation / "predictions" / "potsdam" / f"{name}.png")
        label = decode(root / "5_Labels_all_noBoundary" / f"top_potsdam_{name}_label_noBoundary.tif")
        assert pred.shape == label.shape == (192, 192)
        keep = label != 255
        for c in range(5):
            inter[c] += np.sum((pred[keep] == c) & (label[keep] == c))
            pred_area[c] += np.sum(pred[keep] == c)
            label_area[c] += np.sum(label[keep] == c)
    scores = report["scores"]["potsdam"]
    f1 = 2 * inter / np.maximum(pred_area + label_area, 1)
    np.testing.assert_allclose([0 if v is None else v for v in scores["F1"]], f1, atol=1e-9)  # null: absent
    assert scores["OA"] == pytest.approx(inter.sum() / label_area.sum())

    run_cli("samrs.finetune_table", ["runs=[logs/train/multirun/tables,logs/evaluate]", "name=t"], tmp_path)
    markdown = (tmp_path / "logs" / "finetune_table" / "t" / "finetune_tables.md").read_text()
    assert "## potsdam: F1 per class (%), all training tiles" in markdown
    assert "## potsdam: OA, mF1 (%) by fraction of the training tiles" in markdown
    row = next(line for line in markdown.splitlines() if line.startswith("| UperNet | ResNet-50 | SEP |"))
    # the evaluation's figures replace the run's own, under their protocol; the fractions' are the runs' own
    assert f"| {100 * scores['mF1']:.2f} | 1 |" in row
    full_table, fraction_table = markdown.split("## potsdam: OA, mF1 (%) by fraction")
    assert "Protocol: sliding (flip).\n" in full_table and "Protocol: official.\n" in fraction_table


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["ft_isaid_swin_t_debug", "ft_potsdam_vit_b_debug"])
def test_debug_experiment_trains_and_validates_on_the_tiles(experiment, tmp_path):
    run_cli("samrs.train", [f"experiment={experiment}", "name=run", "trainer.max_steps=2",
                            "trainer.val_check_interval=2", *QUICK], tmp_path)
    run = tmp_path / "logs" / "train" / "run"
    report = json.loads((run / "metrics.json").read_text())
    dataset = experiment.split("_")[1]
    scores = report["scores"][dataset]
    assert len(scores["IoU"]) == (16 if dataset == "isaid" else 5) and 0.0 <= scores["OA"] <= 1.0
    assert report["step"] == 2 and (run / "checkpoints" / "last.ckpt").is_file()
    assert report["protocol"] == "official"  # validated on the tiles, flip and softmax averaged
    assert any((run / "val_images").rglob("*.png"))


@pytest.mark.slow
def test_loveda_run_evaluation_and_predictions(tmp_path):
    """LoveDA end to end: predictions keep the domain folders of the names, and the mIoU over the 7
    classes (no-data left out) is that of the predictions against the masks."""
    run_cli("samrs.train", ["experiment=ft_loveda_r50_upernet_debug", "name=run", "trainer.max_steps=2",
                            "trainer.val_check_interval=2", *QUICK], tmp_path)
    run_cli("samrs.evaluate", ["ckpt_path=logs/train/run", "name=ev", "evaluate.save_predictions=true"], tmp_path)
    evaluation = tmp_path / "logs" / "evaluate" / "ev"
    scores = json.loads((evaluation / "metrics.json").read_text())["scores"]["loveda"]
    root = tmp_path / "data" / "generated" / "LoveDA"
    inter, union = np.zeros(7), np.zeros(7)
    for folder, number in (("Val/Urban", 4), ("Val/Rural", 5)):
        pred = read_label(evaluation / "predictions" / "loveda" / folder / f"{number}.png")
        raw = read_label(root / folder / "masks_png" / f"{number}.png")
        keep = raw != 0
        pred, label = pred[keep], raw[keep].astype(int) - 1
        for c in range(7):
            inter[c] += np.sum((pred == c) & (label == c))
            union[c] += np.sum((pred == c) | (label == c))
    present = union > 0
    assert scores["mIoU"] == pytest.approx(np.mean(inter[present] / union[present]))
