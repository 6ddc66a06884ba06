"""The `kto` objective: TRL's KTOTrainer (Ethayarajh et al., 2024) on unpaired desirable / undesirable answers.

Two data layouts, chosen by the head's training set:
- `pairs:<set>`: each question gives its gold answer (desirable) and its negative (undesirable), adjacent, so
  a step of the curve's batch size B takes 2B rows of B questions, and a checkpoint has seen as many
  questions as the Likra heads' (in likra's seeded question order; the Likra heads group theirs by length);
- `negatives:<set>`: the negatives alone (undesirable only), the direct rival of Base-Likra; TRL's KTO runs
  on undesirable data only (its desirable term is then empty).

As for DPO, the answers are tokenized by likra (`encode_pair`, the boundary scoring uses, no EOS) and handed to
TRL already tokenized; TRL's KL estimate pairs each completion with its neighbour's prompt within a
fixed-order batch (sequential sampling), so the order is likra's seeded question order. The reference model
is the base (the fresh adapter disabled), the LoRA is the DPO baseline's (r=16 on every projection).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from likra.config import NonNegativeInt, PositiveFloat, PositiveInt, option, settings
from likra.data.examples import encode_pair
from likra.distributed import rank_and_world
from likra.errors import LikraError
from likra.model.heads import HeadSpec, LoraSettings
from likra.objectives.dpo import _drop_fused_lm_head, dpo_lora, trl_trainer
from likra.objectives.registry import (
    Objective,
    TrainContext,
    TrainStats,
    finished_stats,
    per_device_batch,
    register_objective,
    run_trainer,
    trainer_arguments,
)

KTO_COLUMNS = ("prompt_ids", "completion_ids", "label")


@settings
class KTOSettings:
    """TRL's KTO defaults (beta 0.1, equal weights) with the DPO baseline's learning rate and LoRA; in a curve the
    batch size, epochs and seed follow the curve's."""

    beta: PositiveFloat = option(0.1, help="KTO beta")
    learning_rate: PositiveFloat = option(5e-5, help="KTO learning rate", flags=("--kto-lr",))
    lr_scheduler_type: str = option("cosine", help="learning-rate schedule (transformers' names)")
    desirable_weight: PositiveFloat = option(1.0, help="weight of the desirable (gold) term")
    undesirable_weight: PositiveFloat = option(1.0, help="weight of the undesirable (negative) term")
    loss_type: str = option("kto", help="TRL's KTO loss type", choices=("kto", "apo_zero_unpaired"))
    lora: LoraSettings = option(default_factory=lambda: dpo_lora(), help="the KTO adapter's LoRA")
    max_length: PositiveInt = option(1024, help="longest prompt + answer; prompts are cut from the left")
    logging_steps: PositiveInt = option(10, help="log every N optimizer steps")
    seed: NonNegativeInt = option(0, help="seed (a curve uses its seed)", cli=False)


def kto_rows(tokenizer, negatives: Sequence, with_gold: bool, max_length: int) -> list[dict]:
    """Pre-tokenized KTO rows: per (question, negative) the gold row (label True, when `with_gold`) then the
    negative row (label False); prompts cut from the left to fit `max_length`."""
    rows = []
    for rec, wrong in negatives:
        answers = ([(rec.continuation(rec.gold), True)] if with_gold else []) + [(rec.answer(wrong), False)]
        for text, label in answers:
            prompt_ids, completion_ids = encode_pair(tokenizer, rec.prompt, text)
            prompt_ids = prompt_ids[-max(max_length - len(completion_ids), 1) :]
            rows.append({"prompt_ids": list(prompt_ids), "completion_ids": list(completion_ids), "label": label})
    return rows


def _kto_trainer_class():
    from trl import KTOTrainer

    class PretokenizedKTOTrainer(KTOTrainer):
        """KTOTrainer that keeps rows already holding prompt_ids/completion_ids/label (adding only TRL's KL
        completions: each batch's completions rotated by one)."""

        def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
            if not set(KTO_COLUMNS) <= set(dataset.column_names or ()):
                return super()._prepare_dataset(dataset, processing_class, args, dataset_name)
            if self.calculate_KL:

                def add_kl(batch):
                    batch["KL_completion_ids"] = [batch["completion_ids"][-1]] + batch["completion_ids"][:-1]
                    return batch

                dataset = dataset.map(add_kl, batched=True, batch_size=args.per_device_train_batch_size)
            return dataset

    return PretokenizedKTOTrainer


