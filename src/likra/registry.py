"""One registry type for everything likra looks up by name: objectives, modes, studies, benchmarks.

`Registry[T]` maps names to objects of one type. Registering a name twice is an error that names both
origins (the module, file and line that registered each), so two plug-ins can never silently replace each
other or a built-in; the same origin registering again (a module imported twice, e.g. reloaded) is allowed.
An entry may be lazy, `"package.module:attribute"`, imported and type-checked on first use, so a plug-in can
list what it offers without importing heavy libraries up front (as lm-eval's registry does).

This module imports nothing of likra's above `errors`, so every layer may own a registry.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from likra.errors import LikraError

T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where an entry was registered: the registering module, its file and line."""

    module: str
    file: str = ""
    line: int = 0

    def __str__(self) -> str:
        return f"{self.module} ({self.file}:{self.line})" if self.file else self.module


def caller_origin(depth: int = 2) -> Origin:
    """The origin of the code `depth` frames above this call (the one that called `register`)."""
    frame = inspect.currentframe()
    try:
        for _ in range(depth):
            frame = frame.f_back if frame is not None else None
        if frame is None:
            return Origin("<unknown>")
        return Origin(frame.f_globals.get("__name__", "<unknown>"), frame.f_code.co_filename, frame.f_lineno)
    finally:
        del frame


class Registry(Generic[T]):
    """Names -> objects of type `kind` (checked on registration, or on first use for lazy entries).

    Reads like a mapping of names: `name in registry`, `registry[name]`, iteration over names, `len`."""

    def __init__(self, what: str, kind: type | None = None):
        self.what = what  # "objective", "mode", ... (for messages)
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        self._origins: dict[str, Origin] = {}

    # -- registration -------------------------------------------------------------------------------
    def register(self, name: str, entry: T | str, origin: Origin | None = None) -> T | str:
        """Add `entry` (an object, or a lazy `"module:attribute"` string) under `name`; returns it."""
        origin = origin or caller_origin()
        if not isinstance(name, str) or not name:
            raise LikraError(f"a {self.what} needs a non-empty name, got {name!r}")
        if isinstance(entry, str):
            if ":" not in entry:
                raise LikraError(f"{self.what} {name!r}: a lazy entry is 'module:attribute', got {entry!r}")
        else:
            self._check_type(name, entry)
        if name in self._entries:
            previous = self._origins[name]
            if (previous.module, previous.file, previous.line) != (origin.module, origin.file, origin.line):
                raise LikraError(
                    f"{self.what} {name!r} is registered twice: by {previous} and by {origin}; rename one of them"
                )
        self._entries[name] = entry
        self._origins[name] = origin
        return entry

    def unregister(self, name: str) -> None:
        """Remove `name` (tests and plug-ins that clean up after themselves)."""
        self._entries.pop(name, None)
        self._origins.pop(name, None)

    def _check_type(self, name: str, entry: Any) -> None:
        if self.kind is not None and not isinstance(entry, self.kind):
            raise LikraError(
                f"{self.what} {name!r} must be a {self.kind.__name__}, got {type(entry).__name__} ({entry!r:.80})"
            )

    # -- lookup ---------------------------------------------------------------------------------------
    def get(self, name: str) -> T:
        """The entry of `name` (a lazy one imported now), or one line listing the valid names."""
        if name not in self._entries:
            raise LikraError(f"unknown {self.what} {name!r}; valid {self.what}s: {', '.join(self._entries)}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            try:
                obj: Any = importlib.import_module(module)
                for part in attribute.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError) as e:
                raise LikraError(f"{self.what} {name!r}: cannot load {entry!r} ({type(e).__name__}: {e})") from None
            if isinstance(obj, type) and self.kind is not None and issubclass(obj, self.kind):
                obj = obj()
            self._check_type(name, obj)
            self._entries[name] = obj
            entry = obj
        return entry  # type: ignore[return-value]

    def origin(self, name: str) -> Origin:
        return self._origins[name]

    def __getitem__(self, name: str) -> T:
        return self.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._entries))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def values(self) -> list[T]:
        return [self.get(name) for name in self._entries]

    def items(self) -> list[tuple[str, T]]:
        return [(name, self.get(name)) for name in self._entries]

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {self.names()})"
