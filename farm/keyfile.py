"""Key files the farm makes for itself on first start (provenance signing, secrets).

A key is written to a private temp file (0600, fsynced) and hard-linked into place, so
it appears whole or not at all, and of several processes starting together exactly one
wins: the others find its file and use that key.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path


def create_once(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) unless the file exists already."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.exists():
        return
    tmp = path.parent / f".{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        pass  # another process won the race; use its key
    finally:
        tmp.unlink(missing_ok=True)
