"""Random-weight models of real architectures: `--model random:<shape>`, no download.

Each shape is the configuration of a real model (its layers, widths, heads, vocabulary), initialised from a
fixed seed, so every command (train, curve, eval, study, generate, lm-eval) runs end to end on a GPU with the
compute and memory of that model and no network; the numbers they give mean nothing (the weights are
random), and every report says so. The tokenizer is a byte-level BPE with the shape's vocabulary size, trained
offline (deterministically) on the bundled ARC questions when they are installed, else on a fixed synthetic
text, so that text tokenizes into realistic lengths; ids it never produces fill the rest of the vocabulary.

    likra info                                   # the shapes, their parameters and weight memory
    likra curve --model random:llama-3.2-1b      # the default curve on a 1B Llama's compute, on a GPU
"""

from __future__ import annotations

import logging
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from likra.errors import LikraError
from likra.io import share_tree

log = logging.getLogger(__name__)

PREFIX = "random:"
SEED = 0
EOS = "<|endoftext|>"


@dataclass(frozen=True)
class Shape:
    """A real model's architecture: its transformers model type and configuration."""

    name: str
    like: str  # the model whose shape this is
    model_type: str  # "llama" or "mistral"
    config: dict[str, Any]

    @property
    def vocab_size(self) -> int:
        return self.config["vocab_size"]

    def parameters(self) -> int:
        """Parameters of the model (embedding, layers, norms, and the output projection unless tied)."""
        c = self.config
        d, layers, inter, vocab = c["hidden_size"], c["num_hidden_layers"], c["intermediate_size"], c["vocab_size"]
        head_dim = d // c["num_attention_heads"]
        attention = d * d * 2 + 2 * d * c["num_key_value_heads"] * head_dim  # q, o and k, v
        per_layer = attention + 3 * d * inter + 2 * d
        return vocab * d * (1 if c.get("tie_word_embeddings") else 2) + layers * per_layer + d

    def weight_bytes(self, dtype: str = "bf16") -> int:
        """Bytes of the weights in `dtype` (fp32, bf16/fp16), or `4bit` (NF4 with double quantization: about
        0.52 bytes a parameter for the linear layers; embeddings, head and norms stay in bf16)."""
        n = self.parameters()
        if dtype in ("fp32", "float32"):
            return 4 * n
        if dtype == "4bit":
            c = self.config
            embedding = c["vocab_size"] * c["hidden_size"] * (1 if c.get("tie_word_embeddings") else 2)
            return int(0.52 * (n - embedding) + 2 * embedding)
        return 2 * n


def _shape(
    name: str,
    like: str,
    model_type: str,
    vocab: int,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    tied: bool,
    rope_theta: float,
    positions: int,
    **extra: Any,
) -> Shape:
    config = dict(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=tied,
        rope_theta=rope_theta,
        max_position_embeddings=positions,
        rms_norm_eps=1e-5,
        hidden_act="silu",
        **extra,
    )
    return Shape(name, like, model_type, config)


# name, the model it is, type, vocabulary, hidden, MLP, layers, heads, KV heads, tied embeddings, RoPE theta, positions
SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        _shape("smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "llama", 49152, 576, 1536, 30, 9, 3, True,
               1e5, 8192),
        _shape("llama-3.2-1b", "meta-llama/Llama-3.2-1B", "llama", 128256, 2048, 8192, 16, 32, 8, True, 5e5, 131072),
        _shape("llama-3.2-3b", "meta-llama/Llama-3.2-3B", "llama", 128256, 3072, 8192, 28, 24, 8, True, 5e5, 131072),
        _shape("mistral-7b", "mistralai/Mistral-7B-v0.1", "mistral", 32000, 4096, 14336, 32, 32, 8, False, 1e4,
               32768, sliding_window=4096),
        _shape("llama-3.1-8b", "meta-llama/Llama-3.1-8B", "llama", 128256, 4096, 14336, 32, 32, 8, False, 5e5,
               131072),
        _shape("llama-3.1-70b", "meta-llama/Llama-3.1-70B", "llama", 128256, 8192, 28672, 80, 64, 8, False, 5e5,
               131072),
        # Small shapes for tests and CPU smoke runs of the same code paths.
        _shape("tiny", "a 2-layer Llama", "llama", 512, 64, 128, 2, 4, 2, True, 1e4, 2048),
        _shape("tiny-mistral", "a 2-layer Mistral", "mistral", 600, 64, 160, 2, 4, 1, False, 1e4, 2048,
               sliding_window=1024),
    )
}  # fmt: skip


