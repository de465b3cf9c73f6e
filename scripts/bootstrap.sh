#!/usr/bin/env bash
# scripts/bootstrap.sh — prepare this host to run the farm. Idempotent; a second
# run only checks and takes a few seconds.
#
#   1. apt packages (only if missing): docker.io redis-server busybox-static
#      debootstrap git ca-certificates nginx postgresql chromium (+ python3/python3-venv
#      if needed)
#   2. dockerd: reuse a running one; otherwise clear a stale pid file and start
#      `dockerd --bridge=none --iptables=false --ip-masq=false` in the background
#      (log: /var/log/farm-dockerd.log) and wait until it answers.
#   3. redis-server is NOT started here (`farm up` and the tests start their own).
#   4. .venv in the repo; `pip install -e '.[dev]'` when pyproject.toml changed
#      (sha256 stamp in .venv/.farm-pyproject.sha256).
#   5. base images via scripts/images.sh (farm/busybox:latest, farm/debian:bookworm,
#      farm/python:3.11), each skipped when present and current.
#
# Env: FARM_PYTHON (interpreter for the venv, default python3),
#      FARM_SKIP_IMAGES=1 (skip step 5), FARM_DOCKERD_LOG.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=$ROOT/.venv
PYTHON=${FARM_PYTHON:-python3}
DOCKERD_LOG=${FARM_DOCKERD_LOG:-/var/log/farm-dockerd.log}
export DEBIAN_FRONTEND=noninteractive
T0=$SECONDS

say() { printf '==> %s\n' "$*"; }
die() { printf 'bootstrap.sh: %s\n' "$*" >&2; exit 1; }

SUDO=
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || die "run as root (or install sudo)"
  SUDO=sudo
fi

# Serialise concurrent bootstraps (e.g. demo.sh and test.sh started together).
exec 9>"${TMPDIR:-/tmp}/farm-bootstrap.$(id -u).lock"
flock 9

# ---------------------------------------------------------------- 1. packages
pkg_ok() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=()
command -v dockerd >/dev/null && command -v docker >/dev/null || missing+=(docker.io)
command -v redis-server >/dev/null || missing+=(redis-server)
pkg_ok busybox-static || missing+=(busybox-static)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v git >/dev/null || missing+=(git)
pkg_ok ca-certificates || missing+=(ca-certificates)
pkg_ok nginx || missing+=(nginx)  # `nginx -t` of the rollout geo block (tests)
# The dashboard's browser tests drive Debian's chromium with Playwright (its own browser
# download is not reachable here: the tests point it at /usr/bin/chromium).
pkg_ok chromium || missing+=(chromium)
# PostgreSQL: the store's contract tests run against a real server too.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# Docker Compose: compose.yaml is brought up for real in a test (Debian's v1.29).
command -v docker-compose >/dev/null || missing+=(docker-compose)
if ! command -v "$PYTHON" >/dev/null; then
  missing+=(python3 python3-venv)
elif [[ $(command -v "$PYTHON") == /usr/bin/* ]] && ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
  missing+=(python3-venv)
fi
if [[ ${#missing[@]} -gt 0 ]]; then
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  say "packages present"
fi
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PYTHON is older than 3.11"

# ------------------------------------------------------------------ 2. dockerd
pid_alive_as() {  # PIDFILE NAME -> 0 if the pid in PIDFILE is a live NAME process
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]]
}
proc_running() {  # NAME -> 0 if a process with that exact name runs
  local c
  for c in /proc/[0-9]*/comm; do [[ $(cat "$c" 2>/dev/null) == "$1" ]] && return 0; done
  return 1
}
wait_docker() {  # SECONDS
  local i
  for ((i = 0; i < $1 * 2; i++)); do
    $SUDO docker info >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}
if $SUDO docker info >/dev/null 2>&1; then
  say "dockerd running"
elif proc_running dockerd; then
  say "dockerd starting; waiting"
  wait_docker 60 || die "dockerd is running but does not answer (see $DOCKERD_LOG)"
else
  for pf in /var/run/docker.pid /var/run/docker/containerd/containerd.pid; do
    if [[ -e $pf ]] && ! pid_alive_as "$pf" "$(basename "$pf" .pid)"; then
      say "removing stale $pf"; $SUDO rm -f "$pf"
    fi
  done
  say "starting dockerd (log: $DOCKERD_LOG)"
  $SUDO mkdir -p "$(dirname "$DOCKERD_LOG")"
  # 9>&-: dockerd must not inherit (and so hold forever) the bootstrap lock
  $SUDO sh -c "nohup dockerd --bridge=none --iptables=false --ip-masq=false >>'$DOCKERD_LOG' 2>&1 </dev/null 9>&- &"
  wait_docker 60 || { tail -n 20 "$DOCKERD_LOG" >&2; die "dockerd did not come up within 60s"; }
  say "dockerd up"
fi

# ------------------------------------------------------------------- 4. venv
if [[ ! -x $VENV/bin/python ]]; then
  say "creating .venv"
  "$PYTHON" -m venv "$VENV"
fi
stamp=$VENV/.farm-pyproject.sha256
want=$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/farm || $(cat "$stamp" 2>/dev/null) != "$want" ]]; then
  say "pip install -e '.[dev]'"
  (cd "$ROOT" && "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[dev]')
  echo "$want" >"$stamp"
else
  say "python deps up to date"
fi

# ------------------------------------------------------------------ 5. images
if [[ ${FARM_SKIP_IMAGES:-0} != 1 ]]; then
  if [[ -n $SUDO ]]; then $SUDO "$ROOT/scripts/images.sh"; else "$ROOT/scripts/images.sh"; fi
fi

say "bootstrap done in $((SECONDS - T0))s"
