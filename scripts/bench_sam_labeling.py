"""Benchmark: samrs' SAM labeling engine against the official SAM approach, same model and prompts.

CPU mode (default): one 1024x1024 image with N boxes (default 50, 500, 2000), a vit_b-shaped SAM
with random weights (no checkpoint download is possible; compute does not depend on the weights).
Every (method, N) runs in a fresh process, after a warm-up, and reports its wall time and its peak
RSS above the RSS it had before (VmHWM after resetting it through /proc/self/clear_refs):

- samrs: SamEngine.label (encoder once, decoder in chunks, masks in windows) + painting the crops;
- official: SamPredictor.set_image, predict_torch over chunks of 20 boxes with full-size masks,
  painting each mask into the label map (what the SAMRS scripts do);
- floor: the image encoder + SAM's prompt encoder and MaskDecoder alone, same prompts, samrs' chunk.

GPU mode (--gpu): vit_h-shaped random SAM, 1024x1024 images, 100 boxes each, samrs in bf16 and fp32
and the official approach (fp32, SAM has no autocast), images/s.

--smoke runs either mode with the tiny SAM and a few boxes on the CPU (seconds).

    python scripts/bench_sam_labeling.py --json bench.json
    python scripts/bench_sam_labeling.py --gpu --json bench_gpu.json
    python scripts/bench_sam_labeling.py --smoke [--gpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from segment_anything import SamPredictor

from samrs.labeling.sam.build import LoadedSam, build_random_sam, build_tiny_sam
from samrs.labeling.sam.engine import SamEngine
from samrs.labeling.sam.prompts import PromptSpec, build_prompts
from samrs.sources.records import ObjectRecord

OFFICIAL_CHUNK = 20  # boxes per predict_torch call in the official approach
IGNORE = 255


def make_objects(n: int, size: int, rng: np.random.Generator) -> list[ObjectRecord]:
    """n rotated boxes: mostly vehicle-sized (8-40 px), some medium (40-150), a few large (150-500)."""
    kind = rng.choice(3, size=n, p=[0.8, 0.17, 0.03])
    lo, hi = np.array([8, 40, 150])[kind], np.array([40, 150, 500])[kind]
    w, h = rng.uniform(lo, hi), rng.uniform(lo, hi) * rng.uniform(0.3, 1.0, n)
    cx, cy = rng.uniform(w / 2, size - w / 2), rng.uniform(h / 2, size - h / 2)
    angle = rng.uniform(0, np.pi, n)
    out = []
    for i in range(n):
        axes = np.array([[np.cos(angle[i]), np.sin(angle[i])], [-np.sin(angle[i]), np.cos(angle[i])]])
        corners = (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [w[i] / 2, h[i] / 2]) @ axes + [cx[i], cy[i]]
        corners = corners.clip(0, size)
        hbox = np.concatenate([corners.min(axis=0), corners.max(axis=0)])
        out.append(ObjectRecord("obj", int(i % 18), corners, hbox))
    return out


def make_scene(n: int, size: int, seed: int) -> tuple[np.ndarray, list[ObjectRecord]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3), dtype=np.uint8), make_objects(n, size, rng)


def build_model(name: str, device: str) -> LoadedSam:
    loaded = build_tiny_sam() if name == "tiny" else build_random_sam(name)
    loaded.model.to(device)
    return loaded


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def paint_crops(shape: tuple[int, int], masks) -> np.ndarray:
    """Label map from InstanceMask crops, smaller instances on top."""
    label = np.full(shape, IGNORE, dtype=np.uint8)
    for m in sorted(masks, key=lambda m: -m.area):
        h, w = m.mask.shape
        label[m.y0 : m.y0 + h, m.x0 : m.x0 + w][m.mask] = m.class_id
    return label


def run_samrs(sam: LoadedSam, images, objects, chunk_size: int, precision: str) -> dict:
    engine = SamEngine(sam.model, PromptSpec(["hbox"]), chunk_size=chunk_size, precision=precision)
    engine.stopwatch.synchronize = sam.model.device.type == "cuda"
    start = time.perf_counter()
    results = engine.label(images, objects)
    with engine.stopwatch("paint"):
        for image, masks in zip(images, results):
            paint_crops(image.shape[:2], masks)
    return {"seconds": time.perf_counter() - start, "stages": dict(engine.stopwatch.seconds)}


@torch.inference_mode()
def run_official(sam: LoadedSam, images, objects) -> dict:
    """SamPredictor per image, chunks of 20 boxes, full-size masks, painted one by one."""
    device = str(sam.model.device)
    start = time.perf_counter()
    predictor = SamPredictor(sam.model)
    for image, image_objects in zip(images, objects):
        predictor.set_image(image)
        boxes = np.array([o.hbox for o in image_objects])
        classes = [o.class_id for o in image_objects]
        painted = []
        for i in range(0, len(boxes), OFFICIAL_CHUNK):
            box_t = predictor.transform.apply_boxes_torch(torch.as_tensor(boxes[i : i + OFFICIAL_CHUNK], device=device), image.shape[:2])
            masks, _, _ = predictor.predict_torch(None, None, box_t.float(), multimask_output=False)
            painted.extend(masks[:, 0].cpu().numpy())
        label = np.full(image.shape[:2], IGNORE, dtype=np.uint8)
        for i in np.argsort([-m.sum() for m in painted], kind="stable"):
            label[painted[i]] = classes[i]
    sync(device)
    return {"seconds": time.perf_counter() - start}


@torch.inference_mode()
def run_floor(sam: LoadedSam, images, objects, chunk_size: int) -> dict:
    """Image encoder + prompt encoder + SAM's MaskDecoder for the same prompts: nothing else."""
    model = sam.model
    engine = SamEngine(model, PromptSpec(["hbox"]), chunk_size=chunk_size)
    start = time.perf_counter()
    embeddings = engine.encode(images)
    for embedding, image, image_objects in zip(embeddings, images, objects):
        prompts = build_prompts(engine.prompt, image_objects, engine.frame(*image.shape[:2]))
        for i in range(0, len(image_objects), chunk_size):
            _, boxes, _ = prompts.encoder_inputs(np.arange(i, min(i + chunk_size, len(image_objects))), model.device)
            sparse, dense = model.prompt_encoder(points=None, boxes=boxes, masks=None)
            model.mask_decoder(embedding[None], model.prompt_encoder.get_dense_pe(), sparse, dense, False)
    sync(str(model.device))
    return {"seconds": time.perf_counter() - start}


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(method: str, n: int, args: argparse.Namespace) -> dict:
    """One measured run in this (fresh) process: a warm-up with a few boxes, then the real one."""
    torch.manual_seed(0)
    sam = build_model(args.model, "cpu")
    run = {
        "samrs": lambda im, ob: run_samrs(sam, im, ob, args.chunk_size, "fp32"),
        "official": lambda im, ob: run_official(sam, im, ob),
        "floor": lambda im, ob: run_floor(sam, im, ob, args.chunk_size),
    }[method]
    image, objects = make_scene(n, args.size, seed=n)
    run([image], [objects[:4]])
    baseline = _memory_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    out = run([image], [objects])
    out["peak_mb"] = (_memory_kb("VmHWM") - baseline) / 1024
    return out


