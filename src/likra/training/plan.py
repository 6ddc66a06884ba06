"""The heads of a run as one plan, resolved once before anything loads, then executed: `likra train`, `likra curve`
and every study go through here.

    head specs -> plan_heads  (HeadPlan: per head its spec, its data recipe and its objective's settings, validated
                               once; unknown sets, parameters, values and settings are one line)
               -> head_items  (each distinct negative set built once; each head's items from its own set, and
                               the record: kind, set, parameters, seed, questions, examples)
               -> build_model / train_head take each head's settings from the plan
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from likra.config import default_of
from likra.data.negative_sets import DataRecipe, SetInputs, build_set, parse_recipe
from likra.data.negatives import Pairs
from likra.data.records import MCRecord
from likra.errors import LikraError
from likra.model.heads import HeadSpec, LoraSettings, check_distinct
from likra.objectives import TrainContext, get_objective
from likra.objectives.registry import head_record, optimizer_settings, resolve_settings
from likra.objectives.settings import TrainSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlannedHead:
    """One head, resolved: its spec, its data recipe, and its objective's settings (None where the objective follows
    the run's training settings, which a curve re-seeds per seed: `HeadPlan.settings`)."""

    spec: HeadSpec
    recipe: DataRecipe
    own_settings: Any = None


@dataclass(frozen=True)
class HeadPlan:
    """Every head of a run, in training order, resolved once (`plan_heads`)."""

    heads: tuple[PlannedHead, ...]

    @property
    def specs(self) -> list[HeadSpec]:
        return [h.spec for h in self.heads]

    @property
    def recipes(self) -> dict[str, DataRecipe]:
        return {h.spec.name: h.recipe for h in self.heads}

    @property
    def sets(self) -> str:
        """The negative sets its heads train on, as folder names name them (`DataRecipe.variant`), in head order and
        joined by `+` (`near_miss+random_question`); `none` when every head trains on gold answers."""
        return "+".join(dict.fromkeys(r.variant for r in self.recipes.values() if r.set)) or "none"

    def settings(self, head: HeadSpec, train: TrainSettings) -> Any:
        """The settings `head` trains with under the run's (or a curve seed's) training settings `train`."""
        planned = next(h for h in self.heads if h.spec.name == head.name)
        return planned.own_settings if planned.own_settings is not None else train

    def record(self, ctx: TrainContext, head: HeadSpec) -> dict:
        """What `head` trains with, resolved (`head_record`: objective, data as given and resolved, settings, LoRA):
        what its work folder keeps and a run's manifest records."""
        settings = self.settings(head, ctx.train)
        return head_record(ctx, head, get_objective(head.objective), settings, self.recipes[head.name].to_json())


def shadows(name: str) -> str | None:
    """What a head named `name` would hide from the mode grammar: a registered mode's name (`--modes sft` would
    score that mode, never the head), unless that mode is the head alone (the DPO study's `dpo`), or its keyword `w`
    (the negative weight); None when nothing."""
    from likra.scoring.modes import MODES, Term

    if name == "w":
        return "the mode grammar's negative weight"
    if name in MODES and MODES[name].terms != (Term(1, name),):  # a mode that is the head itself names it
        return f"the name of the registered mode {name!r}"
    return None


# The run's settings that an objective with optimizer settings of its own (DPO, KTO) takes from its own section
# alone (the run's gradient checkpointing and longest sequence still shape the base model and the data).
RUN_OPTIMIZER = ("learning_rate", "lr_scheduler_type", "warmup_steps", "weight_decay")


def unreached_run_settings(train: TrainSettings, lora: LoraSettings | None, settings: Sequence[Any]) -> list[str]:
    """The flags of the run's LoRA and optimizer settings that were changed from their defaults but that no head
    trains with (`settings`: each head's resolved settings; the run's reach a head whose objective has none of its
    own: `optimizer_settings`, `Objective.lora`)."""
    out = []
    if lora is not None and lora != LoraSettings() and all(getattr(s, "lora", None) is not None for s in settings):
        out.append("--lora-*")
    if all(optimizer_settings(s, train) is not train for s in settings):
        out += [f"--{k.replace('_', '-')}" for k in RUN_OPTIMIZER if getattr(train, k) != default_of(TrainSettings, k)]
    return out


def given_keys(objective: str, section: Any) -> list[str]:
    """The keys of an objective's settings section that were given: a mapping's keys, or of a validated section
    those that differ from the objective's defaults."""
    if isinstance(section, Mapping):
        return list(section)
    settings_class = get_objective(objective).settings
    if settings_class is None or not is_dataclass(section):
        return []
    defaults = asdict(settings_class())
    return [k for k, v in asdict(section).items() if v != defaults.get(k)]


