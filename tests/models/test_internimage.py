"""internimage_t: InternImage-T with DCNv3 in pure PyTorch, checked against the official SAMRS module
through golden fixtures (official_fixtures/internimage_t.json, written from the official code outside
this repository), against naive loops for DCNv3's sampling, and for weight files in the published
layouts."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import timm
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from official_helpers import assert_matches, fill_like_official, key_shapes, official_input

from samrs.models import MultiHeadSegmentor, TimmBackbone, UperNetDecoder, read_state_dict
from samrs.models.backbones.internimage import DCNv3, checkpoint_filter_fn, dcnv3_sample
from samrs.tasks.optim import param_groups
from samrs.utils.hydra import config_dir

FIXTURE = json.loads((Path(__file__).parent / "official_fixtures" / "internimage_t.json").read_text())
SMALL = dict(channels=16, depths=(1, 1, 2, 1), groups=(1, 2, 4, 8))  # a fast stand-in for file tests


@pytest.fixture(scope="module")
def full_backbone() -> TimmBackbone:
    """internimage_t at full size as the configs build it (built once: about a second)."""
    return TimmBackbone("internimage_t", out_indices=(0, 1, 2, 3))


def reduced(name: str) -> torch.nn.Module:
    """The fixture's reduced official model, as samrs builds it, filled by the shared rule."""
    args = FIXTURE["reduced"][name]["args"]
    args = {**args, "layer_scale": False if args["layer_scale"] is None else args["layer_scale"]}  # timm drops None
    return fill_like_official(timm.create_model("internimage_t", **args).eval())


# ---- the official arithmetic ---------------------------------------------------------------------

def test_full_model_has_the_official_keys_and_shapes(full_backbone):
    model = full_backbone.model.model
    assert key_shapes(model) == FIXTURE["keys"]
    assert list(model.state_dict()) == list(FIXTURE["keys"])  # the official order too


@pytest.mark.parametrize("name", list(FIXTURE["reduced"]))
def test_reduced_model_gives_the_official_levels(name):
    with torch.no_grad():
        levels = reduced(name).forward_intermediates(official_input(64), intermediates_only=True)
    assert len(levels) == 4
    for i, (level, expected) in enumerate(zip(levels, FIXTURE["reduced"][name]["levels"])):
        assert_matches(level, expected, name=f"{name} level {i}")


def test_features_only_backbone_gives_the_same_levels():
    """TimmBackbone (timm's features_only getter wrapper) returns the levels of forward_intermediates."""
    backbone = TimmBackbone("internimage_t", out_indices=(0, 1, 2, 3), **FIXTURE["reduced"]["samrs"]["args"]).eval()
    fill_like_official(backbone.model.model)  # the fill rule goes by the official key names
    assert (backbone.channels, backbone.strides) == ([64, 128, 256, 512], [4, 8, 16, 32])
    with torch.no_grad():
        levels = backbone(official_input(64))
    for i, (level, expected) in enumerate(zip(levels, FIXTURE["reduced"]["samrs"]["levels"])):
        assert_matches(level, expected, name=f"level {i}")


def test_dcnv3_module_gives_the_official_output():
    spec = FIXTURE["dcnv3"]
    dcn = fill_like_official(DCNv3(**spec["args"]).eval())
    with torch.no_grad():
        dcn.offset.bias.mul_(spec["scale"])
        dcn.mask.weight.mul_(spec["scale"])
        x = torch.sin(0.37 * torch.arange(1 * 9 * 11 * 16, dtype=torch.float64)).float().view(1, 9, 11, 16)
        assert_matches(dcn(x), spec["output"], name="dcnv3")


