"""bitsandbytes only when a base is quantized.

peft imports bitsandbytes as soon as it is imported itself (and again when it wraps layers), and on CPUs with
AVX512-BF16 or AMX bitsandbytes' import logs a warning about an optional kernel package. A likra command keeps
it out of the process (`defer_bitsandbytes`, called by the command line before anything imports peft) until a
base is loaded in 4 bits (`allow_bitsandbytes`, called by `quantization_config`). Library users who import
likra themselves are not affected: only the command line defers.
"""

from __future__ import annotations

import sys

PACKAGE = "bitsandbytes"


def defer_bitsandbytes() -> None:
    """Make `import bitsandbytes` fail and `importlib.util.find_spec` answer None in this process (libraries then
    behave as without it), unless it is imported already."""
    sys.modules.setdefault(PACKAGE, None)  # type: ignore[arg-type]


def allow_bitsandbytes() -> None:
    """Undo `defer_bitsandbytes`, and forget the answers libraries cached while it was deferred (peft's and
    transformers' availability checks are `functools.lru_cache`d)."""
    if PACKAGE in sys.modules and sys.modules[PACKAGE] is None:
        del sys.modules[PACKAGE]
    checks = (
        ("peft.import_utils", ("is_bnb_available", "is_bnb_4bit_available")),
        ("transformers.utils.import_utils", ("is_bitsandbytes_available",)),
    )
    for module, names in checks:
        loaded = sys.modules.get(module)
        for name in names:
            clear = getattr(getattr(loaded, name, None), "cache_clear", None)
            if clear is not None:
                clear()


def deferred() -> bool:
    """Whether bitsandbytes is being kept out of this process."""
    return PACKAGE in sys.modules and sys.modules[PACKAGE] is None
