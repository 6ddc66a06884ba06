"""Named LoRA heads on one base LM, via peft's multi-adapter API.

A head is data (`HeadSpec`): its name (how modes refer to it), the objective that trains it, its training
set, its peft adapter name and work folder, and which seeded initialisation it gets. The Likra pair is two
heads of the `mle` objective, `positive` (gold answers) and `negative` (a negative set); other objectives
and negative sets are more heads of the same kind.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Sequence

from pydantic import BeforeValidator

from likra.config import NonNegativeFloat, PositiveInt, option, settings
from likra.errors import LikraError
from likra.limits import shorten

POSITIVE = "positive"
NEGATIVE = "negative"
BASE = "base"
HEADS = (POSITIVE, NEGATIVE)
HEAD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_HEAD_NAME = 64  # a configured head's name: it names its work folder and score files (step-<n>-<name>.json)
MAX_FOLDER = 200  # any head's folder, with room for step-<n>-<folder>.json and <folder>.done.json in 255 bytes


@settings
class LoraSettings:
    """The spec's reference LoRA: r=8, alpha=8, no dropout, no bias, MLP projections only."""

    r: PositiveInt = option(8, help="LoRA rank")
    alpha: PositiveInt = option(8, help="LoRA alpha (scale alpha/r)")
    dropout: NonNegativeFloat = option(0.0, help="LoRA dropout")
    bias: str = option("none", help="LoRA bias", choices=("none", "all", "lora_only"))
    target_modules: list[str] = option(
        default_factory=lambda: ["gate_proj", "up_proj", "down_proj"], help="module names that get LoRA weights"
    )

    def to_peft(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r,
            lora_alpha=self.alpha,
            lora_dropout=self.dropout,
            bias=self.bias,
            target_modules=list(self.target_modules),
            task_type="CAUSAL_LM",
        )


def reserved_by_torch(name: str) -> bool:
    """Whether `name` is an attribute of torch modules (`half`, `cuda`, `train`, ...): an adapter of that name cannot
    be added as a submodule."""
    import torch

    return hasattr(torch.nn.Module, name)


@dataclass(frozen=True)
class HeadSpec:
    """One trained head.

    `name` is how modes and expressions refer to it (letters, digits, `_`); `data` is its training set:
    `gold` (the correct answers), `negatives:<set>` (a named negative set) or `pairs:<set>` (gold against
    that negative set); `adapter` is the peft adapter name inside checkpoints (default: `name`), `folder`
    its work folder (default: `name`); `role` is the mode role it plays besides its name (the head of any
    negative set plays `negative`); `init` picks its seeded LoRA initialisation (seed*1000 + init)."""

    name: str
    objective: str = "mle"
    data: str = "gold"
    adapter: str = ""
    folder: str = ""
    role: str = ""
    init: int = 0
    params: tuple[tuple[str, Any], ...] = ()  # the objective's settings for this head, e.g. (("loss_type", "ipo"),)

    def __post_init__(self):
        if not HEAD_NAME.match(self.name) or self.name == BASE:
            raise LikraError(f"head name {shorten(repr(self.name))} must be letters, digits and '_' (and not {BASE!r})")
        if reserved_by_torch(self.name):
            raise LikraError(
                f"head name {self.name!r} is an attribute of every torch module (peft adds heads as modules)"
            )
        object.__setattr__(self, "adapter", self.adapter or self.name)
        object.__setattr__(self, "folder", self.folder or self.name)
        if len(self.folder.encode()) > MAX_FOLDER:
            raise LikraError(f"head {shorten(repr(self.name))}: its folder name is longer than {MAX_FOLDER} bytes")

    def to_json(self) -> dict:
        return asdict(self)


def parse_head(value: Any) -> Any:
    """`name=objective:data` (the flag form, e.g. `orpo=orpo:pairs:near_miss`) as the mapping of a HeadConfig;
    anything else is validated as it is."""
    if not isinstance(value, str):
        return value
    name, sep, rest = value.strip().partition("=")
    objective, colon, data = rest.partition(":")
    if not sep or not name or not objective or not colon or not data:
        raise ValueError(f"write a head as name=objective:data (e.g. negative=mle:negatives:near_miss), got {value!r}")
    return {"name": name.strip(), "objective": objective.strip(), "data": data.strip()}


@settings
class HeadConfig:
    """One head as configuration: `--heads name=objective:data,...` or YAML `heads:` entries (a mapping, or
    that string). The list's order is the heads' training order and their seeded initialisation."""

    name: str = option(help="how modes refer to the head (letters, digits, '_'; not 'base')")
    objective: str = option("mle", help="a registered objective (likra info lists them)")
    data: str = option(
        "gold", help="gold, negatives:<set>[?key=value&...] or pairs:<set>[?...] (sets and parameters: likra info)"
    )
    settings: dict[str, Any] = option(
        default_factory=dict, help="this head's own values of its objective's settings (over objectives.<name>)"
    )


