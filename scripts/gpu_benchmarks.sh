#!/usr/bin/env bash
# Every GPU benchmark of samrs in one run, for the ~15 minutes of device time a task may be lent: under
# 8 minutes on an H100/H200, each step under its own timeout, figures in $OUT/results.json, everything
# printed in $OUT/log.txt (docs/BENCHMARKS.md, "GPU benchmarks", says how to run it and what each step
# measures).
#
#   bash scripts/gpu_wheels.sh                             # here first: the wheels, into .whl/
#   OUT=$OUT bash scripts/gpu_benchmarks.sh                # on the device, carry [".whl"], timeout_s 540
#   SMOKE=1 bash scripts/gpu_benchmarks.sh                 # the same steps on the CPU at tiny sizes
#   STEPS="sam train_swin_t" bash scripts/gpu_benchmarks.sh   # some steps only
#   DRY_RUN=1 [SMOKE=1] bash scripts/gpu_benchmarks.sh     # print the steps' commands, run nothing
#
# Variables: OUT (default: a new temporary folder), SMOKE (1: CPU, tiny models and sizes, one step),
# WHEELS (the wheels gpu_wheels.sh downloaded, default .whl),
# STEPS (step names, default all), PYTHON (default .venv/bin/python if there, else python3), DEADLINE
# (seconds from the start after which no step starts and a running one is cut; default 460, SMOKE 3600).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SMOKE=${SMOKE:-0}
DRY_RUN=${DRY_RUN:-0}
WHEELS=${WHEELS:-.whl}
ALL_STEPS="sam train_swin_t backbones mask2former mae instance train_r50_upernet train_vit_b sam_family"
STEPS=${STEPS:-$ALL_STEPS}
if [ -x "$ROOT/.venv/bin/python" ]; then PY=${PYTHON:-$ROOT/.venv/bin/python}; else PY=${PYTHON:-python3}; fi
if [ "$SMOKE" = 1 ]; then DEADLINE=${DEADLINE:-3600}; else DEADLINE=${DEADLINE:-460}; fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1  # this checkout's samrs, no install

# The steps: name, timeout in seconds (GPU), script and flags. GPU sizes are the paper's (batch 96 of
# 224 px, bf16); SMOKE runs the same code paths on the CPU with the debug models, batch 12 of 64 px
# (UperNet's pooled BatchNorm needs 2+ images per subset: 2/2/8), the backbones at batch 2 of 128 px
# (vit_b_rvsa needs 7 patches a side, vitaev2_s a multiple of 32).
bench_steps() {
    if [ "$SMOKE" = 1 ]; then
        local tiny=(--device cpu --precision bf16 --steps 1 --warmup 0 --repeats 1) small=(--batch 12 --crop 64)
        step sam 600 bench_sam_labeling.py --smoke --gpu
        step train_swin_t 600 bench_train_step.py "${tiny[@]}" "${small[@]}" --experiment sep_swin_t_debug
        step backbones 900 bench_backbones.py "${tiny[@]}" --batch 2 --crop 128 --in-process --models $BACKBONES
        step mask2former 600 bench_mask2former.py "${tiny[@]}" "${small[@]}" --debug-size
        step mae 600 bench_mae.py --device cpu --input 64 --batch 2 --steps 1 --warmup 0 --repeats 1
        step instance 600 bench_instance.py "${tiny[@]}" "${small[@]}"
        step train_r50_upernet 600 bench_train_step.py "${tiny[@]}" "${small[@]}" --experiment sep_r50_upernet_debug
        step train_vit_b 600 bench_train_step.py "${tiny[@]}" "${small[@]}" --experiment sep_vit_b_debug
        step sam_family 600 bench_sam_labeling.py --family hq_vit_b sam2.1_hiera_t --smoke --gpu
    else
        local paper=(--device cuda --batch 96 --crop 224 --precision bf16)
        step sam 70 bench_sam_labeling.py --gpu --images 16 --boxes-per-image 100
        step train_swin_t 40 bench_train_step.py "${paper[@]}" --experiment sep_swin_t --steps 10 --warmup 3 --repeats 2
        step backbones 75 bench_backbones.py "${paper[@]}" --steps 5 --warmup 2 --repeats 1 --in-process --models $BACKBONES
        step mask2former 45 bench_mask2former.py "${paper[@]}" --steps 5 --warmup 2 --repeats 1
        step mae 30 bench_mae.py --device cuda --batch 256 --steps 5 --warmup 2 --repeats 1
        step instance 40 bench_instance.py --device cuda --instance inst_r50_maskrcnn --semantic sep_r50_upernet \
            --batch 16 --crop 512 --precision bf16 --steps 5 --warmup 2 --repeats 1
        step train_r50_upernet 40 bench_train_step.py "${paper[@]}" --experiment sep_r50_upernet --steps 10 --warmup 3 --repeats 1
        step train_vit_b 40 bench_train_step.py "${paper[@]}" --experiment sep_vit_b --steps 10 --warmup 3 --repeats 1
        step sam_family 60 bench_sam_labeling.py --family hq_vit_h sam2.1_hiera_l --gpu --images 8 --boxes-per-image 100
    fi
}
# bench_backbones.py's list and ConvNeXt-T (sep_convnext_t's backbone).
BACKBONES="swin_tiny_patch4_window7_224 swin_t resnet50 convnext_tiny vit_b vitaev2_s internimage_t vit_adapter_b vit_b_rvsa"

