#!/usr/bin/env bash
# The decoding sweep behind the lora explainer's defaults (docs/results.md):
#   deploy/experiments/decoding-sweep.sh ADAPTER_DIR LIMIT NAME...   e.g. ... adapters/smollm2-musical-v2 150 g1 b2 b4 b4c4 g1none
# Each NAME.toml.in here is a [chain.options.lora] variant; every run scores lora and template on
# the first LIMIT records of the valid split and prints their headline rows.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
adapter=$1 limit=$2
shift 2
mkdir -p var/exp
for name in "$@"; do
  sed "s#ADAPTER#$adapter#" "$here/$name.toml.in" > "var/exp/$name.toml"
  recx eval --data var/data/musical --split valid --explainers lora,template --limit "$limit" \
    --out "var/exp/out-$name" --no-progress --no-baselines --samples 0 \
    --config "var/exp/$name.toml" > "var/exp/$name.log" 2>&1
  echo "== $name"
  grep -E "^\| (lora|template) \| raw" "var/exp/out-$name/metrics.md" | head -2
done
