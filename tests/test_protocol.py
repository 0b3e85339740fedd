"""The pre-training data protocol: a source's test images stay out of train/val (SIOR: DIOR's
trainval only, paper A.3) and samrs.train refuses a subset whose train split holds them; validation
loaders go through their own heads whatever order the heads are given in."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, open_dict

from samrs.label import label
from samrs.scenes.formats import write_format
from samrs.sources.base import is_test_split
from samrs.train import fill_heads_from_data
from samrs.utils.hydra import config_dir
from tests.test_data_datamodule import data_module, ready
from tests.test_train_sep import compose_train


def compose_label(overrides: list[str], out: Path) -> DictConfig:
    """The config `python -m samrs.label <overrides>` would run, its logs in `out`."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("label", overrides=[*overrides, f"paths.log_dir={out}/logs", f"paths.output_dir={out}/logs",
                                          "extras.print_config=false", "progress=false", "num_workers=0"],
                      return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


def lines(path: Path) -> list[str]:
    return path.read_text().split()


@pytest.fixture(scope="module")
def dior(tmp_path_factory) -> Path:
    """12 generated DIOR scenes in the release layout: 3 train, 3 val, 6 test (DIOR's 1:1:2)."""
    return write_format("dior", tmp_path_factory.mktemp("dior") / "DIOR", count=12, size=96, seed=4,
                        num_objects=(1, 3))


def test_is_test_split():
    assert [is_test_split(s) for s in ("test", "Test", "test-dev", "test-challenge/part1", "train", "val",
                                       "trainval", None)] == [True] * 4 + [False] * 4


def test_dior_test_images_go_to_test_txt_only(dior, tmp_path, capsys):
    out = tmp_path / "SIOR"
    split_files = dior / "ImageSets" / "Main"
    trainval, test = lines(split_files / "train.txt") + lines(split_files / "val.txt"), lines(split_files / "test.txt")
    assert len(trainval) == 6 and len(test) == 6

    cfg = compose_label(["source=dior", f"source.root={dior}", "labeler=box_fill", f"output_dir={out}"], tmp_path)
    assert list(cfg.source.split) == ["train", "val", "test"]  # the default config labels all of DIOR
    meta = label(cfg)
    assert "test.txt (6: the source's test split, kept out of train/val)" in capsys.readouterr().out
    train, val = lines(out / "train.txt"), lines(out / "val.txt")
    assert sorted(train + val) == sorted(trainval) and val  # the 95/5 split of trainval alone
    assert lines(out / "test.txt") == sorted(test) == meta["test_names"]
    assert meta["counts"]["images_per_source_split"] == {"test": 6, "train": 3, "val": 3}
    assert (meta["counts"]["train_images"], meta["counts"]["val_images"], meta["counts"]["test_images"]) == \
        (len(train), len(val), 6)
    # trainval alone: the same train/val files, no test.txt
    trainval_only = tmp_path / "trainval"
    label(compose_label(["source=dior", f"source.root={dior}", "source.split=[train,val]", "labeler=box_fill",
                         f"output_dir={trainval_only}"], tmp_path))
    assert lines(trainval_only / "train.txt") == train and lines(trainval_only / "val.txt") == val
    assert not (trainval_only / "test.txt").exists()


def test_train_refuses_test_images_and_relabeling_fixes_the_split(dior, tmp_path):
    out = tmp_path / "SIOR"
    command = ["source=dior", f"source.root={dior}", "labeler=box_fill", f"output_dir={out}"]
    label(compose_label(command, tmp_path))
    module = data_module("sior", {"sior": out}, tmp_path, "data.cache.enabled=false")
    ready(module)  # the subset as written trains

    # a subset written before the split rule: test images in train.txt, parts that do not name their split
    test = lines(out / "test.txt")
    (out / "train.txt").write_text("".join(f"{n}\n" for n in sorted(lines(out / "train.txt") + test)))
    with pytest.raises(ValueError, match=rf"holds 6 images that .*meta.json marks as the source's test split "
                                         rf"\(test_names; first: {test[0]}\).*run the label command"):
        ready(data_module("sior", {"sior": out}, tmp_path, "data.cache.enabled=false"))
    for part in (out / ".samrs_parts").glob("*.json"):
        entry = json.loads(part.read_text())
        entry["image"].pop("source_split")
        part.write_text(json.dumps(entry))
    images = {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()}

    label(compose_label(command, tmp_path))  # the same command again: nothing labeled, the splits merged anew
    assert {p.name: p.stat().st_mtime_ns for p in (out / "images").iterdir()} == images
    assert not set(lines(out / "train.txt")) & set(test) and lines(out / "test.txt") == test
    ready(data_module("sior", {"sior": out}, tmp_path, "data.cache.enabled=false"))


class HeadSpy(L.Callback):
    """Per validation batch: the loader's subset (by the datamodule's order), the batch's subset, and
    the head the model ran with its logits' class count."""

    def __init__(self, net) -> None:
        self.calls: list[tuple[str, int]] = []
        self.batches: list[tuple[int, str, tuple[str, int]]] = []
        forward = net.forward

        def spy(x, subset):
            logits = forward(x, subset)
            self.calls.append((subset, logits.shape[1]))
            return logits

        net.forward = spy

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.batches.append((dataloader_idx, batch["subset"][0], self.calls[-1]))


def test_validation_loaders_go_through_their_own_heads(generated_subsets, tmp_path):
    """Heads given in another order than the data's subsets: each loader's logits come from its own head."""
    cfg = compose_train(["experiment=demo", "model.net.heads={fast: 37, sota: 18, sior: 20}",
                         "model.net.decoder.channels=16", *[f"data.subsets.{k}.root={v}" for k, v in
                                                             generated_subsets.items()],
                         "data.generate=null", "data.val_transform.crop_size=64"], tmp_path)
    datamodule = instantiate(cfg.data)
    fill_heads_from_data(cfg, datamodule)  # accepted: the same subsets and class counts
    model = instantiate(cfg.model)
    assert list(model.net.num_classes) == ["fast", "sota", "sior"] != datamodule.subset_names
    spy = HeadSpy(model.net)
    trainer = L.Trainer(accelerator="cpu", limit_val_batches=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[spy])
    trainer.validate(model, datamodule=datamodule)
    assert [(datamodule.subset_names[i], subset) for i, subset, _ in spy.batches] == \
        [(s, s) for s in datamodule.subset_names]
    assert [head for _, _, head in spy.batches] == [(s, datamodule.num_classes[s]) for s in datamodule.subset_names]
    scores = model.last_val_scores
    assert {k: len(v["IoU"]) for k, v in scores.items()} == {"fast": 37, "sota": 18, "sior": 20}


def test_a_batch_without_its_subset_is_refused(generated_subsets, tmp_path):
    cfg = compose_train(["experiment=demo", "model.net.heads={sota: 18, sior: 20}"], tmp_path)
    model = instantiate(cfg.model)
    with pytest.raises(ValueError, match="must name their subset"):
        model.validation_step({"image": torch.zeros(1, 3, 32, 32), "mask": torch.zeros(1, 32, 32).long()}, 0, 1)
