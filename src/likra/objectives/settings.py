"""The training settings every objective shares, in one place.

`OptimizerSettings` are what a Trainer's optimizer and schedule need (learning rate, schedule, warmup, weight
decay, logging, gradient checkpointing, longest sequence). `TrainSettings` is the run's: those plus the batch
size, epochs and seed that every head of a run follows, so that their checkpoints line up, and the MLE heads'
own switches. An objective with optimizer settings of its own (DPO's lr 5e-5 cosine, say) subclasses
`OptimizerSettings`, as TRL's `DPOConfig` subclasses `TrainingArguments`: shared fields inherited, not copied.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

from likra.config import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, option, settings


def known_scheduler(name: str) -> str:
    """A learning-rate schedule the installed transformers has (checked before any model loads)."""
    from transformers import SchedulerType

    names = [s.value for s in SchedulerType]
    if name not in names:
        raise ValueError(
            f"{name!r} is not a schedule transformers knows (e.g. constant, linear, cosine; {len(names)} in all)"
        )
    return name


SchedulerName = Annotated[str, AfterValidator(known_scheduler)]


@settings
class OptimizerSettings:
    """AdamW with the reference setting: constant learning rate, no warmup, no weight decay."""

    learning_rate: PositiveFloat = option(1e-3, help="learning rate", flags=("--lr",))
    lr_scheduler_type: SchedulerName = option("constant", help="learning-rate schedule (transformers' names)")
    warmup_steps: NonNegativeInt = option(0, help="warmup optimizer steps")
    weight_decay: NonNegativeFloat = option(0.0, help="AdamW weight decay")
    gradient_checkpointing: bool = option(False, help="recompute activations in the backward pass (less memory)")
    max_length: PositiveInt = option(1024, help="longest training sequence; prompts are cut from the left")
    logging_steps: PositiveInt = option(10, help="log the loss every N optimizer steps (and at the last)")


@settings
class TrainSettings(OptimizerSettings):
    """Reference training: 1 epoch, constant learning rate, AdamW, no warmup, no weight decay."""

    batch_size: PositiveInt = option(16, help="examples per optimizer step, over all processes")
    epochs: PositiveFloat = option(1.0, help="passes over the training data")
    seed: NonNegativeInt = option(
        0,
        help="seed of the data order, the subset, the negatives and the LoRA initialisation (a curve's run s: seed+s)",
    )
    group_by_length: bool = option(True, help="batch examples of similar length (less padding)")
    packing: bool | None = option(
        None,
        help="pack each batch's examples into rows with restarted positions (no padding, same loss; mle heads); "
        "default: likra decides per head, packing when padded batches would compute over 25%% more tokens",
    )
    answer_only_logits: bool = option(True, help="project to the vocabulary only where an answer token follows")


# Fields added to TrainSettings since likra 0.1, with their defaults: records (curve folders) leave them out
# while they have these values, so that folders written before they existed keep matching.
TRAIN_ADDED_DEFAULTS = {"packing": None, "lr_scheduler_type": "constant", "warmup_steps": 0, "weight_decay": 0.0}
# Curve folders of earlier versions recorded `packing` only when true: false meant "off", which `None` (decided
# from the batch shapes) reproduces for the length-grouped batches those versions trained with.
