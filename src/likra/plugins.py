"""Plug-ins: packages that add objectives, modes, benchmarks and studies without editing likra.

A plug-in is a Python module that registers what it adds when imported (`register_objective`,
`register_mode`, `register_benchmark`, `register_study`), or a function that does so when called. likra finds
plug-ins three ways, once per process, in this order:

1. installed packages' entry points in the group `likra.plugins` (as pytest and lm-eval find theirs), e.g. in
   the plug-in's pyproject.toml:

       [project.entry-points."likra.plugins"]
       orpo = "likra_orpo"                # a module, imported
       extras = "likra_orpo.extra:setup"  # or a function, called

2. the modules named in the environment variable `LIKRA_PLUGINS` (comma-separated);
3. the modules given with `--plugin MODULE` on the command line (repeatable).

A name registered twice (by two plug-ins, or by a plug-in and likra) is an error naming both origins. A plug-in
that cannot be imported is one line naming it and the reason.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Sequence
from importlib import metadata

from likra.errors import LikraError

GROUP = "likra.plugins"
ENVIRONMENT = "LIKRA_PLUGINS"

log = logging.getLogger(__name__)
_loaded: dict[str, str] = {}  # plug-in -> how it was found


def loaded_plugins() -> dict[str, str]:
    """The plug-ins loaded in this process: name -> `entry point <value>`, `$LIKRA_PLUGINS` or `--plugin`."""
    return dict(_loaded)


def _import(target: str, label: str) -> None:
    module, _, attribute = target.partition(":")
    try:
        obj = importlib.import_module(module.strip())
        for part in filter(None, attribute.strip().split(".")):
            obj = getattr(obj, part)
    except LikraError as e:
        raise LikraError(f"plug-in {label}: {e}") from None
    except (Exception, SystemExit) as e:  # an import error, a syntax error, sys.exit(): anything its module does
        raise LikraError(f"plug-in {label}: cannot load {target!r} ({failure(e)})") from None
    if attribute:
        if not callable(obj):
            raise LikraError(f"plug-in {label}: {target!r} is not a module or a function")
        try:
            obj()
        except LikraError as e:
            raise LikraError(f"plug-in {label}: {e}") from None
        except (Exception, SystemExit) as e:  # whatever its setup function raises or exits with
            raise LikraError(f"plug-in {label}: {target!r} failed ({failure(e)})") from None


def failure(e: BaseException) -> str:
    """An exception of a plug-in as a few words on one line (a SystemExit says its code)."""
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r})"
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def load_plugins(modules: Sequence[str] = (), entry_points: bool = True) -> list[str]:
    """Load every plug-in not loaded yet (see the module docstring); returns the names loaded now."""
    import likra.data.benchmarks  # noqa: F401  likra's own entries first, so a clash names both origins
    import likra.experiments.studies  # noqa: F401
    import likra.objectives  # noqa: F401
    import likra.scoring.modes  # noqa: F401

    wanted: list[tuple[str, str, str]] = []
    if entry_points:
        for ep in metadata.entry_points(group=GROUP):
            wanted.append((f"{ep.name} ({ep.value})", ep.value, f"entry point {ep.value}"))
    for name in os.environ.get(ENVIRONMENT, "").split(","):
        if name.strip():
            wanted.append((name.strip(), name.strip(), f"${ENVIRONMENT}"))
    for name in modules:
        if not name or not name.strip():
            raise LikraError("--plugin: give a module name")
        wanted.append((name.strip(), name.strip(), "--plugin"))
    done = []
    for label, target, how in wanted:
        if target in _loaded:
            continue
        _import(target, label)
        _loaded[target] = how
        done.append(target)
        log.debug("loaded plug-in %s (%s)", target, how)
    return done
