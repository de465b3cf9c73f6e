#!/usr/bin/env bash
# scripts/images.sh — build the farm's air-gapped base images locally.
#
# There is no container registry here (no `docker pull`), so every base image
# is assembled from Debian packages on the host:
#
#   farm/busybox:latest   FROM scratch + Debian's busybox-static; an applet
#                         symlink for every applet (in /bin and at its usual
#                         path), /tmp (1777), /etc/passwd+group (root, nobody),
#                         PATH set, CMD sh.  ~2 MB, builds in about a second.
#   farm/debian:bookworm  debootstrap --variant=minbase bookworm + python3,
#                         pip, venv, setuptools, wheel, pytest, ca-certificates,
#                         git.  The rootfs tarball is cached, so a rebuild after
#                         `docker rmi` is a plain `docker import`.
#   farm/python:3.11      workers/python.Dockerfile on farm/debian:bookworm: the
#                         stand-in for python:3.11 behaves like it (`pip install`
#                         works: no EXTERNALLY-MANAGED marker; `python`, `pip`).
#                         Rebuilt when its version or its base changed (seconds).
#   farm/worker:latest    (only on request: `images.sh worker`) workers/Dockerfile:
#                         the farm package installed on farm/debian:bookworm.
#   farm/redis:latest     (only on request: `images.sh redis`) workers/redis.Dockerfile.
#                         The worker is rebuilt only when farm/, pyproject.toml,
#                         workers/ or the base changed (label farm.source.sha);
#                         its Python deps come from a wheelhouse built by the
#                         host's pip (cached per pyproject.toml), so the image
#                         build is offline. redis is rebuilt on request (layer
#                         cache: ~1 s) and needs the apt mirror: --network host.
#
# busybox/debian carry the label farm.image.version; they are (re)built only
# when missing or when the label differs from the version below. --force
# rebuilds what is asked for (debian: a fresh debootstrap, ~1 min).
#
#   farm/postgres:latest  (only on request: `images.sh postgres`) workers/postgres.Dockerfile
#                         (Debian's postgresql; compose.yaml's database).
# Usage: scripts/images.sh [--force] [busybox|debian|python|worker|redis|postgres]...
#        (default: busybox debian python)
# Env:   FARM_CACHE_DIR   tarball cache (default /var/cache/farm as root,
#                         else ${XDG_CACHE_HOME:-~/.cache}/farm)
#        FARM_DEBIAN_MIRROR   override the mirror read from /etc/apt
set -euo pipefail

BUSYBOX_IMAGE=farm/busybox:latest
BUSYBOX_VERSION=2
DEBIAN_IMAGE=farm/debian:bookworm
DEBIAN_ALIASES=()
PYTHON_IMAGE=farm/python:3.11
PYTHON_VERSION=1
DEBIAN_VERSION=1
DEBIAN_SUITE=bookworm
DEBIAN_INCLUDE=python3,python3-pip,python3-venv,python3-setuptools,python3-wheel,python3-pytest,ca-certificates,git
IMAGE_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

if [[ $(id -u) -eq 0 ]]; then
  CACHE_DIR=${FARM_CACHE_DIR:-/var/cache/farm}
else
  CACHE_DIR=${FARM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/farm}
fi

say() { printf '==> %s\n' "$*"; }
die() { printf 'images.sh: %s\n' "$*" >&2; exit 1; }

FORCE=0
WANT=()
for arg in "$@"; do
  case $arg in
    --force) FORCE=1 ;;
    busybox|debian|python|worker|redis|postgres) WANT+=("$arg") ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument: $arg" ;;
  esac
