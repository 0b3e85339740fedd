"""Speed of SAMRS-MAE pre-training: the MAE training step and its input pipeline, each against a
baseline measured in the same run.

    python scripts/bench_mae.py                                  # CPU: ViT-B MAE, batch 8, 224 input
    python scripts/bench_mae.py --device cuda --batch 256        # GPU: bf16 autocast, peak memory too

- step: forward + backward + AdamW step of samrs' MaskedAutoencoder (ViT-B/16 encoder on the 25 %
  visible patches, MAE's 8 x 512 decoder on all of them) against the same step of timm's ViT-B/16
  encoding every patch (a supervised ViT-B step, mean of the features as the loss): images/s of both
  and their ratio (MAE's saving from encoding a quarter of the patches). On a GPU under bf16
  autocast, with peak memory. Times are the median of `--steps` steps after `--warmup` untimed ones,
  the two models taking turns `--repeats` times; the ratio is the median of the rounds' ratios.
- data (`--data`, CPU): MAE samples/s in one process from 1024 x 1024 scenes (SOTA-sized tiles), each
  cut into 384 x 384 crops every 300 px: samrs' crops as windows into the block cache, reading only
  the random resized part under the sample, against decoding the whole PNG and cutting the crop from
  it (the same transform after).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import timm
import torch

from samrs.data.blocks import Window
from samrs.data.mae import MAEDataModule
from samrs.models.mae import MaskedAutoencoder
from samrs.utils.io import read_rgb


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--input", type=int, default=224)
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--data", action="store_true", help="also time the input pipeline (CPU)")
    p.add_argument("--scenes", type=int, default=4, help="1024 x 1024 scenes for --data")
    p.add_argument("--samples", type=int, default=200, help="samples per --data measurement")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    return p.parse_args()


class SupervisedViT(torch.nn.Module):
    """The baseline: timm's ViT-B/16 encoding every patch, the mean feature as a stand-in loss."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.vit = timm.create_model("vit_base_patch16_224", pretrained=False, num_classes=0, img_size=size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.vit(images).float().pow(2).mean()


def step_time(model: torch.nn.Module, loss_of, images: torch.Tensor, args: argparse.Namespace) -> float:
    """Median seconds of one training step over `args.steps` steps."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95))
    autocast = torch.autocast("cuda", torch.bfloat16, enabled=args.device == "cuda")
    times = []
    for i in range(args.warmup + args.steps):
        if args.device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with autocast:
            loss = loss_of(model, images)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if args.device == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_steps(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    images = torch.randn(args.batch, 3, args.input, args.input, device=device)
    mae = MaskedAutoencoder(img_size=args.input).to(device)
    vit = SupervisedViT(args.input).to(device)
    sides = {"MAE ViT-B (75 % masked) + decoder": (mae, lambda m, x: m(x).loss),
             "ViT-B, every patch (baseline)": (vit, lambda m, x: m(x))}
    rounds: dict[str, list[float]] = {k: [] for k in sides}
    peaks: dict[str, float] = {}
    for r in range(args.repeats):
        order = list(sides) if r % 2 == 0 else list(reversed(sides))
        for name in order:
            if args.device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            model, loss_of = sides[name]
            rounds[name].append(step_time(model, loss_of, images, args))
            if args.device == "cuda":
                peaks[name] = torch.cuda.max_memory_allocated() / 2**30
    mae_name, vit_name = list(sides)
    print(f"training step, batch {args.batch} of {args.input} px, {args.device}"
          f"{' bf16 autocast' if args.device == 'cuda' else ''}, {torch.get_num_threads()} threads:")
    figures: dict = {"batch": args.batch, "input": args.input, "device": args.device,
                     "precision": "bf16" if args.device == "cuda" else "32"}
    for key, (name, times) in zip(("mae", "vit_b"), rounds.items()):
        median = statistics.median(times)
        memory = f", peak {peaks[name]:.1f} GiB" if name in peaks else ""
        print(f"  {name:<36} {median * 1000:9.1f} ms/step  {args.batch / median:8.1f} images/s{memory}")
        figures[key] = {"name": name, "s_per_step": median, "images_per_s": args.batch / median, "peak_gib": peaks.get(name)}
    ratio = statistics.median(v / m for m, v in zip(rounds[mae_name], rounds[vit_name]))
    print(f"  MAE step speed / ViT-B step speed: {ratio:.2f}x")
    return figures | {"mae_over_vit_b_speed": ratio}


def bench_data(args: argparse.Namespace) -> dict:
    from samrs.scenes.subset import write_generated_subset

    with tempfile.TemporaryDirectory() as tmp:
        root = write_generated_subset(Path(tmp) / "sota", "sota", count=args.scenes, size=1024, num_objects=(30, 60),
                                      seed=0, val_fraction=0.0, progress=False)
        dm = MAEDataModule(subsets={"sota": {"root": str(root), "classes": "sota"}},
                           crops={"size": 384, "stride": 300}, transform={"input_size": args.input}, num_workers=0,
                           pin_memory=False, cache={"enabled": True, "dir": f"{tmp}/cache", "workers": 0})
        start = time.perf_counter()
        dm.prepare_data()
        build = time.perf_counter() - start
        dm.setup("fit")
        data = dm.train_set
        index, transform = data.index, data.transform
        rng = np.random.default_rng(0)
        picks = rng.integers(0, len(data), args.samples)

        def cached() -> None:
            for i in picks:
                data[int(i)]

        def whole_png() -> None:
            for i in picks:
                image = read_rgb(root / "images" / f"{index.names[index.image_of[i]]}.png")
                window, flip = transform.plan(Window(*(int(v) for v in index.windows[i])))
                transform.finish(image[window.top:window.bottom, window.left:window.right], flip)

        rates = {"block cache windows (samrs)": [], "whole PNG decode (baseline)": []}
        for _ in range(args.repeats):
            for name, run in zip(rates, (cached, whole_png)):
                start = time.perf_counter()
                run()
                rates[name].append(args.samples / (time.perf_counter() - start))
        print(f"input pipeline, one process: {len(data)} crops of 384 px from {args.scenes} scenes of 1024 px, "
              f"samples of {args.input} px (cache built in {build:.1f} s):")
        for name, values in rates.items():
            print(f"  {name:<30} {statistics.median(values):8.1f} samples/s")
        ratio = statistics.median(a / b for a, b in zip(*rates.values()))
        print(f"  ratio: {ratio:.1f}x")
        return {"samples_per_s": {k: statistics.median(v) for k, v in rates.items()}, "ratio": ratio}


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here")
    figures = {"step": bench_steps(args)}
    if args.data:
        figures["data"] = bench_data(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
