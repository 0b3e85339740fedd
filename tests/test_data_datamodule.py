"""The data configs (data=sota, sior, fast, samrs): batches, epochs, DDP shards, bad-file policy."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from torch.utils.data import DataLoader

from samrs.data.dataset import SegmentationDataset
from samrs.utils.hydra import config_dir
from samrs.utils.io import write_png

SUBSETS = ("sota", "sior", "fast")


def data_module(config: str, roots: dict[str, Path], tmp_path: Path, *overrides: str):
    """The data config `config` pointed at `roots`, small and single-process."""
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[
            f"data={config}", f"paths.data_dir={tmp_path}", "data.num_workers=0", "data.val_num_workers=0",
            "data.pin_memory=false", "data.batch_size=6", "data.train_transform.crop_size=32",
            "data.val_transform.crop_size=48", *[f"data.subsets.{k}.root={v}" for k, v in roots.items()],
            *overrides])
    return instantiate(cfg.data)


def ready(module, stage: str = "fit"):
    module.prepare_data()
    module.setup(stage)
    return module


@pytest.mark.parametrize("subset", SUBSETS)
def test_one_subset_configs(generated_subsets, tmp_path, subset):
    module = ready(data_module(subset, {subset: generated_subsets[subset]}, tmp_path))
    assert module.subset_names == [subset]
    batch = next(iter(module.train_dataloader()))
    assert list(batch) == [subset]
    part = batch[subset]
    assert part["image"].shape == (6, 3, 32, 32) and part["image"].dtype == torch.float32
    assert part["mask"].shape == (6, 32, 32) and part["mask"].dtype == torch.long
    assert len(part["name"]) == 6
    classes = module.num_classes[subset]
    assert ((part["mask"] < classes) | (part["mask"] == 255)).all()
    (val,) = module.val_dataloader()
    assert next(iter(val))["image"].shape[1:] == (3, 48, 48)


def test_combined_config_composes_proportional_steps(generated_subsets, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="samrs.data")
    module = ready(data_module("samrs", generated_subsets, tmp_path))
    sizes = {k: len(v) for k, v in module.train_sets.items()}
    assert module.subset_names == list(SUBSETS)
    assert sum(module.train_batch_sizes.values()) == 6 and min(module.train_batch_sizes.values()) >= 1
    loader = module.train_dataloader()
    steps = -(-sum(sizes.values()) // 6)
    assert len(loader) == steps
    assert f"training epoch: {steps} steps x batch 6 (6 per process x 1 processes)" in caplog.text
    for batch in loader:
        assert {k: len(v["name"]) for k, v in batch.items()} == module.train_batch_sizes
    assert [len(v.dataset) for v in module.val_dataloader()] == [len(module.val_sets[k]) for k in SUBSETS]
    assert module.num_classes == {"sota": 18, "sior": 20, "fast": 37}


def test_every_training_image_once_per_pass(generated_subsets, tmp_path):
    """Over two epochs, each subset's first len(subset) draws are all its training images."""
    module = ready(data_module("samrs", generated_subsets, tmp_path))
    loader = module.train_dataloader()
    drawn: dict[str, list[str]] = {k: [] for k in SUBSETS}
    for epoch in range(2):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            for subset, part in batch.items():
                drawn[subset] += part["name"]
    for subset, names in drawn.items():
        train = module.train_sets[subset].names
        assert len(names) > len(train)
        assert sorted(names[:len(train)]) == sorted(train)


def test_simulated_ddp_ranks_draw_disjoint_samples(generated_subsets, tmp_path, monkeypatch):
    """Two ranks (torch.distributed faked): within a pass no image goes to both."""
    seen = []
    for rank in range(2):
        monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
        monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        module = ready(data_module("samrs", generated_subsets, tmp_path, "data.batch_size=3",
                                   "data.steps_per_epoch=3"))
        loader = module.train_dataloader()
        assert min(len(d) for d in module.train_sets.values()) >= 6
        assert loader.sampler.num_replicas == 2 and loader.sampler.rank == rank
        seen.append({k: [] for k in SUBSETS})
        for batch in loader:
            for subset, part in batch.items():
                seen[-1][subset] += part["name"]
    for subset in SUBSETS:  # 3 steps x 1 image x 2 ranks = 6 draws, within one pass
        assert len(seen[0][subset]) == len(seen[1][subset]) == 3
        assert not set(seen[0][subset]) & set(seen[1][subset])
        assert len(set(seen[0][subset]) | set(seen[1][subset])) == 6


