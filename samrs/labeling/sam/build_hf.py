"""Build the transformers families (SAM 2.1, EdgeTAM, SAM 3) from a local folder, or tiny / random.

`load_family` is what `sam=sam2.1_hiera_t|s|b+|l`, `sam=edgetam` and `sam=sam3` call: the folder is a
transformers `from_pretrained` layout (config.json, model.safetensors, preprocessor / tokenizer
files) that the user downloaded; nothing is ever fetched (local_files_only). `build_tiny_family`
(`sam=<family>_tiny`, tests and CPU smoke runs) and `build_random_family` (benchmarks: the real
architecture, random weights) are never a default. transformers is imported here, inside the SAM
labeler path only.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from samrs.errors import BadFileError, ConfigError, MissingPathError
from samrs.labeling.sam.build import LoadedSam, sha256_file

# Hiera of each SAM 2.1 size (the official sam2.1_hiera_*.yaml): hidden size, heads, blocks per stage,
# global-attention blocks, window sizes, background size of the windowed position embedding.
HIERA = {
    "sam2.1_hiera_t": (96, 1, [1, 2, 7, 2], [5, 7, 9], [8, 4, 14, 7], [7, 7]),
    "sam2.1_hiera_s": (96, 1, [1, 2, 11, 2], [7, 10, 13], [8, 4, 14, 7], [7, 7]),
    "sam2.1_hiera_b+": (112, 2, [2, 3, 16, 3], [12, 16, 20], [8, 4, 14, 7], [14, 14]),
    "sam2.1_hiera_l": (144, 2, [2, 6, 36, 4], [23, 33, 43], [8, 4, 16, 8], [7, 7]),
}
FAMILIES = (*HIERA, "edgetam", "sam3")
MODEL_TYPES = {"edgetam": ("edgetam",), "sam3": ("sam3", "sam3_video", "sam3_tracker")}
TINY = ("sam2.1_tiny", "edgetam_tiny", "sam3_tiny")


def _check_name(name: str, names: tuple[str, ...]) -> None:
    if name not in names:
        raise ConfigError(f"SAM family {name!r}: choose one of {list(names)}")


def sha256_folder(path: Path) -> str:
    """sha256 over a folder's files (relative path and content digest of each, sorted)."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{file.relative_to(path).as_posix()}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def _folder(checkpoint: str | os.PathLike | None, name: str) -> Path:
    example = {"sam3": "facebook/sam3", "edgetam": "yonigozlan/EdgeTAM-hf"}.get(name, f"facebook/{name.replace('_', '-')}")
    if checkpoint is None:
        raise ConfigError(f"no weights given for sam={name}: pass sam.checkpoint=DIR, a folder in transformers' "
                          f"from_pretrained layout (e.g. a download of {example})")
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise MissingPathError(f"SAM weights {path} ({name}) do not exist")
    if path.is_file():
        raise ConfigError(f"{path}: sam={name} reads a folder in transformers' from_pretrained layout (config.json, "
                          f"model.safetensors, preprocessor files), not a single file; official .pt checkpoints "
                          f"convert with transformers' conversion scripts (docs/sam.md)")
    if not (path / "config.json").is_file():
        raise BadFileError(f"{path}: no config.json there: not a transformers model folder for sam={name}")
    return path


def _hiera_signature(config: Any) -> tuple[int, list[int]]:
    backbone = config.vision_config.backbone_config
    return backbone.hidden_size, list(backbone.blocks_per_stage)


def _check_config(config: Any, name: str, path: Path) -> None:
    """Raise naming both when the folder holds another model than `name`."""
    expected = ("sam2",) if name in HIERA else MODEL_TYPES[name]
    if config.model_type not in expected:
        raise BadFileError(f"{path}: this is a {config.model_type} model, you chose sam={name}")
    if name in HIERA:
        found = _hiera_signature(config)
        if found != (HIERA[name][0], HIERA[name][2]):
            looks = next((n for n, h in HIERA.items() if (h[0], h[2]) == found), None)
            hint = f"; use sam={looks}" if looks else ""
            raise BadFileError(f"{path}: this looks like {looks or 'no SAM 2.1 size I know'} (Hiera width {found[0]}, "
                               f"blocks {found[1]}), you chose sam={name}{hint}")


def _processor(path: Path, default: Any) -> Any:
    from transformers import AutoProcessor

    has_processor = any((path / f).is_file() for f in ("processor_config.json", "preprocessor_config.json"))
    return AutoProcessor.from_pretrained(path, local_files_only=True) if has_processor else default