def plan_heads(
    heads: Sequence[HeadSpec],
    train: TrainSettings,
    objective_settings: Mapping[str, Any],
    defaults: Mapping[str, Any] | None = None,
    lora: LoraSettings | None = None,
) -> HeadPlan:
    """The plan of `heads`: every objective section given checked (used by a head or not), each head's data recipe
    resolved with `defaults`, each head's settings validated (its objective's section with its own values on top).
    An objective whose optional packages are missing (TRL for dpo and kto) is refused first, in one line naming the
    extra to install; a section no head uses needs none of them."""
    # a study's heads may take turns in one adapter (one negative head per set), never share a name or a folder
    check_distinct(heads, " (a study's own heads included)", ("name", "folder"))
    settings = resolve_settings(train, objective_settings, heads)
    for head in heads:
        shadowed = shadows(head.name)
        if shadowed:
            raise LikraError(f"head name {head.name!r} is {shadowed}: a mode could not name the head; rename it")
    recipes = head_recipes(heads, defaults)
    for head, section in zip(heads, settings):
        if getattr(section, "negatives", "one") != "one":  # DPO's, from before a head's data named its set
            raise LikraError(
                f"head {head.name!r}: negatives={section.negatives}: a head's data names its negatives, e.g. "
                "pairs:near_miss?per_question=all"
            )
    unreached = unreached_run_settings(train, lora, settings)
    if unreached:
        log.warning(
            "%s given, but every head trains with its objective's own (%s): not applied (set them in its section, "
            "e.g. --%s-%s)",
            ", ".join(unreached),
            ", ".join(dict.fromkeys(h.objective for h in heads)),
            heads[0].objective,
            "lora-r" if unreached == ["--lora-*"] else "lr",
        )
    for name, section in objective_settings.items():  # a section's key that every head of it sets for itself
        mine = [h for h in heads if h.objective == name]
        hidden = [k for k in given_keys(name, section) if mine and all(k in dict(h.params) for h in mine)]
        if hidden:
            log.warning(
                "objectives.%s: %s given, but every %s head sets its own (%s): not applied",
                name,
                ", ".join(f"{k} (--{name}-{k.replace('_', '-')})" for k in hidden),
                name,
                ", ".join(h.name for h in mine),
            )
    unused = sorted(set(objective_settings) - {h.objective for h in heads})
    if unused:
        log.warning(
            "settings given for %s, but no head trains with %s: not applied (add a head, e.g. --heads ...,%s=%s:...)",
            ", ".join(f"objective {name}" for name in unused),
            "it" if len(unused) == 1 else "them",
            unused[0],
            unused[0],
        )
    return HeadPlan(tuple(PlannedHead(h, recipes[h.name], None if s is train else s) for h, s in zip(heads, settings)))


def head_recipes(heads: Sequence[HeadSpec], defaults: Mapping[str, Any] | None = None) -> dict[str, DataRecipe]:
    """Every head's data recipe, resolved with `defaults` for its set's parameters (a run's --negatives, a curve's
    --negative-pool); a head whose data names no known set, parameter or value is one line naming the head."""
    recipes = {}
    for head in heads:
        try:
            recipes[head.name] = parse_recipe(head.data, defaults)
        except LikraError as e:
            raise LikraError(f"head {head.name!r}: {e}") from None
    return recipes


def head_items(
    ctx: TrainContext,
    plan: HeadPlan,
    records: Sequence[MCRecord],
    seed: int,
    inputs: SetInputs = SetInputs(),
) -> tuple[dict[str, list], dict[str, dict]]:
    """({head: its training items}, {head: what its data was, as built}). Each distinct negative set is built once
    with `seed` (two heads naming one set share its pairs, e.g. an MLE and a DPO head), and each head gets the pairs of
    its own set only."""
    built: dict[DataRecipe, Pairs] = {}
    items, record = {}, {}
    for planned in plan.heads:
        head, recipe = planned.spec, planned.recipe
        negatives: Pairs = []
        if recipe.negatives is not None:
            if recipe.negatives not in built:
                built[recipe.negatives] = build_set(recipe.negatives, records, seed, inputs)
            negatives = built[recipe.negatives]
        settings = plan.settings(head, ctx.train)
        items[head.name] = get_objective(head.objective).examples(ctx, head, records, negatives, settings)
        record[head.name] = {
            **recipe.to_json(),
            "spec": recipe.spec,
            **({"seed": seed} if recipe.set else {}),
            "questions": len(records),
            "examples": len(items[head.name]),
        }
    return items, record
