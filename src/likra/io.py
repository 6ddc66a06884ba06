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


def current_umask() -> int:
    """The process's umask (read without changing it where Linux shows it; otherwise set and restored at once)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


def file_mode() -> int:
    """The mode a new file gets from `open()`: 0666 less the umask."""
    return 0o666 & ~current_umask()


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


def share_tree(root: str | os.PathLike) -> None:
    """Give every file and folder under `root` the mode a plain `open()` / `mkdir()` gives (the umask's):
    safetensors writes its files 0600 whatever the umask, so saved adapters and checkpoints would otherwise be
    unreadable to anyone else."""
    umask = current_umask()
    mode, folder_mode = 0o666 & ~umask, 0o777 & ~umask
    for path in [Path(root), *Path(root).rglob("*")]:
        try:
            if path.is_symlink():
                continue
            os.chmod(path, folder_mode if path.is_dir() else mode)
        except OSError:
            pass