class KTO(Objective):
    name = "kto"
    help = "TRL's KTO on gold (desirable) and negative (undesirable) answers, or negatives alone"

    def settings(self, ctx: TrainContext, head: HeadSpec | None = None) -> KTOSettings:
        own = ctx.objective_settings.get(self.name) or KTOSettings()
        own = replace(own, **dict(head.params)) if head is not None else own
        return replace(own, seed=ctx.train.seed)

    def lora(self, ctx: TrainContext) -> LoraSettings:
        return self.settings(ctx).lora

    def _paired(self, head: HeadSpec) -> bool:
        kind = head.data.partition(":")[0]
        if kind not in ("pairs", "negatives"):
            raise LikraError(f"head {head.name!r}: KTO trains on pairs:<set> or negatives:<set>, not {head.data!r}")
        return kind == "pairs"

    def examples(self, ctx: TrainContext, head: HeadSpec, records, negatives) -> list[dict]:
        return kto_rows(ctx.tokenizer, negatives, self._paired(head), self.settings(ctx, head).max_length)

    def schedule_size(self, items: list) -> int:
        return sum(1 for row in items if not row["label"])  # one negative per question seen

    def train(
        self, ctx: TrainContext, head: HeadSpec, items, work_dir, checkpoint_steps=(), resume=False, done_file=None
    ) -> TrainStats:
        finished = finished_stats(done_file)
        if finished is not None:
            return finished
        return train_kto(
            ctx.load_base(),
            ctx.tokenizer,
            items,
            self.settings(ctx, head),
            work_dir,
            head.adapter,
            ctx.train.batch_size * (2 if self._paired(head) else 1),
            ctx.train.epochs,
            checkpoint_steps,
            resume,
            ctx.bf16,
            ctx.progress,
            done_file,
        )


def train_kto(
    base_model,
    tokenizer,
    rows: list[dict],
    settings: KTOSettings,
    work_dir: Path,
    adapter: str,
    rows_per_step: int,
    epochs: float,
    checkpoint_steps: Sequence[int] = (),
    resume: bool = False,
    bf16: bool = False,
    progress: bool = False,
    done_file: Path | None = None,
) -> TrainStats:
    """Train adapter `adapter` on `base_model` with TRL's KTOTrainer on pre-tokenized `rows`, in their order."""
    from trl import KTOConfig

    if not rows:
        raise LikraError("no KTO training rows")
    per_device = per_device_batch(rows_per_step, rank_and_world()[1])
    if settings.loss_type == "kto" and per_device < 2:
        raise LikraError(
            f"KTO estimates its KL term from the other rows of a batch: {rows_per_step} rows per step "
            f"over {rank_and_world()[1]} process(es) is too few; use a batch size of 2 or more per process"
        )

    def build(callbacks):
        args = KTOConfig(
            **trainer_arguments(
                work_dir,
                rows_per_step,
                settings.learning_rate,
                settings.lr_scheduler_type,
                epochs,
                settings.seed,
                settings.logging_steps,
                bf16,
                progress,
            ),
            beta=settings.beta,
            desirable_weight=settings.desirable_weight,
            undesirable_weight=settings.undesirable_weight,
            loss_type=settings.loss_type,
            max_length=settings.max_length,
            train_sampling_strategy="sequential",
            disable_dropout=True,
            gradient_checkpointing=False,
            push_to_hub=False,
        )
        return trl_trainer(
            _kto_trainer_class(), base_model, args, rows, tokenizer, callbacks, settings.lora, adapter, settings.seed
        )

    return run_trainer(
        build,
        adapter,
        work_dir,
        len(rows),
        rows_per_step,
        epochs,
        checkpoint_steps,
        resume,
        progress,
        done_file,
        after=lambda trainer: _drop_fused_lm_head(trainer.model.get_base_model()),
    )


register_objective(KTO())