HeadList = list[Annotated[HeadConfig, BeforeValidator(parse_head)]]


def head_specs(
    heads: Sequence[HeadConfig] | None, negative_set: str = "near_miss", variant: str | None = None
) -> list[HeadSpec]:
    """The heads a run trains: the configured ones (their position is their initialisation), or the Likra
    pair on `negative_set` (see `likra_heads`) when none are configured."""
    if heads is None:
        return likra_heads(negative_set, variant)
    if not heads:
        raise LikraError("heads: give at least one head (name=objective:data)")
    long = next((h.name for h in heads if len(h.name) > MAX_HEAD_NAME), None)
    if long is not None:
        raise LikraError(
            f"head name {shorten(repr(long))} has {len(long)} characters; at most {MAX_HEAD_NAME} (it names folders "
            "and files)"
        )
    specs = [
        HeadSpec(h.name, objective=h.objective, data=h.data, init=k, params=tuple(sorted(h.settings.items())))
        for k, h in enumerate(heads)
    ]
    check_distinct(specs)
    return specs


def check_distinct(
    specs: Sequence[HeadSpec], note: str = "", keys: Sequence[str] = ("name", "adapter", "folder")
) -> None:
    """One line when two heads share one of `keys` (one would train on the other's data or overwrite its weights);
    `note` ends the line."""
    for key in keys:
        seen = [getattr(spec, key) for spec in specs]
        twice = sorted({x for x in seen if seen.count(x) > 1})
        if twice:
            raise LikraError(f"heads: the {key} {', '.join(map(repr, twice))} is given twice{note}")


def likra_heads(negative_set: str = "near_miss", variant: str | None = None) -> list[HeadSpec]:
    """The Likra pair: MLE on gold answers, MLE on a negative set (`negative_set`: the set and its parameters, as
    after `negatives:`). The near-miss head keeps the names `negative`; another set's head is `negative_<variant>`
    in folder `negative-<variant>` (`variant`: the set's name in folder names, default `negative_set`), playing
    role `negative`."""
    positive = HeadSpec(POSITIVE, data="gold", init=0)
    variant = variant or negative_set
    if variant == "near_miss":
        return [positive, HeadSpec(NEGATIVE, data=f"negatives:{negative_set}", init=1)]
    name = re.sub(r"[^A-Za-z0-9_]", "_", f"{NEGATIVE}_{variant}")
    return [
        positive,
        HeadSpec(
            name,
            data=f"negatives:{negative_set}",
            adapter=NEGATIVE,
            folder=f"{NEGATIVE}-{variant}",
            role=NEGATIVE,
            init=1,
        ),
    ]


def attach_heads(base, lora: LoraSettings, names=HEADS, seed: int = 0):
    """Wrap `base` in a PeftModel carrying one fresh (B = 0, seeded A) adapter per name."""
    from peft import get_peft_model

    try:
        model = get_peft_model(base, lora.to_peft(), adapter_name=names[0])
    except ValueError as e:  # e.g. target modules the model does not have
        raise LikraError(f"LoRA settings do not fit the model: {str(e).splitlines()[0][:300]}") from None
    for name in names[1:]:
        model.add_adapter(name, lora.to_peft())
    place_offloaded_adapters(model)
    reinit_heads(model, names, seed)
    return model


def offloaded(model) -> bool:
    """Whether accelerate offloaded some of `model`'s weights (they sit on the meta device between calls)."""
    return any(p.is_meta for p in model.parameters())


def execution_device(module):
    """The device accelerate runs `module` on when a device map placed it (its hook's execution device), or
    None without a hook. An integer is a CUDA index."""
    import torch

    device = getattr(getattr(module, "_hf_hook", None), "execution_device", None)
    if device is None:
        return None
    return torch.device(f"cuda:{device}" if isinstance(device, int) else device)


def place_offloaded_adapters(model) -> None:
    """peft creates the LoRA weights of a layer that accelerate offloaded (to CPU memory or disk under a
    device map) on the meta device, like the layer's own weights, but nothing loads them on each call:
    give them memory on the device the layer runs on (its accelerate hook's execution device)."""
    from peft.tuners.lora import LoraLayer

    modules = dict(model.named_modules())
    for name, module in modules.items():
        if not isinstance(module, LoraLayer):
            continue
        parts = [
            m for m in (*module.lora_A.values(), *module.lora_B.values()) if any(p.is_meta for p in m.parameters())
        ]
        if not parts:
            continue
        # The hook sits on the module the device map names: this layer or one of its ancestors.
        ancestors = (modules.get(".".join(name.split(".")[:k])) for k in range(name.count(".") + 1, -1, -1))
        device = next((d for d in map(execution_device, ancestors) if d is not None), "cpu")
        for part in parts:
            part.to_empty(device=device)


