"""The evaluation protocols: `official` (every tile of the test split as cut, flip, softmax averaged,
as the official test script) against an independent rendering of that script's procedure, the
protocol recorded in metrics.json, and the protocol shown beside each number of the result tables."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from finetune_helpers import compose_train, finetune_data, ready
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import OmegaConf
from test_scores_and_table import POTSDAM, collect_tables, fake_run

from samrs.evaluate import evaluate
from samrs.inference import SlidingWindow, protocol_label
from samrs.utils.hydra import config_dir


def official_tile_probs(model, image: torch.Tensor, crop: int, scales=(1.0,)) -> torch.Tensor:
    """The official test's class probabilities of one tile (1, 3, h, w), step by step as test_gpu.py
    describes them: per scale the tile is resized (scale_factor), padded at the bottom/right with 0
    to the crop, cut into crops every ceil(2/3 crop) (the last shifted back), each crop and its
    mirror image softmaxed and averaged, the crops' sums divided by their counts, cut back and
    resized to the tile; the scales averaged."""
    _, _, h, w = image.shape
    total = torch.zeros(model(image[:, :, :1, :1].expand(-1, -1, crop, crop)).shape[1], h, w)
    for scale in scales:
        scaled = F.interpolate(image, scale_factor=scale, mode="bilinear") if scale != 1 else image
        sh, sw = scaled.shape[2:]
        padded = F.pad(scaled, (0, max(crop - sw, 0), 0, max(crop - sh, 0)))
        ph, pw = padded.shape[2:]
        stride = math.ceil(crop * 2 / 3)
        sums, counts = torch.zeros(total.shape[0], ph, pw), torch.zeros(ph, pw)
        for i in range(math.ceil((ph - crop) / stride) + 1):
            bottom = min(i * stride + crop, ph)
            for j in range(math.ceil((pw - crop) / stride) + 1):
                right = min(j * stride + crop, pw)
                window = padded[:, :, bottom - crop:bottom, right - crop:right]
                plain = model(window).softmax(1)[0]
                mirrored = model(window.flip(3)).softmax(1)[0].flip(2)
                sums[:, bottom - crop:bottom, right - crop:right] += (plain + mirrored) / 2
                counts[bottom - crop:bottom, right - crop:right] += 1
        probs = (sums / counts)[:, :sh, :sw]
        total += F.interpolate(probs[None], size=(h, w), mode="bilinear")[0]
    return total / len(scales)


@pytest.mark.parametrize("size,crop,scales", [
    ((96, 96), 96, (1.0,)),                  # a tile of the window's size: one crop
    ((70, 90), 96, (1.0,)),                  # a border tile smaller than the window: padded
    ((150, 200), 96, (1.0,)),                # several overlapping crops
    ((96, 96), 96, (0.75, 1.0, 1.25, 1.5)),  # the official multi-scale (--ms True) on a tile
    ((70, 90), 64, (0.75, 1.25, 1.75)),      # scaled sides that are no whole numbers (52.5 -> 52)
], ids=str)
def test_official_inference_equals_the_official_procedure(size, crop, scales):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, padding=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 7, padding=3))
    image = torch.randn(1, 3, *size)
    with torch.no_grad():
        expected = official_tile_probs(model, image, crop, scales)
    got = SlidingWindow(crop, flip=True, average="probs", scales=scales, batch_size=3)(model, image)[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    # the model is not pointwise: flip, windows and averaging all change the result
    plain = SlidingWindow(crop, scales=scales)(model, image)[0].softmax(0)
    assert (plain - expected).abs().max() > 1e-3


def test_protocol_labels_name_departures():
    official = {"window": 512, "stride": None, "flip": True, "average": "probs", "scales": [1.0]}
    assert protocol_label("tiles", official) == protocol_label("tiles", official, "zero") == "official"
    assert protocol_label("tiles", official, "skip") == "official (absent classes: skip)"
    assert protocol_label("tiles", {**official, "flip": False, "average": "logits"}) == \
        "official (no flip, logits averaged)"
    assert protocol_label("tiles", {**official, "stride": 342}) == "official"  # ceil(2/3 * 512) is the default
    sliding = {"window": 512, "stride": 256, "flip": False, "average": "logits", "scales": [0.75, 1.0, 1.25]}
    assert protocol_label("whole", sliding) == "sliding (scales 0.75/1/1.25, stride 256)"
    assert protocol_label("crop", None) == "crop"


@pytest.fixture(scope="module")
def potsdam_checkpoint(potsdam_dir, tmp_path_factory):
    """A checkpoint of the Potsdam debug fine-tuning as samrs.train writes it (config + weights), of
    a randomly initialised model."""
    out = tmp_path_factory.mktemp("run")
    cfg = compose_train(["experiment=ft_potsdam_r50_upernet_debug", f"paths.data_dir={potsdam_dir}",
                         f"paths.output_dir={out}", f"paths.work_dir={out}", "model.net.heads={potsdam: 5}"])
    torch.manual_seed(0)
    model = instantiate(cfg.model)
    path = out / "checkpoints" / "last.ckpt"
    path.parent.mkdir()
    torch.save({"samrs_config": OmegaConf.to_container(cfg, resolve=True), "state_dict": model.state_dict()}, path)
    return path, model.eval()


def test_official_evaluation_scores_the_tiles_as_the_official_script(potsdam_dir, potsdam_checkpoint, tmp_path):
    """samrs.evaluate's default protocol: per tile of the validation scenes (96 px every 64 over
    192 px scenes: 9 per scene), flip and softmax; intersections and label/prediction areas summed
    over the tiles, so overlapping pixels count once per tile."""
    ckpt, model = potsdam_checkpoint
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path}", "trainer=cpu",
                                             f"paths.data_dir={potsdam_dir}", "+trainer.enable_progress_bar=false"])
    scores = evaluate(cfg)["potsdam"]
    report = json.loads((tmp_path / "metrics.json").read_text())
    assert report["protocol"] == "official" and report["absent_classes"] == "zero"
    assert (report["inference"]["flip"], report["inference"]["average"], report["inference"]["window"]) == \
        (True, "probs", 96)

    scenes = ready(finetune_data("potsdam_debug", potsdam_dir, "data.val_mode=whole"), "validate").val_sets["potsdam"]
    inter, pred_area, label_area = np.zeros(5), np.zeros(5), np.zeros(5)
    tiles = 0
    for scene in (scenes[i] for i in range(len(scenes))):
        for y in (0, 64, 96):
            for x in (0, 64, 96):
                image = scene["image"][None, :, y:y + 96, x:x + 96]
                label = scene["mask"][y:y + 96, x:x + 96].numpy()
                with torch.no_grad():
                    pred = official_tile_probs(lambda t: model(t, "potsdam"), image, 96).argmax(0).numpy()
                keep = label != 255
                for c in range(5):
                    inter[c] += np.sum((pred[keep] == c) & (label[keep] == c))
                    pred_area[c] += np.sum(pred[keep] == c)
                    label_area[c] += np.sum(label[keep] == c)
                tiles += 1
    assert tiles == 18
    present = pred_area + label_area > 0
    f1 = np.where(present, 2 * inter / np.maximum(pred_area + label_area, 1), np.nan)
    iou = inter / (pred_area + label_area - inter + 1e-10)  # the official IoU: 0 for absent classes
    np.testing.assert_allclose(np.array(scores["F1"], dtype=float), f1, atol=1e-9)
    np.testing.assert_allclose(scores["IoU"], iou, atol=1e-9)
    assert scores["mIoU"] == pytest.approx(iou.mean())
    assert scores["OA"] == pytest.approx(inter.sum() / label_area.sum())
    assert report["scores"]["potsdam"]["mF1"] == pytest.approx(np.nanmean(f1))


def test_unknown_protocol_is_a_clear_error(potsdam_checkpoint, tmp_path):
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("evaluate", overrides=[f"ckpt_path={potsdam_checkpoint[0]}", f"paths.output_dir={tmp_path}",
                                             "evaluate.protocol=tiles"])
    with pytest.raises(ValueError, match="evaluate.protocol='tiles'; choose one of official, sliding"):
        evaluate(cfg)


def test_tables_say_which_protocol_produced_each_number(tmp_path):
    sweep = tmp_path / "multirun"
    runs = [
        fake_run(sweep, "0", "potsdam", "r50_upernet", "imp", 1.0, 0.60, POTSDAM),
        fake_run(sweep, "1", "potsdam", "r50_upernet", "sep", 1.0, 0.70, POTSDAM),
        fake_run(sweep, "2", "potsdam", "r50_upernet", "imp", 0.01, 0.30, POTSDAM),
        fake_run(sweep, "3", "potsdam", "r50_upernet", "imp", 0.05, 0.40, POTSDAM),
    ]
    for run, protocol in zip(runs, ["official", "official", "official", None]):  # run 3: written before protocols
        report = json.loads((run / "metrics.json").read_text())
        if protocol:
            report["protocol"] = protocol
        (run / "metrics.json").write_text(json.dumps(report))
    # an evaluation of run 1 by sliding windows with flip replaces its own (official) validation
    evaluation = tmp_path / "evaluate" / "sliding"
    evaluation.mkdir(parents=True)
    report = json.loads((runs[1] / "metrics.json").read_text())
    report.update(protocol="sliding (flip)", checkpoint=str(runs[1] / "checkpoints" / "last.ckpt"))
    (evaluation / "metrics.json").write_text(json.dumps(report))
    out = tmp_path / "tables"
    full, fractions = collect_tables([sweep, evaluation], out)
    assert full.protocols == [["official"] * 7, ["sliding (flip)"] * 7] and full.protocol == "official"
    assert fractions.protocols == [["official", "official", "sliding", "sliding"]]
    markdown = (out / "finetune_tables.md").read_text()
    assert "| UperNet | r50_upernet | IMP | 65.00 |" in markdown
    assert "| UperNet | r50_upernet | SEP | 75.00 [sliding (flip)] |" in markdown
    assert "Protocol: official; numbers marked [...] by the protocol named there." in markdown
    csv_rows = (out / "finetune_table1.csv").read_text().splitlines()
    assert csv_rows[0].endswith(",runs,protocol") and csv_rows[1].endswith(",1,official")
    assert csv_rows[2].endswith(",1,sliding (flip)")
    fraction_row = (out / "finetune_table2.csv").read_text().splitlines()[1]
    assert fraction_row.endswith(",1% OA: official; 1% mF1: official; 5% OA: sliding; 5% mF1: sliding")
    # one protocol for every number of a table: a note, no marks
    only_official = collect_tables([sweep / "0"], tmp_path / "one")[0]
    assert only_official.protocol == "official"
    assert "Protocol: official.\n" in (tmp_path / "one" / "finetune_tables.md").read_text()