def naive_dcnv3(value, offset, mask, k, stride, pad, dilation, group, offset_scale):
    """DCNv3 sampling by explicit loops: every output pixel, group and kernel point, bilinear from
    the four neighbouring pixels, zero outside the image (the official CUDA kernel's arithmetic)."""
    n, h, w, c = value.shape
    ho, wo = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1, (w + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    cg, half = c // group, dilation * (k - 1) // 2
    out = torch.zeros(n, ho, wo, c, dtype=torch.float64)

    def pixel(b, y, x, g):
        inside = 0 <= y < h and 0 <= x < w
        return value[b, y, x, g * cg:(g + 1) * cg].double() if inside else torch.zeros(cg, dtype=torch.float64)

    for b in range(n):
        for oy in range(ho):
            for ox in range(wo):
                for g in range(group):
                    for p in range(k * k):
                        i, j = divmod(p, k)  # i moves along x (the official point order is x-major)
                        base = (g * k * k + p)
                        dx, dy = offset[b, oy, ox, 2 * base].item(), offset[b, oy, ox, 2 * base + 1].item()
                        lx = ox * stride - pad + half + (i * dilation - half + dx) * offset_scale
                        ly = oy * stride - pad + half + (j * dilation - half + dy) * offset_scale
                        x0, y0 = math.floor(lx), math.floor(ly)
                        fx, fy = lx - x0, ly - y0
                        sample = ((1 - fy) * (1 - fx) * pixel(b, y0, x0, g) + (1 - fy) * fx * pixel(b, y0, x0 + 1, g)
                                  + fy * (1 - fx) * pixel(b, y0 + 1, x0, g) + fy * fx * pixel(b, y0 + 1, x0 + 1, g))
                        out[b, oy, ox, g * cg:(g + 1) * cg] += mask[b, oy, ox, base].item() * sample
    return out


@pytest.mark.parametrize(("k", "stride", "pad", "dilation", "group", "offset_scale"), [
    (3, 1, 1, 1, 2, 1.0),   # InternImage's setting
    (3, 2, 1, 1, 1, 2.0),
    (3, 1, 2, 2, 2, 0.5),
    (2, 1, 0, 1, 2, 1.0),   # even kernel
])
def test_dcnv3_sampling_matches_naive_loops(k, stride, pad, dilation, group, offset_scale):
    gen = torch.Generator().manual_seed(k * 100 + stride * 10 + dilation)
    h, w, c = 5, 6, 4
    value = torch.randn(2, h, w, c, generator=gen)
    ho, wo = (h + 2 * pad - dilation * (k - 1) - 1) // stride + 1, (w + 2 * pad - dilation * (k - 1) - 1) // stride + 1
    offset = 3.0 * torch.randn(2, ho, wo, group * k * k * 2, generator=gen)  # some points fall outside
    mask = torch.rand(2, ho, wo, group * k * k, generator=gen)
    got = dcnv3_sample(value, offset, mask, k, stride, pad, dilation, group, offset_scale)
    expected = naive_dcnv3(value, offset, mask, k, stride, pad, dilation, group, offset_scale)
    torch.testing.assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)


def test_dcnv3_sampling_keeps_fp32_locations_in_bf16():
    """Under bf16 the locations are computed in fp32 (bf16 would round pixel 100 to a multiple of 0.5)."""
    value = torch.randn(1, 4, 160, 4)
    offset = torch.full((1, 4, 160, 18), 0.3)
    mask = torch.full((1, 4, 160, 9), 1 / 9)
    exact = dcnv3_sample(value, offset, mask, group=1)
    half = dcnv3_sample(value.bfloat16(), offset.bfloat16(), mask.bfloat16(), group=1)
    assert half.dtype == torch.bfloat16
    assert (half.float() - exact).abs().max() < 0.05  # bf16 rounding of the result only


def test_offsets_and_masks_are_trained():
    """Gradients reach the offset and mask predictors through the sampling (they start at zero)."""
    model = timm.create_model("internimage_t", **SMALL)
    sum(level.square().mean() for level in model.forward_intermediates(torch.randn(2, 3, 32, 32),
                                                                        intermediates_only=True)).backward()
    dcn = model.levels[0].blocks[0].dcn
    assert dcn.offset.weight.grad.abs().sum() > 0 and dcn.mask.weight.grad.abs().sum() > 0


def test_gradient_checkpointing_gives_the_same_output_and_gradients():
    torch.manual_seed(0)
    plain = timm.create_model("internimage_t", drop_path_rate=0.0, **SMALL)
    ckpt = timm.create_model("internimage_t", drop_path_rate=0.0, with_cp=True, **SMALL)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 32, 32)
    outs = [m.forward_features(x) for m in (plain, ckpt)]
    for out in outs:
        out.sum().backward()
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(plain.patch_embed.conv1.weight.grad, ckpt.patch_embed.conv1.weight.grad)


def test_official_defaults(full_backbone):
    model = full_backbone.model.model
    blocks = [b for level in model.levels for b in level.blocks]
    assert len(blocks) == 30 and blocks[-1].drop_path.drop_prob == pytest.approx(0.2)  # linear to 0.2
    assert blocks[0].dcn.group == 4 and blocks[-1].dcn.group == 32 and blocks[-1].dcn.offset_scale == 1.0
    assert all(torch.all(b.gamma1 == 1.0) for b in blocks)  # layer scale 1.0
    norms = [m for m in model.modules() if isinstance(m, torch.nn.LayerNorm)]
    assert norms and all(m.eps == 1e-6 for m in norms)
    assert torch.count_nonzero(blocks[0].dcn.offset.weight) == 0  # the official zero-offset start


