"""Training step time and peak memory of the instance task (multi-head Mask R-CNN) against the
semantic task (multi-head UperNet) on the same backbone, batch and optimiser, in one run.

    python scripts/bench_instance.py                       # CPU: the _debug models, batch 6 of 96 px
    python scripts/bench_instance.py --device cuda --instance inst_r50_maskrcnn --semantic sep_r50_upernet \
        --batch 16 --crop 512 --precision bf16

Both models are built from their experiments' configs (the instance experiment's backbone is the
semantic one's: start=sep loads it) with the SOTA/SIOR/FAST class counts, and get the same pre-built
images, split over the subsets in proportion to their sizes; the semantic task random label maps,
the instance task `--instances` random rotated rectangles per image (masks, boxes, classes). A step
is forward per subset, the summed loss, backward, gradient clipping at 5 and an AdamW step, timed
from the start of one step to the next; each measurement reports the median over `--steps` steps,
and the two tasks take turns `--repeats` times (which goes first alternates), so a change of load on
a shared machine hits both. Peak memory: on CUDA torch's peak allocation; on the CPU the rise of the
process's peak resident set over its size before the steps (Linux: /proc/self/clear_refs resets the
peak). Prints step time, images/s, peak memory and the instance/semantic ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import cv2
import hydra
import numpy as np
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir

from samrs.data.batching import proportional_batch_sizes
from samrs.data.instances import mask_boxes
from samrs.geometry import rotated_rect
from samrs.tasks.optim import param_groups
from samrs.utils.hydra import config_dir

SUBSET_SIZES = {"sota": 17480, "sior": 11725, "fast": 64147}  # training images (official release)
CLASSES = {"sota": 18, "sior": 20, "fast": 37}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--instance", default="inst_r50_maskrcnn_debug")
    p.add_argument("--semantic", default="sep_r50_upernet_debug")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--instances", type=int, default=8, help="instances per image")
    p.add_argument("--precision", default="32", choices=["32", "bf16"])
    p.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    return p.parse_args()


def task_config(experiment: str) -> Any:
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}", "start=random"])
    cfg.model.net.heads = CLASSES
    return cfg.model


def random_instances(n: int, crop: int, classes: int, g: np.random.Generator) -> dict[str, torch.Tensor]:
    masks = np.zeros((n, crop, crop), np.uint8)
    for m in masks:
        cx, cy = g.uniform(0.15, 0.85, 2) * crop
        w, h = g.uniform(0.05, 0.3, 2) * crop
        corners = rotated_rect(cx, cy, w, h, g.uniform(0, np.pi))
        cv2.fillPoly(m, [np.round(corners).astype(np.int32)], 1)
    masks = masks[masks.reshape(n, -1).any(axis=1)]
    return {"boxes": torch.from_numpy(mask_boxes(masks.astype(bool))),
            "labels": torch.from_numpy(g.integers(0, classes, len(masks))),
            "masks": torch.from_numpy(masks)}


def make_batch(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    g = np.random.default_rng(0)
    sizes = proportional_batch_sizes(args.batch, SUBSET_SIZES)
    batch = {}
    for k, n in sizes.items():
        image = torch.from_numpy(g.standard_normal((n, 3, args.crop, args.crop), dtype=np.float32))
        mask = torch.from_numpy(g.integers(0, CLASSES[k], (n, args.crop, args.crop)))
        targets = [{key: v.to(args.device) for key, v in random_instances(args.instances, args.crop, CLASSES[k], g).items()}
                   for _ in range(n)]
        batch[k] = {"image": image.to(args.device), "mask": mask.to(args.device), "targets": targets}
    return batch


def semantic_loss(net: torch.nn.Module, batch: dict) -> torch.Tensor:
    outs = net.forward_subsets({k: b["image"] for k, b in batch.items()})
    return sum(F.cross_entropy(o["out"], batch[k]["mask"], ignore_index=255) for k, o in outs.items())


def instance_loss(net: torch.nn.Module, batch: dict) -> torch.Tensor:
    return sum(sum(net(b["image"], k, b["targets"]).values()) for k, b in batch.items())


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _rss(key: str) -> int:
    """VmRSS / VmHWM of this process in bytes (Linux), 0 elsewhere."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return 0
    line = next((x for x in status.read_text().splitlines() if x.startswith(key)), None)
    return int(line.split()[1]) * 1024 if line else 0


