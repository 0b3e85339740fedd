"""Build SAM 1 and SAM-HQ through their official packages' builders, from a checkpoint file the user gives.

`load_sam` is what the `sam=vit_h|vit_l|vit_b` configs call (segment-anything), `load_sam_hq` the
`sam=hq_vit_h|hq_vit_l|hq_vit_b` ones (segment-anything-hq): the checkpoint is required and is
checked against the chosen architecture before loading. `build_tiny_sam` / `build_tiny_sam_hq`
(tests, CPU smoke runs) and `build_random_sam` (speed benchmarks) are randomly initialised and never
a default. The transformers families (SAM 2.1, EdgeTAM, SAM 3) are built in build_hf.py.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import torch
from segment_anything import sam_model_registry
from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.utils.torchfiles import UnreadableTorchFile, read_torch_file

MODEL_TYPES = ("vit_h", "vit_l", "vit_b")
HQ_PREFIX = "hq_"
_HASH_BLOCK = 1 << 20


@dataclass
class LoadedSam:
    """A SAM model (segment-anything's Sam, or a family wrapper) and where its weights came from (for meta.json)."""

    model: torch.nn.Module
    model_type: str  # the `sam=` option: vit_h, hq_vit_b, sam2.1_hiera_l, sam3, tiny, ... or <type>-random
    checkpoint: str | None = None  # the weights file or folder
    sha256: str | None = None  # of the file; of a folder, over its files

    @property
    def family(self) -> str:
        """sam, sam_hq, sam2, edgetam or sam3."""
        return getattr(self.model, "family", "sam")

    def meta(self) -> dict[str, str | None]:
        return {"family": self.family, "model_type": self.model_type, "checkpoint": self.checkpoint,
                "sha256": self.sha256}


def _registry(hq: bool) -> dict[str, Any]:
    if hq:
        from segment_anything_hq import sam_model_registry as hq_registry

        return hq_registry
    return sam_model_registry


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(partial(f.read, _HASH_BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def _signature(state_dict: dict[str, torch.Tensor]) -> tuple[int | None, int]:
    """Image encoder width and depth of a SAM state_dict: what tells vit_h, vit_l and vit_b apart."""
    pos = state_dict.get("image_encoder.pos_embed")
    blocks = {int(m.group(1)) for k in state_dict if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    return (None if pos is None else int(pos.shape[-1])), len(blocks)


@lru_cache(maxsize=None)
def _registry_signature(model_type: str) -> tuple[int | None, int]:
    """_signature of a registry architecture (hq_vit_b: SAM-HQ's), built on the meta device (instant)."""
    hq = model_type.startswith(HQ_PREFIX)
    with torch.device("meta"):
        return _signature(_registry(hq)[model_type.removeprefix(HQ_PREFIX)]().state_dict())


def _describe(signature: tuple[int | None, int]) -> str:
    return f"image encoder width {signature[0]}, {signature[1]} blocks"


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = read_torch_file(path, "SAM checkpoint", weights_only=True)
    except UnreadableTorchFile as err:
        if err.truncated:
            raise BadFileError(f"{path}: truncated SAM checkpoint: the file ends early (an interrupted download "
                               "or copy); download it again") from None
        # Not torch's text: it advises loading with weights_only=False, i.e. running the file's pickled code.
        raise BadFileError(f"{path}: not a SAM checkpoint: PyTorch reads no plain file of tensors there "
                           f"({type(err.__cause__).__name__}). SAM checkpoints are segment-anything's "
                           "sam_vit_h_4b8939.pth, sam_vit_l_0b3195.pth or sam_vit_b_01ec64.pth") from None
    for wrapper in ("model", "state_dict"):  # training frameworks often nest the weights
        if isinstance(obj, dict) and set(obj) == {wrapper} and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not any(k.startswith("image_encoder.") for k in obj):
        raise BadFileError(f"{path}: not a SAM checkpoint (no image_encoder.* weights in its state_dict)")
    return obj


def check_architecture(state_dict: dict[str, torch.Tensor], model_type: str, path: Path) -> None:
    """Raise naming both when the checkpoint's image encoder is not `model_type`'s."""
    found = _signature(state_dict)
    if found == _registry_signature(model_type):
        return
    prefix = HQ_PREFIX if model_type.startswith(HQ_PREFIX) else ""
    looks_like = next((prefix + t for t in MODEL_TYPES if found == _registry_signature(prefix + t)), None)
    if looks_like:
        raise ConfigError(f"{path}: this looks like a {looks_like} checkpoint, you chose {model_type}; "
                          f"use sam={looks_like}")
    raise BadFileError(
        f"{path}: this looks like no SAM I know ({_describe(found)}), you chose {model_type} "
        f"({_describe(_registry_signature(model_type))})"
    )


def _load_weights(model: Sam, state_dict: dict[str, torch.Tensor], path: Path, model_type: str) -> None:
    try:
        model.load_state_dict(state_dict)
    except RuntimeError as err:  # same encoder signature, other shapes or keys
        raise BadFileError(f"{path}: its weights do not fit {model_type}: {err}") from err


def _check_model_type(model_type: str, prefix: str = "") -> None:
    if model_type.removeprefix(prefix) not in MODEL_TYPES or not model_type.startswith(prefix):
        raise ConfigError(f"SAM model type {model_type!r}: choose one of {[prefix + t for t in MODEL_TYPES]}")


def _existing(checkpoint: str | os.PathLike, model_type: str) -> Path:
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise MissingPathError(f"SAM checkpoint {path} ({model_type}) does not exist")
    return path


def load_sam(model_type: str, checkpoint: str | os.PathLike | None) -> LoadedSam:
    """SAM `model_type` (vit_h, vit_l, vit_b) with the weights of `checkpoint`, in eval mode."""
    _check_model_type(model_type)
    if checkpoint is None:
        raise ConfigError(
            f"no SAM checkpoint given for sam={model_type}: pass sam.checkpoint=FILE "
            "(e.g. sam_vit_h_4b8939.pth from the segment-anything release)"
        )
    path = _existing(checkpoint, model_type)
    state_dict = _read_state_dict(path)
    check_architecture(state_dict, model_type, path)
    model = sam_model_registry[model_type]()
    _load_weights(model, state_dict, path, model_type)
    return LoadedSam(model.eval(), model_type, str(path.resolve()), sha256_file(path))


def load_sam_hq(model_type: str, checkpoint: str | os.PathLike | None, hq_token_only: bool = False) -> LoadedSam:
    """SAM-HQ `model_type` (hq_vit_h, hq_vit_l, hq_vit_b) with the official weights file `checkpoint`
    (sam_hq_vit_h.pth, ...), as the family of the engine (hq.py)."""
    from samrs.labeling.sam.hq import HqFamily

    _check_model_type(model_type, HQ_PREFIX)
    if checkpoint is None:
        raise ConfigError(f"no SAM-HQ checkpoint given for sam={model_type}: pass sam.checkpoint=FILE "
                          f"(e.g. sam_{model_type}.pth from the SAM-HQ release)")
    path = _existing(checkpoint, model_type)
    state_dict = _read_state_dict(path)
    check_architecture(state_dict, model_type, path)
    model = _registry(True)[model_type.removeprefix(HQ_PREFIX)]()
    _load_weights(model, state_dict, path, model_type)
    return LoadedSam(HqFamily(model.eval(), hq_token_only), model_type, str(path.resolve()), sha256_file(path))


def build_random_sam(model_type: str = "vit_b", seed: int = 0) -> LoadedSam:
    """A registry architecture (hq_vit_b: SAM-HQ's) with random weights: for speed benchmarks only."""
    hq = model_type.startswith(HQ_PREFIX)
    _check_model_type(model_type, HQ_PREFIX if hq else "")
    torch.manual_seed(seed)
    model = _registry(hq)[model_type.removeprefix(HQ_PREFIX)]().eval()
    if hq:
        from samrs.labeling.sam.hq import HqFamily

        model = HqFamily(model)
    return LoadedSam(model, f"{model_type}-random")


def build_tiny_sam(
    seed: int = 0,
    checkpoint: str | os.PathLike | None = None,
    img_size: int = 1024,
    patch_size: int = 16,
    encoder_dim: int = 32,
    encoder_depth: int = 2,
    encoder_heads: int = 2,
    window_size: int = 14,
    global_attn_indexes: tuple[int, ...] = (),  # none by default: global attention over 4096 tokens is slow
    prompt_dim: int = 32,
    decoder_heads: int = 2,
    decoder_mlp_dim: int = 64,
    mask_in_chans: int = 16,
) -> LoadedSam:
    """A small SAM from segment-anything's own classes, randomly initialised (or from `checkpoint`).

    Same frames as the real models (1024 input, 64x64 embedding, 256x256 low-res masks) so the
    geometry is tested as it runs; only widths and depths are small. For tests and CPU smoke runs.
    """
    torch.manual_seed(seed)
    side = img_size // patch_size
    model = Sam(
        image_encoder=ImageEncoderViT(
            img_size=img_size,
            patch_size=patch_size,
            embed_dim=encoder_dim,
            depth=encoder_depth,
            num_heads=encoder_heads,
            mlp_ratio=4,
            out_chans=prompt_dim,
            qkv_bias=True,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            use_rel_pos=True,
            window_size=window_size,
            global_attn_indexes=tuple(global_attn_indexes),
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_dim,
            image_embedding_size=(side, side),
            input_image_size=(img_size, img_size),
            mask_in_chans=mask_in_chans,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_dim, mlp_dim=decoder_mlp_dim, num_heads=decoder_heads
            ),
            transformer_dim=prompt_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=prompt_dim,
        ),
    )
    if checkpoint is None:
        return LoadedSam(model.eval(), "tiny")
    path = _existing(checkpoint, "tiny")
    _load_weights(model, _read_state_dict(path), path, "the tiny SAM configured")
    return LoadedSam(model.eval(), "tiny", str(path.resolve()), sha256_file(path))


def build_tiny_sam_hq(seed: int = 0, hq_token_only: bool = False) -> LoadedSam:
    """A small SAM-HQ from segment-anything-hq's own classes, randomly initialised: SAM 1's tiny
    shapes plus one global-attention block (the HQ features read its output). Tests and CPU smoke runs."""
    from segment_anything_hq.modeling import ImageEncoderViT as HqEncoder
    from segment_anything_hq.modeling import MaskDecoderHQ
    from segment_anything_hq.modeling import PromptEncoder as HqPromptEncoder
    from segment_anything_hq.modeling import Sam as HqSam
    from segment_anything_hq.modeling import TwoWayTransformer as HqTransformer

    from samrs.labeling.sam.hq import HqFamily

    torch.manual_seed(seed)
    width = 32
    model = HqSam(
        image_encoder=HqEncoder(img_size=1024, patch_size=16, embed_dim=width, depth=2, num_heads=2, mlp_ratio=4,
                                out_chans=width, qkv_bias=True, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                                use_rel_pos=True, window_size=14, global_attn_indexes=(1,)),
        prompt_encoder=HqPromptEncoder(embed_dim=width, image_embedding_size=(64, 64), input_image_size=(1024, 1024),
                                       mask_in_chans=16),
        mask_decoder=MaskDecoderHQ(num_multimask_outputs=3, transformer=HqTransformer(
            depth=2, embedding_dim=width, mlp_dim=2 * width, num_heads=2), transformer_dim=width, iou_head_depth=3,
            iou_head_hidden_dim=width, vit_dim=width),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return LoadedSam(HqFamily(model.eval(), hq_token_only), "hq_tiny")
