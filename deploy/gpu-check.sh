#!/usr/bin/env bash
# One short script that checks and times recx's GPU paths on a lent GPU machine:
#   1. CUDA visible, bf16 supported;
#   2. batched generation (lora + prompt explainers) vs one-at-a-time generate(), larger batches;
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
[[ -f var/data/musical/train.jsonl ]] || run data prepare --no-progress
run bench generate --explainers lora,prompt --n 128 --batch-sizes 1,8,32,64,128 \
  --out "$out/generate.json" 2>&1 | tee "$out/generate.log"
run train lora --data var/data/musical --out "$out/adapter" --work "$out/train" \
  --max-train 4096 --max-valid 128 --batch-size 32 --epochs 1 --max-minutes 3 \
  --device cuda --dtype bfloat16 --no-progress 2>&1 | tee "$out/train.log"
echo "==> done; results in $out"