def add_head(model, name: str, lora: LoraSettings):
    """Add a fresh adapter `name` with its own LoRA settings to PeftModel `model` (no-op if it is there)."""
    if name not in model.peft_config:
        try:
            model.add_adapter(name, lora.to_peft())
        except ValueError as e:
            raise LikraError(
                f"LoRA settings of head {name!r} do not fit the model: {str(e).splitlines()[0][:300]}"
            ) from None
        place_offloaded_adapters(model)
    return model


def reinit_heads(model, names=HEADS, seed: int = 0, inits: tuple[int, ...] | None = None) -> None:
    """Give each head peft's default initialisation (A random, B = 0) from seed*1000 + its init number
    (`inits`, default its position in `names`), so a run is reproducible across processes (a resumed run
    equals an uninterrupted one)."""
    import torch
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    for name, k in zip(names, inits if inits is not None else range(len(names))):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + k)
            for layer in layers:
                if name in layer.lora_A:
                    layer.reset_lora_parameters(name, True)


def adapter_bytes(model, names) -> int:
    """Bytes of the LoRA weights of adapters `names` of `model` (what saving them writes, near enough)."""
    wanted = {f".{name}." for name in names}
    return sum(
        p.numel() * p.element_size()
        for n, p in model.named_parameters()
        if "lora_" in n and any(w in n + "." for w in wanted)
    )


def save_heads(model, folder: Path, names=HEADS) -> None:
    """Adapters as safetensors under folder/<name>/ (peft's layout for named adapters), with the umask's modes
    (safetensors writes 0600); a full disk is one line naming the folder and the space needed."""
    from likra.io import share_tree, writing

    with writing(folder, adapter_bytes(model, names), "the adapters"):
        model.save_pretrained(str(folder), selected_adapters=list(names), safe_serialization=True)
    share_tree(folder)


def load_adapter_weights(model, adapter: str, folder: Path) -> None:
    """Load saved adapter weights (`folder/<adapter>/` or `folder/` itself) into the existing adapter
    `adapter` of PeftModel `model`, refusing weights that do not fit it."""
    from peft import load_peft_weights, set_peft_model_state_dict

    if adapter not in getattr(model, "peft_config", {}):
        raise LikraError(f"model has no adapter {adapter!r} to load {folder} into")
    folder = Path(folder)
    found = [d for d in (folder / adapter, folder) if (d / "adapter_model.safetensors").is_file()]
    if not found:
        raise LikraError(f"{folder}: no adapter weights for {adapter!r} (looked in {adapter}/ and the folder itself)")
    # The adapter's own device: under a device map the first parameters may be offloaded (meta).
    device = next((p.device for n, p in model.named_parameters() if "lora_" in n and not p.is_meta), "cpu")
    try:
        weights = load_peft_weights(str(found[0]), device=str(device))
    except Exception as e:  # a truncated or foreign file: safetensors and torch raise many kinds
        raise LikraError(f"{found[0]}: unreadable adapter weights ({type(e).__name__}: {str(e)[:120]})") from None
    try:
        result = set_peft_model_state_dict(model, weights, adapter_name=adapter)
    except RuntimeError as e:  # shape mismatch
        raise LikraError(f"{found[0]}: adapter weights do not fit the model ({str(e).splitlines()[0][:160]})") from None
    unexpected = [k for k in result.unexpected_keys if "lora_" in k]
    missing = [k for k in result.missing_keys if "lora_" in k and f".{adapter}." in k]
    if unexpected or missing:
        raise LikraError(
            f"{found[0]}: adapter weights do not fit the model's {adapter!r} adapter "
            f"(unexpected {unexpected[:3]}, missing {missing[:3]})"
        )


