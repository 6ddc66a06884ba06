"""The study interface and its registry.

A study is one file: a `Study` subclass with its name, help, its own settings (a `@settings` dataclass:
flags such as `--kinds`, and a YAML section), `run` (on top of `likra curve`'s folder, returning the JSON
result), `figure` and `report` (its section of `likra report`), registered with `register_study`.
`likra study <name>` and `likra report` loop over the registry, so a study registered from any file
(a plug-in, a test) gets its command and its report section.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from likra.distributed import is_main
from likra.experiments.figures import save_figure
from likra.experiments.folder import CurveFolder
from likra.io import atomic_write_json
from likra.registry import Registry, caller_origin

if TYPE_CHECKING:
    from likra.experiments.curve import CurveConfig


class Study:
    """One study. `settings`: its settings class (or None); `section`: the YAML key holding them;
    `prefix`: the prefix of its flags; `eval_data`: its default evaluation data when not the curve's."""

    name: str = ""
    help: str = ""
    settings: type | None = None
    section: str = "study"
    prefix: str = ""
    eval_data: str | None = None

    def run(self, cfg: CurveConfig, options: Any, progress: bool = True) -> dict:
        """Run the study in the curve folder `cfg.out`; returns its JSON result."""
        raise NotImplementedError

    def figure(self, result: dict):
        """A matplotlib figure of the result (None for no figure)."""
        return None

    def report(self, result: dict) -> list[str]:
        """Markdown lines of its `likra report` section (under its heading and figure)."""
        return []


STUDIES: Registry[Study] = Registry("study", Study)


def register_study(study: Study) -> Study:
    """Add `study` under its name (a name registered twice is an error naming both origins)."""
    STUDIES.register(study.name, study, caller_origin())
    return study


def get_study(name: str) -> Study:
    return STUDIES.get(name)


def run_study(study: Study, cfg: CurveConfig, options: Any = None, progress: bool = True) -> list[Path]:
    """Run `study` and write study-<name>.json and its figure (.png, .svg) into the curve folder."""
    if options is None and study.settings is not None:
        options = study.settings()
    folder = CurveFolder(cfg.out)
    with folder.lock():
        result = study.run(cfg, options, progress)
        if not is_main():
            return []
        atomic_write_json(folder.study_file(study.name), result)
        paths = [folder.study_file(study.name)]
        fig = study.figure(result)
        if fig is not None:
            paths += save_figure(fig, folder.study_stem(study.name))
    return paths
