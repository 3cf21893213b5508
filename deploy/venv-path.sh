#!/usr/bin/env bash
# Prints the venv used by `make` and .ci/run: one per requirements.txt content,
# outside the clone so fresh clones reuse it. RECX_VENV overrides.
set -euo pipefail
if [[ -n "${RECX_VENV:-}" ]]; then
  echo "$RECX_VENV"
  exit 0
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hash="$(sha256sum "$root/requirements.txt" | cut -c1-16)"
echo "${RECX_CACHE_HOME:-$HOME/.cache/recx}/venvs/py311-$hash"
