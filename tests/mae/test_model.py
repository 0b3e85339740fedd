"""The masked autoencoder: MAE's layout and arithmetic, training on a fixed batch, its export."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch

from samrs.errors import BadFileError
from samrs.models.mae import MaskedAutoencoder, export_mae, sincos_pos_embed

TINY = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_dim=32, decoder_depth=1,
            decoder_heads=2)
BLOCK_KEYS = [f"{part}.{p}" for part in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
              for p in ("weight", "bias")]


def mae_vit_b_keys() -> dict[str, tuple[int, ...]]:
    """Names and shapes of MAE's released ViT-B/16 model (`mae_vit_base_patch16`, 224 input)."""
    def block(prefix: str, d: int) -> dict[str, tuple[int, ...]]:
        shapes = [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
        return {f"{prefix}.{k}": s for k, s in zip(BLOCK_KEYS, shapes)}

    keys = {"cls_token": (1, 1, 768), "pos_embed": (1, 197, 768), "patch_embed.proj.weight": (768, 3, 16, 16),
            "patch_embed.proj.bias": (768,)}
    for i in range(12):
        keys |= block(f"blocks.{i}", 768)
    keys |= {"norm.weight": (768,), "norm.bias": (768,), "decoder_embed.weight": (512, 768),
             "decoder_embed.bias": (512,), "mask_token": (1, 1, 512), "decoder_pos_embed": (1, 197, 512)}
    for i in range(8):
        keys |= block(f"decoder_blocks.{i}", 512)
    return keys | {"decoder_norm.weight": (512,), "decoder_norm.bias": (512,), "decoder_pred.weight": (768, 512),
                   "decoder_pred.bias": (768,)}


def test_vit_b_state_dict_is_maes_released_layout():
    with torch.device("meta"):
        net = MaskedAutoencoder()
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == mae_vit_b_keys()
    # the position tables are fixed, everything else trains
    assert {n for n, p in net.named_parameters() if not p.requires_grad} == {"pos_embed", "decoder_pos_embed"}


def test_position_table_is_maes_sine_cosine():
    dim, rows, cols = 16, 2, 3
    table = sincos_pos_embed(dim, (rows, cols))[0].numpy()
    omega = 1.0 / 10000 ** (np.arange(dim // 4) / (dim / 4))
    assert np.all(table[0] == 0)  # the class token's entry
    for i in range(rows):
        for j in range(cols):  # columns in the first half of the channels, rows in the second
            expected = np.concatenate([np.sin(j * omega), np.cos(j * omega), np.sin(i * omega), np.cos(i * omega)])
            np.testing.assert_allclose(table[1 + i * cols + j], expected, atol=1e-6)


def test_patches_are_flattened_row_column_channel_and_unpatchify_inverts():
    net = MaskedAutoencoder(**TINY)
    images = torch.randn(2, 3, 16, 24)
    patches = net.patchify(images)
    assert patches.shape == (2, 6, 8 * 8 * 3)
    # patch 4 is row 1, column 1 (3 patches per row); its element (r, c, ch) is pixel (8 + r, 8 + c) of channel ch
    r, c, ch = 5, 2, 1
    assert patches[1, 4, (r * 8 + c) * 3 + ch] == images[1, ch, 8 + r, 8 + c]
    assert torch.equal(net.unpatchify(patches, (2, 3)), images)


def test_masking_hides_the_ratio_and_the_decoder_puts_patches_back_in_place():
    net = MaskedAutoencoder(**TINY).eval()
    images = torch.randn(3, 3, 32, 32)
    latent, mask, restore, grid = net.forward_encoder(images)
    assert latent.shape == (3, 1 + 4, 32) and grid == (4, 4)
    assert mask.sum(1).tolist() == [12, 12, 12] and set(mask.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(restore.sort(1).values, torch.arange(16).expand(3, -1))
    # without masking the permutation must not matter: encoder and decoder see every patch at its place
    with torch.no_grad():
        torch.manual_seed(1)
        first = net(images, mask_ratio=0.0).pred
        torch.manual_seed(2)
        second = net(images, mask_ratio=0.0).pred
    torch.testing.assert_close(first, second, atol=1e-5, rtol=1e-5)


def test_loss_counts_masked_patches_against_per_patch_normalised_pixels():
    net = MaskedAutoencoder(**TINY)
    images = torch.rand(2, 3, 32, 32)
    target = net.targets(images)
    assert torch.allclose(target.mean(-1), torch.zeros(2, 16), atol=1e-5)
    assert torch.allclose(target.std(-1), torch.ones(2, 16), atol=1e-3)
    mask = torch.zeros(2, 16)
    mask[:, :5] = 1
    wrong_where_visible = target.clone()
    wrong_where_visible[:, 5:] += 3.0
    assert net.loss(images, wrong_where_visible, mask).item() == pytest.approx(0.0, abs=1e-6)
    wrong_where_masked = target.clone()
    wrong_where_masked[:, :5] += 2.0
    assert net.loss(images, wrong_where_masked, mask).item() == pytest.approx(4.0, rel=1e-5)
    raw = MaskedAutoencoder(**TINY, norm_pix_loss=False)
    assert torch.equal(raw.targets(images), raw.patchify(images))


def smooth_images(n: int, side: int, seed: int) -> torch.Tensor:
    """Images of a few low-frequency waves: structure a decoder can learn to fill in."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(0, 1, side), torch.linspace(0, 1, side), indexing="ij")
    freq = torch.rand(n, 3, 2, generator=g) * 4 + 1
    phase = torch.rand(n, 3, 1, 1, generator=g) * 2 * math.pi
    return torch.sin(2 * math.pi * (freq[..., :1, None] * x + freq[..., 1:, None] * y) + phase)


def test_reconstruction_loss_falls_on_a_fixed_batch():
    torch.manual_seed(0)
    net = MaskedAutoencoder(**TINY)
    images = smooth_images(8, 32, seed=0)

    def held_out_loss() -> float:
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(123)  # the same masks before and after
            return net(images).loss.item()

    before = held_out_loss()
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.05)
    for _ in range(80):
        optimizer.zero_grad()
        net(images).loss.backward()
        optimizer.step()
    after = held_out_loss()
    assert after < 0.8 * before, (before, after)  # about 0.7 after 80 steps


def test_export_round_trip_and_released_checkpoints_load(tmp_path):
    net = MaskedAutoencoder(**TINY)
    path = export_mae(net, tmp_path / "mae.pth", epoch=7, meta={"global_step": 70})
    saved = torch.load(path, weights_only=True)
    assert saved["epoch"] == 7 and saved["samrs"]["global_step"] == 70
    assert list(saved["model"]) == list(net.state_dict())
    again = MaskedAutoencoder(**TINY, checkpoint=str(path))
    for key, value in net.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key
    # a released MAE file: optimiser, scaler and argparse arguments beside the model, another input size
    bigger = MaskedAutoencoder(**{**TINY, "img_size": 64})
    torch.save({"model": bigger.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "epoch": 1599,
                "scaler": {"scale": 65536.0}, "args": argparse.Namespace(input_size=64, norm_pix_loss=True)},
               tmp_path / "released.pth")
    loaded = MaskedAutoencoder(**TINY, checkpoint=str(tmp_path / "released.pth"))
    assert torch.equal(loaded.blocks[1].mlp.fc2.weight, bigger.blocks[1].mlp.fc2.weight)
    assert loaded.pos_embed.shape == (1, 17, 32)  # this model's own table (the table is a fixed function)
    with pytest.raises(BadFileError, match="does not fit"):
        MaskedAutoencoder(**{**TINY, "embed_dim": 64}, checkpoint=str(path))
