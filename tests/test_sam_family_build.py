"""Family builds: the `sam=` configs, weights folders and files, their errors, meta.json fields."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from samrs.labeling.sam import build_hf
from samrs.labeling.sam.build import build_tiny_sam_hq, load_sam_hq, sha256_file
from samrs.labeling.sam.build_hf import build_tiny_family, load_family, sha256_folder
from samrs.labeling.sam.engine import SamEngine
from samrs.labeling.sam.labeler import SamLabeler
from samrs.labeling.sam.prompts import PromptSpec
from tests.sam_helpers import random_objects

CONF = Path(__file__).resolve().parents[1] / "conf"
REAL = ["hq_vit_h", "hq_vit_l", "hq_vit_b", "sam2.1_hiera_t", "sam2.1_hiera_s", "sam2.1_hiera_b+", "sam2.1_hiera_l",
        "edgetam", "sam3"]


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(overrides=list(overrides))


@pytest.mark.parametrize("model", REAL)
def test_real_family_configs_need_weights(model):
    cfg = _compose(f"+sam={model}")
    with pytest.raises(Exception, match=r"pass sam.checkpoint=(FILE|DIR)"):
        instantiate(cfg.sam)


def test_hbox_text_labeler_config_with_min_concept_score():
    cfg = _compose("+sam=sam3_tiny", "+prompt=hbox_text", "+labeler=sam", "labeler.min_concept_score=0.3")
    labeler = instantiate(cfg.labeler)
    meta = labeler.meta
    assert (meta["family"], meta["model_type"], meta["prompt"]) == ("sam3", "sam3_tiny", "hbox+text")
    assert meta["min_concept_score"] == 0.3 and meta["concept_iou"] == 0.01 and meta["dynamic_multimask"] is True


def test_min_concept_score_needs_a_text_prompt():
    with pytest.raises(ValueError, match="needs a text prompt"):
        SamLabeler(build_tiny_family("sam2.1_tiny"), PromptSpec(["hbox"]), min_concept_score=0.5)


@pytest.fixture(scope="module")
def sam2_folder(tmp_path_factory) -> Path:
    """A tiny SAM 2 saved in transformers' from_pretrained layout, with its processor."""
    from transformers import Sam2ImageProcessor, Sam2Processor

    path = tmp_path_factory.mktemp("sam2")
    family = build_tiny_family("sam2.1_tiny", seed=4).model
    family.model.save_pretrained(path)
    Sam2Processor(Sam2ImageProcessor()).save_pretrained(path)
    return path


def test_folder_loads_as_the_family_with_its_hash(sam2_folder, monkeypatch):
    tiny = build_tiny_family("sam2.1_tiny", seed=4)
    signature = build_hf._hiera_signature(tiny.model.model.config)
    monkeypatch.setitem(build_hf.HIERA, "sam2.1_hiera_t", (signature[0], 1, signature[1], [], [], []))
    loaded = load_family("sam2.1_hiera_t", sam2_folder, dynamic_multimask=False)
    assert loaded.meta() == {"family": "sam2", "model_type": "sam2.1_hiera_t", "checkpoint": str(sam2_folder.resolve()),
                             "sha256": sha256_folder(sam2_folder)}
    assert loaded.model.settings() == {"dynamic_multimask": False}
    rng = np.random.default_rng(0)
    image, objects = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8), random_objects(rng, 96, 80, 3)
    tiny.model.dynamic_multimask = False
    a, b = (SamEngine(m, PromptSpec(["hbox"])) for m in (loaded.model, tiny.model))
    features = a.encode([image]), b.encode([image])  # the same weights (attention kernels may differ: rounding)
    for x, y in zip(features[0].tensors, features[1].tensors):
        np.testing.assert_allclose(x.numpy(), y.numpy(), atol=1e-4)
    scores = [[m.score for m in e.predict(features[0], e.frame(96, 80), objects)] for e in (a, b)]
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)


def test_folder_of_another_model_or_size(sam2_folder, tmp_path):
    with pytest.raises(ValueError, match=r"looks like no SAM 2.1 size I know .* you chose sam=sam2.1_hiera_l"):
        load_family("sam2.1_hiera_l", sam2_folder)
    with pytest.raises(ValueError, match=r"this is a sam2 model, you chose sam=edgetam"):
        load_family("edgetam", sam2_folder)
    with pytest.raises(FileNotFoundError, match=r"nope \(sam3\) do not exist"):
        load_family("sam3", tmp_path / "nope")
    (tmp_path / "sam2.1_hiera_large.pt").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"not a single file; official .pt checkpoints convert"):
        load_family("sam2.1_hiera_l", tmp_path / "sam2.1_hiera_large.pt")
    with pytest.raises(ValueError, match=r"no config.json there"):
        load_family("sam2.1_hiera_l", tmp_path)
    with pytest.raises(ValueError, match=r"choose one of"):
        load_family("sam2.1_hiera_x", tmp_path)


def test_sam_hq_checkpoint_round_trip_and_errors(tmp_path):
    tiny = build_tiny_sam_hq(seed=2)
    path = tmp_path / "hq.pth"
    torch.save(tiny.model.sam.state_dict(), path)
    with pytest.raises(ValueError, match=r"looks like no SAM I know .* you chose hq_vit_b"):
        load_sam_hq("hq_vit_b", path)
    b_like = tmp_path / "b.pth"
    torch.save({"image_encoder.pos_embed": torch.zeros(1, 64, 64, 768),
                **{f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(768) for i in range(12)}}, b_like)
    with pytest.raises(ValueError, match=r"looks like a hq_vit_b checkpoint, you chose hq_vit_h; use sam=hq_vit_b"):
        load_sam_hq("hq_vit_h", b_like)
    with pytest.raises(ValueError, match=r"pass sam.checkpoint=FILE"):
        load_sam_hq("hq_vit_l", None)
    assert tiny.meta()["family"] == "sam_hq" and sha256_file(path)


def test_sam_weights_gives_each_model_of_a_sweep_its_checkpoint(tmp_path):
    weights = f"+sam_weights={{vit_b: {tmp_path}/b.pth, sam2.1_hiera_b+: {tmp_path}/bplus}}"
    assert _compose("+sam=sam2.1_hiera_b+", weights).sam.checkpoint == f"{tmp_path}/bplus"
    assert _compose("+sam=vit_b", weights).sam.checkpoint == f"{tmp_path}/b.pth"
    assert _compose("+sam=sam3", weights).sam.checkpoint is None