# ---- layer-wise lr decay ---------------------------------------------------------------------------

def test_layer_ids_follow_the_official_internimage_rule(full_backbone):
    """mmcv_custom/custom_layer_decay_optimizer_constructor.py with depths 4-4-18-4."""
    ids = full_backbone.layer_ids()
    expected = {
        "patch_embed.conv1.weight": 0,
        "levels.0.blocks.0.dcn.offset.weight": 1,
        "levels.0.blocks.3.mlp.fc2.bias": 4,
        "levels.0.norm.0.weight": 5,             # with the next stage's first layer
        "levels.0.downsample.conv.weight": 5,
        "levels.1.blocks.0.gamma1": 5,
        "levels.2.blocks.17.norm2.0.weight": 26,
        "levels.2.downsample.norm.1.bias": 27,
        "levels.3.blocks.0.gamma2": 27,
        "levels.3.norm.0.weight": 27,            # the official rule's last-stage case
        "levels.3.blocks.3.dcn.output_proj.weight": 30,
    }
    assert {k: ids[f"model.model.{k}"] for k in expected} == expected


def test_layer_decay_scales_as_the_official_constructor(full_backbone):
    """lr scale rate ** (num_layers + 2 - id - 1) with num_layers 30: the decoder 1, the last layer rate."""
    net = MultiHeadSegmentor(full_backbone, partial(UperNetDecoder, channels=16), {"sota": 3})
    scales = {n: g["lr_scale"] for g in param_groups(net, 1.0, 0.05, no_decay_bias=True, layer_decay=0.9)
              for n, p in net.named_parameters() for q in g["params"] if p is q}
    prefix = "backbone.model.model."
    assert scales[prefix + "patch_embed.conv1.weight"] == pytest.approx(0.9 ** 31)
    assert scales[prefix + "levels.3.blocks.3.mlp.fc1.weight"] == pytest.approx(0.9)
    assert scales[prefix + "levels.0.downsample.conv.weight"] == pytest.approx(0.9 ** 26)
    assert {v for k, v in scales.items() if not k.startswith("backbone.")} == {1.0}


# ---- weight files ----------------------------------------------------------------------------------

def classification_file(tmp_path: Path, **extra) -> tuple[Path, dict[str, torch.Tensor]]:
    """A file in the published ImageNet layout: {"model": ...} of the classification InternImage
    (layer_scale None: no gamma; conv_head + head), keys with DDP's `module.` prefix."""
    torch.manual_seed(1)
    source = timm.create_model("internimage_t", layer_scale=False, num_classes=1000, **SMALL)
    state = source.state_dict()
    assert "conv_head.1.0.running_var" in state and "head.weight" in state
    path = tmp_path / "internimage_t_1k_224.pth"
    torch.save({"model": {f"module.{k}": v for k, v in state.items()}, **extra}, path)
    return path, state


def test_published_classification_file_loads_strictly(tmp_path):
    path, state = classification_file(tmp_path)
    backbone = TimmBackbone("internimage_t", checkpoint=str(path), **SMALL)
    loaded = backbone.model.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if k in loaded)
    assert not any(k.startswith(("conv_head", "head")) for k in loaded)
    gammas = [v for k, v in loaded.items() if k.endswith(("gamma1", "gamma2"))]
    assert gammas and all(torch.all(g == 1.0) for g in gammas)  # the official strict=False leaves layer_scale


def test_classifier_loads_with_num_classes_and_the_official_state_dict_wins_over_ema(tmp_path):
    """internimage_t's own loader (timm's custom_load, used for the published URL; a local file asks for
    it with custom_load=True) takes "model" as the official init_weights does, where timm takes an EMA."""
    ema = {f"module.{k}": torch.zeros_like(v) for k, v in classification_file(tmp_path)[1].items()}
    path, state = classification_file(tmp_path, model_ema=ema)
    model = timm.create_model("internimage_t", pretrained=True,
                              pretrained_cfg_overlay={"file": str(path), "custom_load": True},
                              layer_scale=False, num_classes=1000, **SMALL).eval()
    assert torch.equal(model.head.weight, state["head.weight"])  # "model", as the official init_weights
    assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)


