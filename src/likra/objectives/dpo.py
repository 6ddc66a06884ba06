"""The `dpo` objective, the paper's DPO baseline: TRL's DPOTrainer (sigmoid loss, beta 0.1) training one LoRA
adapter, "dpo", on (prompt, chosen = gold answer, rejected = one incorrect choice) pairs built from the same
negatives Likra's negative head trains on.

The reference model is the base LM itself: a fresh adapter has B = 0, so TRL computes the reference
log-probabilities with the adapter disabled (no second copy of the model in memory).

Tokenization. TRL 1.16 tokenizes a plain-text pair as `tok(prompt)` and `tok(prompt + completion)` (with the
tokenizer's special tokens, so a BOS where the tokenizer adds one) and splits at their common prefix; before that
it appends `tokenizer.eos_token` to both completions, so stock TRL trains on `answer + EOS`. Likra scores
log p(" " + choice | prompt) with no EOS, so here the pairs are tokenized by likra itself
(`likra.data.examples.encode_pair`, the boundary training and scoring share: a trailing prompt space moves into
the answer, BOS only where the tokenizer uses one) and handed to TRL already tokenized; `append_eos=True`
restores TRL's EOS. Sequences longer than `max_length` lose prompt tokens from the left (likra's rule), never
answer tokens, so TRL's own keep-start truncation never fires.

Checkpoints. With `checkpoint_steps`, a full resumable Trainer checkpoint is written after each of those
optimizer steps to `work_dir/checkpoint-<step>/`; because the adapter is named "dpo" (not peft's "default"),
its weights lie in `work_dir/checkpoint-<step>/dpo/adapter_model.safetensors` (+ `adapter_config.json`), the
same layout as Likra's heads, so `likra.objectives.registry.complete_checkpoints(work_dir, "dpo")` lists them.
The folder also holds the optimizer/scheduler/RNG state and `trainer_state.json`; TRL also writes a model card
`README.md` into `work_dir`.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Sequence

import torch

from likra.config import PositiveFloat, option, settings
from likra.data.examples import encode_pair, negative_pairs
from likra.data.records import MCRecord
from likra.errors import LikraError
from likra.model.heads import HeadSpec, LoraSettings, attach_heads, reinit_heads
from likra.objectives.registry import Objective, TrainContext, register_objective, run_head
from likra.objectives.settings import OptimizerSettings, SchedulerName, TrainSettings

log = logging.getLogger(__name__)

DPO_HEAD = "dpo"
ALL_PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TOKENIZED_COLUMNS = ("prompt_ids", "chosen_ids", "rejected_ids")


def dpo_lora() -> LoraSettings:
    """The baseline's LoRA: r=16, alpha=16, no dropout, every attention and MLP projection."""
    return LoraSettings(r=16, alpha=16, dropout=0.0, target_modules=list(ALL_PROJECTIONS))


@settings
class DPOSettings(OptimizerSettings):
    """The paper's DPO baseline: sigmoid loss, beta 0.1, lr 5e-5 with a cosine schedule, 1 epoch. In a run or
    curve the batch size, epochs and seed are the run's training settings, so checkpoints line up."""

    learning_rate: PositiveFloat = option(5e-5, help="DPO learning rate", flags=("--lr",))
    lr_scheduler_type: SchedulerName = option("cosine", help="learning-rate schedule (transformers' names)")
    beta: PositiveFloat = option(0.1, help="DPO beta (strength of the KL anchor to the base model)")
    loss_type: str = option(
        "sigmoid", help="TRL's DPO loss type (any of TRL's: sigmoid, hinge, ipo, nca_pair, ...)", flags=("--loss",)
    )
    lora: LoraSettings = option(default_factory=lambda: dpo_lora(), help="the DPO adapter's LoRA")
    negatives: str = option(
        "one",
        help="incorrect choices per question of `train_dpo` on records; a run's head names them in its data "
        "(pairs:near_miss?per_question=all), and all is refused there",
        choices=("one", "all"),
        cli=False,
    )
    append_eos: bool = option(False, help="train on answer + EOS, as stock TRL does for plain text")


def dpo_loss_types() -> tuple[str, ...]:
    """The loss types the installed TRL's DPOTrainer takes (read from its DPOConfig documentation)."""
    import re

    from trl import DPOConfig

    text = DPOConfig.__dataclass_fields__["loss_type"].metadata.get("help", "")
    listed = text.split("Possible values are:", 1)[-1].split("If multiple", 1)[0]
    return tuple(re.findall(r"'(\w+)'", listed)) or ("sigmoid",)


