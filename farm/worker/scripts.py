"""The shell scripts a job container runs: GitLab's ``sh -e`` semantics, echo of commands.

``before_script`` and ``script`` share one shell that stops at the first failing
line; ``after_script`` runs in a fresh shell whatever happened, and its own failure
does not change the job's result.
"""

from __future__ import annotations

import shlex
from pathlib import Path

RUN_SH = """\
#!/bin/sh
# farm job wrapper: main script under `sh -e`, then after_script whatever happened.
cd "$CI_PROJECT_DIR" || exit 1
sh -e /farm/main.sh
rc=$?
if [ -s /farm/after.sh ]; then
  if [ "$rc" -eq 0 ]; then CI_JOB_STATUS=success; else CI_JOB_STATUS=failed; fi
  export CI_JOB_STATUS
  printf '\\033[36;1mRunning after_script\\033[0m\\n'
  ( cd "$CI_PROJECT_DIR" && sh -e /farm/after.sh ) || \
    printf '\\033[33mafter_script failed (ignored)\\033[0m\\n'
fi
exit "$rc"
"""


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


def write_scripts(dest: Path, before: list[str], script: list[str], after: list[str]) -> None:
    """Write run.sh, main.sh and after.sh into ``dest`` (mounted read-only at /farm)."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "run.sh").write_text(RUN_SH)
    (dest / "main.sh").write_text(render([*before, *script]))
    (dest / "after.sh").write_text(render(after) if after else "")
