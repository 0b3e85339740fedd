"""The instance experiments: configs (task=instance, starts), the debug experiment end to end on
generated scenes (trains to a mask AP well above zero), and samrs.evaluate on its checkpoint
(rotated-box AP, COCO results files that pycocotools scores as samrs does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samrs.models import check_input_sizes, export_pretrained
from samrs.utils.hydra import config_dir

QUICK = ["logger=csv", "callbacks.rich_progress_bar=null", "callbacks.model_summary=null", "extras.print_config=false",
         "trainer.num_sanity_val_steps=0"]
HEADS = "model.net.heads={sota:18,sior:20,fast:37}"


def compose_train(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize(("experiment", "model_key"), [("inst_r50_maskrcnn", "r50_upernet"),
                                                       ("inst_swin_t_maskrcnn", "swin_t")])
def test_instance_experiments_read_instances_and_start_from_their_sep_run(experiment, model_key):
    cfg = compose_train([f"experiment={experiment}"])
    assert cfg.data._target_ == "samrs.data.instances.InstanceDataModule" and cfg.data.instances == "instances.json"
    assert cfg.model._target_ == "samrs.tasks.InstanceTask" and cfg.optimized_metric == "val/segm_mAP"
    assert cfg.callbacks.model_checkpoint.monitor == "val/segm_mAP" and "export_pretrained" not in cfg.callbacks
    assert list(cfg.data.subsets) == ["sota", "sior", "fast"] and cfg.data.val_mode == "whole"
    assert cfg.name == f"{experiment}_imp" and cfg.model.net.backbone.pretrained is True
    starts = (("sep", f"sep_{model_key}"), ("imp_sep", f"sep_{model_key}_imp"))
    for start, run in starts if model_key == "r50_upernet" else starts[:1]:
        cfg = compose_train([f"experiment={experiment}", f"start={start}", "paths.log_dir=/logs"])
        assert cfg.model.net.pretrained == f"/logs/train/{run}/pretrained.pt" and cfg.name == f"{experiment}_{start}"
    # the backbone is the SEP model's: same timm model and keyword arguments (drop path aside: no weights)
    sep = OmegaConf.to_container(compose_train([f"experiment=sep_{model_key}"]).model.net.backbone)
    own = OmegaConf.to_container(cfg.model.net.backbone)
    assert {**own, "drop_path_rate": None} == {**sep, "pretrained": False, "drop_path_rate": None}


def test_task_instance_turns_any_data_config_into_instances_and_official_files_start_it():
    cfg = compose_train(["task=instance", "data=sota", "start=official_sep", "start.checkpoint=/ckpt/sep.pth"])
    assert cfg.data._target_ == "samrs.data.instances.InstanceDataModule"
    assert [k for k, v in cfg.data.subsets.items() if v] == ["sota"]
    assert cfg.model._target_ == "samrs.tasks.InstanceTask" and cfg.model.net.pretrained == "/ckpt/sep.pth"


@pytest.mark.parametrize("model_key", ["r50_upernet", "swin_t"])
def test_debug_instance_model_starts_from_the_debug_sep_pretraining(model_key, tmp_path):
    sep = instantiate(compose_train([f"experiment=sep_{model_key}_debug", "model.net.heads={sota:18}"]).model.net)
    export_pretrained(sep.state_dict(), tmp_path / "pretrained.pt", {})
    experiment = {"r50_upernet": "inst_r50_maskrcnn_debug", "swin_t": "inst_swin_t_maskrcnn_debug"}[model_key]
    cfg = compose_train([f"experiment={experiment}", "start=sep", f"start.checkpoint={tmp_path / 'pretrained.pt'}", HEADS])
    assert cfg.name == f"{experiment.removesuffix('_debug')}_sep_debug"
    net = instantiate(cfg.model.net)
    for k, v in sep.backbone.state_dict().items():
        assert (net.backbone.state_dict()[k] == v).all()
    check_input_sizes(net, {"crop": cfg.data.train_transform.crop_size})


def run_cli(module: str, args: list[str], cwd: Path) -> None:
    env = {**os.environ, "SAMRS_ROOT": str(cwd), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_debug_experiment_learns_instances_and_evaluates_them(tmp_path):
    steps = 150
    run_cli("samrs.train", ["experiment=inst_r50_maskrcnn_debug", "name=run", f"trainer.max_steps={steps}",
                            f"trainer.val_check_interval={steps}", *QUICK], tmp_path)
    run = tmp_path / "logs" / "train" / "run"
    report = json.loads((run / "metrics.json").read_text())
    assert report["step"] == steps
    mask_ap = np.mean([report["scores"][k]["segm"]["mAP"] for k in ("sota", "sior", "fast")])
    assert mask_ap > 0.05, report["scores"]  # random detections score ~0.001
    assert "| segm |" in (run / "metrics.md").read_text() and any(run.glob("checkpoints/best_step*_segm_mAP*.ckpt"))
    assert (run / "val_tables" / f"val_step{steps:06d}.md").is_file()

    run_cli("samrs.evaluate", ["ckpt_path=logs/train/run", "name=ev", "evaluate.boxes=rotated",
                               "evaluate.save_predictions=true"], tmp_path)
    evaluation = tmp_path / "logs" / "evaluate" / "ev"
    scores = json.loads((evaluation / "metrics.json").read_text())["scores"]
    for subset in ("sota", "sior", "fast"):
        root = tmp_path / "data" / "demo" / subset.upper()
        truth = COCO(str(root / "instances.json"))
        val = {i["id"] for i in truth.dataset["images"]
               if Path(i["file_name"]).stem in (root / "val.txt").read_text().split()}
        results = json.loads((evaluation / "results" / f"{subset}.json").read_text())
        assert results and {r["image_id"] for r in results} <= val
        # the results file, scored by pycocotools against instances.json, gives samrs' box and mask AP
        for kind in ("bbox", "segm"):
            ev = COCOeval(truth, truth.loadRes(results), kind)
            ev.params.imgIds = sorted(val)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            assert scores[subset][kind]["mAP"] == pytest.approx(ev.stats[0], abs=1e-6)
        rotated = scores[subset]["rotated"]
        assert 0 < rotated["mAP_voc12"] <= 1 and 0 < rotated["mAP_voc07"] <= 1
    assert "rotated boxes from the masks" in (evaluation / "metrics.md").read_text()
