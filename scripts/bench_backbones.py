"""Forward + backward cost of the model-zoo backbones with UperNet, against timm's Swin-T + UperNet
measured in the same run.

    python scripts/bench_backbones.py                                   # CPU: batch 8, 224 px, fp32
    python scripts/bench_backbones.py --device cuda --batch 96 --precision bf16   # the paper's batch

Each model is built as the paper's experiments build it (the backbone at full size, UperNet as wide
as the backbone's second level, the official width; one classifier of 18 classes) and timed on one
fixed batch: a step is forward, cross-entropy against fixed labels, backward (no optimiser step).
Every model runs in its own process (so that its peak memory is its own), `--repeats` times in
turns; a model's time is the median over its steps and rounds. Reported per model: seconds per step,
images/s, peak memory (CPU: the process's peak resident memory above what it held after building
the model and batch; GPU: torch's peak allocated memory) and both as ratios to timm's Swin-T.
Backbones not registered yet (the zoo branches not merged) are listed as such. `--in-process` (CUDA)
runs them all in this process instead, one after the other: torch's peak counters are reset per model,
and the run saves a CUDA start-up per model (what the one-script GPU run needs).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

BASELINE = "swin_tiny_patch4_window7_224"
# name -> extra timm arguments; the baseline first
MODELS = {
    BASELINE: {"dynamic_img_size": True},
    "swin_t": {},
    "resnet50": {},
    "vit_b": {},
    "vitaev2_s": {},
    "internimage_t": {},
    "vit_adapter_b": {},
    "vit_b_rvsa": {},
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(MODELS), help="timm names (the baseline is always run)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--precision", default="32", choices=["32", "bf16"])
    p.add_argument("--steps", type=int, default=3, help="timed steps per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    p.add_argument("--repeats", type=int, default=2, help="rounds over all models")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--in-process", action="store_true", help="every model in this process (CUDA: no start-up per model)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(name: str, args: argparse.Namespace) -> dict:
    """One model in this process: step times and peak memory."""
    import samrs.models  # noqa: F401  (registers the zoo backbones)
    from samrs.models import MultiHeadSegmentor, TimmBackbone, UperNetDecoder

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    net = MultiHeadSegmentor(TimmBackbone(name, **MODELS.get(name, {})), partial(UperNetDecoder), {"sota": 18})
    net = net.to(device).train()
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(args.batch, 3, args.crop, args.crop, generator=gen).to(device)
    labels = torch.randint(0, 18, (args.batch, args.crop, args.crop), generator=gen).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16")

    def step() -> None:
        with autocast:
            loss = F.cross_entropy(net(images, "sota"), labels)
        loss.backward()
        net.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()

    base = rss_mb()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(args.warmup):
        step()
    times = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    params = sum(p.numel() for p in net.backbone.parameters()) / 1e6
    return {"name": name, "times": times, "peak_mb": peak, "params_m": params, "width": net.decoder.channels}


def run_in_process(name: str, args: argparse.Namespace) -> dict | None:
    """measure() here; its model and batch are freed before the next model's peak counter is reset."""
    try:
        return measure(name, args)
    except RuntimeError as error:
        if "Unknown model" in str(error):
            return None
        raise
    finally:
        if args.device == "cuda":
            torch.cuda.empty_cache()


def run_child(name: str, args: argparse.Namespace) -> dict | None:
    cmd = [sys.executable, __file__, "--child", name, "--device", args.device, "--batch", str(args.batch),
           "--crop", str(args.crop), "--precision", args.precision, "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        if "Unknown model" in proc.stderr:
            return None
        raise RuntimeError(f"{name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args)))
        return
    if args.in_process and args.device != "cuda":
        print("--in-process on the CPU: the peak memory figures are the process's, not each model's")
    run = run_in_process if args.in_process else run_child
    names = [BASELINE] + [n for n in args.models if n != BASELINE]
    results: dict[str, dict] = {}
    missing = set()
    for _ in range(args.repeats):
        for name in names:
            if name in missing:
                continue
            out = run(name, args)
            if out is None:
                missing.add(name)
                continue
            kept = results.setdefault(name, {**out, "times": [], "peaks": []})
            kept["times"] += out["times"]
            kept["peaks"].append(out["peak_mb"])
            print(f"  {name}: {statistics.median(out['times']):.3f} s/step, {out['peak_mb']:.0f} MiB", flush=True)
    base = results[BASELINE]
    base_t, base_m = statistics.median(base["times"]), max(base["peaks"])
    print(f"device {args.device}, batch {args.batch}, {args.crop} px, precision {args.precision}, "
          f"{args.threads if args.device == 'cpu' else ''} thread(s); {args.repeats} x {args.steps} steps")
    print("| backbone (timm) | params (M) | UperNet width | s / step | images / s | time vs Swin-T | "
          "peak memory (MiB) | memory vs Swin-T |")
    print("|---|---|---|---|---|---|---|---|")
    figures: dict[str, dict] = {}
    for name in names:
        if name in missing:
            print(f"| `{name}` | not registered (its branch is not merged) | | | | | | |")
            figures[name] = {"registered": False}
            continue
        r = results[name]
        t, m = statistics.median(r["times"]), max(r["peaks"])
        print(f"| `{name}` | {r['params_m']:.1f} | {r['width']} | {t:.3f} | {args.batch / t:.2f} | {t / base_t:.2f} | "
              f"{m:.0f} | {m / base_m:.2f} |")
        figures[name] = {"params_m": r["params_m"], "width": r["width"], "s_per_step": t, "images_per_s": args.batch / t,
                         "peak_mb": m, "time_vs_baseline": t / base_t, "memory_vs_baseline": m / base_m}
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "batch": args.batch, "crop": args.crop,
                                         "precision": args.precision, "steps": args.steps, "repeats": args.repeats,
                                         "baseline": BASELINE, "models": figures}, indent=2))


if __name__ == "__main__":
    main()
