"""Study `objectives`: every way of learning from negatives on the same questions, the same negatives and the
same checkpoint schedule, each scored as its own log p and as log p - log p_base (Likra: pos - w·neg and
base - w·neg), with a table of the accuracy gained per example over the base model.

An entry of `--objectives` is `likra` (the curve's two MLE heads) or a registered objective's name, trained on
(gold, negative) pairs when it takes pairs, else on the negatives; `<objective>-negatives-only` trains it on the
negatives alone, and `<objective>-<loss>` picks one of its loss types (`dpo-ipo`, `dpo-nca_pair`: any of TRL's).
Built in: `dpo-<loss>` (TRL's DPOTrainer), `kto` and `kto-negatives-only` (TRL's KTOTrainer),
`unlikelihood` and `unlikelihood-negatives-only`; a plug-in's objective works the same way (`--objectives
likra,orpo`). The positive and negative heads are the curve folder's; every other head trains once and resumes
after a kill.
"""

from __future__ import annotations

from dataclasses import asdict, fields, replace

from likra.config import option, settings
from likra.errors import LikraError
from likra.experiments.curve import CurveConfig, CurveRun, negative_spec, variant_name
from likra.experiments.figures import (
    base_value,
    baselines_line,
    fmt,
    interval_name,
    line_figure,
    mode_points,
    paired_summary,
)
from likra.experiments.studies.base import Study, register_study
from likra.model.heads import HeadSpec, likra_heads
from likra.objectives import OBJECTIVES

DEFAULT_OBJECTIVES = [
    "likra",
    "dpo-sigmoid",
    "dpo-ipo",
    "dpo-hinge",
    "dpo-nca_pair",
    "kto",
    "kto-negatives-only",
    "unlikelihood",
    "unlikelihood-negatives-only",
]
NEGATIVES_ONLY = "negatives-only"


def objective_heads(name: str, negative_set: str) -> tuple[list[HeadSpec], list[str]]:
    """(heads to train, its two modes) of one entry of the study (see the module docstring)."""
    if name == "likra":
        return [], ["likra", "negbase"]
    found = [o for o in OBJECTIVES if name == o or name.startswith(o + "-")]
    if not found:
        raise LikraError(
            f"unknown objective {name!r}; valid: likra, a registered objective ({', '.join(OBJECTIVES)}), "
            f"<objective>-{NEGATIVES_ONLY} or <objective>-<loss type> (e.g. dpo-ipo)"
        )
    objective = OBJECTIVES[max(found, key=len)]
    variant = name[len(objective.name) + 1 :]
    kind = "pairs" if "pairs" in objective.data else "negatives"
    params: tuple = ()
    if variant == NEGATIVES_ONLY:
        kind = "negatives"
    elif variant:
        if objective.settings is None or "loss_type" not in {f.name for f in fields(objective.settings)}:
            raise LikraError(f"objective {name!r}: {objective.name} has no loss types to pick from")
        params = (("loss_type", variant),)
    if kind not in objective.data:
        raise LikraError(f"objective {name!r}: {objective.name} does not train on {kind}")
    head = HeadSpec(
        name.replace("-", "_"), objective=objective.name, data=f"{kind}:{negative_set}", folder=name, params=params
    )
    return [head], [head.name, f"{head.name}-base"]


@settings
class ObjectivesSettings:
    """The entries to compare; each objective's settings are the run's (`--dpo-beta`, YAML `objectives: {dpo: ...}`),
    for every registered objective, a plug-in's too (a loss type in an entry's name overrides its section's)."""

    objectives: list[str] = option(default_factory=lambda: list(DEFAULT_OBJECTIVES), help="objectives to compare")


class ObjectivesStudy(Study):
    name = "objectives"
    help = "every way of learning from negatives (Likra, DPO losses, KTO, unlikelihood) on the same negatives"
    settings = ObjectivesSettings

    def run(self, cfg: CurveConfig, options: ObjectivesSettings, progress: bool = True) -> dict:
        if not options.objectives:
            raise LikraError("give at least one objective (--objectives)")
        if cfg.heads is not None:  # every entry trains on the Likra pair's negative set (--negative-kind)
            raise LikraError("--heads: this study trains its own heads (the Likra pair and one per objective)")
        heads, modes = [], {}
        for name in dict.fromkeys(options.objectives):  # every name checked before anything trains
            more, modes[name] = objective_heads(name, negative_spec(cfg))
            heads += more
        all_modes = [m for ms in modes.values() for m in ms]
        pairs = list(dict.fromkeys([*cfg.pairs, *(f"{m}:base" for m in all_modes)]))
        curve = CurveRun(replace(cfg, pairs=pairs), progress, extra_heads=heads, extra_modes=all_modes).run().curve
        trained = {"likra": likra_heads(negative_spec(cfg), variant_name(cfg)), **{h.name: [h] for h in heads}}
        seconds = {
            name: sum(t.get(h.name, {}).get("seconds", 0.0) for t in curve["train"] for h in hs)
            for name, hs in trained.items()
        }
        return {
            "study": self.name,
            "objectives": modes,
            "settings": {**asdict(options), "sections": {k: asdict(v) for k, v in cfg.objectives.items()}},
            "curve": curve,
            "gains": gain_rows(curve, modes),
            "train_seconds": {name: seconds["likra" if name == "likra" else ms[0]] for name, ms in modes.items()},
        }

    def figure(self, result: dict):
        curve, modes = result["curve"], result["objectives"]
        panels = {
            "as trained (Likra: pos - neg)": [(name, mode_points(curve, ms[0])) for name, ms in modes.items()],
            "minus the base model (Likra: base - neg)": [
                (name, mode_points(curve, ms[1])) for name, ms in modes.items()
            ],
        }
        title = f"{curve['model']}: objectives on {curve['eval_data']} (bands: {interval_name(curve)})"
        return line_figure(panels, base_value(curve), title, "training examples")

    def report(self, result: dict) -> list[str]:
        gains = result["gains"]
        lines = [
            "Accuracy gained per training example over the base model (acc_norm at the last checkpoint, "
            "minus the base model's, divided by the examples; paired 95% interval), and training time.",
            "",
            "| objective | mode | examples | acc_norm | gain per example [95% CI] | train s |",
            "|---|---|---|---|---|---|",
        ]
        for g in gains:
            lines.append(
                f"| {g['objective']} | `{g['mode']}` | {g['examples']} | {g['value']:.3f} | "
                f"{fmt(g['gain'])} [{fmt(g['gain_low'])}, {fmt(g['gain_high'])}] | "
                f"{result['train_seconds'].get(g['objective'], 0.0):.0f} |"
            )
        return lines + baselines_line(result["curve"])


def gain_rows(curve: dict, modes: dict[str, list[str]], metric: str = "acc_norm") -> list[dict]:
    """Per objective mode at the last checkpoint: acc, and (acc - base)/examples with its paired interval."""
    paired = [r for r in paired_summary(curve) if r["metric"] == metric and r["b"] == "base"]
    rows = []
    for name, ms in modes.items():
        for mode in ms:
            pts = mode_points(curve, mode, metric)
            if not pts:
                continue
            e, value = pts[-1][0], pts[-1][1]
            p = next((r for r in paired if r["a"] == mode and r["examples"] == e), None)
            rows.append(
                {
                    "objective": name,
                    "mode": mode,
                    "examples": e,
                    "value": value,
                    "gain": (value - base_value(curve, metric)) / e,
                    "gain_low": p["ci_low"] / e if p else None,
                    "gain_high": p["ci_high"] / e if p else None,
                }
            )
    return rows


register_study(ObjectivesStudy())