def load_family(family: str, checkpoint: str | os.PathLike | None, **options: Any) -> LoadedSam:
    """`family` (sam2.1_hiera_t|s|b+|l, edgetam, sam3) with the weights of the folder `checkpoint`, in eval mode.

    options: dynamic_multimask (all), concept_iou and concept_names (sam3).
    """
    from transformers import AutoConfig

    _check_name(family, FAMILIES)
    path = _folder(checkpoint, family)
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    _check_config(config, family, path)
    wrapped = _from_folder(family, path, options)
    return LoadedSam(wrapped, family, str(path.resolve()), sha256_folder(path))


def _from_folder(family: str, path: Path, options: dict[str, Any]) -> torch.nn.Module:
    from transformers import EdgeTamModel, Sam2ImageProcessor, Sam2Model, Sam2Processor, Sam3Model, Sam3TrackerModel

    from samrs.labeling.sam.sam2 import Sam2Family
    from samrs.labeling.sam.sam3 import Sam3Family

    if family == "sam3":
        tracker = Sam3TrackerModel.from_pretrained(path, local_files_only=True)
        detector = Sam3Model.from_pretrained(path, local_files_only=True)
        share_backbone(tracker, detector)
        return Sam3Family(tracker, detector, _processor(path, None), **options)
    model_class = EdgeTamModel if family == "edgetam" else Sam2Model
    model = model_class.from_pretrained(path, local_files_only=True)
    processor = _processor(path, Sam2Processor(Sam2ImageProcessor()))
    return Sam2Family(model, processor.image_processor, "edgetam" if family == "edgetam" else "sam2", **options)


def share_backbone(tracker: torch.nn.Module, detector: torch.nn.Module) -> None:
    """Make SAM 3's tracker use the detector's ViT (the checkpoint's one backbone: transformers loads
    it into both); refuse two different backbones."""
    mine, theirs = tracker.vision_encoder.backbone.state_dict(), detector.vision_encoder.backbone.state_dict()
    if mine.keys() != theirs.keys() or not all(torch.equal(mine[k], theirs[k]) for k in mine):
        raise BadFileError("SAM 3: the tracker's and the detector's ViT backbones differ; a SAM 3 checkpoint holds one")
    tracker.vision_encoder.backbone = detector.vision_encoder.backbone


# --- random builds: tiny (tests) and real-size (benchmarks) ----------------------------------------


def randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Re-initialise with torch's default initialisations: transformers' own give near-zero mask logits,
    useless for comparing masks."""
    torch.manual_seed(seed)
    for module in model.modules():
        if module is not model and hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model.eval()


def _decoder_config(width: int, tiny: bool) -> dict[str, Any]:
    if not tiny:
        return {}
    return {"hidden_size": width, "mlp_dim": 2 * width, "num_attention_heads": 2, "iou_head_hidden_dim": width}


def _sam2_config(name: str, tiny: bool) -> Any:
    from transformers import Sam2Config

    if tiny:
        backbone = dict(hidden_size=8, embed_dim_per_stage=[8, 16, 32, 64], blocks_per_stage=[1, 1, 2, 1],
                        num_attention_heads_per_stage=[1, 1, 1, 1], global_attention_blocks=[3],
                        window_size_per_stage=[8, 4, 14, 7])
        channels, width = [64, 32, 16, 8], 32
    else:
        hidden, heads, blocks, global_blocks, windows, background = HIERA[name]
        dims = [hidden * 2**i for i in range(4)]
        backbone = dict(hidden_size=hidden, num_attention_heads=heads, blocks_per_stage=blocks,
                        embed_dim_per_stage=dims, num_attention_heads_per_stage=[heads * 2**i for i in range(4)],
                        global_attention_blocks=global_blocks, window_size_per_stage=windows,
                        window_positional_embedding_background_size=background)
        channels, width = dims[::-1], 256
    vision = dict(backbone_config=dict(model_type="sam2_hiera_det_model", **backbone), backbone_channel_list=channels,
                  fpn_hidden_size=width)
    return Sam2Config(vision_config=vision, prompt_encoder_config=dict(hidden_size=width),
                      mask_decoder_config=_decoder_config(width, tiny))


def _edgetam_config(tiny: bool) -> Any:
    from transformers import EdgeTamConfig, TimmWrapperConfig

    # EdgeTAM's RepViT-M1 (timm); the tiny one a timm test network with the same 4 strides.
    architecture, channels, width = ("test_convnext", [64, 48, 32, 24], 32) if tiny else ("repvit_m1", [384, 192, 96, 48], 256)
    backbone = TimmWrapperConfig(architecture=architecture, do_pooling=False,
                                 model_args={"in_chans": 3, "features_only": True, "out_indices": [0, 1, 2, 3]})
    vision = dict(backbone_config=backbone, backbone_channel_list=channels, fpn_hidden_size=width)
    return EdgeTamConfig(vision_config=vision, prompt_encoder_config=dict(hidden_size=width),
                         mask_decoder_config=_decoder_config(width, tiny))


def tiny_tokenizer() -> Any:
    """A CLIP tokenizer with a character vocabulary (lower-case letters and digits), built in memory."""
    from transformers import CLIPTokenizer

    chars = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"])}
    return CLIPTokenizer(vocab=vocab, merges=[])


def _sam3_models(tiny: bool, vocab_size: int, bos: int, eos: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    from transformers import Sam3Config, Sam3Model, Sam3TrackerConfig, Sam3TrackerModel

    if tiny:
        vit = dict(model_type="sam3_vit_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                   num_attention_heads=2, global_attn_indexes=[], window_size=24)
        width, small = 32, dict(num_layers=1, num_attention_heads=2, intermediate_size=64)
        text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                    num_attention_heads=2, max_position_embeddings=32, projection_dim=32,
                    bos_token_id=bos, eos_token_id=eos, pad_token_id=eos)
        detector_config = Sam3Config(
            vision_config=dict(backbone_config=vit, fpn_hidden_size=width), text_config=text,
            geometry_encoder_config=dict(hidden_size=width, **small), detr_encoder_config=dict(hidden_size=width, **small),
            detr_decoder_config=dict(hidden_size=width, num_queries=20, **small),
            mask_decoder_config=dict(hidden_size=width, num_attention_heads=2))
        tracker_vision = dict(model_type="sam3_vision_model", backbone_config=vit, fpn_hidden_size=width)
    else:
        detector_config, tracker_vision, width = Sam3Config(), None, 256
    tracker_config = Sam3TrackerConfig(vision_config=tracker_vision, prompt_encoder_config=dict(hidden_size=width),
                                       mask_decoder_config=_decoder_config(width, tiny))
    return Sam3TrackerModel(tracker_config), Sam3Model(detector_config)


def _random(name: str, tiny: bool, seed: int, options: dict[str, Any]) -> torch.nn.Module:
    from transformers import EdgeTamModel, Sam2ImageProcessor, Sam2Model, Sam3ImageProcessor, Sam3Processor

    from samrs.labeling.sam.sam2 import Sam2Family
    from samrs.labeling.sam.sam3 import Sam3Family

    torch.manual_seed(seed)  # buffers drawn at construction (positional encodings) too
    if name.startswith("sam3"):
        tokenizer = tiny_tokenizer() if tiny else None
        vocab = len(tokenizer) if tiny else 49408
        tracker, detector = _sam3_models(tiny, vocab, tokenizer.bos_token_id if tiny else 49406,
                                         tokenizer.eos_token_id if tiny else 49407)
        randomize(detector, seed)
        tracker.vision_encoder.backbone = detector.vision_encoder.backbone  # one ViT, as in SAM 3
        randomize(tracker, seed + 1)
        processor = Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=tokenizer or tiny_tokenizer())
        return Sam3Family(tracker, detector, processor, **options)
    if name.startswith("edgetam"):
        model = randomize(EdgeTamModel(_edgetam_config(tiny)), seed)
        return Sam2Family(model, Sam2ImageProcessor(), "edgetam", **options)
    model = randomize(Sam2Model(_sam2_config(name, tiny)), seed)
    return Sam2Family(model, Sam2ImageProcessor(), "sam2", **options)


def build_tiny_family(family: str, seed: int = 0, **options: Any) -> LoadedSam:
    """A tiny randomly initialised `family` (sam2.1_tiny, edgetam_tiny, sam3_tiny): real frames (1024 /
    1008 input, 64 / 72 embedding), small widths and depths. For tests and CPU smoke runs only."""
    _check_name(family, TINY)
    return LoadedSam(_random(family, True, seed, options), family)


def build_random_family(family: str, seed: int = 0, **options: Any) -> LoadedSam:
    """The real architecture of `family` with random weights: for speed benchmarks only."""
    _check_name(family, FAMILIES)
    return LoadedSam(_random(family, False, seed, options), f"{family}-random")