# step NAME TIMEOUT SCRIPT ARGS...: run scripts/SCRIPT with ARGS and --json, cut at TIMEOUT or the deadline.
step() {
    local name=$1 limit=$2 script=$3
    shift 3
    if [ "$DRY_RUN" = 1 ]; then
        echo "$name $limit scripts/$script $* --json \$WORK/$name.json"
        return
    fi
    case " $STEPS " in *" $name "*) ;; *) return ;; esac
    local left=$((DEADLINE - SECONDS))
    if [ "$left" -lt 15 ]; then
        echo "=== $(date +%T) $name: skipped, ${left} s left before the deadline"
        printf '%s\t%s\t%s\t%s\n' "$name" skipped 0 "$limit" >>"$WORK/steps.tsv"
        return
    fi
    [ "$limit" -le "$left" ] || limit=$left
    echo "=== $(date +%T) [${SECONDS} s] $name (timeout ${limit} s): $PY scripts/$script $*"
    local start=$SECONDS
    timeout -k 10 "$limit" "$PY" "scripts/$script" "$@" --json "$WORK/$name.json"
    local rc=$?
    [ "$rc" = 124 ] && echo "=== $name: TIMED OUT after $limit s"
    echo "=== $(date +%T) $name: exit $rc, $((SECONDS - start)) s"
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$((SECONDS - start))" "$limit" >>"$WORK/steps.tsv"
    merge_results
}

# $OUT/results.json from the steps so far (after every step: a run cut short keeps what it measured).
merge_results() {
    "$PY" - "$WORK" "$OUT/results.json" <<'EOF'
import json, sys
from pathlib import Path
work, out = Path(sys.argv[1]), Path(sys.argv[2])
env = json.loads((work / "env.json").read_text()) if (work / "env.json").exists() else {}
steps = {}
for line in (work / "steps.tsv").read_text().splitlines():
    name, rc, seconds, limit = line.split("\t")
    figures = work / f"{name}.json"
    steps[name] = {"exit": rc, "seconds": int(seconds), "timeout_s": int(limit),
                   "figures": json.loads(figures.read_text()) if figures.exists() and rc == "0" else None}
out.write_text(json.dumps({"env": env, "steps": steps}, indent=2))
EOF
}

