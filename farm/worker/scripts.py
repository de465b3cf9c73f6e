"""The shell scripts a job container runs: GitLab's ``sh -e`` semantics, echo of commands.

``before_script`` and ``script`` share one shell that stops at the first failing
line; ``after_script`` runs in a fresh shell whatever happened, and its own failure
does not change the job's result. The wrapper (``run.sh``) also watches the worker's
lease (``farm/worker/lease.py``) and stops the job when its worker is gone.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import uuid
from pathlib import Path

RUN_SH = """\
#!/bin/sh
# farm job wrapper: main script under `sh -e`, then after_script whatever happened.
{lease_watch}cd "$CI_PROJECT_DIR" || exit 1
sh -e /farm/main.sh
rc=$?
if [ -s /farm/after.sh ]; then
  if [ "$rc" -eq 0 ]; then CI_JOB_STATUS=success; else CI_JOB_STATUS=failed; fi
  export CI_JOB_STATUS
  printf '\\033[36;1mRunning after_script\\033[0m\\n'
  ( cd "$CI_PROJECT_DIR" && sh -e /farm/after.sh ) || \\
    printf '\\033[33mafter_script failed (ignored)\\033[0m\\n'
fi
exit "$rc"
"""

# The worker renews /farm/lease every second (farm/worker/lease.py); /farm is mounted
# read-only, so only the worker can. When the lease is older than {seconds} s the worker
# is gone: kill every process of the job (not init, not this loop), so the container ends
# before the coordinator hands the job to another worker. Images without stat -c or
# date +%s run unguarded, with a warning.
LEASE_WATCH = """\
if stat -c %Y /farm/lease >/dev/null 2>&1 && date +%s >/dev/null 2>&1; then
  (
    trap '' HUP INT TERM
    while sleep 1; do
      renewed=$(stat -c %Y /farm/lease 2>/dev/null) || renewed=0
      if [ $(( $(date +%s) - renewed )) -gt {seconds} ]; then
        printf '\\n[farm] the worker stopped renewing the job lease for %s s: %s\\n' \\
          {seconds} 'stopping the job' >&2
        kill -KILL -1 2>/dev/null
        exit 0
      fi
    done
  ) </dev/null &
else
  printf '\\033[33m[farm] warning: %s; %s\\033[0m\\n' 'the image has no stat -c or date +%s' \\
    'this job cannot stop itself if its worker dies' >&2
fi
"""


def run_sh(lease_seconds: int | None = None) -> str:
    """The wrapper script; with ``lease_seconds``, it kills the job when the lease is stale."""
    watch = LEASE_WATCH.replace("{seconds}", str(int(lease_seconds))) if lease_seconds else ""
    return RUN_SH.replace("{lease_watch}", watch)


def _echo(command: str) -> str:
    first = command.strip().splitlines()[0] if command.strip() else ""
    shown = first + (" # collapsed multi-line command" if "\n" in command.strip() else "")
    return f"printf '\\033[32;1m$ %s\\033[0m\\n' {shlex.quote(shown)}"


def render(commands: list[str]) -> str:
    """A script that echoes each command before running it, as GitLab's logs do."""
    lines = ['cd "$CI_PROJECT_DIR"']
    for cmd in commands:
        lines.append(_echo(cmd))
        lines.append(cmd)
    return "\n".join(lines) + "\n"


def write_scripts(
    dest: Path,
    before: list[str],
    script: list[str],
    after: list[str],
    lease_seconds: int | None = None,
    shared: Path | None = None,
) -> None:
    """Write run.sh, main.sh and (when there is an after_script) after.sh into ``dest``
    (mounted read-only at /farm).

    ``lease_seconds``: run.sh stops the job once ``/farm/lease`` is older than this.
    ``shared``: a directory of the worker's where run.sh, the same for every job of a
    lease, is kept once and hard-linked into ``dest`` (creating a file costs a file
    system far more than linking one; /farm is read-only, so no job can change it).
    It is named by its content: a worker of another version never links a wrapper an
    older one left there.
    """
    dest.mkdir(parents=True, exist_ok=True)
    wrapper = run_sh(lease_seconds)
    name = f"run-{hashlib.sha256(wrapper.encode()).hexdigest()[:16]}.sh"
    _place(dest / "run.sh", wrapper, shared, name)
    (dest / "main.sh").write_text(render([*before, *script]))
    if after:  # run.sh skips a missing after.sh
        (dest / "after.sh").write_text(render(after))


def _place(path: Path, text: str, shared: Path | None, name: str) -> None:
    """``path`` holding ``text``: a link to ``shared/name`` when it can be, else a copy."""
    if shared is not None:
        source = shared / name
        for _ in range(2):
            try:
                os.link(source, path)
                return
            except FileNotFoundError:
                _publish(source, text)
            except OSError:
                break  # another file system, links not allowed: write our own
    path.write_text(text)


def _publish(path: Path, text: str) -> None:
    """Create ``path`` with ``text`` atomically (several slots may race to)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    tmp.write_text(text)
    os.replace(tmp, path)
