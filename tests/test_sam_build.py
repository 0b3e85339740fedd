"""SAM builds, checkpoint errors, the Hydra configs and SamLabeler over ImageRecords."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from samrs.labeling.sam import build
from samrs.labeling.sam.build import build_tiny_sam, load_sam, sha256_file
from samrs.labeling.sam.labeler import SamLabeler
from samrs.labeling.sam.prompts import PromptSpec
from samrs.sources.records import ImageRecord
from tests.sam_helpers import box_object

CONF = Path(__file__).resolve().parents[1] / "conf"


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.save(build_tiny_sam(seed=3).model.state_dict(), path)
    return path


def test_tiny_checkpoint_loads_with_its_sha256(tiny_checkpoint):
    loaded = build_tiny_sam(seed=0, checkpoint=tiny_checkpoint)
    reference = build_tiny_sam(seed=3).model.state_dict()
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert loaded.sha256 == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest() == sha256_file(tiny_checkpoint)
    assert loaded.meta() == {"family": "sam", "model_type": "tiny", "checkpoint": str(tiny_checkpoint.resolve()),
                             "sha256": loaded.sha256}
    assert not loaded.model.training


def test_nested_state_dict_is_unwrapped(tiny_checkpoint, tmp_path):
    path = tmp_path / "wrapped.pth"
    torch.save({"model": torch.load(tiny_checkpoint, weights_only=True)}, path)
    assert build_tiny_sam(checkpoint=path).sha256 == sha256_file(path)


def test_tiny_checkpoint_of_other_widths_is_rejected(tiny_checkpoint):
    with pytest.raises(ValueError, match=r"tiny.pth: its weights do not fit the tiny SAM configured"):
        build_tiny_sam(encoder_dim=48, checkpoint=tiny_checkpoint)


def test_missing_and_absent_checkpoints(tmp_path):
    missing = tmp_path / "nope" / "sam_vit_h.pth"
    with pytest.raises(FileNotFoundError, match=r"nope/sam_vit_h.pth \(vit_h\) does not exist"):
        load_sam("vit_h", missing)
    with pytest.raises(ValueError, match=r"pass sam.checkpoint=FILE"):
        load_sam("vit_l", None)
    with pytest.raises(ValueError, match=r"choose one of \['vit_h', 'vit_l', 'vit_b'\]"):
        load_sam("vit_x", missing)


def _encoder_signature_only(width: int, depth: int) -> dict[str, torch.Tensor]:
    """Just the keys that tell SAM image encoders apart (a real vit_b file is 375 MB)."""
    state = {"image_encoder.pos_embed": torch.zeros(1, 64, 64, width)}
    state.update({f"image_encoder.blocks.{i}.norm1.weight": torch.zeros(width) for i in range(depth)})
    return state


def test_checkpoint_of_another_model_names_both(tmp_path, tiny_checkpoint):
    path = tmp_path / "b.pth"
    torch.save(_encoder_signature_only(768, 12), path)
    with pytest.raises(ValueError, match=r"b.pth: this looks like a vit_b checkpoint, you chose vit_h; use sam=vit_b"):
        load_sam("vit_h", path)
    with pytest.raises(ValueError, match=r"looks like no SAM I know \(image encoder width 32, 2 blocks\), you chose vit_b"):
        load_sam("vit_b", tiny_checkpoint)


def test_files_that_are_not_sam_checkpoints(tmp_path):
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, other)
    with pytest.raises(ValueError, match=r"resnet.pth: not a SAM checkpoint"):
        load_sam("vit_b", other)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 10)
    text = tmp_path / "notes.pth"
    text.write_text("sam_vit_b_01ec64.pth\n")
    lightning = tmp_path / "last.ckpt"  # a training checkpoint pickles Python objects besides tensors
    torch.save({"state_dict": {"image_encoder.w": torch.zeros(1)}, "hparams": argparse.Namespace(lr=0.1)}, lightning)
    for path in (garbage, text, lightning):
        with pytest.raises(ValueError, match=rf"{path.name}: not a SAM checkpoint: PyTorch reads no plain file") as err:
            load_sam("vit_b", path)
        assert "weights_only" not in str(err.value) and err.value.__suppress_context__  # not torch's advice


def test_load_sam_builds_through_the_registry(monkeypatch, tiny_checkpoint):
    """The happy path, with the registry's vit_b builder standing in for the tiny SAM."""
    monkeypatch.setitem(build.sam_model_registry, "vit_b", lambda: build_tiny_sam(seed=9).model)
    build._registry_signature.cache_clear()
    try:
        loaded = load_sam("vit_b", tiny_checkpoint)
    finally:
        build._registry_signature.cache_clear()
    assert loaded.model_type == "vit_b" and loaded.sha256 == sha256_file(tiny_checkpoint)
    expected = torch.load(tiny_checkpoint, weights_only=True)
    assert all(torch.equal(v, expected[k]) for k, v in loaded.model.state_dict().items())


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(overrides=list(overrides))


@pytest.mark.parametrize("model", ["vit_h", "vit_l", "vit_b"])
def test_labeler_config_without_checkpoint_says_what_to_pass(model):
    cfg = _compose(f"+sam={model}", "+prompt=hbox", "+labeler=sam")
    with pytest.raises(InstantiationException, match=r"pass sam.checkpoint=FILE"):
        instantiate(cfg.labeler)


def test_labeler_config_builds_the_tiny_sam_labeler():
    cfg = _compose("+sam=tiny", "+prompt=rhbox_rbox_m", "+labeler=sam", "labeler.chunk_size=8")
    labeler = instantiate(cfg.labeler)
    assert isinstance(labeler, SamLabeler)
    assert labeler.engine.chunk_size == 8 and labeler.engine.prompt.types == ("rhbox", "rbox_m")
    assert labeler.meta["model_type"] == "tiny" and labeler.meta["prompt"] == "rhbox+rbox_m"


@pytest.mark.parametrize("name", sorted(p.stem for p in (CONF / "prompt").glob("*.yaml")))
def test_prompt_configs_are_named_after_their_types(name):
    spec = instantiate(_compose(f"+prompt={name}").prompt)
    assert isinstance(spec, PromptSpec) and "_".join(spec.types) == name


@pytest.fixture(scope="module")
def labeler():
    return SamLabeler(build_tiny_sam(), PromptSpec(["hbox"]), chunk_size=4)


def test_labeler_labels_objects_with_a_class(labeler):
    image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    objects = [box_object(10, 10, 40, 30, 2), box_object(50, 50, 90, 100, None), box_object(100, 20, 150, 60, 0)]
    record = ImageRecord("tile_a", None, 160, 120, objects)
    (masks,) = labeler.label([image], [record])
    assert [(m.object_index, m.class_id) for m in masks] == [(0, 2), (2, 0)]
    assert all(m.prompt == "hbox" and m.score is not None for m in masks)


def test_labeler_rejects_bad_input(labeler):
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"tile_b: image is 160x120 but the record says 100x120"):
        labeler.label([image], [ImageRecord("tile_b", None, 100, 120, [])])
    bad = box_object(10, 10, 40, 30)
    bad.hbox[2] = np.nan
    with pytest.raises(ValueError, match=r"tile_c: object 0 \(thing\) has non-finite hbox"):
        labeler.label([image], [ImageRecord("tile_c", None, 160, 120, [bad])])
    with pytest.raises(ValueError, match=r"uint8"):
        labeler.label([image.astype(np.float32)], [ImageRecord("tile_d", None, 160, 120, [])])