def first_steps(module, steps: int = 2) -> list[dict[str, list[str]]]:
    loader = iter(module.train_dataloader())
    return [{k: part["name"] for k, part in next(loader).items()} for _ in range(steps)]


@pytest.mark.parametrize("world", [2, 3])
def test_simulated_ranks_draw_the_single_process_global_batch(generated_subsets, tmp_path, monkeypatch, caplog, world):
    """Per-process batch 3 on `world` ranks: each rank takes its share of the global batch's split,
    and together they draw exactly the images one process with batch 3 x world draws."""
    caplog.set_level(logging.INFO, logger="samrs.data")
    alone = ready(data_module("samrs", generated_subsets, tmp_path, f"data.batch_size={3 * world}",
                              "data.steps_per_epoch=2"))
    expected = first_steps(alone)
    together: list[dict[str, list[str]]] = [{k: [] for k in SUBSETS} for _ in expected]
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: world)
    shares = []
    for rank in range(world):
        monkeypatch.setattr(torch.distributed, "get_rank", lambda rank=rank: rank)
        module = ready(data_module("samrs", generated_subsets, tmp_path, "data.batch_size=3", "data.steps_per_epoch=2"))
        assert module.global_batch_sizes == alone.global_batch_sizes == alone.train_batch_sizes
        shares.append(module.train_batch_sizes)
        for step, names in zip(together, first_steps(module)):
            for subset, part in names.items():
                step[subset] += part
    assert {k: sum(s[k] for s in shares) for k in SUBSETS} == alone.global_batch_sizes
    assert all(sum(s.values()) == 3 for s in shares)
    assert [{k: sorted(v) for k, v in step.items()} for step in together] == \
        [{k: sorted(v) for k, v in step.items()} for step in expected]
    assert f"x batch {3 * world} (3 per process x {world} processes)" in caplog.text


def test_official_batch_split_truncates(generated_subsets, tmp_path):
    module = ready(data_module("samrs", generated_subsets, tmp_path, "data.batch_size=12", "data.batch_split=official"))
    sizes = {k: len(v) for k, v in module.train_sets.items()}
    expected = {k: int(12 * n / sum(sizes.values())) for k, n in sizes.items()}
    assert module.train_batch_sizes == module.global_batch_sizes == expected
    assert {k: len(part["name"]) for k, part in next(iter(module.train_dataloader())).items()} == expected


def test_batch_smaller_than_subset_count(generated_subsets, tmp_path):
    module = data_module("samrs", generated_subsets, tmp_path, "data.batch_size=2")
    module.prepare_data()
    with pytest.raises(ValueError, match="batch size 2 is smaller than the number of subsets"):
        module.setup("fit")


@pytest.mark.parametrize("cache", [True, False], ids=["cache", "files"])
def test_bad_image_raises_or_is_skipped_and_counted(generated_subsets, tmp_path, caplog, cache):
    root = Path(shutil.copytree(generated_subsets["sota"], tmp_path / "SOTA"))
    bad = (root / "train.txt").read_text().split()[2]
    if cache:  # found when the cache decodes every label
        write_png(root / "labels" / f"{bad}.png", np.full((64, 64), 99, np.uint8))
    else:  # found from the folder listing (content is checked when a sample is read)
        (root / "labels" / f"{bad}.png").unlink()
    flags = [f"data.cache.enabled={cache}"]
    with pytest.raises(ValueError, match=rf"sota/train: 1 of 9 images are unusable \(\S*{bad}.png: "):
        ready(data_module("sota", {"sota": root}, tmp_path, *flags))
    caplog.set_level(logging.WARNING, logger="samrs.data")
    module = ready(data_module("sota", {"sota": root}, tmp_path, *flags, "data.on_error=skip"))
    assert len(module.train_sets["sota"]) == 8 and bad not in module.train_sets["sota"].names
    assert "sota/train: skipping 1 of 9 images" in caplog.text


