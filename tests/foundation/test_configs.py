"""Every config file composes and resolves; mistakes give readable messages."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import OmegaConf

from samrs.utils.hydra import config_dir

CONF = Path(config_dir())
PRIMARY = [p.stem for p in sorted(CONF.glob("*.yaml"))]
# Values a primary config requires from the user (`???`), given so that composing can resolve.
REQUIRED = {
    "evaluate": ["ckpt_path=/nonexistent/run"],
    "label": ["source=dota", "source.root=/nonexistent", "output_dir=/nonexistent/out"],
}
# Values a group option requires from the user, likewise (they replace the primary's of the same group).
OPTION_REQUIRED = {
    **{f"start={k}": [f"start.checkpoint=/nonexistent/{k}.pth"] for k in ("rsp", "mae", "beit", "official_sep")},
    "source=geo": ["source.images=/nonexistent", "source.vectors=/nonexistent.gpkg"],
    "source=coco": ["source.root=/nonexistent", "source.annotations=/nonexistent.json"],
}
SKIP_GROUPS = {"hydra", "local"}


def _defaults_groups(primary: str) -> set[str]:
    spec = yaml.safe_load((CONF / f"{primary}.yaml").read_text())
    groups = set()
    for entry in spec.get("defaults", []):
        if isinstance(entry, dict):
            key = next(iter(entry)).replace("optional ", "").strip()
            groups.add(key.split("@")[0].lstrip("/"))
    return groups


def _options() -> list[tuple[str, str, str]]:
    """(primary, group, option) for every config file of every group."""
    out = []
    for path in sorted(CONF.rglob("*.yaml")):
        rel = path.relative_to(CONF)
        if len(rel.parts) == 1 or rel.parts[0] in SKIP_GROUPS:
            continue
        group = "/".join(rel.parts[:-1])
        users = [p for p in PRIMARY if rel.parts[0] in _defaults_groups(p)]
        assert users, f"{rel}: no primary config ({', '.join(PRIMARY)}) uses the group {rel.parts[0]!r}"
        out.append((users[0], group, path.stem))
    return out


def _compose(primary: str, overrides: list[str]):
    try:
        return _compose_once(primary, overrides)
    except ConfigCompositionException as err:
        if "No match in the defaults list" not in str(err):
            raise
    # an add-on group that no default selects (e.g. +model/aux=fcn) is appended with "+"
    return _compose_once(primary, [f"+{o}" if "/" in o.split("=")[0] else o for o in overrides])


def _compose_once(primary: str, overrides: list[str]):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        chosen = {o.split("=")[0] for o in overrides}
        given = {key.split(".")[0] for key in chosen if "." in key}
        required = [r for r in REQUIRED.get(primary, []) if r.split("=")[0] not in chosen
                    and not ("." in r.split("=")[0] and r.split(".")[0] in given)]
        cfg = compose(primary, overrides=required + overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    plain = OmegaConf.to_container(cfg, resolve=False)
    plain.pop("hydra")
    # Resolve everything but the run-time Hydra values (output dir, cwd) that only a run has.
    resolved = OmegaConf.create(plain)
    resolved.paths.output_dir = "/tmp/out"
    resolved.paths.work_dir = "/tmp"
    return OmegaConf.to_container(resolved, resolve=True)


@pytest.mark.parametrize("primary", PRIMARY)
def test_primary_configs_compose(primary):
    cfg = _compose(primary, [])
    assert cfg["task_name"] == primary if primary != "stats" else cfg["task_name"]
    assert "paths" in cfg


@pytest.mark.parametrize("primary,group,option", _options(), ids=lambda v: str(v))
def test_every_config_file_composes(primary, group, option):
    cfg = _compose(primary, [f"{group}={option}", *OPTION_REQUIRED.get(f"{group}={option}", [])])
    if group == "experiment":
        assert cfg["model"]["_target_"] and cfg["data"]["_target_"]
    if group in ("data", "model", "trainer"):
        assert cfg[group]["_target_"]


def test_experiment_demo_is_small_and_cpu():
    cfg = _compose("train", ["experiment=demo"])
    assert cfg["trainer"]["accelerator"] == "cpu"
    assert set(cfg["data"]["subsets"]) == {"sota", "sior", "fast"}
    assert cfg["data"]["generate"]["size"] <= 256
    assert set(cfg["logger"]) == {"csv", "wandb"}


def test_misspelled_option_lists_the_available_ones():
    with pytest.raises(MissingConfigException) as err:
        _compose("train", ["model=demoo"])
    assert "model/demoo" in str(err.value) and "demo" in str(err.value).split("Available options")[-1]


def test_cli_prints_composed_config_and_readable_errors(tmp_path):
    ok = subprocess.run([sys.executable, "-m", "samrs.train", "--cfg", "job", "experiment=demo"],
                        capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert ok.returncode == 0, ok.stderr
    printed = yaml.safe_load(ok.stdout)
    assert printed["name"] == "demo" and printed["model"]["net"]["backbone"]["name"] == "resnet18"
    bad = subprocess.run([sys.executable, "-m", "samrs.train", "experiment=dem0"],
                         capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: experiment=dem0: no such option (did you mean demo?")
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(("ckpt_path", "name"), [
    ("logs/train/demo/checkpoints/last.ckpt", "demo-last"),
    ("logs/train/demo", "demo"),
    ("logs/train/multirun/tables_potsdam/0", "tables_potsdam-0"),  # job numbers repeat across sweeps
    ("logs/train/multirun/fractions_isaid/0/checkpoints/best_step1.ckpt", "fractions_isaid-0-best_step1"),
    ("model.ckpt", "model"),
])
def test_evaluation_directories_are_named_after_the_run(ckpt_path, name):
    from samrs.utils.hydra import run_name_of

    assert run_name_of(ckpt_path) == name


def test_debug_finetuning_starts_from_the_debug_pretraining_and_configs_resolve(tmp_path):
    def resolved(*overrides: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "samrs.train", "--cfg", "job", "--resolve", *overrides],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        return yaml.safe_load(proc.stdout)

    sep = resolved("experiment=sep_r50_upernet_debug", "start=imp")
    assert sep["name"] == "sep_r50_upernet_imp_debug"
    assert sep["callbacks"]["val_images"]["mean"] is None  # the ImageNet default of the transforms
    ft = resolved("experiment=ft_potsdam_r50_upernet_debug", "start=imp_sep")
    assert ft["model"]["net"]["pretrained"] == f"./logs/train/{sep['name']}/pretrained.pt"
    full = resolved("experiment=ft_potsdam_r50_upernet", "start=sep")
    assert full["model"]["net"]["pretrained"] == "./logs/train/sep_r50_upernet/pretrained.pt"


@pytest.mark.parametrize("primary", ["train", "label", "evaluate", "stats"])
def test_a_plain_local_config_overrides_the_composed_one(primary, tmp_path):
    import shutil

    conf = shutil.copytree(CONF, tmp_path / "conf")
    (conf / "local" / "default.yaml").write_text("paths:\n  data_dir: /srv/datasets\nseed: 7\n")  # no @package line
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = compose(primary, overrides=REQUIRED.get(primary, []))
    assert cfg.paths.data_dir == "/srv/datasets" and "local" not in cfg
    if primary == "train":
        assert cfg.seed == 7


@pytest.mark.parametrize(("job", "args", "missing"), [
    ("samrs.evaluate", [], "ckpt_path"),
    ("samrs.stats", [], "subsets"),
    ("samrs.label", ["source=dota"], "output_dir, source.root"),
    ("samrs.train", ["experiment=ft_potsdam_r50_upernet_debug", "start=rsp"], "start.checkpoint"),
])
def test_required_values_left_unset_are_named_in_one_line(job, args, missing, tmp_path):
    proc = subprocess.run([sys.executable, "-m", job, *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert proc.returncode == 2
    assert f"not set: {missing}." in proc.stderr and "Traceback" not in proc.stderr


def test_an_unknown_group_option_is_one_line_with_the_closest_options():
    """`experiment=sep_r50_mask2fromer_debug` would print Hydra's list of every experiment; samrs
    names the closest ones. Sweeps, lists, nested groups, keys and null pass through to Hydra."""
    from samrs.errors import ConfigError
    from samrs.utils.hydra import check_group_options

    conf = Path(config_dir())
    with pytest.raises(ConfigError, match=r"experiment=sep_r50_mask2fromer_debug: no such option \(did you mean "
                                          r"sep_r50_mask2former_debug"):
        check_group_options(["experiment=sep_r50_mask2fromer_debug"], conf)
    with pytest.raises(ConfigError, match=r"logger=wandbb: .*did you mean wandb\?"):
        check_group_options(["logger=[csv,wandbb]"], conf)
    with pytest.raises(ConfigError, match=r"model/decoder=unett"):
        check_group_options(["model/decoder=unett"], conf)
    check_group_options(["-m", "experiment=sep_swin_t_debug,sep_r50_upernet_debug", "model/decoder=unet",
                         "+model/aux=fcn", "logger=[csv,wandb]", "data.subsets.sota.root=/x", "start=null",
                         "trainer.max_steps=3", "hydra.run.dir=/x", "name=anything", "--cfg", "job",
                         "data.fraction=range(1,3)"], conf)
