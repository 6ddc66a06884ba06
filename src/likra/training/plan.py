"""Each head's training data, from exactly the recipe its spec names: resolved before anything loads, built once per
distinct negative set, recorded as built. `likra train`, `likra curve` and every study go through here.

    heads -> head_recipes (DataRecipe per head; unknown sets, parameters, values: one line)
          -> head_items   (each distinct negative set built once; each head's items from its own set)
          -> the record   (kind, set, parameters, seed, questions, examples: what the manifest and curve.json keep)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from likra.data.negative_sets import DataRecipe, SetInputs, build_set, parse_recipe
from likra.data.negatives import Pairs
from likra.data.records import MCRecord
from likra.errors import LikraError
from likra.model.heads import HeadSpec
from likra.objectives import TrainContext, get_objective
from likra.objectives.registry import head_settings


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
    heads: Sequence[HeadSpec],
    recipes: Mapping[str, DataRecipe],
    records: Sequence[MCRecord],
    seed: int,
    inputs: SetInputs = SetInputs(),
) -> tuple[dict[str, list], dict[str, dict]]:
    """({head: its training items}, {head: what its data was, as built}). Each distinct negative set is built once
    with `seed` (two heads naming one set share its pairs, e.g. an MLE and a DPO head), and each head gets the pairs of
    its own set only."""
    built: dict[DataRecipe, Pairs] = {}
    items, record = {}, {}
    for head in heads:
        recipe = recipes[head.name]
        negatives: Pairs = []
        if recipe.negatives is not None:
            if recipe.negatives not in built:
                built[recipe.negatives] = build_set(recipe.negatives, records, seed, inputs)
            negatives = built[recipe.negatives]
        settings = head_settings(ctx.train, ctx.objective_settings, head)
        items[head.name] = get_objective(head.objective).examples(ctx, head, records, negatives, settings)
        record[head.name] = {
            **recipe.to_json(),
            "spec": recipe.spec,
            **({"seed": seed} if recipe.set else {}),
            "questions": len(records),
            "examples": len(items[head.name]),
        }
    return items, record