def test_workers_draw_different_augmentations(generated_subsets, tmp_path):
    """Forked DataLoader workers reseed their augmentation: the same image differs between them."""
    module = ready(data_module("sota", {"sota": generated_subsets["sota"]}, tmp_path))
    one = module.train_sets["sota"]
    repeated = SegmentationDataset([one.names[0]] * 4, one.reader, one.transform)
    samples = list(DataLoader(repeated, batch_size=1, num_workers=2))
    assert not torch.equal(samples[0]["image"], samples[1]["image"])  # worker 0 vs worker 1


class NameRecorder(L.LightningModule):
    """Records the names each rank trains on and the sampler its loader kept."""

    def __init__(self, out: Path) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.out = out
        self.names: list[str] = []

    def training_step(self, batch, batch_idx):
        self.names += [f"{k}/{n}" for k, part in batch.items() for n in part["name"]]
        return sum((self.weight * part["image"].mean()) for part in batch.values())

    def on_train_epoch_end(self) -> None:
        sampler = type(self.trainer.train_dataloader.sampler).__name__
        (self.out / f"rank{self.global_rank}.txt").write_text("\n".join([sampler, *self.names]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_lightning_ddp_keeps_the_sampler_and_ranks_are_disjoint(generated_subsets, tmp_path):
    module = data_module("samrs", generated_subsets, tmp_path, "data.batch_size=3", "data.steps_per_epoch=3")
    trainer = L.Trainer(strategy="ddp_spawn", accelerator="cpu", devices=2, max_epochs=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(NameRecorder(tmp_path), datamodule=module)
    ranks = [(tmp_path / f"rank{r}.txt").read_text().splitlines() for r in range(2)]
    assert [r[0] for r in ranks] == ["ProportionalSampler"] * 2
    assert len(ranks[0]) == len(ranks[1]) == 1 + 3 * 3
    assert not set(ranks[0][1:]) & set(ranks[1][1:])


def test_release_config_reads_the_official_layout(tmp_path):
    module = data_module("samrs_release", {}, tmp_path)
    sota, sior = module.layouts["sota"], module.layouts["sior"]
    assert (sota.image_dir, sota.label_dir, sota.image_suffix) == ("images", "gray", ".png")
    assert (sior.image_dir, sior.label_dir, sior.image_suffix) == ("JPEGImages-trainval", "gray", ".jpg")
    assert dict(sior.split_files) == {"train": "train.txt", "val": "valid.txt"}
    assert module.root_of("fast") == tmp_path / "SAMRS" / "FAST"


def test_misspelt_layout_key_is_named(tmp_path):
    with pytest.raises(InstantiationException, match="data.subsets.sota: unknown keys label_folder"):
        data_module("sota", {}, tmp_path, "+data.subsets.sota.label_folder=gray")


def test_cached_validation_on_another_split(tmp_path):
    from samrs.scenes.subset import write_generated_subset

    root = write_generated_subset(tmp_path / "sota", "sota", count=8, size=64, num_objects=(2, 5), seed=3,
                                  val_fraction=0.25, progress=False)
    first = (root / "val.txt").read_text().split()[0]
    for folder in ("images", "labels"):
        shutil.copy(root / folder / f"{first}.png", root / folder / "extra.png")
    (root / "test.txt").write_text("extra\n")  # an image neither in train.txt nor in val.txt
    module = data_module("sota", {"sota": root}, tmp_path, "data.cache.enabled=true", "+data.val_split=test",
                         "+data.subsets.sota.split_files={train: train.txt, val: val.txt, test: test.txt}")
    ready(module, "validate")
    assert list(module.val_sets["sota"].names) == ["extra"]