# The headline figures of every step, one line each.
summary() {
    "$PY" - "$OUT/results.json" <<'EOF'
import json, sys
KEYS = ("images_per_s", "peak_gib", "peak_mb", "peak_gpu_mb", "step_memory_mib", "lightning_overhead", "ratio")

def leaves(node, path=""):
    if isinstance(node, dict):
        for k, v in node.items():
            yield from leaves(v, f"{path}.{k}" if path else k)
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield path, node

results = json.load(open(sys.argv[1]))
print(f"{'step':<18} {'exit':>7} {'s':>4}  figures")
for name, s in results["steps"].items():
    shown = [f"{p}={v:.3g}" for p, v in leaves(s["figures"] or {})
             if p.rsplit(".", 1)[-1] in KEYS or "_over_" in p]
    print(f"{name:<18} {s['exit']:>7} {s['seconds']:>4}  " + ("; ".join(shown) or "-"))
EOF
}

if [ "$DRY_RUN" = 1 ]; then
    bench_steps
    exit 0
fi
OUT=${OUT:-$(mktemp -d -t samrs_gpu_bench.XXXXXX)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
: >"$WORK/steps.tsv"
exec > >(tee -a "$OUT/log.txt") 2>&1
echo "=== $(date -Is) samrs GPU benchmarks, SMOKE=$SMOKE, OUT=$OUT, steps: $STEPS, deadline $DEADLINE s"
[ "$SMOKE" = 1 ] && export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
nvidia-smi 2>/dev/null || echo "(no nvidia-smi)"
if ! "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available())"; then
    echo "ERROR: $PY cannot import torch: the device image's CUDA torch is expected (PYTHON=...)"
    exit 1
fi
if [ "$SMOKE" != 1 ] && ! "$PY" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "ERROR: no CUDA device visible to torch (SMOKE=1 runs the CPU smoke test)"
    exit 1
fi

echo "=== $(date +%T) [${SECONDS} s] install"
IMPORTS="import samrs.train, hydra, albumentations, pycocotools, shapely, segment_anything, segment_anything_hq, segmentation_models_pytorch"
if "$PY" -c "$IMPORTS" 2>/dev/null; then
    echo "samrs and its benchmark dependencies import: install skipped"
elif [ ! -d "$WHEELS" ]; then
    echo "ERROR: samrs does not import and there is no $WHEELS/: run 'bash scripts/gpu_wheels.sh' here and carry .whl"
    exit 1
else
    pip=("$PY" -m pip install -q --no-index --no-cache-dir --find-links "$WHEELS" -r scripts/gpu_requirements.txt)
    if timeout 120 "${pip[@]}"; then
        echo "installed $WHEELS/*.whl with their dependencies"
    else
        echo "pip's resolver failed on the device image's versions: installing the wheels without dependencies"
        timeout 120 "${pip[@]}" --no-deps
    fi
    "$PY" -c "$IMPORTS" || { echo "ERROR: samrs still does not import after the install"; exit 1; }
fi
echo "=== $(date +%T) [${SECONDS} s] install done"
"$PY" - "$WORK/env.json" "$SMOKE" <<'EOF'
import json, os, platform, subprocess, sys
from importlib import metadata
import torch


def commit() -> str | None:  # the device gets a copy of the tree, maybe without .git
    try:
        done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
        return done.stdout.strip() or None
    except OSError:
        return None

names = ["transformers", "timm", "lightning", "torchmetrics", "albumentations", "segment-anything", "numpy",
         "opencv-python-headless", "huggingface-hub", "tokenizers"]
env = {"smoke": sys.argv[2] == "1", "python": platform.python_version(), "torch": torch.__version__,
       "cuda": torch.version.cuda, "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
       "cpus": len(os.sched_getaffinity(0)), "threads": torch.get_num_threads(), "commit": commit(), "packages": {}}
for name in names:
    try:
        env["packages"][name] = metadata.version(name)
    except metadata.PackageNotFoundError:
        env["packages"][name] = None
print(json.dumps(env))
open(sys.argv[1], "w").write(json.dumps(env))
EOF

bench_steps
echo "=== $(date +%T) [${SECONDS} s] all steps done; figures in $OUT/results.json"
[ -s "$WORK/steps.tsv" ] && merge_results && summary
