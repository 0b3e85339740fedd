#!/usr/bin/env bash
# Download into .whl/ the wheels the GPU machine needs to install samrs' benchmark dependencies without
# internet (it has none): the list in scripts/gpu_requirements.txt, for CPython $PY_VERSION on manylinux
# x86_64, without their dependencies (the list is the closure minus what the device image holds).
# torch and torchvision are never downloaded: the device image has a CUDA build of its own.
#
#   bash scripts/gpu_wheels.sh                       # here, where the package registry is reachable
#   PY_VERSION=3.11 bash scripts/gpu_wheels.sh       # if the device image's python is not 3.12
#   PYTHON=/work/main/.venv/bin/python bash scripts/gpu_wheels.sh
#
# Variables: PY_VERSION (default 3.12: the device image's python3 was 3.12.3), PYTHON (the interpreter
# whose pip downloads and whose installed versions are compared with the list; default python3),
# DEST (default .whl), VERIFY (default 1: resolve the list against $PY_VERSION and report what the
# device image must provide; needs the registry), MAX_MB (default 40: warn above this total).
# Then: the device tool's run with carry [".whl"] and `bash scripts/gpu_benchmarks.sh` (docs/BENCHMARKS.md).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
PY_VERSION=${PY_VERSION:-3.12}
PYTHON=${PYTHON:-python3}
DEST=${DEST:-.whl}
VERIFY=${VERIFY:-1}
MAX_MB=${MAX_MB:-40}
REQS=scripts/gpu_requirements.txt

echo "local torch (not carried: the device image has its own CUDA torch):"
"$PYTHON" -c "import torch; print(torch.__version__, torch.cuda.is_available())" 2>&1 | tail -1 || true

# pip matches manylinux_2_N tags exactly, so name every glibc from 2.17 to the device's 2.39.
PLATFORMS=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
for n in $(seq 17 39); do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
TARGET=(--python-version "$PY_VERSION" --implementation cp --only-binary=:all: "${PLATFORMS[@]}")

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
grep -v '^\s*#' "$REQS" | grep -v '^\s*$' | grep -v '# sdist' | sed 's/#.*//' >"$WORK/binary.txt"
grep '# sdist' "$REQS" | grep -v '^\s*#' | sed 's/#.*//' >"$WORK/sdist.txt"

mkdir -p "$DEST" && rm -f "$DEST"/*.whl  # one version of each package: two would stop the install
quiet() { grep -v 'is ignored: it is neither a file nor a directory' || true; }  # this machine's pip.conf
echo "downloading $(wc -l <"$WORK/binary.txt") wheels for CPython $PY_VERSION manylinux x86_64 into $DEST/"
"$PYTHON" -m pip download -q --no-deps "${TARGET[@]}" -d "$DEST" -r "$WORK/binary.txt" 2>&1 | quiet
echo "building $(wc -l <"$WORK/sdist.txt") pure-python wheels from sdists (no wheel on PyPI)"
"$PYTHON" -m pip wheel -q --no-deps -w "$DEST" -r "$WORK/sdist.txt" 2>&1 | quiet
for w in "$DEST"/*.whl; do  # a built wheel must run on any python: pure python only
    case "$(basename "$w")" in *-py3-none-any.whl | *-py2.py3-none-any.whl | *cp"${PY_VERSION/./}"* | *abi3*) ;;
    *) echo "ERROR: $w does not fit CPython $PY_VERSION" >&2; exit 1 ;; esac
done

echo "versions against $PYTHON's environment (the one the tests run in):"
"$PYTHON" - "$REQS" <<'EOF'
import re, sys
from importlib import metadata
same = 0
for line in open(sys.argv[1]):
    m = re.match(r"\s*([A-Za-z0-9_.-]+)==([^\s#]+)", line)
    if not m:
        continue
    try:
        here = metadata.version(m[1])
    except metadata.PackageNotFoundError:
        print(f"  {m[1]}: not installed here (list pins {m[2]})")
        continue
    if here != m[2]:
        print(f"  WARNING {m[1]}: {here} here, the list pins {m[2]}")
    else:
        same += 1
print(f"  {same} pinned versions are the ones installed here")
EOF

echo "wheels in $DEST (MB):"
du -m "$DEST"/*.whl | sort -rn | awk '{sub(".*/", "", $2); printf "  %4d  %s\n", $1, $2}' | head -8
TOTAL_KB=$(du -sk "$DEST" | cut -f1)
echo "total: $(ls "$DEST"/*.whl | wc -l) wheels, $((TOTAL_KB / 1024)) MB ($TOTAL_KB kB)"
[ "$TOTAL_KB" -le $((MAX_MB * 1024)) ] || echo "WARNING: over $MAX_MB MB (the device run carries at most 64 MiB with the tree)"

echo "check: every pinned requirement resolves from $DEST alone for CPython $PY_VERSION"
"$PYTHON" -m pip install --dry-run -q --ignore-installed --no-index --no-deps --find-links "$DEST" "${TARGET[@]}" \
    --target "$WORK/target" -r "$WORK/binary.txt" -r "$WORK/sdist.txt" 2>&1 | quiet
echo "  ok"
if [ "$VERIFY" = 1 ]; then
    echo "check: the dependencies of the list for CPython $PY_VERSION that are not in $DEST (the device image must have them)"
    "$PYTHON" -m pip install --dry-run -q --ignore-installed --find-links "$DEST" "${TARGET[@]}" --target "$WORK/target" \
        --report "$WORK/report.json" -r "$WORK/binary.txt" -r "$WORK/sdist.txt" 2>&1 | quiet
    "$PYTHON" - "$WORK/report.json" "$DEST" <<'EOF'
import json, os, re, sys
norm = lambda s: re.sub(r"[-_.]+", "-", s).lower()
carried = {norm(f.split("-")[0]) for f in os.listdir(sys.argv[2])}
needed = sorted(norm(i["metadata"]["name"]) for i in json.load(open(sys.argv[1]))["install"])
print("  " + " ".join(n for n in needed if n not in carried))
EOF
fi
