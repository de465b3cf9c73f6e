#!/usr/bin/env bash
# scripts/demo.sh — README command 1: the farm end to end on this host.
#
#   1. scripts/bootstrap.sh           (packages, dockerd, .venv, base images)
#   2. farm up --detach               (redis, API :8700, 2 workers, Flower :5555;
#                                      returns at once if already running)
#   3. farm submit examples/python-app --wait
#                                     (the committed example; live progress)
#   4. prints where the deliverable is; the farm keeps running (`farm down`).
#
# Exit status: non-zero if any step or the build fails.
# Env: FARM_DEMO_PROJECT (default examples/python-app), plus the FARM_* settings
# (configs/farm.env.example).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FARM=$ROOT/.venv/bin/farm
PROJECT=${FARM_DEMO_PROJECT:-examples/python-app}
API=${FARM_API_URL:-http://127.0.0.1:${FARM_API_PORT:-8700}}
FLOWER=http://127.0.0.1:${FARM_FLOWER_PORT:-5555}

say() { printf '==> %s\n' "$*"; }

cd "$ROOT"
say "bootstrap"
scripts/bootstrap.sh

say "farm up --detach"
"$FARM" up --detach

say "farm submit $PROJECT --wait"
rc=0
"$FARM" submit "$PROJECT" --wait || rc=$?

echo
if [[ $rc -eq 0 ]]; then
  say "build succeeded"
else
  say "build FAILED (exit $rc)"
fi
cat <<MSG
    The build id and its deliverable URL are printed above. Then:
    details:      .venv/bin/farm status <BUILD-ID>   (jobs; .venv/bin/farm logs <JOB-ID>)
    deliverable:  GET $API/api/v1/builds/<BUILD-ID>/deliverable
                  (.venv/bin/farm artifacts ls|get to download the release/ artifact)
    Flower:       $FLOWER
The farm keeps running in the background; stop it with: .venv/bin/farm down
MSG
exit "$rc"