def check_loss_type(loss_type: str) -> str:
    valid = dpo_loss_types()
    if loss_type not in valid:
        raise LikraError(f"unknown DPO loss type {loss_type!r}; TRL's DPOTrainer takes: {', '.join(valid)}")
    return loss_type


def dpo_pairs(
    records: Sequence[MCRecord],
    seed: int,
    per_question: str = "one",
    negatives: Sequence[tuple[MCRecord, str]] | None = None,
) -> list[dict]:
    """{"id", "prompt", "chosen", "rejected"} per (question, negative): chosen is " " + the gold answer, rejected
    is " " + the incorrect choice Likra's `negative_pairs(records, seed, per_question)` picks for that question.
    `negatives`: (record, negative text) pairs already built for Likra's negative head (e.g. by
    `likra.data.negative_sets`), used as they are instead; `records` is then ignored."""
    if negatives is None:
        negatives = negative_pairs(records, seed, per_question)
    pairs = []
    for rec, wrong in negatives:
        pairs.append(
            {"id": rec.id, "prompt": rec.prompt, "chosen": rec.continuation(rec.gold), "rejected": rec.answer(wrong)}
        )
    return pairs


def tokenize_dpo_pairs(
    tokenizer, pairs: Sequence[dict], max_length: int | None = None, append_eos: bool = False
) -> list[dict]:
    """Pairs as TRL's pre-tokenized columns, with likra's prompt/answer boundary (see the module docstring)."""
    rows = []
    for pair in pairs:
        prompt_ids, chosen_ids = encode_pair(tokenizer, pair["prompt"], pair["chosen"])
        rejected_prompt_ids, rejected_ids = encode_pair(tokenizer, pair["prompt"], pair["rejected"])
        if rejected_prompt_ids != prompt_ids:
            raise LikraError(
                f"pair {pair.get('id', pair['prompt'][:40])!r}: prompt tokenizes differently before chosen and rejected"
            )
        if append_eos:
            chosen_ids, rejected_ids = chosen_ids + [tokenizer.eos_token_id], rejected_ids + [tokenizer.eos_token_id]
        if max_length is not None:
            longest = max(len(chosen_ids), len(rejected_ids))
            if len(prompt_ids) + longest > max_length:
                prompt_ids = prompt_ids[-max(max_length - longest, 1) :]
        rows.append(
            {"prompt_ids": list(prompt_ids), "chosen_ids": list(chosen_ids), "rejected_ids": list(rejected_ids)}
        )
    return rows


def _dpo_trainer_class():
    from trl import DPOTrainer

    class PretokenizedDPOTrainer(DPOTrainer):
        """DPOTrainer that keeps a dataset already holding prompt_ids/chosen_ids/rejected_ids as it is
        (stock TRL always re-tokenizes from text and appends EOS)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if set(TOKENIZED_COLUMNS) <= set(dataset.column_names or ()):
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

    return PretokenizedDPOTrainer


def _rename_adapter(model, old: str, new: str) -> None:
    """Give adapter `old` of PeftModel `model` the name `new` (same weights, `new` active and trainable)."""
    model.add_adapter(new, copy.deepcopy(model.peft_config[old]))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in params.items():
            if f".{old}." in name:
                params[name.replace(f".{old}.", f".{new}.")].copy_(p)
    model.set_adapter(new)
    model.delete_adapter(old)


def _drop_fused_lm_head(lm) -> None:
    """Undo TRL's `add_fused_lm_head`, which patches the base LM's `forward` as an instance attribute."""
    patched = vars(lm).get("forward")
    code = getattr(getattr(patched, "__func__", None), "__code__", None)
    if code is not None and code.co_name == "_fused_forward":  # functools.wraps hides it from __name__
        del lm.forward


def trl_trainer(trainer_cls, ctx: TrainContext, head: HeadSpec, lora: LoraSettings, args, rows: list[dict], callbacks):
    """A TRL preference trainer on pre-tokenized `rows`, training a fresh LoRA adapter named `head.adapter` on a
    fresh base model (`ctx.load_base()`), whose disabled-adapter self is the reference model."""
    from datasets import Dataset

    trainer = trainer_cls(
        model=ctx.load_base(),
        ref_model=None,
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=ctx.tokenizer,
        callbacks=callbacks,
        peft_config=lora.to_peft(),
    )
    # TRL wraps the model as peft's "default" adapter: rename it before the optimizer exists, with likra's seeded
    # initialisation (B = 0, so the disabled-adapter reference equals the initial policy).
    _rename_adapter(trainer.model, "default", head.adapter)
    reinit_heads(trainer.model, (head.adapter,), ctx.train.seed)
    return trainer


def dpo_arguments(settings: DPOSettings, arguments: dict):
    """TRL's DPOConfig from the shared Trainer arguments and the DPO settings."""
    from trl import DPOConfig

    return DPOConfig(
        **arguments,
        beta=settings.beta,
        loss_type=[settings.loss_type],
        max_length=settings.max_length,
        precompute_ref_log_probs=False,
        disable_dropout=True,
        push_to_hub=False,
    )


