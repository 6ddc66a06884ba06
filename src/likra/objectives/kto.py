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

from typing import Sequence

from likra.config import PositiveFloat, option, settings
from likra.data.examples import encode_pair
from likra.distributed import rank_and_world
from likra.errors import LikraError
from likra.model.heads import HeadSpec, LoraSettings
from likra.objectives.dpo import _drop_fused_lm_head, dpo_lora, trl_trainer
from likra.objectives.registry import Objective, TrainContext, register_objective
from likra.objectives.settings import OptimizerSettings, SchedulerName

KTO_COLUMNS = ("prompt_ids", "completion_ids", "label")


@settings
class KTOSettings(OptimizerSettings):
    """TRL's KTO defaults (beta 0.1, equal weights) with the DPO baseline's learning rate and LoRA; in a run or
    curve the batch size, epochs and seed are the run's."""

    learning_rate: PositiveFloat = option(5e-5, help="KTO learning rate", flags=("--lr",))
    lr_scheduler_type: SchedulerName = option("cosine", help="learning-rate schedule (transformers' names)")
    beta: PositiveFloat = option(0.1, help="KTO beta")
    desirable_weight: PositiveFloat = option(1.0, help="weight of the desirable (gold) term")
    undesirable_weight: PositiveFloat = option(1.0, help="weight of the undesirable (negative) term")
    loss_type: str = option("kto", help="TRL's KTO loss type", choices=("kto", "apo_zero_unpaired"))
    lora: LoraSettings = option(default_factory=lambda: dpo_lora(), help="the KTO adapter's LoRA")


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
    settings = KTOSettings
    data = ("pairs", "negatives")
    requires = ("trl",)

    def examples(self, ctx: TrainContext, head: HeadSpec, records, negatives, settings: KTOSettings) -> list[dict]:
        return kto_rows(ctx.tokenizer, negatives, head.data.startswith("pairs:"), settings.max_length)

    def schedule_size(self, items: list) -> int:
        return sum(1 for row in items if not row["label"])  # one negative per question seen

    def rows_per_step(self, head: HeadSpec, batch_size: int) -> int:
        return batch_size * (2 if head.data.startswith("pairs:") else 1)  # gold and negative rows of a question

    def build_trainer(self, ctx: TrainContext, head: HeadSpec, items, settings: KTOSettings, arguments, callbacks):
        """TRL's KTOTrainer on pre-tokenized rows, in their order (its KL estimate pairs neighbours)."""
        from trl import KTOConfig

        if not items:
            raise LikraError("no KTO training rows")
        rows, world = arguments["per_device_train_batch_size"], rank_and_world()[1]
        if settings.loss_type == "kto" and rows < 2:
            raise LikraError(
                f"KTO estimates its KL term from the other rows of a batch: {rows * world} rows per step over "
                f"{world} process(es) is too few; use a batch size of 2 or more per process"
            )
        args = KTOConfig(
            **arguments,
            beta=settings.beta,
            desirable_weight=settings.desirable_weight,
            undesirable_weight=settings.undesirable_weight,
            loss_type=settings.loss_type,
            max_length=settings.max_length,
            train_sampling_strategy="sequential",
            disable_dropout=True,
            push_to_hub=False,
        )
        return trl_trainer(_kto_trainer_class(), ctx, head, settings.lora, args, items, callbacks)

    def after_training(self, trainer) -> None:
        _drop_fused_lm_head(trainer.model.get_base_model())


register_objective(KTO())
