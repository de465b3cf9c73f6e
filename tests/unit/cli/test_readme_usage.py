"""README's "Using it" block lists every `farm` command and every long option."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click

from farm.cli.main import cli

README = Path(__file__).resolve().parents[3] / "README.md"


def _usage_block() -> str:
    text = README.read_text()
    section = text.split("## Using it", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "README's Using it section has no ```sh block"
    return match.group(1)


def _walk(group: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(group, click.Group):
        for name, sub in group.commands.items():
            if not sub.hidden:
                yield from _walk(sub, (*path, name))


def _command(path: tuple[str, ...]) -> click.Command:
    cmd: click.Command = cli
    for name in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.commands[name]
    return cmd


def test_every_command_and_long_option_is_in_the_readme() -> None:
    block = _usage_block()
    words = set(re.findall(r"[A-Za-z][\w-]*", block))
    missing: list[str] = []
    for path in _walk(cli):
        if path and path[-1] not in words:
            missing.append("farm " + " ".join(path))
        for param in _command(path).params:
            if not isinstance(param, click.Option) or param.hidden:
                continue
            for opt in param.opts + param.secondary_opts:
                wanted = opt.startswith("--") and opt not in ("--help", "--version")
                if wanted and not re.search(re.escape(opt) + r"(?![\w-])", block):
                    missing.append(f"farm {' '.join(path)} {opt}".replace("  ", " "))
    assert not missing, "README 'Using it' misses: " + ", ".join(missing)