def train_dpo(
    base_model,
    tokenizer,
    records_or_pairs: Sequence,
    settings: DPOSettings,
    work_dir: Path,
    train: TrainSettings | None = None,
    checkpoint_steps: Sequence[int] = (),
    resume: bool = False,
    bf16: bool = False,
    progress: bool = False,
    done_file: Path | None = None,
    adapter: str = DPO_HEAD,
):
    """Train a LoRA adapter (`adapter`, default "dpo") on `base_model` with TRL's DPOTrainer, outside a run;
    returns (PeftModel or None, TrainStats).

    `records_or_pairs`: MCRecords (pairs made by `dpo_pairs(records, train.seed, settings.negatives)`) or pair
    dicts with prompt/chosen/rejected text; `train`: batch size, epochs and seed (default TrainSettings()).
    `base_model` must be a plain causal LM (not a PeftModel); it is wrapped in place. Checkpoints (adapter in
    their `dpo/` subfolder), resume and the done-marker: see `likra.objectives.registry.run_trainer`; the model
    is None when the done-marker was there already."""
    if hasattr(base_model, "peft_config"):
        raise LikraError("train_dpo needs the plain base model, not a PeftModel")
    train = train or TrainSettings()
    items = list(records_or_pairs)
    if not items:
        raise LikraError("no DPO training pairs")
    pairs = dpo_pairs(items, train.seed, settings.negatives) if isinstance(items[0], MCRecord) else items
    ctx = TrainContext(None, tokenizer, train, settings.lora, lambda: base_model, bf16=bf16, progress=progress)
    ctx.objective_settings = {"dpo": settings}
    head = HeadSpec(adapter, objective="dpo", data="pairs:given")
    stats, trainer = run_head(ctx, head, pairs, work_dir, checkpoint_steps, resume, done_file)
    model = trainer.model if trainer is not None else None
    if model is not None:
        model.set_adapter(adapter)
        model.eval()
    return model, stats


def attach_dpo_head(base_model, lora: LoraSettings | None = None, seed: int = 0):
    """A PeftModel with a fresh "dpo" adapter, ready for `likra.model.heads.load_adapter_weights`."""
    return attach_heads(base_model, lora or dpo_lora(), names=(DPO_HEAD,), seed=seed)


class DPO(Objective):
    """TRL's DPOTrainer on (prompt, gold answer, negative) pairs of the head's negative set (`data:
    pairs:<set>`), its own LoRA (`DPOSettings.lora`), on a fresh copy of the base (the reference model)."""

    name = "dpo"
    help = "TRL's DPO (any of its loss types) on gold vs negative pairs"
    settings = DPOSettings
    data = ("pairs",)
    requires = ("trl",)

    def examples(self, ctx: TrainContext, head: HeadSpec, records, negatives, settings) -> list[dict]:
        return dpo_pairs(records, ctx.train.seed, negatives=negatives)

    def check(self, settings: DPOSettings) -> None:
        check_loss_type(settings.loss_type)

    def build_trainer(self, ctx: TrainContext, head: HeadSpec, items, settings: DPOSettings, arguments, callbacks):
        rows = tokenize_dpo_pairs(ctx.tokenizer, items, settings.max_length, settings.append_eos)
        args = dpo_arguments(settings, arguments)
        return trl_trainer(_dpo_trainer_class(), ctx, head, settings.lora, args, rows, callbacks)

    def after_training(self, trainer) -> None:
        _drop_fused_lm_head(trainer.model.get_base_model())


register_objective(DPO())
