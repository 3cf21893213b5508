#!/usr/bin/env bash
# Prints the venv used by `make` and .ci/run: `.venv` inside this checkout, so each clone runs
# its own code (pip's cache keeps a second clone's install fast). RECX_VENV overrides.
set -euo pipefail
if [[ -n "${RECX_VENV:-}" ]]; then
  echo "$RECX_VENV"
  exit 0
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
echo "$root/.venv"
