"""Atomic file writes: a crash never leaves a half-written result behind; a full disk is one line.

The temporary file is made private by `mkstemp` (mode 0600); before it is renamed into place it gets the mode
a plain `open()` would have given it (0666 less the process's umask: 0644 under umask 022), so results, runs,
curves and exports stay readable by a colleague or a TensorBoard server running as another user.

A full disk (or quota) shows up in many forms: OSError ENOSPC/EDQUOT from Python, `SafetensorError: ... No space
left on device` from safetensors, `RuntimeError: basic_ios::clear: iostream error` or `PytorchStreamWriter failed
writing file` from `torch.save`. `writing(path, need)` turns each of them into one `LikraError` naming the path,
the space needed (when known) and the space free; what was finished before stays, so a rerun resumes."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from likra.errors import LikraError

DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
# What the libraries that write likra's files say when the disk is full: safetensors (the OS error's text),
# and torch.save, whose C++ streams only say that writing failed.
DISK_FULL_TEXT = ("No space left on device", "Disk quota exceeded", "StorageFull")
WRITE_FAILED_TEXT = ("basic_ios::clear", "iostream error", "PytorchStreamWriter failed writing", "file write failed")


def write_failure(error: BaseException) -> str | None:
    """What a failed write says, when `error` (or an exception it was raised from) is one: "no space left on
    device" when the disk or quota is full, "writing failed (is the disk full?)" when a library's stream only
    says that it could not write; None for any other error."""
    seen = set()
    found = None
    while error is not None and id(error) not in seen and not isinstance(error, LikraError):
        seen.add(id(error))
        text = str(error)
        if (isinstance(error, OSError) and error.errno in DISK_FULL_ERRNOS) or any(t in text for t in DISK_FULL_TEXT):
            return "no space left on device"
        if any(t in text for t in WRITE_FAILED_TEXT):
            found = "writing failed (is the disk full?)"
        error = error.__cause__ or error.__context__
    return found


def size_text(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def free_space(path: str | os.PathLike) -> int | None:
    """Bytes free on the file system of `path` (its nearest existing parent), or None when unknown."""
    path = Path(path).absolute()
    for candidate in (path, *path.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None


def disk_full_message(path: str | os.PathLike, need: int | None = None, what: str = "", reason: str = "") -> str:
    amounts = []
    if need:
        amounts.append(f"about {size_text(need)} needed")
    free = free_space(path)
    if free is not None:
        amounts.append(f"{size_text(free)} free")
    return (
        f"{path}: {reason or 'no space left on device'}{f' writing {what}' if what else ''}"
        + (f" ({', '.join(amounts)})" if amounts else "")
        + "; free some space and run the command again (finished work is kept and reused)"
    )


@contextmanager
def writing(path: str | os.PathLike, need: int | None = None, what: str = "") -> Iterator[None]:
    """Turn a full disk while writing `path` (about `need` bytes of `what`) into one LikraError."""
    try:
        yield
    except LikraError:
        raise
    except Exception as e:
        reason = write_failure(e)
        if reason is None:
            raise
        raise LikraError(disk_full_message(path, need, what, reason)) from None


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
    with writing(path, len(data)):
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


# -- likra's temporary and backup folders ----------------------------------------------------------
# A folder is written as `<out>.partial` and renamed into place; a folder it replaces is first renamed to
# `<out>.old`. Both carry this marker while they exist, and likra removes a folder at either name only when
# the marker is there: anything else at that name is a user's and is refused, never deleted.
TEMPORARY_MARKER = ".likra-temporary"


def is_temporary(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder (not a link) likra made as a temporary or backup copy (it holds the marker)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and (path / TEMPORARY_MARKER).is_file()


def check_temporary(path: str | os.PathLike, out: str | os.PathLike) -> None:
    """Refuse when `path`, the name likra uses for a temporary or backup copy of `out`, holds anything likra
    did not make there."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not is_temporary(path):
        raise LikraError(
            f"{path}: exists and was not made by likra (no {TEMPORARY_MARKER} in it); likra uses this name while "
            f"writing {out}: move it away or choose another output"
        )


def mark_temporary(path: str | os.PathLike) -> None:
    Path(path, TEMPORARY_MARKER).write_text(
        f"likra's temporary folder (process {os.getpid()}); likra deletes it, and so may you\n", encoding="utf-8"
    )


def remove_temporary(path: str | os.PathLike, out: str | os.PathLike) -> None:
    """Delete `path` if it is likra's temporary or backup folder; refuse it when it is anything else."""
    check_temporary(path, out)
    if is_temporary(path):
        shutil.rmtree(path)


def temporary_folder(out: str | os.PathLike) -> Path:
    """A fresh, marked `<out>.partial` folder (a previous one likra left behind is removed first)."""
    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    remove_temporary(staging, out)
    staging.mkdir(parents=True)
    mark_temporary(staging)
    return staging


def backup_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".old")


# -- output files named by the user ----------------------------------------------------------------
def check_output_file(path: str | os.PathLike, overwrite: bool, flag: str = "--out") -> Path:
    """The one rule for an output file a user names (`likra eval --out`, `likra generate --out`, `likra plot
    --out`): a path that exists is replaced only with `--overwrite`, and never when it is a folder. Checked
    before any work, so a refusal costs nothing."""
    path = Path(path)
    if path.is_dir():
        raise LikraError(f"{flag} {path}: is a folder; give a file name")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise LikraError(f"{flag} {path}: already exists; choose another name or pass --overwrite to replace it")
    return path


def check_output_folder(path: str | os.PathLike, flag: str) -> Path:
    """An output folder likra adds new files to (`--lm-eval-out`: results_<date>.json, never replacing one)
    must be a folder or not exist yet."""
    path = Path(path)
    if (path.exists() or path.is_symlink()) and not path.is_dir():
        raise LikraError(f"{flag} {path}: exists and is not a folder; likra writes a folder of results there")
    return path


def slug(text: str) -> str:
    """`text` as a piece of a file or folder name: runs of anything but letters, digits and `_.+-` become `_`."""
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")
