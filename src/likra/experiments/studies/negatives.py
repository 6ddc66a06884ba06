"""Study `negatives`: curves for each kind of negative set (near-miss, a random other question, another
benchmark, the hardest and the easiest distractor mined with the base model), as one run: the base model and the
positive head are trained and scored once, one negative head per kind."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Sequence

from likra.config import default_of, option, settings
from likra.data.negative_sets import NEGATIVE_SETS
from likra.errors import LikraError
from likra.experiments.curve import CurveConfig, CurveRun, negative_spec, variant_name
from likra.experiments.figures import (
    base_value,
    baselines_line,
    fmt,
    interval_name,
    line_figure,
    mode_points,
    summary_rows,
)
from likra.experiments.studies.base import Study, register_study
from likra.model.heads import NEGATIVE, likra_heads


def variant_curves(cfg: CurveConfig, variants: Sequence[dict], label_key: str, progress: bool) -> dict:
    """One curve per negative set (config overrides of the default negative head), from one run in `cfg.out`: the
    positive head and the base model are trained and scored once, one negative head per set, and each set's curve
    reads its own head as the role `negative` (`CurveRun`'s views, named by the set as the folder names it). Every
    set is checked before anything loads; each curve records its own settings."""
    if cfg.heads is not None:
        raise LikraError(f"--heads: this study trains its own heads (positive, one negative head per {label_key})")
    for key in dict.fromkeys(k for overrides in variants for k in overrides):
        if getattr(cfg, key) != default_of(CurveConfig, key):
            raise LikraError(f"--{key.replace('_', '-')}: this study sets it for each of its curves")
    settings, negatives = {}, {}
    for overrides in variants:
        label = str(overrides[label_key])
        settings[label] = replace(cfg, **overrides)
        positive, head = likra_heads(negative_spec(settings[label]), variant_name(settings[label]))
        negatives[label] = replace(head, role="")  # each view binds its own
    if len({h.name for h in negatives.values()}) < len(negatives):
        raise LikraError(f"the {label_key} values {', '.join(negatives)} name the same negative set twice")
    views = {variant_name(settings[label]): {NEGATIVE: head.name} for label, head in negatives.items()}
    run = CurveRun(cfg, progress, heads=[positive, *negatives.values()], views=views, label=label_key)
    curves = run.run().curves
    out = {}
    for label, variant in zip(negatives, views):
        out[label] = {**curves[variant], "config": asdict(settings[label])}  # its own negative kind, contamination
    return {"by": label_key, "curves": out}


def variant_figure(result: dict):
    curves = result["curves"]
    first = next(iter(curves.values()))
    panels = {
        "Likra (pos - neg)": [(k, mode_points(c, "likra")) for k, c in curves.items()],
        "Base-Likra (base - neg)": [(k, mode_points(c, "negbase")) for k, c in curves.items()],
        "SFT (shared positive head)": [("sft", mode_points(first, "sft"))],
    }
    title = f"{first['model']}: {result['study']} on {first['eval_data']} (bands: {interval_name(first)})"
    return line_figure(panels, base_value(first), title, "training examples")


def variant_table(result: dict) -> list[str]:
    lines = [f"| {result['by']} | examples | Likra | Base-Likra | SFT |", "|---|---|---|---|---|"]
    for label, curve in result["curves"].items():
        rows = summary_rows(curve, "acc_norm")
        for e in sorted({r["examples"] for r in rows if r["examples"] > 0}):
            get = {r["mode"]: r["value"] for r in rows if r["examples"] == e}
            lines.append(
                f"| {label} | {e} | {fmt(get.get('likra'))} | {fmt(get.get('negbase'))} | {fmt(get.get('sft'))} |"
            )
    return lines + baselines_line(next(iter(result["curves"].values())))


@settings
class NegativesSettings:
    kinds: list[str] = option(default_factory=lambda: NEGATIVE_SETS.names(), help="kinds of negatives to compare")


class NegativesStudy(Study):
    name = "negatives"
    help = "curves per kind of negative (near-miss vs implausible, hardest, easiest)"
    settings = NegativesSettings

    def run(self, cfg: CurveConfig, options: NegativesSettings, progress: bool = True) -> dict:
        unknown = [k for k in options.kinds if k not in NEGATIVE_SETS]
        if unknown or not options.kinds:
            raise LikraError(f"unknown negative kind(s) {unknown}; valid kinds: {', '.join(NEGATIVE_SETS.names())}")
        variants = [{"negative_kind": k, "contamination": 0.0} for k in options.kinds]
        return {"study": self.name, **variant_curves(cfg, variants, "negative_kind", progress)}

    def figure(self, result: dict):
        return variant_figure(result)

    def report(self, result: dict) -> list[str]:
        return variant_table(result)


register_study(NegativesStudy())
