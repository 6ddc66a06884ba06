"""likra's optional packages (`pip install 'likra[<extra>]'`): which extra installs each, and the one line that
refuses a command needing one that is missing, at plan time (before a model loads or a folder is written).

A plain `pip install likra` brings none of them: the `dpo` and `kto` objectives (and the studies `dpo` and
`objectives`) need TRL, `--quantize 4bit` bitsandbytes, `--report-to` TensorBoard or wandb, `likra lm-eval`
lm-eval. Each is looked up without being imported (`importlib.util.find_spec`).
"""

from __future__ import annotations

import importlib.util
import sys

from likra.errors import LikraError

# module -> (its name for people, the extra that installs it)
EXTRAS: dict[str, tuple[str, str]] = {
    "trl": ("TRL", "dpo"),
    "bitsandbytes": ("bitsandbytes", "quant"),
    "tensorboard": ("TensorBoard", "tracking"),
    "wandb": ("wandb", "wandb"),
    "lm_eval": ("lm-eval", "lmeval"),
}
# Kept out of a command's process until it is needed (`likra.model.quantization.defer_bitsandbytes`): a None in
# `sys.modules` that does not mean "missing".
DEFERRED = ("bitsandbytes",)


def installed(module: str) -> bool:
    """Whether top-level `module` can be imported (found, not imported; a module likra defers counts as found
    when it is installed)."""
    kept_out = module in DEFERRED and module in sys.modules and sys.modules[module] is None
    if kept_out:
        del sys.modules[module]
    try:
        return importlib.util.find_spec(module) is not None
    except ValueError:  # a module stand-in without a spec: importable
        return True
    except ImportError:
        return False
    finally:
        if kept_out:
            sys.modules[module] = None  # type: ignore[assignment]


def install_command(module: str) -> str:
    """What installs `module`: likra's extra for it, else the package itself."""
    if module in EXTRAS:
        return f"pip install 'likra[{EXTRAS[module][1]}]'"
    return f"pip install {module}"


def require(module: str, what: str) -> None:
    """One LikraError when `module` is missing: "`what` needs <package>: pip install 'likra[<extra>]'"."""
    if not installed(module):
        name = EXTRAS[module][0] if module in EXTRAS else f"the {module} package"
        raise LikraError(f"{what} needs {name}: {install_command(module)}")
