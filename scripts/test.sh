#!/usr/bin/env bash
# scripts/test.sh — README command 2: bootstrap the host, then run the test
# suite. Arguments go to pytest (e.g. `scripts/test.sh -k cache -x`). The tests'
# own fixtures start redis, the API and workers; pytest's config is in pyproject.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/python" -m pytest "$@"
