"""Training on multispectral GeoTIFF subsets: N-band block files, N-channel augmentation, the data
config reading a labeled subset, backbones taking in_chans bands."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf
from timm.models import adapt_input_conv

from samrs.data.blocks import BlockCodec, BlockFile, Window, write_block_file
from samrs.data.transforms import train_transform, val_transform
from samrs.models import TimmBackbone
from samrs.train import fill_in_chans
from samrs.utils.hydra import config_dir


@pytest.mark.parametrize("bands,codec", [(4, "png"), (5, "png"), (5, "raw"), (4, "raw")])
def test_block_files_keep_every_band_of_16_bit_images(tmp_path, bands, codec):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 65535, (150, 130, bands), dtype=np.uint16)
    image[:64, :64] = 7  # a constant block
    label = rng.integers(0, 5, (150, 130), dtype=np.uint8)
    write_block_file(tmp_path / "a.blk", image, label, BlockCodec(codec=codec, block=64), {"x": 1})
    blocks = BlockFile(tmp_path / "a.blk")
    assert (blocks.channels, blocks.dtype) == (bands, np.uint16)
    for window in (Window(0, 150, 0, 130), Window(10, 99, 50, 129), Window(0, 64, 0, 64)):
        pixels, labels = blocks.read(window)
        np.testing.assert_array_equal(pixels, image[window.top:window.bottom, window.left:window.right])
        np.testing.assert_array_equal(labels, label[window.top:window.bottom, window.left:window.right])
    with pytest.raises(ValueError, match="jpeg takes 8-bit RGB"):
        write_block_file(tmp_path / "b.blk", image, label, BlockCodec(codec="jpeg"), {})


def test_n_band_augmentation_scales_jitters_and_normalises():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 4096, (90, 80, 4), dtype=np.uint16)
    label = rng.integers(0, 3, (90, 80), dtype=np.uint8)
    mean, std = [0.5, 0.4, 0.3, 0.2], [0.1, 0.2, 0.3, 0.4]
    tf = train_transform(crop_size=64, channels=4, max_pixel_value=4095, mean=mean, std=std)
    tf.reseed(0)
    window, params = tf.plan(90, 80)
    sample = tf.finish(image[window.top:window.bottom, window.left:window.right],
                       label[window.top:window.bottom, window.left:window.right], params)
    assert sample["image"].shape == (4, 64, 64) and sample["image"].dtype == torch.float32
    assert sample["mask"].shape == (64, 64)
    # without random steps the values are (x / max - mean) / std, band by band
    plain = val_transform(crop_size=64, channels=4, max_pixel_value=4095, mean=mean, std=std)
    out = plain.finish(image[:64, :64], label[:64, :64], None)["image"]
    expected = (image[:64, :64].astype(np.float32) / 4095 - mean) / std
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), expected, rtol=1e-5, atol=1e-5)
    def names(transforms) -> set[str]:  # OneOf's choices included
        return {n for op in transforms for n in [type(op).__name__, *names(getattr(op, "transforms", []))]}

    # the default colour step (oneof) and `separate`: brightness / contrast and gamma, no hue or saturation
    assert names(tf.ops.transforms) >= {"OneOf", "RandomBrightnessContrast", "RandomGamma", "ToFloat"}
    separate = train_transform(crop_size=64, channels=4, mean=mean, std=std, color="separate").ops.transforms
    for ops in (names(tf.ops.transforms), names(separate)):
        assert "ColorJitter" not in ops and {"RandomBrightnessContrast", "RandomGamma", "ToFloat"} <= ops
    assert "OneOf" not in names(separate)
    none = train_transform(crop_size=64, channels=4, mean=mean, std=std, color="none").ops.transforms
    assert not names(none) & {"RandomBrightnessContrast", "RandomGamma"}
    with pytest.raises(ValueError, match="4 bands need 4 values"):
        val_transform(crop_size=64, channels=4, mean=[0.5] * 3, std=[0.2] * 3)


def test_geo_data_config_reads_a_labeled_subset(geo_labeled, tmp_path):
    out, meta = geo_labeled
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[
            "data=geo", f"data.subsets.geo.root={out}", f"paths.data_dir={tmp_path}", "data.num_workers=0",
            "data.val_num_workers=0", "data.pin_memory=false", "data.batch_size=3", "data.bands=[3,2,1,4]",
            "data.train_transform.crop_size=64", "data.val_transform.crop_size=96", "data.layout.val_fraction=0.3"])
    module = instantiate(cfg.data)
    assert module.in_chans == 4 and module.class_names == {"geo": meta["classes"]}  # classes from meta.json
    module.prepare_data()
    module.setup("fit")
    batch = next(iter(module.train_dataloader()))["geo"]
    assert batch["image"].shape == (3, 4, 64, 64) and batch["mask"].shape == (3, 64, 64)
    assert ((batch["mask"] < len(meta["classes"])) | (batch["mask"] == 255)).all()
    val = next(iter(module.val_dataloader()[0]))
    assert val["image"].shape[1:] == (4, 96, 96)
    blocks = next((tmp_path / "cache").glob("geo-*/blocks/*.blk"))
    assert BlockFile(blocks).channels == 4 and BlockFile(blocks).dtype == np.uint16


def test_backbone_adapts_rgb_weights_to_more_bands(tmp_path):
    rgb = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(rgb.state_dict(), path)
    backbone = TimmBackbone("resnet18", checkpoint=str(path), in_chans=4)
    assert backbone.in_chans == 4
    weight = backbone.model.conv1.weight
    assert weight.shape == (64, 4, 7, 7)
    torch.testing.assert_close(weight, adapt_input_conv(4, rgb.conv1.weight.detach()))
    assert backbone(torch.zeros(1, 4, 64, 64))[0].shape[1] == backbone.channels[0]


def test_in_chans_follows_the_data():
    net = OmegaConf.create({"backbone": {"name": "resnet18"}})
    fill_in_chans(net, 4)
    assert net.backbone.in_chans == 4
    fill_in_chans(net, 4)
    with pytest.raises(ValueError, match="in_chans=4 but the data's images have 3 bands"):
        fill_in_chans(net, 3)
    rgb = OmegaConf.create({"backbone": {"name": "resnet18"}})
    fill_in_chans(rgb, 3)
    assert "in_chans" not in rgb.backbone