def is_random(model: str | None) -> bool:
    """Whether `model` names a random-weight shape (`random:<shape>`)."""
    return isinstance(model, str) and model.startswith(PREFIX)


def get_shape(model: str) -> Shape:
    name = model[len(PREFIX) :] if is_random(model) else model
    if name not in SHAPES:
        raise LikraError(f"unknown random shape {name!r}; shapes: {', '.join(PREFIX + s for s in SHAPES)}")
    return SHAPES[name]


def shape_config(shape: Shape, tokenizer_size: int | None = None):
    """The transformers config of `shape`, with the tokenizer's end-of-text token as eos and pad."""
    from transformers import AutoConfig

    eos = (tokenizer_size or shape.vocab_size) - 1
    eos = min(eos, shape.vocab_size - 1)
    return AutoConfig.for_model(shape.model_type, pad_token_id=eos, eos_token_id=eos, bos_token_id=None, **shape.config)


def available_bytes(device) -> int | None:
    """Free memory of `device`: the GPU's free memory, or the machine's available RAM for the CPU."""
    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_fits(shape: Shape, dtype_name: str, device, quantize: str | None, device_map) -> None:
    """One line when the shape's weights cannot fit where they are asked to go."""
    if device_map is not None:
        return
    need = shape.weight_bytes("4bit" if quantize else dtype_name)
    free = available_bytes(device)
    if free is not None and need > 0.9 * free:
        advice = "" if quantize else f"; use --quantize 4bit (about {shape.weight_bytes('4bit') / 2**30:.1f} GiB) or"
        raise LikraError(
            f"{PREFIX}{shape.name}: its weights need {need / 2**30:.1f} GiB ({'4-bit' if quantize else dtype_name}) "
            f"and {device} has {free / 2**30:.1f} GiB free{advice or ';'} --device-map auto (spreads layers over "
            "GPUs, CPU memory and disk)"
        )


def build_random_model(model: str, torch_dtype, device, seed: int = SEED):
    """The random-weight model `random:<shape>` in `torch_dtype` on `device`, the same at every call (seeded)."""
    import torch
    from transformers import AutoModelForCausalLM

    shape = get_shape(model)
    config = shape_config(shape, len(load_random_tokenizer(model)))
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        with torch.device(device):
            lm = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    lm.config.name_or_path = model
    return lm


# -- the weights as a model folder, a tensor at a time -----------------------------------------------------
CHUNK = 1 << 24  # values drawn at a time in fp32 (64 MiB) while a tensor is filled


def random_tensor(name: str, shape: tuple[int, ...], dtype, std: float, seed: int = SEED):
    """The weights `name` of a random model folder: a norm's ones, else N(0, std) from a generator seeded by `seed`
    and the name (the same whatever the order tensors are made in), drawn in fp32 chunks of `CHUNK` values."""
    import zlib

    import torch

    if name.endswith("norm.weight"):
        return torch.ones(shape, dtype=dtype)
    out = torch.empty(shape, dtype=dtype)
    flat = out.view(-1)
    generator = torch.Generator().manual_seed(seed * 2**32 + zlib.crc32(name.encode()))
    for at in range(0, flat.numel(), CHUNK):
        part = flat[at : at + CHUNK]
        part.copy_(torch.empty(part.numel()).normal_(0.0, std, generator=generator))
    return out


def weight_groups(model) -> list[list[tuple[str, tuple[int, ...]]]]:
    """The persistent tensors of `model` (on the meta device: names and shapes only), one group per decoder layer
    and one per other tensor, in state-dict order; a tied output projection is not stored."""
    groups: dict[str, list] = {}
    tied = getattr(model.config, "tie_word_embeddings", False)
    for name, tensor in model.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        parts = name.split(".")
        key = ".".join(parts[:3]) if parts[1:2] == ["layers"] else name
        groups.setdefault(key, []).append((name, tuple(tensor.shape)))
    return list(groups.values())


