"""One precision policy, resolved once: what the heads train in and what every score is computed in.

    --dtype X                       both (fp32, bf16, fp16 or auto); --train-dtype / --score-dtype override one
    train auto   bf16 where bf16 is native (a CUDA device with bf16; a CPU with avx512_bf16 or amx_bf16 whose
                 bf16 products a short probe finds faster than fp32: measured once per machine and kept in
                 likra's cache, `cpu_bf16_speedup`), else fp32
    score auto   fp32 wherever an fp32 copy of the base fits in memory (with the training copy beside it); a
                 4-bit base, a base spread by a device map, or one too large scores in its training dtype and
                 says so (`Precision.note`, one log line, recorded in results)

Why they differ: training in bf16 matched fp32 on the demo curve, while scoring in bf16 moved Likra and
Base-Likra by up to 0.065 at 16-64 examples (README, "fp32 and bf16"). Training in bf16 keeps the LoRA weights
and the optimizer state in fp32 (the Trainer's bf16 path); only the frozen base weights are bf16.

The base rests in the scoring dtype (loaded once; fp32 wherever train and score differ). While a head trains,
`computing_in` swaps a cached copy of its frozen weights in the training dtype into the same parameters and swaps
the originals back afterwards: no second model, no weight ever rounded in place, so scores are computed from the
exact fp32 weights before and after any amount of bf16 training.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from likra.errors import LikraError

log = logging.getLogger(__name__)

TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Memory an fp32 copy may take of what is free (activations, the KV cache of scoring and the rest need room too).
FIT_SHARE = 0.8
COPIES = "_likra_weight_copies"
PRECISION = "_likra_precision"


@dataclass(frozen=True)
class Precision:
    """Resolved dtypes (never auto): `train` the base's forward and backward passes while heads train, `score` every
    scoring pass; `note` says why scoring is not in fp32 where auto would have it (None otherwise)."""

    train: str | None  # None where nothing trains here (an evaluation)
    score: str
    note: str | None = None

    @property
    def weights(self) -> str:
        """The dtype the base is loaded in: the scoring one, or fp32 where training needs a copy of exact weights."""
        return self.score if self.train in (None, self.score) or self.score == "fp32" else "fp32"

    @property
    def label(self) -> str:
        """`fp32`, or `bf16/fp32` (trained/scored) where they differ: one name for tables and file labels."""
        return self.score if self.train in (None, self.score) else f"{self.train}/{self.score}"

    def to_json(self) -> dict:
        return {
            **({"train": self.train} if self.train else {}),
            "score": self.score,
            **({"note": self.note} if self.note else {}),
        }


BF16_PROBE_FILE = "cpu-bf16-speedup.json"
BF16_FASTER = 1.2  # the speed-up over fp32 from which auto trains in bf16 on a CPU


def cpu_model_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` says."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def bf16_probe_key() -> str:
    """What the probe's figure depends on: the CPU model, its bf16 flags (as `cpu_bf16_flags` gives them:
    `LIKRA_CPU_BF16_FLAGS` applies), the torch version and its thread count."""
    from likra.model.loading import cpu_bf16_flags

    flags = ",".join(cpu_bf16_flags()) or "-"
    return f"{cpu_model_name()} | {flags} | torch {torch.__version__} | {torch.get_num_threads()} threads"


def _probe_cache(path: Path) -> dict:
    """The cached probe figures by key; {} where the file is missing or damaged (measured again, rewritten)."""
    from likra.limits import read_json_file

    try:
        table = read_json_file(path)
    except FileNotFoundError:
        return {}
    except (OSError, LikraError) as e:
        log.debug("%s: unreadable (%s); measuring again", path, type(e).__name__)
        return {}
    return table if isinstance(table, dict) else {}


def cpu_bf16_speedup() -> float:
    """How much faster a bf16 matrix product runs than an fp32 one on this CPU: measured once per machine
    (`likra.model.loading.cpu_bf16_speedup`, about 0.1 s where bf16 is native) and kept in likra's cache
    (`<cache>/cpu-bf16-speedup.json`, by `bf16_probe_key`); the figure is logged when measured, at debug level
    when read back. A damaged cache file is measured again and rewritten; one that cannot be written is left."""
    import math
    from datetime import datetime, timezone

    from likra.assets import cache_dir
    from likra.io import atomic_write_json
    from likra.model import loading

    path, key = cache_dir() / BF16_PROBE_FILE, bf16_probe_key()
    table = _probe_cache(path)
    entry = table.get(key)
    speedup = entry.get("speedup") if isinstance(entry, dict) else None
    if isinstance(speedup, (int, float)) and not isinstance(speedup, bool) and math.isfinite(speedup) and speedup > 0:
        log.debug("bf16 matmul on this CPU: %.2fx fp32 (measured %s, %s)", speedup, entry.get("measured"), path)
        return float(speedup)
    speedup = float(loading.cpu_bf16_speedup())
    log.info("bf16 matmul on this CPU: %.2fx fp32 (measured once; kept in %s)", speedup, path)
    table[key] = {"speedup": speedup, "measured": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    try:
        atomic_write_json(path, table)
    except (OSError, LikraError) as e:
        log.debug("%s: not written (%s)", path, e)
    return speedup


def auto_train_dtype(device_type: str) -> str:
    """`auto` for training: bf16 where it is native and faster, else fp32 (see the module docstring)."""
    from likra.model.loading import cpu_bf16_flags

    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device_type != "cpu" or not cpu_bf16_flags():
        return "fp32"
    return "bf16" if cpu_bf16_speedup() > BF16_FASTER else "fp32"


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a model on `device` (CUDA: free device memory; CPU: MemAvailable), None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type != "cpu":
        return None
    try:
        for line in open("/proc/meminfo", encoding="ascii"):
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def fp32_fit_problem(parameters: int | None, copy_bytes: int, device: torch.device) -> str | None:
    """Why an fp32 copy of a base of `parameters` weights (with a training copy of `copy_bytes` a weight beside it)
    does not fit on `device`; None when it fits or nothing is known."""
    free = available_memory(device)
    if parameters is None or free is None:
        return None
    need = parameters * (4 + copy_bytes)
    if need <= FIT_SHARE * free:
        return None
    where = "GPU" if device.type == "cuda" else "RAM"
    return f"an fp32 copy of the base needs {need / 2**30:.1f} GiB and {free / 2**30:.1f} GiB of {where} are free"


def resolve_precision(
    dtype: str = "auto",
    train_dtype: str | None = None,
    score_dtype: str | None = None,
    device: torch.device | None = None,
    quantize: str | None = None,
    device_map=None,
    parameters: int | None = None,
    trains: bool = True,
) -> Precision:
    """The precision of a run from its settings (`dtype` for both, the others override one), the device, and what
    decides whether fp32 scoring fits: a 4-bit base, a device map, the base's parameter count. Where nothing
    `trains` (an evaluation), `train` is None and a score that does not fit in fp32 falls back to what training
    would use."""
    from likra.model.loading import DTYPES, default_device, resolved_dtype_name

    device = device or default_device()
    for name, value in (("dtype", dtype), ("train dtype", train_dtype), ("score dtype", score_dtype)):
        if value is not None and value not in DTYPES:
            raise LikraError(f"unknown {name} {value!r}; choose one of {', '.join(DTYPES)}")
    wanted_train = train_dtype or dtype
    wanted_score = score_dtype or dtype
    train = auto_train_dtype(device.type) if wanted_train == "auto" else resolved_dtype_name(wanted_train, device)
    trained = train if trains else None
    if wanted_score != "auto":
        return Precision(trained, resolved_dtype_name(wanted_score, device))
    reason = None
    if quantize not in (None, "none"):
        reason = f"a {quantize} base computes in its compute dtype"
    elif device_map is not None:
        reason = "a base spread by a device map keeps one copy of its weights"
    elif train != "fp32" or not trains:
        reason = fp32_fit_problem(parameters, 2 if trains else 0, device)
    if reason is None or train == "fp32":
        return Precision(trained, "fp32")
    note = f"scoring in {train}, not fp32: {reason} (README: fp32 and bf16)"
    log.warning("%s", note)
    return Precision(trained, train, note)


def scoring_precision(
    model: str,
    dtype: str | None = "auto",
    score_dtype: str | None = None,
    device: torch.device | None = None,
    quantize: str | None = None,
    device_map=None,
    train_dtype: str | None = None,
) -> Precision:
    """The precision of an evaluation of `model` (alone or a run's base), the base's size looked up only where
    auto has to decide; `train_dtype` is refused (nothing trains here)."""
    from likra.model.loading import parameter_count

    if train_dtype is not None:
        raise LikraError("--train-dtype: an evaluation trains nothing (give --score-dtype or --dtype)")
    dtype = dtype or "auto"
    wanted = score_dtype or dtype
    plain = quantize in (None, "none") and device_map is None
    parameters = parameter_count(model) if wanted == "auto" and plain else None
    return resolve_precision(dtype, None, score_dtype, device, quantize, device_map, parameters, trains=False)


def mark(model, precision: Precision):
    """Keep with a loaded model the precision it was loaded for (what results record); returns the model."""
    model.__dict__[PRECISION] = precision
    return model


def precision_of(model) -> Precision | None:
    return model.__dict__.get(PRECISION)


def base_parameters(model) -> list[torch.nn.Parameter]:
    """The frozen floating-point weights of the base under `model` (every parameter but the adapters')."""
    return [
        p for name, p in model.named_parameters() if "lora_" not in name and p.is_floating_point() and not p.is_meta
    ]


@contextmanager
def computing_in(model, dtype: str) -> Iterator[None]:
    """Inside the block, the frozen base weights of `model` are a copy in `dtype` (made once, kept for the next
    time); the adapters keep theirs. Afterwards every weight is the very tensor it was before. Nothing changes
    where the weights already are in `dtype`."""
    target = TORCH_DTYPES[dtype]
    params = base_parameters(model)
    if all(p.dtype == target for p in params):
        yield
        return
    copies = model.__dict__.setdefault(COPIES, {})  # {dtype: {id(weight): its copy}}, kept with the model
    table = copies.get(dtype)
    if table is None:
        table = copies[dtype] = {id(p): p.data.to(target) for p in params}
        size = sum(t.nbytes for t in table.values()) / 2**30
        log.info("a %s copy of the base weights for training (%.2f GiB)", dtype, size)
    originals = {id(p): p.data for p in params}
    try:
        for p in params:
            p.data = table[id(p)]
        yield
    finally:
        for p in params:
            p.data = originals[id(p)]


@contextmanager
def exact_fp32_matmuls() -> Iterator[None]:
    """fp32 products computed in fp32 (no TF32 on CUDA) inside the block, whatever the process had set."""
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(previous)
