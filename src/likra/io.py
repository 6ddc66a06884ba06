"""Atomic file writes: a crash never leaves a half-written result behind.

The temporary file is made private by `mkstemp` (mode 0600); before it is renamed into place it gets the mode
a plain `open()` would have given it (0666 less the process's umask: 0644 under umask 022), so results, runs,
curves and exports stay readable by a colleague or a TensorBoard server running as another user."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def file_mode() -> int:
    """The mode a new file gets from `open()`: 0666 less the umask (read without changing it, where Linux
    shows it; otherwise set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a synced temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")
