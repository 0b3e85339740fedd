"""Training step time and peak memory of ResNet-50 + Mask2Former against ResNet-50 + UperNet, the same
batch, optimiser and precision, measured in one run.

    python scripts/bench_mask2former.py                                  # CPU: full-size models, batch 16 of 224 px
    python scripts/bench_mask2former.py --device cuda --batch 96 --precision bf16   # the SEP step on a GPU

Each model runs in its own process (`--worker`), so that its peak memory is its own: the resident
set's high-water mark during the steps above what the built model, batch and optimiser held before
them (CPU), or torch's peak allocation (CUDA). A step is a plain PyTorch loop of the pre-training
step (forward per subset, the model's loss: cross-entropy, or Mask2Former's matched class + mask +
dice loss summed over its 10 predictions; backward; clip at 5; AdamW; cosine schedule) on a fixed
batch split over SOTA/SIOR/FAST as the experiments split it. The step time is the median interval
between step starts; the models take turns `--repeats` times and the ratio is the median of the
rounds' ratios. Prints images/s, the step-time ratio and the memory ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from bench_train_step import build_task, make_batch, model_config, steps_per_second, sync  # noqa: E402

from samrs.tasks.optim import cosine_with_warmup, param_groups  # noqa: E402

MODELS = {"UperNet": "sep_r50_upernet", "Mask2Former": "sep_r50_mask2former"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=16, help="images per step, split over the 3 subsets (UperNet's BatchNorm needs 2+ each)")
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--precision", default="32", choices=["32", "bf16"])
    p.add_argument("--debug-size", action="store_true", help="the _debug models (CPU-sized) instead of the paper's")
    p.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p.parse_args()


def step_loss(net: torch.nn.Module, outs: dict, batch: dict) -> torch.Tensor:
    """The pre-training loss as SegmentationTask forms it (without UperNet's optional auxiliary head)."""
    if hasattr(net, "loss"):
        return sum(sum(net.loss(k, o, batch[k]["mask"]).values()) for k, o in outs.items())
    return sum(F.cross_entropy(o["out"], batch[k]["mask"], ignore_index=255) for k, o in outs.items())


def rss_peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kiB on Linux


def worker(args: argparse.Namespace) -> dict[str, float]:
    """Steps/s and peak step memory (MiB) of one experiment's model."""
    if args.threads:
        torch.set_num_threads(args.threads)
    task = build_task(model_config(args.worker)).to(args.device)
    net, hp = task.net.train(), task.hparams
    base = task.optimizer_factory.keywords
    optimizer = task.optimizer_factory(params=param_groups(net, base["lr"], base["weight_decay"], **(hp.param_groups or {})))
    total = args.warmup + args.steps + 1
    scheduler = cosine_with_warmup(optimizer, total, **(hp.scheduler or {}))
    batch = make_batch(args.batch, args.crop, args.device)
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    before = rss_peak_mib()
    if args.device == "cuda":
        sync(args.device)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**20
    starts = []
    for step in range(total):
        if step >= args.warmup:
            sync(args.device)
            starts.append(time.perf_counter())
        with autocast:
            outs = net.forward_subsets({k: b["image"] for k, b in batch.items()})
            loss = step_loss(net, outs, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
    sync(args.device)
    peak = torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else rss_peak_mib()
    return {"steps_per_s": steps_per_second(starts), "peak_mib": peak - before,
            "params_m": sum(p.numel() for p in net.parameters()) / 1e6}


def measure(args: argparse.Namespace, experiment: str) -> dict[str, float]:
    """Run one model in a fresh process (its own memory high-water mark)."""
    cmd = [sys.executable, __file__, "--worker", experiment, "--device", args.device, "--batch", str(args.batch),
           "--crop", str(args.crop), "--precision", args.precision, "--steps", str(args.steps),
           "--warmup", str(args.warmup)] + (["--threads", str(args.threads)] if args.threads else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{experiment} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    suffix = "_debug" if args.debug_size else ""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in MODELS}
    print(f"ResNet-50 + UperNet vs + Mask2Former{' (debug sizes)' if suffix else ''}: batch {args.batch} of "
          f"{args.crop} px, {args.device}, precision {args.precision}, {args.steps} timed steps, {args.repeats} rounds")
    for i in range(args.repeats):
        order = list(MODELS) if i % 2 == 0 else list(reversed(MODELS))
        for name in order:
            runs[name].append(measure(args, MODELS[name] + suffix))
        print(f"  round {i + 1}: " + ", ".join(f"{n} {runs[n][-1]['steps_per_s']:.3f} steps/s" for n in MODELS))
    where = "GPU (torch peak allocated)" if args.device == "cuda" else "CPU (resident set, peak during the steps)"
    print(f"| model | parameters | steps/s | images/s | step memory, {where} |\n|---|---:|---:|---:|---:|")
    models = {}
    for name, rs in runs.items():
        sps = statistics.median(r["steps_per_s"] for r in rs)
        mem = statistics.median(r["peak_mib"] for r in rs)
        print(f"| ResNet-50 + {name} | {rs[0]['params_m']:.1f} M | {sps:.3f} | {sps * args.batch:.1f} | {mem:.0f} MiB |")
        models[name] = {"experiment": MODELS[name] + suffix, "params_m": rs[0]["params_m"], "steps_per_s": sps,
                        "images_per_s": sps * args.batch, "step_memory_mib": mem}
    time_ratio = statistics.median(u["steps_per_s"] / m["steps_per_s"] for u, m in zip(runs["UperNet"], runs["Mask2Former"]))
    mem_ratio = statistics.median(r["peak_mib"] for r in runs["Mask2Former"]) / statistics.median(
        r["peak_mib"] for r in runs["UperNet"])
    print(f"Mask2Former / UperNet: step time x{time_ratio:.2f}, step memory x{mem_ratio:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"device": args.device, "batch": args.batch, "crop": args.crop,
                                         "precision": args.precision, "steps": args.steps, "repeats": args.repeats,
                                         "models": models, "mask2former_over_upernet_step_time": time_ratio,
                                         "mask2former_over_upernet_memory": mem_ratio}, indent=2))


if __name__ == "__main__":
    main()
