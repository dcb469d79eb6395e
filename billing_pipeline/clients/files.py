"""Files written atomically: write-once (documents folder, mail outbox) or replaced (caches).

``write_once(path, data)`` writes to a temp file in the target folder, fsyncs it, then links it
into place with ``os.link``, which, unlike ``os.replace``, fails when the name already exists:
two concurrent writers cannot overwrite each other. Returns False when ``path`` already
existed (nothing written; the caller decides whether the existing bytes are the same).
``os.replace`` is the fallback on filesystems without hard links.

``write_replacing(path, data)`` writes a temp file and renames it over ``path`` (no fsync):
readers see the old or the new bytes, never a torn file. For caches that can be rebuilt.
"""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

__all__ = ["write_once", "write_replacing"]

_NO_HARD_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EXDEV, errno.EOPNOTSUPP)


def _temp_file(path: Path, data: bytes, *, fsync: bool) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:60]}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
    except BaseException:
        os.unlink(tmp)
        raise
    return tmp


def write_once(path: Path, data: bytes) -> bool:
    """Create ``path`` with ``data`` unless it exists; True when this call created it."""
    if path.exists():
        return False
    tmp = _temp_file(path, data, fsync=True)
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            return False
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return True


def write_replacing(path: Path, data: bytes) -> None:
    """Atomically replace ``path`` with ``data`` (no fsync: for rebuildable caches)."""
    tmp = _temp_file(path, data, fsync=False)
    try:
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
