"""The real image wins over its stand-in: present, or pulled; the alias only when neither."""

from __future__ import annotations

from farm.executor.base import resolve_image

ALIASES = {"python:3.11*": "farm/python:3.11"}
LOCAL = {"farm/python:3.11"}


def test_a_pullable_real_image_is_used_instead_of_its_stand_in() -> None:
    pulled: list[str] = []

    def pull(image: str) -> bool:
        pulled.append(image)
        return True

    assert resolve_image("python:3.11", ALIASES, LOCAL.__contains__, pull) == ("python:3.11", None)
    assert pulled == ["python:3.11"]


def test_the_stand_in_is_used_when_the_pull_fails() -> None:
    image, note = resolve_image("python:3.11", ALIASES, LOCAL.__contains__, lambda _: False)
    assert image == "farm/python:3.11" and note is not None


def test_a_present_real_image_is_never_pulled() -> None:
    def pull(image: str) -> bool:
        raise AssertionError("no pull for a present image")

    local = LOCAL | {"python:3.11"}
    assert resolve_image("python:3.11", ALIASES, local.__contains__, pull) == ("python:3.11", None)
