"""Benchmark: samrs' SAM labeling engine against the official SAM approach, same model and prompts.

CPU mode (default): one 1024x1024 image with N boxes (default 50, 500, 2000), a vit_b-shaped SAM
with random weights (no checkpoint download is possible; compute does not depend on the weights),
H-Box prompts, fp32. Three ways to label the image:

- samrs: SamEngine (encoder once, decoder in chunks of 64, masks in windows) + painting the crops
  into a label map, smaller instances on top;
- official: SamPredictor.set_image, predict_torch over chunks of 20 boxes with full-size masks,
  each chunk's masks painted into the label map in file order (what the SAMRS scripts do);
- floor: the image encoder + SAM's prompt encoder and MaskDecoder alone for the same prompts
  (chunks of 20: SAM's decoder is ~2x slower per prompt at 64 on this CPU): nothing else.

Time: in one process per N, after a warm-up, the encoder pass (the same computation in all three:
SamPredictor.set_image and SamEngine.encode, each run twice, alternately; the fastest is used for
all) and then the per-object stage, interleaved: the objects are taken in slices of 320 and each
slice goes through the three methods in rotating order, so that load from other processes on a
shared machine falls on all three alike. Memory: samrs and official (--memory-methods) at every N once more in a fresh process,
peak RSS (VmHWM after resetting it through /proc/self/clear_refs) above the RSS before the run,
and above the RSS after the encoder (the per-object stage alone).

GPU mode (--gpu): vit_h-shaped random SAM, 1024x1024 images, 100 boxes each, samrs in bf16 and fp32
and the official approach (fp32: SAM has no autocast), images/s.

--smoke runs either mode with the tiny SAM and a few boxes on the CPU (a minute).

Family mode (--family NAME ...: hq_vit_h|l|b, sam2.1_hiera_t|s|b+|l, edgetam, sam3; with --smoke
their tiny builds): per family, a random model of the real size, one 1024x1024 image with N boxes,
H-Box prompts; per-image labeling time of samrs (the family's engine path, crops painted) and of
the family's own predictor used one image at a time (SAM-HQ: segment_anything_hq's SamPredictor;
the others: the transformers processor, the model on chunks of 20 boxes, post_process_masks to
full size, painted), each after a warm-up, and their ratio. With --gpu: images/s of samrs in bf16
and of the family's predictor in fp32 over --images images.

    python scripts/bench_sam_labeling.py --json bench.json
    python scripts/bench_sam_labeling.py --gpu --json bench_gpu.json
    python scripts/bench_sam_labeling.py --smoke [--gpu]
    python scripts/bench_sam_labeling.py --family hq_vit_b sam2.1_hiera_t --boxes 50 500 [--gpu] [--smoke]
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

from samrs.labeling.base import InstanceMask
from samrs.labeling.sam.build import LoadedSam, build_random_sam, build_tiny_sam
from samrs.labeling.sam.engine import SamEngine
from samrs.labeling.sam.prompts import PromptSpec, build_prompts
from samrs.sources.records import ObjectRecord

OFFICIAL_CHUNK = 20  # boxes per predict_torch call in the official approach (and the floor)
SLICE = 320  # objects per interleaving round: 5 samrs chunks of 64, 16 official chunks of 20
METHODS = ("samrs", "official", "floor")
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


def paint_crops(shape: tuple[int, int], masks: list[InstanceMask]) -> np.ndarray:
    """Label map from InstanceMask crops, smaller instances on top."""
    label = np.full(shape, IGNORE, dtype=np.uint8)
    for m in sorted(masks, key=lambda m: -m.area):
        h, w = m.mask.shape
        label[m.y0 : m.y0 + h, m.x0 : m.x0 + w][m.mask] = m.class_id
    return label


class Labeling:
    """The three methods on one model, split into the encoder pass and the per-object stage."""

    def __init__(self, sam: LoadedSam, chunk_size: int, precision: str = "fp32") -> None:
        self.model = sam.model
        self.device = str(sam.model.device)
        self.engine = SamEngine(sam.model, PromptSpec(["hbox"]), chunk_size=chunk_size, precision=precision)
        self.engine.stopwatch.synchronize = self.device.startswith("cuda")
        self.predictor = SamPredictor(sam.model)

    def encode(self, method: str, images: list[np.ndarray]) -> list[torch.Tensor | None]:
        """samrs and floor: SamEngine.encode, batched; official: SamPredictor.set_image (one image,
        kept in the predictor: call objects() before encoding the next)."""
        if method == "official":
            (image,) = images
            self.predictor.set_image(image)
            return [None]
        return list(self.engine.encode(images))

    @torch.inference_mode()
    def objects(self, method: str, image: np.ndarray, embedding, objects: list[ObjectRecord], label, found: list) -> None:
        """The per-object stage for `objects`; official paints into `label`, samrs collects in `found`."""
        if method == "samrs":
            found.extend(self.engine.predict(embedding[None], self.engine.frame(*image.shape[:2]), objects))
        elif method == "official":
            boxes = torch.as_tensor(np.array([o.hbox for o in objects]), dtype=torch.float, device=self.device)
            for i in range(0, len(objects), OFFICIAL_CHUNK):
                box_t = self.predictor.transform.apply_boxes_torch(boxes[i : i + OFFICIAL_CHUNK], image.shape[:2])
                masks, _, _ = self.predictor.predict_torch(None, None, box_t, multimask_output=False)
                for mask, obj in zip(masks[:, 0].cpu().numpy(), objects[i : i + OFFICIAL_CHUNK]):
                    label[mask] = obj.class_id
        else:
            prompts = build_prompts(self.engine.prompt, objects, self.engine.frame(*image.shape[:2]))
            pe = self.model.prompt_encoder.get_dense_pe()
            for i in range(0, len(objects), OFFICIAL_CHUNK):
                index = np.arange(i, min(i + OFFICIAL_CHUNK, len(objects)))
                sparse, dense = self.model.prompt_encoder(None, prompts.encoder_inputs(index, self.device)[1], None)
                self.model.mask_decoder(embedding[None], pe, sparse, dense, False)
        sync(self.device)

    def finish(self, method: str, image: np.ndarray, found: list) -> None:
        if method == "samrs":
            with self.engine.stopwatch("paint"):
                paint_crops(image.shape[:2], found)

    def run(self, method: str, images: list[np.ndarray], objects: list[list[ObjectRecord]], mark=lambda: None) -> dict:
        """The whole method on every image; `mark` is called after the (first) encoder pass.

        samrs and floor encode all images first (SamEngine batches them), official one at a time."""
        start = time.perf_counter()
        encoder = 0.0
        embeddings: list = []
        for k, (image, image_objects) in enumerate(zip(images, objects)):
            if method == "official" or k == 0:
                begin = time.perf_counter()
                embeddings = self.encode(method, [image]) if method == "official" else self.encode(method, images)
                sync(self.device)
                encoder += time.perf_counter() - begin
            if k == 0:
                mark()
            embedding = embeddings[0] if method == "official" else embeddings[k]
            label, found = np.full(image.shape[:2], IGNORE, dtype=np.uint8), []
            self.objects(method, image, embedding, image_objects, label, found)
            self.finish(method, image, found)
        return {"seconds": time.perf_counter() - start, "encoder_s": encoder}


def time_interleaved(sam: LoadedSam, n: int, args: argparse.Namespace) -> dict:
    """Encoder passes alternated, then the per-object stage of the three methods interleaved by slices."""
    labeling = Labeling(sam, args.chunk_size)
    image, objects = make_scene(n, args.size, seed=n)
    for method in METHODS:  # warm-up
        labeling.run(method, [image], [objects[:4]])
    encoder_runs: dict[str, list[float]] = {"samrs": [], "official": []}
    for _ in range(2):
        for method in encoder_runs:
            start = time.perf_counter()
            labeling.encode(method, [image])
            encoder_runs[method].append(time.perf_counter() - start)
    (embedding,) = labeling.encode("samrs", [image])
    labeling.engine.stopwatch.seconds.clear()
    label, found = np.full(image.shape[:2], IGNORE, dtype=np.uint8), []
    stage = dict.fromkeys(METHODS, 0.0)
    for k, start in enumerate(range(0, n, SLICE)):
        part = objects[start : start + SLICE]
        for method in METHODS[k % 3 :] + METHODS[: k % 3]:
            begin = time.perf_counter()
            labeling.objects(method, image, embedding, part, label, found)
            stage[method] += time.perf_counter() - begin
    begin = time.perf_counter()
    labeling.finish("samrs", image, found)
    stage["samrs"] += time.perf_counter() - begin
    encoder = min(min(r) for r in encoder_runs.values())
    return {
        "encoder_s": encoder,
        "encoder_runs_s": encoder_runs,
        "per_object_stage_s": stage,
        "seconds": {m: encoder + stage[m] for m in METHODS},
        "samrs_stages_s": dict(labeling.engine.stopwatch.seconds),
    }


def _memory_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def memory_child(method: str, n: int, args: argparse.Namespace) -> dict:
    """One fresh-process run: warm-up with a few boxes, then VmHWM above the RSS before the run
    ("peak_mb", encoder included) and above the RSS after the encoder ("stage_peak_mb")."""
    torch.manual_seed(0)
    labeling = Labeling(build_model(args.model, "cpu"), args.chunk_size)
    image, objects = make_scene(n, args.size, seed=n)
    labeling.run(method, [image], [objects[:4]])
    marks: dict[str, int] = {}

    def mark() -> None:
        marks["run_peak"] = _memory_kb("VmHWM")
        marks["stage_base"] = _memory_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")

    baseline = _memory_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    out = labeling.run(method, [image], [objects], mark)
    stage_peak = _memory_kb("VmHWM")
    out["peak_mb"] = (max(marks["run_peak"], stage_peak) - baseline) / 1024
    out["stage_peak_mb"] = (stage_peak - marks["stage_base"]) / 1024
    return out


def cpu_mode(args: argparse.Namespace) -> dict:
    figures: dict = {"mode": "cpu", "model": args.model, "size": args.size, "chunk_size": args.chunk_size, "runs": {}}
    sam = build_model(args.model, "cpu")
    for n in args.boxes:
        timing = time_interleaved(sam, n, args)
        memory = {}
        for method in args.memory_methods if n <= args.memory_max else ():
            command = [sys.executable, __file__, "--memory-child", method, str(n), "--model", args.model,
                       "--size", str(args.size), "--chunk-size", str(args.chunk_size)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            memory[method] = json.loads(done.stdout.strip().splitlines()[-1])
        figures["runs"][str(n)] = {"time": timing, "memory": memory}
        report_cpu(n, timing, memory)
        if args.json:  # after every N, so a long run that is stopped keeps what it measured
            args.json.write_text(json.dumps(figures, indent=2))
    return figures


def report_cpu(n: int, timing: dict, memory: dict) -> None:
    seconds, stage, stages = timing["seconds"], timing["per_object_stage_s"], timing["samrs_stages_s"]
    print(f"N={n}: encoder {timing['encoder_s']:.2f} s (runs {timing['encoder_runs_s']}); "
          + ", ".join(f"{m} {seconds[m]:.2f} s (per-object {stage[m]:.2f} s)" for m in METHODS))
    model = timing["encoder_s"] + stages.get("decoder", 0) + stages.get("masks", 0)
    other = seconds["samrs"] - model
    print(f"  samrs/official {seconds['samrs'] / seconds['official']:.2f} (per-object stage "
          f"{stage['samrs'] / stage['official']:.2f}), samrs/floor {seconds['samrs'] / seconds['floor']:.2f}, "
          f"samrs outside its model compute {other:.2f} s = {100 * other / seconds['samrs']:.1f}%")
    print("  samrs stages: " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    for method, r in memory.items():
        print(f"  memory {method:8s}: peak +{r['peak_mb']:7.1f} MB, per-object stage +{r['stage_peak_mb']:7.1f} MB "
              f"(fresh-process run {r['seconds']:.1f} s)")
    sys.stdout.flush()


def gpu_mode(args: argparse.Namespace) -> dict:
    device = "cpu" if args.smoke else "cuda"
    sam = build_model(args.model, device)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.images)]
    objects = [make_objects(args.boxes_per_image, args.size, rng) for _ in images]
    figures: dict = {"mode": "gpu", "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
                     "model": args.model, "images": args.images, "boxes_per_image": args.boxes_per_image,
                     "chunk_size": args.chunk_size, "runs": {}}
    for name, method, precision in (("samrs_bf16", "samrs", "bf16"), ("samrs_fp32", "samrs", "fp32"), ("official_fp32", "official", "fp32")):
        labeling = Labeling(sam, args.chunk_size, precision)
        labeling.run(method, images[:1], [objects[0][:8]])  # warm-up
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        result = labeling.run(method, images, objects)
        result["images_per_s"] = len(images) / result["seconds"]
        if device == "cuda":
            result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        figures["runs"][name] = result
        print(f"{name:14s} {result['images_per_s']:7.2f} images/s  ({result['seconds']:.2f} s)", flush=True)
    base = figures["runs"]["official_fp32"]["images_per_s"]
    for name in ("samrs_bf16", "samrs_fp32"):
        print(f"{name} / official_fp32 throughput: {figures['runs'][name]['images_per_s'] / base:.2f}x")
    return figures


TINY = {"hq_vit_h": "hq_tiny", "hq_vit_l": "hq_tiny", "hq_vit_b": "hq_tiny", "edgetam": "edgetam_tiny",
        "sam3": "sam3_tiny"}


def build_family(name: str, smoke: bool, device: str) -> LoadedSam:
    """The family `name` with random weights of the real size, or its tiny build (--smoke)."""
    from samrs.labeling.sam.build import build_tiny_sam_hq
    from samrs.labeling.sam.build_hf import build_random_family, build_tiny_family

    tiny = TINY.get(name, "sam2.1_tiny") if smoke else None
    if name.startswith("hq_"):
        loaded = build_tiny_sam_hq() if tiny else build_random_sam(name)
    else:
        loaded = build_tiny_family(tiny) if tiny else build_random_family(name)
    loaded.model.to(device)
    return loaded


class FamilyLabeling:
    """samrs and the family's own predictor on one model: (image, objects) -> label map."""

    def __init__(self, loaded: LoadedSam, chunk_size: int, precision: str = "fp32") -> None:
        self.family = loaded.model
        self.device = str(self.family.device)
        self.engine = SamEngine(self.family, PromptSpec(["hbox"]), chunk_size=chunk_size, precision=precision)
        self.engine.stopwatch.synchronize = self.device.startswith("cuda")
        self.official_encoder_s = 0.0  # the predictor's image encoding, summed over images

    def samrs(self, images: list[np.ndarray], objects: list[list[ObjectRecord]]) -> None:
        for image, masks in zip(images, self.engine.label(images, objects)):
            paint_crops(image.shape[:2], masks)
        sync(self.device)

    @torch.inference_mode()
    def official(self, images: list[np.ndarray], objects: list[list[ObjectRecord]]) -> None:
        for image, image_objects in zip(images, objects):
            label = np.full(image.shape[:2], IGNORE, dtype=np.uint8)
            boxes = np.array([o.hbox for o in image_objects])
            for start in range(0, len(image_objects), OFFICIAL_CHUNK):
                masks = self._official_masks(image, boxes[start : start + OFFICIAL_CHUNK], start == 0)
                for mask, obj in zip(masks, image_objects[start : start + OFFICIAL_CHUNK]):
                    label[mask] = obj.class_id
        sync(self.device)

    def _official_masks(self, image: np.ndarray, boxes: np.ndarray, new_image: bool) -> np.ndarray:
        """(n, H, W) bool full-size masks of `boxes` by the family's own predictor."""
        start = time.perf_counter()
        if new_image:
            self._official_encode(image)
            sync(self.device)
            self.official_encoder_s += time.perf_counter() - start
        if self.family.family == "sam_hq":
            box_t = self.predictor.transform.apply_boxes_torch(torch.as_tensor(boxes, dtype=torch.float,
                                                                               device=self.device), image.shape[:2])
            return self.predictor.predict_torch(None, None, box_t, multimask_output=False)[0][:, 0].cpu().numpy()
        inputs = self.processor(original_sizes=[image.shape[:2]], input_boxes=[boxes.tolist()], return_tensors="pt")
        out = self.family.model(image_embeddings=self.embeddings, input_boxes=inputs["input_boxes"].to(self.device),
                                multimask_output=False)
        return self.processor.post_process_masks(out.pred_masks.cpu(), [image.shape[:2]])[0][:, 0].numpy()

    def _official_encode(self, image: np.ndarray) -> None:
        """The predictor's set_image (SAM-HQ) or the processor and get_image_embeddings (transformers)."""
        if self.family.family == "sam_hq":
            from segment_anything_hq import SamPredictor as HqPredictor

            self.predictor = HqPredictor(self.family.sam)
            self.predictor.set_image(image)
            return
        from transformers import Sam2Processor

        self.processor = Sam2Processor(self.family.image_processor)
        pixels = self.processor(images=image, return_tensors="pt")["pixel_values"].to(self.device)
        self.embeddings = self.family.model.get_image_embeddings(pixels)