@pytest.mark.parametrize("layout", ["samrs_sep", "samrs_sep_dataparallel", "mmseg", "huggingface"])
def test_official_file_layouts_load(tmp_path, layout):
    torch.manual_seed(2)
    state = timm.create_model("internimage_t", **SMALL).state_dict()
    if layout == "samrs_sep":  # main_pretrain.py: model.module.state_dict() of SemsegPretrnFramework
        obj = {"state_dict": {**{f"encoder.{k}": v for k, v in state.items()}, "decoder.x.weight": torch.ones(1)}}
    elif layout == "samrs_sep_dataparallel":  # one machine: the encoder itself wrapped in DataParallel
        obj = {"state_dict": {f"encoder.module.{k}": v for k, v in state.items()}, "iteration": 80000}
    elif layout == "mmseg":
        obj = {"meta": {}, "state_dict": {**{f"backbone.{k}": v for k, v in state.items()}, "neck.x": torch.ones(1)}}
    else:
        obj = {f"model.{k.replace('gamma', 'layer_scale')}": v for k, v in state.items()}
    filtered = checkpoint_filter_fn(obj, timm.create_model("internimage_t", **SMALL))
    assert filtered.keys() == state.keys() and all(torch.equal(filtered[k], v) for k, v in state.items())
    path = tmp_path / "weights.pth"
    torch.save(obj, path)
    loaded = TimmBackbone("internimage_t", checkpoint=str(path), **SMALL).model.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items())


def test_file_of_another_size_is_refused(tmp_path):
    path = tmp_path / "small.pth"
    torch.save({"model": timm.create_model("internimage_t", **SMALL).state_dict()}, path)
    with pytest.raises(ValueError, match="does not fit timm model internimage_t"):
        TimmBackbone("internimage_t", checkpoint=str(path), channels=32, depths=(1, 1, 2, 1), groups=(1, 2, 4, 8))


# ---- configs and the job --------------------------------------------------------------------------

def compose_train(overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        return compose("train", overrides=overrides)


@pytest.mark.parametrize("experiment", ["sep_internimage_t", "ft_potsdam_internimage_t", "ft_isaid_internimage_t"])
def test_experiments_have_the_official_settings(experiment):
    """models.py / main_pretrain.py / main_finetune.py: InternImage-T, UperNet width 128 (the second
    level's channels), AdamW 6e-5, weight decay 0.05 except 1-d parameters, layer decay rate 1.0 (none)."""
    cfg = compose_train([f"experiment={experiment}"])
    backbone = cfg.model.net.backbone
    assert (backbone.name, backbone.drop_path_rate, cfg.model.net.decoder.channels) == ("internimage_t", 0.2, 128)
    assert (cfg.model.optimizer.lr, cfg.model.optimizer.weight_decay, cfg.model.scheduler.min_lr) == (6e-5, 0.05, 0.0)
    assert cfg.model.param_groups.no_decay_bias and cfg.model.param_groups.layer_decay is None
    assert cfg.model_key == "internimage_t"
    if experiment.startswith("sep"):
        assert (cfg.data.val_transform.crop_size, cfg.data.val_transform.resize) == (512, None)


@pytest.mark.slow
def test_debug_pretraining_runs_and_its_export_fits_the_debug_finetuning(generated_subsets, tmp_path):
    """python -m samrs.train experiment=sep_internimage_t_debug, shortened, with the 224-resize
    validation option (here 48), then its pretrained.pt loaded into ft_potsdam_internimage_t_debug's model."""
    data = [f"data.subsets.{k}.root={v}" for k, v in generated_subsets.items()]
    args = ["experiment=sep_internimage_t_debug", "name=ii", "logger=csv", "extras.print_config=false",
            "callbacks.rich_progress_bar=null", "trainer.max_steps=4", "trainer.val_check_interval=2",
            "trainer.limit_val_batches=1", "trainer.num_sanity_val_steps=0", "data.generate=null",
            "data.num_workers=0", "data.val_transform.resize=48", *data]
    env = {**os.environ, "SAMRS_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "samrs.train", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    export = tmp_path / "logs" / "train" / "ii" / "pretrained.pt"
    ft = compose_train(["experiment=ft_potsdam_internimage_t_debug", "start=random",
                        f"model.net.pretrained={export}", "model.net.heads={potsdam:6}"])
    net = instantiate(ft.model.net).eval()
    key = "backbone.model.model.levels.3.blocks.0.dcn.offset.weight"
    assert torch.equal(net.state_dict()[key], read_state_dict(export)[0][key])
    assert net(torch.zeros(1, 3, 64, 64), "potsdam").shape == (1, 6, 64, 64)
