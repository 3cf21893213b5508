#!/usr/bin/env bash
# One short script that checks and times recx's GPU paths on a lent GPU machine:
#   1. CUDA visible, bf16 supported;
#   2. batched generation (lora + prompt explainers) vs one-at-a-time generate(), batches up to
#      256, on both engines in one run: torch (the reference) and ct2 (CTranslate2 on CUDA,
#      int8 weights + bf16/fp16 activations) when this ctranslate2 build sees the GPU, else
#      torch alone (docs/engine.md);
#   3. LoRA training steps in bf16 (a 3-minute budgeted run; the adapter goes to $OUT).
# Needs a Python with the project's requirements installed (PYTHON=..., default: the venv of
# deploy/venv-path.sh, else python3) and the demo data in data/.
# Results (JSON + logs) are written under ${OUT:-var/gpu-check}.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-var/gpu-check}"
mkdir -p "$out"
venv="$(deploy/venv-path.sh)"
py="${PYTHON:-$venv/bin/python}"
[[ -x "$py" ]] || py=python3
"$py" -m pip install -q --no-deps --no-build-isolation -e . >/dev/null 2>&1 || true
run() { echo "==> $*"; "$py" -m recx_worker.cli "$@"; }

"$py" - <<'PY' | tee "$out/cuda.txt"
import torch
assert torch.cuda.is_available(), "no CUDA device visible"
print("device:", torch.cuda.get_device_name(0), "bf16:", torch.cuda.is_bf16_supported())
PY
# The ctranslate2 wheel is built with CUDA; it needs the CUDA 12 runtime libraries at run time.
engines=torch
if "$py" - <<'PY' 2>&1 | tee "$out/ct2-cuda.txt"; then engines=torch,ct2; fi
import sys
try:
    import ctranslate2
    count = ctranslate2.get_cuda_device_count()
    types = sorted(ctranslate2.get_supported_compute_types("cuda")) if count else []
except Exception as exc:  # no package, or no usable CUDA runtime for it
    sys.exit(f"ctranslate2 on CUDA: unavailable ({type(exc).__name__}: {exc})")
if not count:
    sys.exit("ctranslate2 on CUDA: this build sees no GPU")
print(f"ctranslate2 {ctranslate2.__version__} on CUDA: {count} device(s), compute types {types}")
PY
echo "engines: $engines"
[[ -f var/data/musical/train.jsonl ]] || run data prepare --no-progress
run bench generate --explainers lora,prompt --engines "$engines" --n 256 \
  --batch-sizes 1,8,32,64,128,256 --no-naive --out "$out/generate.json" 2>&1 | tee "$out/generate.log"
run train lora --data var/data/musical --out "$out/adapter" --work "$out/train" \
  --max-train 4096 --max-valid 128 --batch-size 32 --epochs 1 --max-minutes 3 \
  --device cuda --dtype bfloat16 --no-progress 2>&1 | tee "$out/train.log"
echo "==> done; results in $out"