def reset_peak(device: str) -> int:
    """Start a peak-memory measurement; returns the baseline (bytes)."""
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # peak resident set := current
    except OSError:
        pass
    return _rss("VmRSS:")


def peak_memory(device: str, baseline: int) -> float:
    """GiB above `baseline` at the peak since `reset_peak`."""
    peak = torch.cuda.max_memory_allocated() if device == "cuda" else _rss("VmHWM:")
    return max(0, peak - baseline) / 2**30


def measure(model_cfg: Any, loss_fn, batch: dict, args: argparse.Namespace) -> tuple[float, float]:
    """(median step seconds, peak memory GiB) of `--steps` training steps."""
    torch.manual_seed(0)
    net = hydra.utils.instantiate(model_cfg).net.to(args.device).train()
    base = model_cfg.optimizer
    optimizer = torch.optim.AdamW(param_groups(net, base.lr, base.weight_decay), betas=tuple(base.betas))
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    baseline = reset_peak(args.device)
    starts = []
    for step in range(args.warmup + args.steps + 1):
        if step >= args.warmup:
            sync(args.device)
            starts.append(time.perf_counter())
        with autocast:
            loss = loss_fn(net, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()
    memory = peak_memory(args.device, baseline)
    del net, optimizer
    return statistics.median(b - a for a, b in zip(starts, starts[1:])), memory


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    tasks = {"semantic": (task_config(args.semantic), semantic_loss), "instance": (task_config(args.instance), instance_loss)}
    batch = make_batch(args)
    print(f"{args.semantic} vs {args.instance}: batch {args.batch} {dict((k, len(b['image'])) for k, b in batch.items())}, "
          f"{args.crop}x{args.crop}, {args.instances} instances per image, {args.device}, precision {args.precision}, "
          f"{torch.get_num_threads()} threads")
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in tasks}
    for i in range(args.repeats):
        for name in list(tasks) if i % 2 == 0 else list(tasks)[::-1]:
            results[name].append(measure(*tasks[name], batch, args))
        print(f"  round {i + 1}: " + ", ".join(f"{k} {v[-1][0]:.3f} s/step" for k, v in results.items()))
    step = {k: statistics.median(t for t, _ in v) for k, v in results.items()}
    memory = {k: max(m for _, m in v) for k, v in results.items()}
    print("| task | s/step | images/s | peak memory (GiB) |\n|---|---:|---:|---:|")
    for k in tasks:
        print(f"| {k} ({args.instance if k == 'instance' else args.semantic}) | {step[k]:.3f} | "
              f"{args.batch / step[k]:.1f} | {memory[k]:.2f} |")
    ratio = statistics.median(a[0] / b[0] for a, b in zip(results["instance"], results["semantic"]))
    memory_ratio = memory["instance"] / max(memory["semantic"], 1e-9)
    print(f"instance / semantic: {ratio:.2f}x time per step (median of the rounds' ratios), {memory_ratio:.2f}x peak memory")
    if args.json:
        experiments = {"semantic": args.semantic, "instance": args.instance}
        args.json.write_text(json.dumps({
            "device": args.device, "batch": args.batch, "crop": args.crop, "instances": args.instances,
            "precision": args.precision, "steps": args.steps, "repeats": args.repeats,
            **{k: {"experiment": experiments[k], "s_per_step": step[k], "images_per_s": args.batch / step[k],
                   "peak_gib": memory[k]} for k in tasks},
            "instance_over_semantic_step_time": ratio, "instance_over_semantic_memory": memory_ratio}, indent=2))


if __name__ == "__main__":
    main()