def family_mode(args: argparse.Namespace) -> dict:
    device = "cuda" if args.gpu and not args.smoke else "cpu"
    figures: dict = {"mode": "family-gpu" if args.gpu else "family-cpu", "smoke": args.smoke, "families": {}}
    for name in args.family:
        loaded = build_family(name, args.smoke, device)
        runs: dict = {}
        if args.gpu:
            rng = np.random.default_rng(0)
            images = [rng.integers(0, 256, (args.size, args.size, 3), dtype=np.uint8) for _ in range(args.images)]
            objects = [make_objects(args.boxes_per_image, args.size, rng) for _ in images]
            for method, precision in (("samrs", "bf16"), ("official", "fp32")):
                labeling = FamilyLabeling(loaded, args.chunk_size, precision)
                getattr(labeling, method)(images[:1], [objects[0][:8]])  # warm-up
                start = time.perf_counter()
                getattr(labeling, method)(images, objects)
                runs[method] = {"images_per_s": len(images) / (time.perf_counter() - start), "precision": precision}
            ratio = runs["samrs"]["images_per_s"] / runs["official"]["images_per_s"]
            print(f"{name}: samrs bf16 {runs['samrs']['images_per_s']:.2f} images/s, official fp32 "
                  f"{runs['official']['images_per_s']:.2f} images/s, {ratio:.2f}x", flush=True)
        else:
            labeling = FamilyLabeling(loaded, args.chunk_size)
            for n in args.boxes:
                image, objects = make_scene(n, args.size, seed=n)
                seconds, stages = {}, {}
                for method in ("samrs", "official"):
                    getattr(labeling, method)([image], [objects[:4]])  # warm-up
                    labeling.engine.stopwatch.seconds.clear()
                    labeling.official_encoder_s = 0.0
                    start = time.perf_counter()
                    getattr(labeling, method)([image], [objects])
                    seconds[method] = time.perf_counter() - start
                    stages[method] = dict(labeling.engine.stopwatch.seconds) if method == "samrs" else {}
                encoder = {"samrs": stages["samrs"].get("encoder", 0.0), "official": labeling.official_encoder_s}
                runs[str(n)] = {"seconds": seconds, "encoder_s": encoder, "samrs_stages_s": stages["samrs"],
                                "official_over_samrs": seconds["official"] / seconds["samrs"]}
                print(f"{name} N={n}: samrs {seconds['samrs']:.2f} s (encoder {encoder['samrs']:.2f} s), official "
                      f"{seconds['official']:.2f} s (encoder {encoder['official']:.2f} s), "
                      f"official/samrs {seconds['official'] / seconds['samrs']:.2f}x", flush=True)
                if args.json:
                    args.json.write_text(json.dumps(figures | {"families": {**figures["families"], name: runs}}, indent=2))
        figures["families"][name] = runs
        del loaded
    return figures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="GPU mode: vit_h, images/s")
    parser.add_argument("--smoke", action="store_true", help="tiny SAM, few boxes, CPU: checks the script runs")
    parser.add_argument("--model", default=None, help="vit_b/vit_l/vit_h (random weights) or tiny")
    parser.add_argument("--size", type=int, default=1024, help="image side in pixels")
    parser.add_argument("--boxes", type=int, nargs="+", default=[50, 500, 2000], help="CPU mode: box counts N")
    parser.add_argument("--memory-max", type=int, default=10**9, help="CPU mode: no fresh-process memory runs above this N")
    parser.add_argument("--memory-methods", nargs="+", default=["samrs", "official"], choices=METHODS, help="CPU mode")
    parser.add_argument("--chunk-size", type=int, default=None, help="samrs prompts per decoder chunk (CPU 64, GPU 128)")
    parser.add_argument("--images", type=int, default=16, help="GPU mode: images")
    parser.add_argument("--boxes-per-image", type=int, default=100, help="GPU mode: boxes per image")
    parser.add_argument("--family", nargs="+", default=None,
                        help="family mode: hq_vit_h|l|b, sam2.1_hiera_t|s|b+|l, edgetam, sam3 (random weights)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--memory-child", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.family and args.boxes == parser.get_default("boxes"):
        args.boxes = [50, 500]
    if args.smoke:
        args.model = args.model or "tiny"
        args.boxes = [8, 24] if args.boxes in (parser.get_default("boxes"), [50, 500]) else args.boxes
        args.images, args.boxes_per_image = 2, 10
    args.model = args.model or ("vit_h" if args.gpu else "vit_b")
    args.chunk_size = args.chunk_size or (128 if args.gpu and not args.smoke else 64)
    return args


def main() -> None:
    args = parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child[0], int(args.memory_child[1]), args)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, model {args.model} (random weights)")
    if args.family:
        figures = family_mode(args)
    else:
        figures = gpu_mode(args) if args.gpu else cpu_mode(args)
    figures["torch"] = torch.__version__
    figures["threads"] = torch.get_num_threads()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
