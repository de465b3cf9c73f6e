#!/usr/bin/env bash
# scripts/demo.sh — README command 1: the farm end to end on this host.
#
#   1. scripts/bootstrap.sh           (packages, dockerd, .venv, base images)
#   2. farm up --detach               (redis, API :8700, 2 workers, Flower :5555;
#                                      returns at once if already running)
#   3. farm submit examples/python-app --wait
#                                     (the committed example; live progress)
#   4. releases the green build as demo-<build id> and rolls it out by the plan in
#      examples/python-app/.farm/rollout.yml (canada -> usa -> all, health-checked
#      against scripts/health_server.py, started here on 127.0.0.1:8790 and stopped
#      at the end), showing the status tree until it succeeds.
#   5. prints where the deliverable is; the farm keeps running (`farm down`).
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
doc=$("$FARM" submit "$PROJECT" --wait --json) || rc=$?
BUILD=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])' <<<"$doc" 2>/dev/null || echo "<BUILD-ID>")

echo
if [[ $rc -eq 0 ]]; then
  say "build $BUILD succeeded"
  NAME=$(basename "$PROJECT")
  if [[ -f $PROJECT/.farm/rollout.yml ]]; then
    say "release build $BUILD as demo-$BUILD and roll it out (canada -> usa -> all)"
    python3 "$ROOT/scripts/health_server.py" --port 8790 &
    HEALTH=$!
    trap 'kill "$HEALTH" 2>/dev/null || true' EXIT
    "$FARM" release create "$BUILD" --version "demo-$BUILD"
    "$FARM" rollout start "$NAME" "demo-$BUILD" --watch || rc=$?
    "$FARM" rollout deliver "$NAME" --ip 24.64.0.1 || true
  fi
else
  say "build FAILED (exit $rc)"
fi
cat <<MSG
    details:      .venv/bin/farm status $BUILD   (jobs; .venv/bin/farm logs <JOB-ID>)
    deliverable:  GET $API/api/v1/builds/$BUILD/deliverable
                  (.venv/bin/farm artifacts ls|get to download the release/ artifact)
    rollouts:     .venv/bin/farm rollout ls; .venv/bin/farm rollout status <ROLLOUT-ID>
    Flower:       $FLOWER
The farm keeps running in the background; stop it with: .venv/bin/farm down
MSG
exit "$rc"
