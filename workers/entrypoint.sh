#!/bin/sh
# Entrypoint of farm/worker: `farm worker` by default.
#   <no args> | worker ...   -> farm worker ...
#   api | flower | up | ...   -> farm <subcommand> ...   (also "-..." options)
#   farm ...                  -> farm ...
#   any other command         -> run it (e.g. sh, python3)
set -e
[ "$#" -gt 0 ] || set -- worker
case "$1" in
  farm) ;;
  -*) set -- farm worker "$@" ;;
  *)
    if ! command -v "$1" >/dev/null 2>&1 || [ "$1" = worker ] || [ "$1" = api ] || [ "$1" = flower ]; then
      set -- farm "$@"
    fi
    ;;
esac
# Replicas on the host network share the host's name: give each worker its own
# Celery node name (container id) unless FARM_WORKER_NAME is set.
if [ "$1" = farm ] && [ "${2:-}" = worker ] && [ -z "${FARM_WORKER_NAME:-}" ]; then
  id=$(sed -n 's|.*/containers/\([0-9a-f]\{12\}\).*|\1|p' /proc/self/mountinfo | head -n 1)
  [ -n "$id" ] || id=$(cut -c1-8 /proc/sys/kernel/random/uuid)
  FARM_WORKER_NAME="w-$id@$(hostname)"
  export FARM_WORKER_NAME
fi
# FARM_TOKEN_FILE: read the API token from a file (compose's shared secrets volume,
# written by the API on start); wait for it up to FARM_TOKEN_WAIT seconds.
if [ -n "${FARM_TOKEN_FILE:-}" ] && [ -z "${FARM_TOKEN:-}" ]; then
  n=0
  while [ ! -s "$FARM_TOKEN_FILE" ]; do
    n=$((n + 1))
    [ "$n" -le "${FARM_TOKEN_WAIT:-120}" ] || { echo "farm: no token in $FARM_TOKEN_FILE" >&2; exit 1; }
    sleep 1
  done
  FARM_TOKEN=$(cat "$FARM_TOKEN_FILE")
  export FARM_TOKEN
fi
exec "$@"
