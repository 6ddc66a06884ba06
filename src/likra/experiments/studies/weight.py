"""Study `weight`: accuracy against the negative weight w in pos - w·neg and base - w·neg at every
checkpoint, from the cached log-likelihoods (no re-scoring); w is chosen on a held-out split and reported
on the test split."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from likra.config import option, settings
from likra.data.formats import load_data
from likra.data.records import MCRecord
from likra.errors import LikraError
from likra.experiments.curve import CurveConfig, CurveRun
from likra.experiments.figures import baselines_line, fmt, line_figure
from likra.experiments.folder import read_scores
from likra.experiments.studies.base import Study, register_study
from likra.model.loading import load_tokenizer
from likra.scoring.metrics import accuracy_norm
from likra.scoring.modes import question_scores

SWEPT_MODES = ("likra", "negbase")


def weight_sweep(
    files: dict[str, Path], records: Sequence[MCRecord], weights: Sequence[float]
) -> dict[str, list[float]]:
    """acc_norm of likra and negbase at each weight, from one checkpoint's cached log-likelihoods."""
    ll = {h: read_scores(p, len(records)) for h, p in files.items()}
    golds, texts = [r.gold for r in records], [r.choices for r in records]
    return {
        mode: [accuracy_norm(question_scores(mode, ll, w), golds, texts).value for w in weights] for mode in SWEPT_MODES
    }


def choose_weight(weights: Sequence[float], tune_acc: Sequence[float]) -> float:
    """The weight with the best held-out accuracy; ties go to the one closest to 1 (the default)."""
    best = max(tune_acc)
    candidates = [w for w, a in zip(weights, tune_acc) if a == best]
    return min(candidates, key=lambda w: (abs(w - 1.0), w))


@settings
class WeightSettings:
    tune_data: str = option("arc_challenge:validation", help="held-out split w is chosen on")
    weights: list[float] = option(
        default_factory=lambda: [round(0.1 * i, 1) for i in range(21)], help="weights w to try"
    )


class WeightStudy(Study):
    name = "weight"
    help = "accuracy against the negative weight w, tuned on a held-out split"
    settings = WeightSettings
    eval_data = "arc_challenge:test"

    def run(self, cfg: CurveConfig, options: WeightSettings, progress: bool = True) -> dict:
        tune_data, weights = options.tune_data, list(options.weights)
        if not weights:
            raise LikraError("give at least one weight (--weights)")
        if tune_data == cfg.eval_data:
            raise LikraError("the weight must be tuned on a held-out split: --tune-data must differ from --eval-data")
        tokenizer = load_tokenizer(cfg.model)

        def ids(spec: str) -> set[str]:
            return {r.id for r in load_data(spec, cfg.source, cfg.format, cfg.chat_template, tokenizer)[0]}

        tune_ids = ids(tune_data)
        for other, what in ((cfg.eval_data, "the test data"), (cfg.data, "the training data")):
            overlap = tune_ids & ids(other)
            if overlap:
                raise LikraError(
                    f"--tune-data {tune_data} shares {len(overlap)} questions with {what} ({other}); "
                    "tune the weight on held-out questions"
                )
        runs, curves = {}, {}
        roles = (("tune", tune_data), ("test", cfg.eval_data))
        built = {role: CurveRun(replace(cfg, eval_data=data), progress) for role, data in roles}
        for role, run in built.items():  # both checked before either trains
            result = run.run()
            curves[role] = result.curve
            runs[role] = (result, result.eval_records)
        rows = []
        for seed, points in runs["test"][0].score_files.items():
            tune_points = dict(runs["tune"][0].score_files[seed])
            for examples, test_files in points:
                tune = weight_sweep(tune_points[examples], runs["tune"][1], weights)
                test = weight_sweep(test_files, runs["test"][1], weights)
                for mode in SWEPT_MODES:
                    w_star = choose_weight(weights, tune[mode])
                    rows.append(
                        {
                            "seed": seed,
                            "examples": examples,
                            "mode": mode,
                            "chosen_weight": w_star,
                            "test_at_chosen": test[mode][weights.index(w_star)],
                            "test_at_1": test[mode][weights.index(1.0)] if 1.0 in weights else None,
                            "tune_curve": tune[mode],
                            "test_curve": test[mode],
                        }
                    )
        return {
            "study": self.name,
            "model": cfg.model,
            "tune_data": tune_data,
            "eval_data": cfg.eval_data,
            "weights": weights,
            "rows": rows,
            "test_curve": curves["test"],
        }

    def figure(self, result: dict):
        rows, weights = result["rows"], result["weights"]
        last = max(r["examples"] for r in rows)
        panels = {
            f"{mode} after {last} examples": [
                ("tune", list(zip(weights, r["tune_curve"]))),
                ("test", list(zip(weights, r["test_curve"]))),
            ]
            for mode in SWEPT_MODES
            for r in rows
            if r["mode"] == mode and r["examples"] == last and r["seed"] == 0
        }
        return line_figure(
            panels,
            None,
            f"{result.get('model', '')}: negative-head weight w (tuned on "
            f"{result['tune_data']}, reported on {result['eval_data']})",
            "w",
            log_x=False,
        )

    def report(self, result: dict) -> list[str]:
        lines = [
            f"w tuned on `{result['tune_data']}`, reported on `{result['eval_data']}` (acc_norm).",
            "",
            "| seed | examples | mode | chosen w | test acc at chosen w | test acc at w=1 |",
            "|---|---|---|---|---|---|",
        ]
        for r in result["rows"]:
            lines.append(
                f"| {r['seed']} | {r['examples']} | {r['mode']} | {r['chosen_weight']:g} | "
                f"{fmt(r['test_at_chosen'])} | {fmt(r['test_at_1'])} |"
            )
        return lines + baselines_line(result.get("test_curve", {}))


register_study(WeightStudy())