def cpu_mode(args: argparse.Namespace) -> dict:
    figures: dict = {"mode": "cpu", "model": args.model, "size": args.size, "chunk_size": args.chunk_size, "runs": {}}
    for n in args.boxes:
        methods = ["samrs", "floor"] + ([] if n > args.official_max else ["official"])
        for method in methods:
            command = [sys.executable, __file__, "--child", method, str(n), "--model", args.model,
                       "--size", str(args.size), "--chunk-size", str(args.chunk_size)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            result = json.loads(done.stdout.strip().splitlines()[-1])
            figures["runs"].setdefault(str(n), {})[method] = result
            print(f"N={n:5d} {method:8s} {result['seconds']:8.2f} s  peak +{result['peak_mb']:7.1f} MB", flush=True)
        report_cpu(n, figures["runs"][str(n)])
    return figures


def report_cpu(n: int, runs: dict) -> None:
    samrs = runs["samrs"]
    stages = samrs["stages"]
    model = stages.get("encoder", 0) + stages.get("decoder", 0) + stages.get("masks", 0)
    other = samrs["seconds"] - model
    line = f"N={n}: samrs/floor {samrs['seconds'] / runs['floor']['seconds']:.2f}"
    if "official" in runs:
        line += f", samrs/official {samrs['seconds'] / runs['official']['seconds']:.2f}"
    line += f", outside SAM's modules {other:.2f} s = {100 * other / samrs['seconds']:.1f}% of samrs"
    print(line + "  stages: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items()), flush=True)


def gpu_mode(args: argparse.Namespace) -> dict:
    device = "cpu" if args.smoke else "cuda"
    sam = build_model(args.model, device)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.images)]
    objects = [make_objects(args.boxes_per_image, args.size, rng) for _ in images]
    figures: dict = {"mode": "gpu", "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                     "model": args.model, "images": args.images, "boxes_per_image": args.boxes_per_image, "runs": {}}
    runs = {
        "samrs_bf16": lambda im, ob: run_samrs(sam, im, ob, args.chunk_size, "bf16"),
        "samrs_fp32": lambda im, ob: run_samrs(sam, im, ob, args.chunk_size, "fp32"),
        "official_fp32": lambda im, ob: run_official(sam, im, ob),
    }
    for name, run in runs.items():
        run(images[:1], [objects[0][:8]])  # warm-up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        result = run(images, objects)
        result["images_per_s"] = len(images) / result["seconds"]
        if device == "cuda":
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        figures["runs"][name] = result
        print(f"{name:14s} {result['images_per_s']:7.2f} images/s  ({result['seconds']:.2f} s)", flush=True)
    base = figures["runs"]["official_fp32"]["images_per_s"]
    for name in ("samrs_bf16", "samrs_fp32"):
        print(f"{name} / official_fp32 throughput: {figures['runs'][name]['images_per_s'] / base:.2f}x")
    return figures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="GPU mode: vit_h, images/s")
    parser.add_argument("--smoke", action="store_true", help="tiny SAM, few boxes, CPU: checks the script runs")
    parser.add_argument("--model", default=None, help="vit_b/vit_l/vit_h (random weights) or tiny")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--boxes", type=int, nargs="+", default=[50, 500, 2000], help="CPU mode: box counts N")
    parser.add_argument("--official-max", type=int, default=10**9, help="CPU mode: skip the official run above this N")
    parser.add_argument("--chunk-size", type=int, default=64, help="samrs prompts per decoder chunk")
    parser.add_argument("--images", type=int, default=16, help="GPU mode: images")
    parser.add_argument("--boxes-per-image", type=int, default=100, help="GPU mode: boxes per image")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.model = args.model or "tiny"
        args.boxes = [8, 24] if args.boxes == parser.get_default("boxes") else args.boxes
        args.images, args.boxes_per_image = 2, 10
    args.model = args.model or ("vit_h" if args.gpu else "vit_b")
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), args)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model} (random weights)")
    figures = gpu_mode(args) if args.gpu else cpu_mode(args)
    figures["torch"] = torch.__version__
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
