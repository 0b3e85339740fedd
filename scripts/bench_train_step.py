"""Training speed of samrs' LightningModule against a plain PyTorch loop over the same model, batch,
optimiser (parameter groups, cosine schedule, clipping at 5) and precision, in one run.

    python scripts/bench_train_step.py                              # CPU: sep_swin_t_debug, batch 24 of 96 px
    python scripts/bench_train_step.py --device cuda --experiment sep_swin_t --batch 96 --crop 224 --precision bf16

Both sides get the same pre-built batch every step ({subset: {"image", "mask"}}, split over the
subsets in proportion to SOTA/SIOR/FAST's sizes), so only the training step is timed. A step's
time is the interval between the starts of two successive steps (all of the loop's own work
included); each measurement reports the median step time of its `--steps` steps (robust to other
jobs on a shared machine), and the two loops take turns `--repeats` times, alternating which goes
first; the overhead is the median over the rounds of the ratio of the two (each round runs both
loops close in time, so a change of load between rounds cancels out). Prints steps/s, images/s, peak GPU memory
and the Lightning overhead.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from lightning.pytorch.loggers import CSVLogger

from samrs.data.batching import proportional_batch_sizes
from samrs.tasks.optim import cosine_with_warmup, param_groups
from samrs.utils.hydra import config_dir

# Training images per subset (official code), for the batch split.
SUBSET_SIZES = {"sota": 17480, "sior": 11725, "fast": 64147}
CLASSES = {"sota": 18, "sior": 20, "fast": 37}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--experiment", default="sep_swin_t_debug")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--crop", type=int, default=96)
    p.add_argument("--precision", default="32", choices=["32", "bf16"])
    p.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps before them")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    return p.parse_args()


def model_config(experiment: str) -> Any:
    with initialize_config_dir(config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"])
    cfg.model.net.heads = CLASSES
    return cfg.model


def make_batch(batch: int, crop: int, device: str) -> dict[str, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    sizes = proportional_batch_sizes(batch, SUBSET_SIZES)
    return {k: {"image": torch.randn(n, 3, crop, crop, generator=g).to(device),
                "mask": torch.randint(0, CLASSES[k], (n, crop, crop), generator=g).to(device)} for k, n in sizes.items()}


def build_task(model_cfg: Any) -> L.LightningModule:
    torch.manual_seed(0)
    return hydra.utils.instantiate(model_cfg)


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def steps_per_second(starts: list[float]) -> float:
    """1 / the median interval between successive step starts."""
    return 1.0 / statistics.median(b - a for a, b in zip(starts, starts[1:]))


def plain_loop(model_cfg: Any, batch: dict, args: argparse.Namespace, total_steps: int) -> float:
    """The same step written by hand: forward per subset, summed cross-entropy, backward, clip, step."""
    task = build_task(model_cfg).to(args.device)
    net, hp = task.net.train(), task.hparams
    base = task.optimizer_factory.keywords
    optimizer = task.optimizer_factory(params=param_groups(net, base["lr"], base["weight_decay"], **(hp.param_groups or {})))
    scheduler = cosine_with_warmup(optimizer, total_steps, **(hp.scheduler or {}))
    autocast = torch.autocast(args.device, dtype=torch.bfloat16, enabled=args.precision == "bf16")
    starts = []
    for step in range(args.warmup + args.steps + 1):
        if step >= args.warmup:
            sync(args.device)
            starts.append(time.perf_counter())
        with autocast:
            outs = net.forward_subsets({k: b["image"] for k, b in batch.items()})
            loss = sum(F.cross_entropy(o["out"], batch[k]["mask"], ignore_index=255) for k, o in outs.items())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()
        scheduler.step()
    return steps_per_second(starts)


class StepTimer(L.Callback):
    """The start time of every step from step `warmup` on."""

    def __init__(self, warmup: int, device: str) -> None:
        self.warmup, self.device, self.starts = warmup, device, []

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step >= self.warmup:
            sync(self.device)
            self.starts.append(time.perf_counter())


class Repeat:
    """The same batch `n` times: an iterable Lightning takes as a training loader."""

    def __init__(self, batch: dict, n: int) -> None:
        self.batch, self.n = batch, n

    def __iter__(self):
        return (self.batch for _ in range(self.n))

    def __len__(self) -> int:
        return self.n


def lightning_loop(model_cfg: Any, batch: dict, args: argparse.Namespace, total_steps: int, log_dir: str) -> float:
    """SegmentationTask under a Trainer as the experiments configure it (CSV logging every 50 steps)."""
    task = build_task(model_cfg)
    timer = StepTimer(args.warmup, args.device)
    steps = args.warmup + args.steps + 1
    trainer = L.Trainer(
        accelerator=args.device, devices=1, precision="bf16-mixed" if args.precision == "bf16" else "32-true",
        max_steps=steps, limit_val_batches=0, gradient_clip_val=5.0, logger=CSVLogger(log_dir), log_every_n_steps=50,
        callbacks=[timer], enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )
    trainer.fit(task, train_dataloaders=Repeat(batch, steps))
    return steps_per_second(timer.starts)


def peak_memory(device: str) -> float | None:
    """Torch's peak allocated GiB since the last call (CUDA), None on the CPU."""
    if device != "cuda":
        return None
    gib = torch.cuda.max_memory_allocated() / 2**30
    torch.cuda.reset_peak_memory_stats()
    return gib


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} GiB"


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model_cfg = model_config(args.experiment)
    batch = make_batch(args.batch, args.crop, args.device)
    total_steps = args.warmup + args.steps + 1
    print(f"{args.experiment}: batch {args.batch} {dict((k, len(b['mask'])) for k, b in batch.items())}, "
          f"{args.crop}x{args.crop}, {args.device}, precision {args.precision}, {torch.get_num_threads()} threads")
    plain, lit = [], []
    with tempfile.TemporaryDirectory() as log_dir:
        for i in range(args.repeats):
            for which in ("plain", "lightning") if i % 2 == 0 else ("lightning", "plain"):
                if which == "plain":
                    plain.append(plain_loop(model_cfg, batch, args, total_steps))
                    mem_plain = peak_memory(args.device)
                else:
                    lit.append(lightning_loop(model_cfg, batch, args, total_steps, log_dir))
                    mem_lit = peak_memory(args.device)
            print(f"  round {i + 1}: plain {plain[-1]:.3f} steps/s, Lightning {lit[-1]:.3f} steps/s")
    p, q = statistics.median(plain), statistics.median(lit)
    print(f"| loop | steps/s | images/s | peak GPU memory |\n|---|---:|---:|---:|\n"
          f"| plain PyTorch | {p:.3f} | {p * args.batch:.1f} | {gib(mem_plain)} |\n"
          f"| samrs SegmentationTask + Trainer | {q:.3f} | {q * args.batch:.1f} | {gib(mem_lit)} |")
    overhead = statistics.median(a / b for a, b in zip(plain, lit)) - 1
    print(f"Lightning overhead: {100 * overhead:+.1f}% time per step (median of the rounds' ratios; target <= 5%)")
    if args.json:
        loops = {"plain": (p, mem_plain, plain), "lightning": (q, mem_lit, lit)}
        args.json.write_text(json.dumps({
            "experiment": args.experiment, "device": args.device, "batch": args.batch, "crop": args.crop,
            "precision": args.precision, "steps": args.steps, "repeats": args.repeats,
            **{k: {"steps_per_s": v, "images_per_s": v * args.batch, "peak_gib": m, "rounds_steps_per_s": r}
               for k, (v, m, r) in loops.items()},
            "lightning_overhead": overhead}, indent=2))


if __name__ == "__main__":
    main()