def largest_group_bytes(shape: Shape, element_size: int) -> int:
    """Bytes of the largest group `write_random_model` holds at once (a decoder layer, or the embedding), plus the
    fp32 chunk it draws through."""
    c = shape.config
    d, inter, heads, kv = c["hidden_size"], c["intermediate_size"], c["num_attention_heads"], c["num_key_value_heads"]
    layer = 2 * d * d + 2 * d * kv * (d // heads) + 3 * d * inter + 2 * d
    return max(layer, c["vocab_size"] * d) * element_size + 4 * CHUNK


def write_random_model(model: str, folder: Path, torch_dtype, tokenizer_size: int, seed: int = SEED) -> None:
    """Save `random:<shape>` into `folder` as a sharded safetensors model (its config, one shard per decoder layer or
    other tensor, the index) without ever holding more than one shard: the model is laid out on the meta device
    and each shard's tensors are drawn (`random_tensor`), written and freed. These weights (what 4-bit and
    device-map loads read) are not those `build_random_model` draws in memory (transformers' initialisation on the
    device's generator): both are seeded and mean nothing; compare runs of one shape within one loading path."""
    import json

    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    config = shape_config(get_shape(model), tokenizer_size)
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, dtype=torch_dtype)
    skeleton.config.name_or_path = model
    folder.mkdir(parents=True, exist_ok=True)
    skeleton.config.save_pretrained(folder)
    skeleton.generation_config.save_pretrained(folder)
    groups = weight_groups(skeleton)
    weight_map, total = {}, 0
    for i, group in enumerate(groups):
        shard = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {n: random_tensor(n, dims, torch_dtype, config.initializer_range, seed) for n, dims in group}
        save_file(tensors, str(folder / shard), metadata={"format": "pt"})
        total += sum(t.numel() * t.element_size() for t in tensors.values())
        weight_map.update(dict.fromkeys(tensors, shard))
        del tensors
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


# -- the tokenizer ------------------------------------------------------------------------------------------
SYNTHETIC_WORDS = (
    "the of and to in is that it for on was with as by at are be this from or an have which one not but all "
    "they were what when can there been has if more water energy plant animal earth light heat cell sun "
    "moon rock air food body change force motion sound electricity magnet weather cloud rain soil seed "
    "leaf root flower tree fish bird insect mineral gas liquid solid temperature mass volume speed"
).split()


def tokenizer_corpus() -> tuple[str, list[str]]:
    """(name, texts) the BPE is trained on: the bundled ARC questions with their choices when installed,
    else a fixed synthetic text."""
    from likra.data.benchmarks import offline_root

    if offline_root() is not None:
        try:
            from likra.data.benchmarks import load_spec

            records = load_spec("arc_easy:train,arc_challenge:train", source="offline")
            return "arc-train", [f"{r.prompt} {' '.join(r.choices)}" for r in records]
        except LikraError:
            pass
    rng = random.Random(SEED)
    texts = [" ".join(rng.choice(SYNTHETIC_WORDS) for _ in range(rng.randint(8, 40))) for _ in range(4000)]
    return "synthetic", [f"Question: {t}?\nAnswer: {t[:20]}" for t in texts]


def build_random_tokenizer(vocab_size: int):
    """A byte-level BPE trained on `tokenizer_corpus()` up to `vocab_size` tokens (fewer where the corpus has
    fewer merges), `<|endoftext|>` its last id (eos and pad)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    name, texts = tokenizer_corpus()
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer)
    backend.add_special_tokens([EOS])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=EOS)
    tokenizer.init_kwargs["likra_corpus"] = name
    return tokenizer


def load_random_tokenizer(model: str):
    """The tokenizer of `random:<shape>`, built once per vocabulary size into the cache."""
    from transformers import AutoTokenizer

    from likra.assets import cache_dir

    shape = get_shape(model)
    target = cache_dir() / "tokenizers" / f"random-bpe-{shape.vocab_size}"
    if not (target / "tokenizer.json").is_file():
        staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
        build_random_tokenizer(shape.vocab_size).save_pretrained(staging)
        share_tree(staging)  # the cache follows the umask like every file likra writes
        try:
            staging.rename(target)
        except OSError:  # another process was first
            shutil.rmtree(staging, ignore_errors=True)
    tokenizer = AutoTokenizer.from_pretrained(target)
    if len(tokenizer) > shape.vocab_size:
        raise LikraError(f"{target}: tokenizer larger than {model}'s vocabulary; delete it to rebuild it")
    return tokenizer


def describe_shapes() -> list[tuple[str, str]]:
    """(random:<shape>, "<like>: N params, bf16 X GiB, 4-bit Y GiB") for `likra info`."""

    def gib(n: int) -> str:
        return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.1f} MiB"

    rows = []
    for shape in SHAPES.values():
        n = shape.parameters()
        size = f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n / 1e6:.2f}M"
        memory = f"weights {gib(shape.weight_bytes('bf16'))} bf16, {gib(shape.weight_bytes('4bit'))} 4-bit"
        rows.append((PREFIX + shape.name, f"{shape.like}: {size} parameters, {memory}"))
    return rows