def load_heads(base, folder: Path, names=HEADS):
    """A PeftModel with the adapters saved by `save_heads`; never runs remote code. A damaged or foreign
    adapter (unreadable weights, modules the model lacks, shapes of another model) is a LikraError."""
    from peft import PeftModel

    paths = {name: Path(folder) / name for name in names}
    for name, path in paths.items():
        if not (path / "adapter_config.json").is_file():
            raise LikraError(f"{path}: no adapter_config.json for head {name!r}")
        if not (path / "adapter_model.safetensors").is_file():
            raise LikraError(f"{path}: no adapter_model.safetensors for head {name!r}")
    name = names[0]
    if offloaded(base):
        return _load_heads_offloaded(base, paths)
    try:
        model = PeftModel.from_pretrained(base, str(paths[name]), adapter_name=name)
        for name in names[1:]:
            model.load_adapter(str(paths[name]), adapter_name=name)
    except Exception as e:  # peft, safetensors and torch raise many kinds for a damaged or foreign adapter
        raise LikraError(
            f"{paths[name]}: cannot load head {name!r} ({type(e).__name__}: {' '.join(str(e).split())[:240]})"
        ) from None
    return model.eval()


def _load_heads_offloaded(base, paths: dict[str, Path]):
    """`load_heads` for a base that accelerate partly offloaded: peft cannot load adapter weights into
    offloaded layers, so the adapters are created, given memory where their layers run, then filled."""
    from peft import LoraConfig, get_peft_model

    model = None
    for name, path in paths.items():
        try:
            config = LoraConfig.from_pretrained(str(path))
        except Exception as e:  # a damaged or foreign adapter_config.json
            raise LikraError(f"{path}: cannot read head {name!r} ({type(e).__name__}: {str(e)[:160]})") from None
        config.inference_mode = True
        try:
            if model is None:
                model = get_peft_model(base, config, adapter_name=name)
            else:
                model.add_adapter(name, config)
        except ValueError as e:  # target modules the model does not have
            raise LikraError(f"{path}: head {name!r} does not fit the model ({str(e).splitlines()[0][:200]})") from None
    place_offloaded_adapters(model)
    for name, path in paths.items():
        load_adapter_weights(model, name, path)
    return model.eval()


def available_heads(model) -> tuple[str, ...]:
    """`base` plus the adapters of a PeftModel."""
    return (BASE, *getattr(model, "peft_config", {}).keys())


@contextmanager
def use_head(model, head: str):
    """Run `model` as the base LM (`base`) or with one adapter active."""
    if head == BASE:
        if hasattr(model, "disable_adapter"):
            with model.disable_adapter():
                yield model
        else:
            yield model
        return
    if head not in getattr(model, "peft_config", {}):
        raise LikraError(f"model has no head {head!r}; it has {', '.join(available_heads(model))}")
    previous = model.active_adapter
    model.set_adapter(head)
    try:
        yield model
    finally:
        model.set_adapter(previous)


@contextmanager
def folded_head(model, head: str):
    """Run `model` as head `head` with its LoRA product folded into the base weights (W + s·B·A), so
    the forward pass costs no more than the base model's. The base weights are restored bit-exactly
    afterwards. Worth it in fp32; in bf16 the fold would round small LoRA updates away."""
    import torch
    from peft.tuners.lora import LoraLayer

    if head == BASE:
        with use_head(model, BASE):
            yield model
        return
    layers = [m for m in model.modules() if isinstance(m, LoraLayer) and head in m.lora_A]
    if not layers:
        raise LikraError(f"model has no head {head!r}; it has {', '.join(available_heads(model))}")
    saved = [m.get_base_layer().weight.detach().clone() for m in layers]
    try:
        with torch.no_grad():
            for m in layers:
                weight = m.get_base_layer().weight
                weight += m.get_delta_weight(head).to(weight.dtype)
        with model.disable_adapter():
            yield model
    finally:
        with torch.no_grad():
            for m, w in zip(layers, saved):
                m.get_base_layer().weight.copy_(w)


class HeadSwitch:
    """Switches the active head of a PeftModel many times a second (a decoder runs every head at every step):
    it sets each LoRA layer's active adapter (or disables its adapters, for `base`) directly. peft's own
    `set_adapter` / `disable_adapter` walk the whole module tree and reset `requires_grad` each time, tens of
    milliseconds on a 30-layer model, as long as a decoding step. `restore()` puts the layers back as found."""

    def __init__(self, model):
        from peft.tuners.lora import LoraLayer

        self.layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
        self.heads = set(available_heads(model))
        self.saved = [(m._active_adapter, m._disable_adapters) for m in self.layers]

    def activate(self, head: str) -> None:
        if head not in self.heads:
            raise LikraError(f"model has no head {head!r}; it has {', '.join(sorted(self.heads))}")
        for m in self.layers:
            if head == BASE:
                m._disable_adapters = True
            else:
                m._active_adapter, m._disable_adapters = [head], False

    def restore(self) -> None:
        for m, (active, disabled) in zip(self.layers, self.saved):
            m._active_adapter, m._disable_adapters = active, disabled


def unwrap_lm(model):
    """The transformers CausalLM under a PeftModel (adapters stay injected in its layers)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