done
[[ ${#WANT[@]} -gt 0 ]] || WANT=(busybox debian python)

# up_to_date IMAGE VERSION -> 0 if the image exists with that label.
up_to_date() {
  local have
  [[ $FORCE -eq 0 ]] || return 1
  have=$(docker image inspect --format '{{index .Config.Labels "farm.image.version"}}' "$1" 2>/dev/null) || return 1
  [[ $have == "$2" ]]
}

# drop_old IMAGE OLD_ID: remove the replaced image if nothing refers to it any more
drop_old() {
  local new
  [[ -n $2 ]] || return 0
  new=$(docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true)
  [[ $new != "$2" ]] || return 0
  [[ -z $(docker image inspect --format '{{join .RepoTags ","}}' "$2" 2>/dev/null) ]] || return 0
  docker image rm "$2" >/dev/null 2>&1 || true
}

WORK=
cleanup() { [[ -z $WORK ]] || rm -rf "$WORK"; }
trap cleanup EXIT

build_busybox() {
  if up_to_date "$BUSYBOX_IMAGE" "$BUSYBOX_VERSION"; then
    say "image $BUSYBOX_IMAGE up to date"; return
  fi
  local bb
  bb=$(command -v busybox) || die "busybox not found (apt-get install busybox-static)"
  file -L "$bb" 2>/dev/null | grep -q 'dynamically linked' && die "$bb is not static (install busybox-static)"
  say "building $BUSYBOX_IMAGE"
  local t0=$SECONDS root old
  old=$(docker image inspect --format '{{.Id}}' "$BUSYBOX_IMAGE" 2>/dev/null || true)
  WORK=$(mktemp -d); root=$WORK/rootfs
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,root,tmp,var/tmp,home,proc,sys,dev,work}
  chmod 1777 "$root/tmp" "$root/var/tmp"
  cp "$bb" "$root/bin/busybox"
  local applet
  # every applet at its canonical path (usr/bin/env ...) and in /bin
  while read -r applet; do
    [[ -n $applet && $applet != bin/busybox ]] || continue
    [[ -e $root/$applet || -L $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
    [[ -e $root/bin/${applet##*/} || -L $root/bin/${applet##*/} ]] || ln -s busybox "$root/bin/${applet##*/}"
  done < <("$bb" --list-full)
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n' >"$root/etc/group"
  tar --numeric-owner -C "$root" -c . | docker import \
    --change "ENV PATH=$IMAGE_PATH" \
    --change 'CMD ["sh"]' \
    --change "LABEL farm.image.version=$BUSYBOX_VERSION" \
    --message "farm busybox $("$bb" 2>&1 | head -1 | awk '{print $2}')" \
    - "$BUSYBOX_IMAGE" >/dev/null
  rm -rf "$WORK"; WORK=
  drop_old "$BUSYBOX_IMAGE" "$old"
  say "built $BUSYBOX_IMAGE in $((SECONDS - t0))s"
}

debian_mirror() {
  if [[ -n ${FARM_DEBIAN_MIRROR:-} ]]; then echo "$FARM_DEBIAN_MIRROR"; return; fi
  local m=
  if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
    # first URIs: of a stanza whose Suites: include the plain suite (not -security)
    m=$(awk -v s="$DEBIAN_SUITE" '
      /^[[:space:]]*$/ { if (u != "" && ok) { print u; exit } u=""; ok=0; next }
      /^URIs:/   { u=$2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) ok=1 }
      END { if (u != "" && ok) print u }' /etc/apt/sources.list.d/debian.sources | head -1)
  fi
  if [[ -z $m && -r /etc/apt/sources.list ]]; then
    m=$(awk -v s="$DEBIAN_SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == s) { print $i; exit } } }' /etc/apt/sources.list)
  fi
  echo "${m:-http://deb.debian.org/debian}"
}

build_debian() {
  local tag
  if up_to_date "$DEBIAN_IMAGE" "$DEBIAN_VERSION"; then
    for tag in "${DEBIAN_ALIASES[@]+"${DEBIAN_ALIASES[@]}"}"; do
      docker image inspect "$tag" >/dev/null 2>&1 || docker tag "$DEBIAN_IMAGE" "$tag"
    done
    say "image $DEBIAN_IMAGE up to date"; return
  fi
  command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"
  [[ $(id -u) -eq 0 ]] || die "building $DEBIAN_IMAGE needs root (debootstrap)"
  local t0=$SECONDS mirror key tarball old
  old=$(docker image inspect --format '{{.Id}}' "$DEBIAN_IMAGE" 2>/dev/null || true)
  mirror=$(debian_mirror)
  key=$(printf '%s|%s|%s|%s' "$DEBIAN_SUITE" "$DEBIAN_INCLUDE" "$mirror" "$(dpkg --print-architecture)" | sha256sum | cut -c1-12)
  tarball=$CACHE_DIR/debian-$DEBIAN_SUITE-$key.tar
  mkdir -p "$CACHE_DIR"
  if [[ ! -s $tarball || $FORCE -eq 1 ]]; then
    say "debootstrap $DEBIAN_SUITE from $mirror (about a minute)"
    WORK=$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")
    local root=$WORK/rootfs
    mkdir -p "$CACHE_DIR/debs"
    if ! debootstrap --variant=minbase --include="$DEBIAN_INCLUDE" \
        --cache-dir="$CACHE_DIR/debs" "$DEBIAN_SUITE" "$root" "$mirror" >"$WORK/debootstrap.log" 2>&1; then
      tail -n 30 "$WORK/debootstrap.log" >&2
      [[ ! -f $root/debootstrap/debootstrap.log ]] || tail -n 30 "$root/debootstrap/debootstrap.log" >&2
      die "debootstrap failed"
    fi
    say "debootstrap done after $((SECONDS - t0))s"
    # slim down: apt lists/caches, docs, logs
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
           "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/usr/share/doc/* "$root"/usr/share/man/* \
           "$root"/usr/share/info/* "$root"/tmp/* "$root"/var/tmp/*
    # containers get these from docker
    : >"$root/etc/resolv.conf"; : >"$root/etc/hostname"
    tar --numeric-owner --xattrs -C "$root" -cf "$tarball.part" .
    mv "$tarball.part" "$tarball"
    rm -rf "$WORK"; WORK=
  else
    say "using cached rootfs $tarball"
  fi
  say "importing $DEBIAN_IMAGE"
  docker import \
    --change "ENV PATH=$IMAGE_PATH" \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["bash"]' \
    --change "LABEL farm.image.version=$DEBIAN_VERSION" \
    --message "farm debian $DEBIAN_SUITE minbase ($DEBIAN_INCLUDE)" \
    "$tarball" "$DEBIAN_IMAGE" >/dev/null
  for tag in "${DEBIAN_ALIASES[@]+"${DEBIAN_ALIASES[@]}"}"; do docker tag "$DEBIAN_IMAGE" "$tag"; done
  drop_old "$DEBIAN_IMAGE" "$old"
  say "built $DEBIAN_IMAGE in $((SECONDS - t0))s"
}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Dockerfile builds: legacy builder (no buildx here), host network (no bridge).
dbuild() {
  local log rc=0
  log=$(mktemp)
  DOCKER_BUILDKIT=0 docker build --force-rm --network host "$@" >"$log" 2>&1 || rc=$?
  [[ $rc -eq 0 ]] || tail -n 80 "$log" >&2
  rm -f "$log"
  return "$rc"
}

build_worker() {
  docker image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1 || FORCE=0 build_debian
  local t0=$SECONDS ctx wh key pip src old
  local -a files=(pyproject.toml)
  [[ ! -e $ROOT/README.md ]] || files+=(README.md)
  # skip when nothing that goes into the image changed
  src=$(cd "$ROOT" && { find farm -type f ! -name '*.pyc' ! -path '*/__pycache__/*' -print0 | sort -z \
          | xargs -0 sha256sum; sha256sum "${files[@]}" workers/Dockerfile workers/entrypoint.sh; echo "base=$(docker image inspect -f '{{.Id}}' "$DEBIAN_IMAGE")"; } \
        | sha256sum | cut -c1-16)
  if [[ $FORCE -eq 0 && $(docker image inspect -f '{{index .Config.Labels "farm.source.sha"}}' farm/worker:latest 2>/dev/null) == "$src" ]]; then
    say "image farm/worker:latest up to date"; return
  fi
  old=$(docker image inspect --format '{{.Id}}' farm/worker:latest 2>/dev/null || true)
  say "building farm/worker:latest"
  pip=$ROOT/.venv/bin/python
  [[ -x $pip ]] || pip=python3
  # wheelhouse: every dependency, built with the host's pip (which has the
  # index access), cached until pyproject.toml changes; the farm wheel itself
  # is rebuilt every time.
  key=$({ sha256sum "$ROOT/pyproject.toml"; echo "extras=postgres"; } | sha256sum | cut -c1-12)
  wh=$CACHE_DIR/wheels-$key
  local -a pipq=(-q --disable-pip-version-check)
  if [[ ! -f $wh/.complete ]]; then
    say "wheelhouse for farm's dependencies ($wh)"
    rm -rf "$wh"; mkdir -p "$wh"
    "$pip" -m pip wheel "${pipq[@]}" -w "$wh" "$ROOT[postgres]" || die "pip wheel failed"
  else
    rm -f "$wh"/farm-*.whl
    "$pip" -m pip wheel "${pipq[@]}" --no-deps -w "$wh" "$ROOT" || die "pip wheel farm failed"
  fi
  rm -rf "$ROOT/build"
  if [[ ! -f $wh/.complete ]]; then
    # The host's pip evaluated environment markers for the host's Python; let
    # the image's pip resolve offline and fetch whatever it still misses
    # (e.g. async-timeout; python_full_version < "3.11.3").
    local i out req
    for i in 1 2 3 4 5 6 7 8; do
      out=$(docker run --rm --network none -v "$wh:/wh:ro" "$DEBIAN_IMAGE" python3 -m pip install \
              -q --dry-run --break-system-packages --no-index --find-links /wh farm 2>&1) && break
      req=$(sed -n 's/.*No matching distribution found for \([^;]*\).*/\1/p' <<<"$out" | head -1)
      [[ -n $req && $i -lt 8 ]] || { printf '%s\n' "$out" >&2; die "cannot complete the wheelhouse"; }
      say "wheelhouse: adding $req"
      "$pip" -m pip download "${pipq[@]}" --no-deps -d "$wh" "$req" 2> >(grep -v "is ignored" >&2) || die "pip download $req failed"
    done
    touch "$wh/.complete"
  fi
  WORK=$(mktemp -d); ctx=$WORK/ctx; mkdir -p "$ctx/workers/wheels"
  # a minimal context (no .venv, .git, tests) whatever .dockerignore says
  tar -C "$ROOT" --exclude=__pycache__ --exclude='*.pyc' -c "${files[@]}" farm | tar -C "$ctx" -x
  cp "$ROOT/workers/Dockerfile" "$ROOT/workers/entrypoint.sh" "$ctx/workers/"
  cp "$wh"/*.whl "$ctx/workers/wheels/"
  dbuild -f "$ctx/workers/Dockerfile" --label "farm.source.sha=$src" -t farm/worker:latest "$ctx" \
    || die "farm/worker build failed"
  rm -rf "$WORK"; WORK=
  drop_old farm/worker:latest "$old"
  say "built farm/worker:latest in $((SECONDS - t0))s"
}

build_python() {
  docker image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1 || FORCE=0 build_debian
  local want old t0=$SECONDS
  # Current when built from this version of the Dockerfile on this very base.
  want=$PYTHON_VERSION-$(docker image inspect -f '{{.Id}}' "$DEBIAN_IMAGE" | sed 's/^sha256://' | cut -c1-12)
  if up_to_date "$PYTHON_IMAGE" "$want"; then
    say "image $PYTHON_IMAGE up to date"; return
  fi
  say "building $PYTHON_IMAGE"
  old=$(docker image inspect --format '{{.Id}}' "$PYTHON_IMAGE" 2>/dev/null || true)
  # A former tag of the debian image: untag it, never remove the base itself.
  [[ $old != $(docker image inspect -f '{{.Id}}' "$DEBIAN_IMAGE") ]] || old=
  dbuild -f "$ROOT/workers/python.Dockerfile" --label "farm.image.version=$want" \
    -t "$PYTHON_IMAGE" "$ROOT/workers" || die "$PYTHON_IMAGE build failed"
  drop_old "$PYTHON_IMAGE" "$old"
  say "built $PYTHON_IMAGE in $((SECONDS - t0))s"
}

build_redis() {
  docker image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1 || FORCE=0 build_debian
  say "building farm/redis:latest"
  local t0=$SECONDS
  dbuild -f "$ROOT/workers/redis.Dockerfile" -t farm/redis:latest "$ROOT/workers" || die "farm/redis build failed"
  say "built farm/redis:latest in $((SECONDS - t0))s"
}

build_postgres() {
  docker image inspect "$DEBIAN_IMAGE" >/dev/null 2>&1 || FORCE=0 build_debian
  say "building farm/postgres:latest"
  local t0=$SECONDS
  dbuild -f "$ROOT/workers/postgres.Dockerfile" -t farm/postgres:latest "$ROOT/workers" || die "farm/postgres build failed"
  say "built farm/postgres:latest in $((SECONDS - t0))s"
}

docker info >/dev/null 2>&1 || die "docker daemon not reachable (run scripts/bootstrap.sh)"
mkdir -p "$CACHE_DIR"
exec 8>"$CACHE_DIR/.images.lock"
flock 8   # one builder at a time; a waiting one then finds the images current
for w in "${WANT[@]}"; do "build_$w"; done
