#!/usr/bin/env bash
# The GPU check: one command on a CUDA machine measures kdlib's speed and writes the figures.
#
#   scripts/gpu_check.sh [--data PATH] [--out DIR]                # CUDA; about 5 minutes on one H200
#   scripts/gpu_check.sh --device cpu --dry [--out DIR]           # every step with tiny budgets (CPU)
#
# Writes into DIR (default: $OUT when set, else gpu-check-<date>/):
#   env.txt     python, torch, CUDA, nvidia-smi
#   bench.json  bench.txt   benchmarks.bench_train: naive pipeline vs kdlib, images/s side by side
#   paper.json  paper.md    benchmarks.bench_paper: full-training-set epoch times, cache build,
#                           evaluation, sync/dtype checks, get_run end to end, concurrent runs,
#                           torch.compile; extrapolated to a 300-epoch distillation and the paper scale
#   summary.md  all of the above in one page
# Data: --data, else kdlib.data.default_source() ($KDLIB_DATA, else ../shared/data/cifar100-lossless.npz
# if it exists, from the repository root) when it names a local copy, else the first of shared/data/ and
# .kdlib/ cifar100-lossless.npz that exists (copies a GPU machine may have); without any, synthetic
# pixels in place of torchvision's download (same cost; summary says so).
# Python: $PYTHON, else .venv/bin/python, else python3; it needs torch, torchvision, numpy, tqdm.
# Every step runs even if an earlier one failed; the exit status is 1 if any failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 2

DEVICE=cuda
DRY=0
DATA="${KDLIB_DATA:-}"
OUT_DIR="${OUT:-gpu-check-$(date +%Y%m%d-%H%M%S)}"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --dry) DRY=1; shift ;;
    --data) DATA="$2"; shift 2 ;;
    --out) OUT_DIR="$2"; shift 2 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (allowed: --device D, --dry, --data PATH, --out DIR)" >&2; exit 2 ;;
  esac
done

if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # kdlib and benchmarks from this checkout
# Decoded data go to a scratch folder, not into the results.
export KDLIB_HOME="${KDLIB_HOME:-$(mktemp -d "${TMPDIR:-/tmp}/kdlib-gpu-check.XXXXXX")}"

# The one rule, kdlib.data.default_source (run from the repository root we cd'ed to), then this
# script's own extra places where it finds no local copy (it says "torchvision", the download).
if [ -z "$DATA" ]; then
  DATA="$("$PY" -c 'from kdlib.data import default_source; print(default_source())' 2>/dev/null)"
  if [ "$DATA" = torchvision ]; then DATA=""; fi
fi
if [ -z "$DATA" ]; then
  for candidate in shared/data/cifar100-lossless.npz .kdlib/cifar100-lossless.npz; do
    if [ -f "$candidate" ]; then DATA="$candidate"; break; fi
  done
fi
DATA="${DATA:-synthetic}"

mkdir -p "$OUT_DIR"
FAILED=()
step() {  # step NAME COMMAND...: run, log, remember a failure, go on
  local name="$1"; shift
  echo "== $name: $*" >&2
  "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then echo "== $name failed (exit $rc)" >&2; FAILED+=("$name (exit $rc)"); fi
  return 0
}

preflight() {
  "$PY" - "$DEVICE" "$DRY" <<'EOF'
import importlib, platform, sys
device, dry = sys.argv[1], sys.argv[2] == "1"
missing = [m for m in ("torch", "torchvision", "numpy", "tqdm", "PIL") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python packages: {missing} (install requirements.txt)")
import torch
print(f"python {platform.python_version()}, torch {torch.__version__}, CUDA build {torch.version.cuda}, "
      f"cuda available {torch.cuda.is_available()}, threads {torch.get_num_threads()}")
if torch.cuda.is_available():
    print(f"gpu {torch.cuda.get_device_name(0)}, capability {torch.cuda.get_device_capability(0)}")
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("--device cuda but CUDA is not available (use --device cpu --dry to check the script on CPU)")
EOF
}

{
  echo "# gpu_check $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  if git rev-parse --short HEAD >/dev/null 2>&1; then
    echo "git: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- || echo ' (with uncommitted changes)')"
  fi
  echo "device $DEVICE, dry $DRY, data $DATA, python $PY"
} > "$OUT_DIR/env.txt"
step preflight preflight >> "$OUT_DIR/env.txt"
if command -v nvidia-smi >/dev/null 2>&1; then nvidia-smi >> "$OUT_DIR/env.txt" 2>&1 || true; fi
if [ ${#FAILED[@]} -ne 0 ]; then cat "$OUT_DIR/env.txt" >&2; exit 1; fi

if [ "$DRY" = 1 ]; then
  BENCH_ARGS=(--images 100 --rounds 1 --steps 1 --warmup 0 --members 1 2 --batch-teacher 16
              --batch-student 16 --cache-images 1 --threads 1)
  PAPER_ARGS=(--dry --concurrent 2 --threads 1)
else
  # The GPU is fast: more images and steps per block so that each timed block lasts long enough.
  BENCH_ARGS=(--images 10000 --rounds 5 --steps 30 --warmup 3 --cache-images 200)
  PAPER_ARGS=(--concurrent 4 --compile)
fi

bench_train() {  # the table to the terminal and to bench.txt; pipefail keeps the benchmark's exit status
  "$PY" -m benchmarks.bench_train --device "$DEVICE" --data "$DATA" --json "$OUT_DIR/bench.json" \
    "${BENCH_ARGS[@]}" | tee "$OUT_DIR/bench.txt"
}
step bench_train bench_train
step bench_paper "$PY" -m benchmarks.bench_paper --device "$DEVICE" --data "$DATA" --out "$OUT_DIR" "${PAPER_ARGS[@]}"

{
  echo "# GPU check"
  echo
  echo '```'
  cat "$OUT_DIR/env.txt"
  echo '```'
  echo
  echo "## Naive pipeline vs kdlib (benchmarks.bench_train)"
  echo
  echo '```'
  cat "$OUT_DIR/bench.txt" 2>/dev/null || echo "(no output)"
  echo '```'
  echo
  cat "$OUT_DIR/paper.md" 2>/dev/null || echo "(benchmarks.bench_paper wrote no summary)"
  if [ "$DATA" = synthetic ]; then echo; echo "Data: synthetic pixels (no CIFAR-100 copy found)."; fi
  if [ ${#FAILED[@]} -ne 0 ]; then echo; echo "Failed steps: ${FAILED[*]}"; fi
} > "$OUT_DIR/summary.md"
echo "gpu_check: results in $OUT_DIR/summary.md" >&2
[ ${#FAILED[@]} -eq 0 ]
