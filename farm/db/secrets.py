"""Secret variables encrypted at rest: Fernet under the farm's secrets key.

A build's secrets are stored in ``builds.secrets`` (a JSON column) as one envelope for
the whole dict, ``{"v": 1, "ct": "<fernet token>"}``: the token hides the names as well
as the values (and how many there are). Rows written before encryption hold the plain
``{"NAME": "value"}`` dict and still read; a plain dict can never look like an envelope,
because its values are strings and the envelope's ``v`` is the integer 1.

The key comes from ``FARM_SECRET_KEY`` (a Fernet key; several separated by commas to
rotate: the first encrypts, every one decrypts) or, by default, from the key file
``$FARM_DATA_DIR/keys/secrets.key`` generated on first start (mode 0600), beside the
provenance key. Records (``farm.domain``) only ever hold the plain values in memory.

A project secret (:mod:`farm.db.project_secrets`) is one Fernet token per value,
:meth:`SecretBox.seal_value`: the token carries the value *and* the row's identity
(project, name, flags), checked on opening, so a token copied into another row (say,
a protected secret's into an unprotected one) or a flag flipped in the database is
refused instead of being handed to a job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from farm.errors import ConfigError
from farm.keyfile import create_once

__all__ = [
    "ENVELOPE_VERSION",
    "KEY_FILE",
    "SecretBox",
    "is_envelope",
    "load_or_create_secret_key",
    "secret_box",
]

KEY_FILE = "secrets.key"
ENVELOPE_VERSION = 1


def _fernet(key: str | bytes, where: str) -> Fernet:
    try:
        return Fernet(key.strip())
    except (ValueError, TypeError):
        raise ConfigError(
            f"{where} is not a Fernet key (32 url-safe base64 bytes; make one with `python -c "
            "'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`)"
        ) from None


class SecretBox:
    """Encrypts a build's secrets for the database and decrypts them back."""

    def __init__(self, keys: list[Fernet], where: str) -> None:
        if not keys:
            raise ConfigError(f"{where} holds no key")
        self._fernet = MultiFernet(keys)
        self._where = where  # named in errors: which key could not decrypt

    @classmethod
    def from_keys(cls, text: str, where: str = "FARM_SECRET_KEY") -> SecretBox:
        """One Fernet key, or several separated by commas (first encrypts; all decrypt)."""
        parts = [p for p in (k.strip() for k in text.split(",")) if p]
        return cls([_fernet(p, where) for p in parts], where)

    @classmethod
    def ephemeral(cls) -> SecretBox:
        """A key that lives only in this process (tests, a store made without a key)."""
        return cls([Fernet(Fernet.generate_key())], "an in-memory key")

    def seal(self, secrets: Mapping[str, str]) -> dict[str, Any] | None:
        """The column value for ``secrets``: an envelope, or None when there are none."""
        if not secrets:
            return None
        plain = json.dumps(dict(secrets), sort_keys=True, separators=(",", ":")).encode()
        return {"v": ENVELOPE_VERSION, "ct": self._fernet.encrypt(plain).decode("ascii")}

    def open(self, stored: Mapping[str, Any] | None, build_id: int | None = None) -> dict[str, str]:
        """The plain secrets of a stored column value (an envelope or a legacy plain dict)."""
        if not stored:
            return {}
        if not is_envelope(stored):
            return {str(k): str(v) for k, v in stored.items()}  # a row from before encryption
        if stored["v"] != ENVELOPE_VERSION:
            raise ConfigError(
                f"secrets of build {build_id} use envelope version {stored['v']}: "
                "this farm reads version 1 (upgrade farm)"
            )
        try:
            plain = self._fernet.decrypt(str(stored["ct"]).encode("ascii"))
        except (InvalidToken, UnicodeEncodeError):
            raise ConfigError(
                f"secrets of build {build_id} cannot be decrypted with {self._where}: "
                "set FARM_SECRET_KEY (or restore $FARM_DATA_DIR/keys/secrets.key) to the key "
                "that wrote them"
            ) from None
        data = json.loads(plain)
        return {str(k): str(v) for k, v in data.items()}

    def seal_value(self, value: str, bound: Mapping[str, Any]) -> str:
        """One value as its own Fernet token, bound to ``bound`` (JSON scalars)."""
        plain = json.dumps({**bound, "value": value}, sort_keys=True, separators=(",", ":"))
        return self._fernet.encrypt(plain.encode()).decode("ascii")

    def open_value(self, token: str, bound: Mapping[str, Any], what: str) -> str:
        """The value of a :meth:`seal_value` token; ConfigError unless it is ``bound``'s.

        ``what`` names the secret in the error (never its value).
        """
        try:
            data = json.loads(self._fernet.decrypt(token.encode("ascii")))
        except (InvalidToken, UnicodeEncodeError, ValueError):
            raise ConfigError(
                f"{what} cannot be decrypted with {self._where}: set FARM_SECRET_KEY (or "
                "restore $FARM_DATA_DIR/keys/secrets.key) to the key that wrote it"
            ) from None
        altered = not isinstance(data, dict) or "value" not in data
        if altered or any(data.get(k) != v for k, v in bound.items()):
            raise ConfigError(f"{what} was altered in the database: set it again")
        return str(data["value"])


def is_envelope(stored: Mapping[str, Any]) -> bool:
    """Whether a ``builds.secrets`` value is encrypted (else a legacy plain dict)."""
    return set(stored) == {"v", "ct"} and type(stored["v"]) is int


def load_or_create_secret_key(key_dir: Path) -> SecretBox:
    """The farm's secrets key under ``key_dir`` (created on first start, mode 0600).

    Written to a temp file and hard-linked into place, so two API processes starting
    together end up using the same key (as :func:`farm.registry.provenance.load_or_create_key`).
    """
    path = key_dir / KEY_FILE
    if not path.exists():
        create_once(path, Fernet.generate_key() + b"\n")
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the secrets key {path}: {exc}") from None
    return SecretBox.from_keys(text, str(path))


def secret_box(secret_key: str | None, key_dir: Path) -> SecretBox:
    """The farm's box: ``FARM_SECRET_KEY`` when set, else the key file under ``key_dir``."""
    if secret_key:
        return SecretBox.from_keys(secret_key)
    return load_or_create_secret_key(key_dir)
