"""Masked autoencoder (He et al., CVPR 2022) for SAMRS-MAE pre-training (paper A.4).

A ViT encoder that sees only the visible patches (75 % are masked at random per image), and a
light transformer decoder (8 blocks, 512 wide for ViT-B) that predicts the pixels of every patch
from the encoded ones and a shared mask token; the loss is the mean squared error on the masked
patches, against pixels normalised per patch (`norm_pix_loss`). Blocks and patch embedding are
timm's; the parameter names are MAE's own (`patch_embed.proj`, `cls_token`, `pos_embed`,
`blocks.N.*`, `norm`, `decoder_embed`, `mask_token`, `decoder_pos_embed`, `decoder_blocks.N.*`,
`decoder_norm`, `decoder_pred`), so `state_dict()` is the layout of MAE's released checkpoints
(`{"model": ...}`), which timm's ViT, samrs' `vit_b` and `vit_b_rvsa` and the official SAMRS
init_weights read. Both position embeddings are fixed 2-D sine-cosine tables (not trained), with a
zero entry for the class token, as MAE's.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block
from torch import nn

from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.models.weights import unwrap_checkpoint
from samrs.utils.io import atomic_path
from samrs.utils.logging import get_logger
from samrs.utils.torchfiles import read_torch_file

log = get_logger(__name__)

# Fixed tables: recomputed for the model's grid rather than read from a file of another size.
FIXED_KEYS = ("pos_embed", "decoder_pos_embed")


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(len(positions), dim): sin(p * w_k) for the first half, cos(p * w_k) for the second, with
    w_k = 10000^(-k / (dim / 2)) (MAE's 1-D table)."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2))
    angles = positions.double()[:, None] * omega[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def sincos_pos_embed(dim: int, grid: tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """(1, [1 +] h * w, dim) for a grid of h rows and w columns, tokens in row-major order: the first
    half of the channels encodes the column, the second the row (MAE's `get_2d_sincos_pos_embed`);
    a leading zero row for the class token."""
    if dim % 4:
        raise ConfigError(f"a 2-D sine-cosine position embedding needs a width divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid[0]), torch.arange(grid[1]), indexing="ij")
    table = torch.cat([sincos_1d(dim // 2, cols.flatten()), sincos_1d(dim // 2, rows.flatten())], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, dim, dtype=table.dtype), table])
    return table.float().unsqueeze(0)


class MAEOutput(NamedTuple):
    """loss: scalar; pred: (N, L, patch * patch * channels) for every patch; mask: (N, L), 1 = masked."""

    loss: torch.Tensor
    pred: torch.Tensor
    mask: torch.Tensor


class MaskedAutoencoder(nn.Module):
    """MAE with a ViT encoder (`embed_dim`, `depth`, `num_heads`) and decoder (`decoder_dim`,
    `decoder_depth`, `decoder_heads`); defaults are MAE's ViT-B/16 (`mae_vit_base_patch16`).

    `img_size`: the training input side (the position tables' grid; other sizes that are multiples
    of the patch get tables computed for them). `mask_ratio`: share of the patches hidden from the
    encoder. `norm_pix_loss`: targets are each patch's pixels minus their mean, over their standard
    deviation. `checkpoint`: start from an MAE file (`{"model": ...}` in MAE's layout, e.g. the
    export of an earlier run or a released MAE model of the same size).
    """

    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        decoder_dim: int = 512,
        decoder_depth: int = 8,
        decoder_heads: int = 16,
        mlp_ratio: float = 4.0,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = True,
        checkpoint: str | None = None,
    ) -> None:
        super().__init__()
        if img_size % patch_size:
            raise ConfigError(f"model.net.img_size={img_size} must be a multiple of the patch size {patch_size}")
        if not 0.0 <= mask_ratio < 1.0:
            raise ConfigError(f"model.net.mask_ratio={mask_ratio} must be in [0, 1)")
        self.patch_size, self.in_chans = patch_size, in_chans
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        self.grid = (img_size // patch_size, img_size // patch_size)
        norm = partial(nn.LayerNorm, eps=1e-6)
        # the input size is checked in forward (multiples of the patch), not by timm
        self.patch_embed = PatchEmbed(img_size, patch_size, in_chans, embed_dim, strict_img_size=False)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(sincos_pos_embed(embed_dim, self.grid), requires_grad=False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias=True, norm_layer=norm)
                                    for _ in range(depth))
        self.norm = norm(embed_dim)
        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(decoder_dim, self.grid), requires_grad=False)
        self.decoder_blocks = nn.ModuleList(Block(decoder_dim, decoder_heads, mlp_ratio, qkv_bias=True,
                                                  norm_layer=norm) for _ in range(decoder_depth))
        self.decoder_norm = norm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_size * patch_size * in_chans)
        self._init_weights()
        if checkpoint:
            self.load_mae(checkpoint)

    def _init_weights(self) -> None:
        """MAE's initialisation: Xavier-uniform linear layers (the patch projection too, as a linear map
        of the flattened patch), zero biases, unit LayerNorms, tokens N(0, 0.02)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    # ---- patches --------------------------------------------------------------------------------

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, L, p * p * C), patches row by row, each flattened as (row, column,
        channel) like MAE's, so that `decoder_pred` keeps MAE's output layout."""
        n, c, h, w = images.shape
        p = self.patch_size
        x = images.reshape(n, c, h // p, p, w // p, p)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)

    def unpatchify(self, patches: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """The inverse of `patchify` for a grid of (rows, columns) patches."""
        n, p, c = patches.shape[0], self.patch_size, self.in_chans
        x = patches.reshape(n, grid[0], grid[1], p, p, c)
        return x.permute(0, 5, 1, 3, 2, 4).reshape(n, c, grid[0] * p, grid[1] * p)

    def _pos_embeds(self, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if grid == self.grid:
            return self.pos_embed, self.decoder_pos_embed
        device = self.pos_embed.device
        return (sincos_pos_embed(self.pos_embed.shape[-1], grid).to(device),
                sincos_pos_embed(self.decoder_pos_embed.shape[-1], grid).to(device))

    @staticmethod
    def random_masking(length: int, keep: int, batch: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per image, a random permutation of the patches (argsort of uniform noise): the first `keep`
        are visible. Returns (the visible patches' indices (N, keep), the permutation's inverse (N, L))."""
        shuffle = torch.rand(batch, length, device=device).argsort(dim=1)
        return shuffle[:, :keep], shuffle.argsort(dim=1)

    # ---- forward --------------------------------------------------------------------------------

    def forward_encoder(self, images: torch.Tensor, mask_ratio: float | None = None):
        """Encode the visible patches: (latent (N, 1 + keep, D) with the class token first, mask (N, L)
        with 1 for masked patches, restore (N, L), the grid)."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        h, w = images.shape[2:]
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f"MAE input {h}x{w} is not a multiple of the patch size {self.patch_size}")
        grid = (h // self.patch_size, w // self.patch_size)
        pos, _ = self._pos_embeds(grid)
        x = self.patch_embed(images) + pos[:, 1:]
        n, length, dim = x.shape
        keep = int(length * (1 - ratio))
        visible, restore = self.random_masking(length, keep, n, x.device)
        x = x.gather(1, visible.unsqueeze(-1).expand(-1, -1, dim))
        cls = (self.cls_token + pos[:, :1]).expand(n, -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        mask = torch.ones(n, length, device=x.device)
        mask[:, :keep] = 0
        return self.norm(x), mask.gather(1, restore), restore, grid

    def forward_decoder(self, latent: torch.Tensor, restore: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """Pixels of every patch (N, L, p * p * C) from the encoded visible patches and mask tokens."""
        _, pos = self._pos_embeds(grid)
        x = self.decoder_embed(latent)
        n, dim = x.shape[0], x.shape[2]
        masked = self.mask_token.expand(n, restore.shape[1] + 1 - x.shape[1], -1)
        patches = torch.cat([x[:, 1:], masked], dim=1).gather(1, restore.unsqueeze(-1).expand(-1, -1, dim))
        x = torch.cat([x[:, :1], patches], dim=1) + pos
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def targets(self, images: torch.Tensor) -> torch.Tensor:
        """What the decoder predicts per patch: the pixels, normalised per patch with `norm_pix_loss`
        (unbiased variance and eps 1e-6 under the root, as MAE)."""
        target = self.patchify(images.float())
        if self.norm_pix_loss:
            target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        return target

    def loss(self, images: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error per patch, averaged over the masked patches (in float32 under autocast)."""
        per_patch = (pred.float() - self.targets(images)).pow(2).mean(-1)
        return (per_patch * mask).sum() / mask.sum().clamp(min=1)

    def forward(self, images: torch.Tensor, mask_ratio: float | None = None) -> MAEOutput:
        latent, mask, restore, grid = self.forward_encoder(images, mask_ratio)
        pred = self.forward_decoder(latent, restore, grid)
        return MAEOutput(self.loss(images, pred, mask), pred, mask)

    # ---- weights --------------------------------------------------------------------------------

    def no_weight_decay(self) -> set[str]:
        """MAE decays every weight of two or more dimensions, tokens included (timm's add_weight_decay)."""
        return set()

    def load_mae(self, path: str | Path) -> None:
        """Load an MAE-layout file strictly (its fixed position tables only when they fit this grid)."""
        path = Path(path)
        if not path.is_file():
            raise MissingPathError(f"model.net.checkpoint={path}: no such MAE weight file")
        state = unwrap_checkpoint(read_torch_file(path, "MAE weight file", weights_only=False, mmap=True),
                                  prefixes=("encoder.", "backbone."))
        own = self.state_dict()
        for key in FIXED_KEYS:
            if key in state and state[key].shape != own[key].shape:
                state[key] = own[key]  # a table for another input size: this grid's is the same function
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        shapes = [k for k in own if k in state and state[k].shape != own[k].shape]
        if missing or unexpected or shapes:
            raise BadFileError(f"{path} does not fit this MAE model (missing {missing[:3]}, unexpected {unexpected[:3]}, "
                               f"other shapes {shapes[:3]}): give the weights of the same encoder and decoder sizes")
        self.load_state_dict(state)
        log.info("MAE weights loaded from %s", path)


def export_mae(net: MaskedAutoencoder, path: str | Path, epoch: int, meta: Mapping[str, Any]) -> Path:
    """Write `net` as MAE's checkpoints hold it, {"model": state_dict, "epoch": ...} (plus samrs' `meta`
    under "samrs"), atomically: the file `start=samrs_mae` and the official loaders read."""
    path = Path(path)
    payload = {"model": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}, "epoch": int(epoch),
               "samrs": dict(meta)}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path
