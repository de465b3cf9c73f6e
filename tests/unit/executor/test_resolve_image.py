"""Image aliases for a registry-less farm: pure rules."""

from __future__ import annotations

from farm.executor.base import resolve_image

ALIASES = {"python:3.11*": "farm/python:3.11", "busybox*": "farm/busybox:latest"}
LOCAL = {"farm/python:3.11", "farm/busybox:latest", "mine:1"}


def test_present_image_is_used_as_is() -> None:
    assert resolve_image("mine:1", ALIASES, LOCAL.__contains__) == ("mine:1", None)


def test_missing_image_falls_back_to_a_matching_local_alias() -> None:
    image, note = resolve_image("python:3.11-slim", ALIASES, LOCAL.__contains__)
    assert image == "farm/python:3.11"
    assert note is not None and "python:3.11-slim" in note


def test_no_match_or_missing_target_keeps_the_name() -> None:
    assert resolve_image("python:3.12", ALIASES, LOCAL.__contains__) == ("python:3.12", None)
    assert resolve_image("busybox", {"busybox*": "gone:1"}, LOCAL.__contains__) == (
        "busybox",
        None,
    )
