"""The two LoRA heads of a Likra model on one base LM, via peft's multi-adapter API."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from likra.errors import LikraError

POSITIVE = "positive"
NEGATIVE = "negative"
BASE = "base"
HEADS = (POSITIVE, NEGATIVE)


@dataclass
class LoraSettings:
    """The spec's reference LoRA: r=8, alpha=8, no dropout, no bias, MLP projections only."""

    r: int = 8
    alpha: int = 8
    dropout: float = 0.0
    bias: str = "none"
    target_modules: list[str] = field(default_factory=lambda: ["gate_proj", "up_proj", "down_proj"])

    def to_peft(self):
        from peft import LoraConfig

        return LoraConfig(
            r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout, bias=self.bias,
            target_modules=list(self.target_modules), task_type="CAUSAL_LM",
        )


def attach_heads(base, lora: LoraSettings, names=HEADS, seed: int = 0):
    """Wrap `base` in a PeftModel carrying one fresh (B = 0, seeded A) adapter per name."""
    from peft import get_peft_model

    model = get_peft_model(base, lora.to_peft(), adapter_name=names[0])
    for name in names[1:]:
        model.add_adapter(name, lora.to_peft())
    reinit_heads(model, names, seed)
    return model


def reinit_heads(model, names=HEADS, seed: int = 0) -> None:
    """Give each head peft's default initialisation (A random, B = 0) from `seed`, so a run is
    reproducible across processes (a resumed run equals an uninterrupted one)."""
    import torch
    from peft.tuners.lora import LoraLayer

    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    for k, name in enumerate(names):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed * 1000 + k)
            for layer in layers:
                layer.reset_lora_parameters(name, True)


def save_heads(model, folder: Path, names=HEADS) -> None:
    """Adapters as safetensors under folder/<name>/ (peft's layout for named adapters)."""
    model.save_pretrained(str(folder), selected_adapters=list(names), safe_serialization=True)


def load_heads(base, folder: Path, names=HEADS):
    """A PeftModel with the adapters saved by `save_heads`; never runs remote code."""
    from peft import PeftModel

    paths = {name: Path(folder) / name for name in names}
    for name, path in paths.items():
        if not (path / "adapter_config.json").is_file():
            raise LikraError(f"{path}: no adapter_config.json for head {name!r}")
    model = PeftModel.from_pretrained(base, str(paths[names[0]]), adapter_name=names[0])
    for name in names[1:]:
        model.load_adapter(str(paths[name]), adapter_name=name)
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


def unwrap_lm(model):
    """The transformers CausalLM under a PeftModel (adapters stay injected in its layers)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
