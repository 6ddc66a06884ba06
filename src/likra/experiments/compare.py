"""Two curve folders compared question by question (`likra compare A B`).

Both folders must have scored the same evaluation questions (same data, limit, shots, format and chat template),
and the modes both have that weigh a head by w (likra, negbase) with the same weight. For every
seed both have, every checkpoint (matched by its position: the k-th checkpoint of A with the k-th of B, which
must have seen equally many examples) and every mode both have, the per-question credits of A and B give a - b
with a paired bootstrap 95% interval and McNemar's exact p-value (`scoring.stats.paired_difference`). The
base model's row (0 examples) is compared too. Typical pairs: fp32 vs bf16, two base models, two learning rates.

The credits are recomputed from each folder's score files; before anything is compared, every recomputed
accuracy must equal the value in that folder's curve.json, so a comparison never rests on files that
disagree with the curve they belong to."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from likra.config import validate
from likra.errors import LikraError
from likra.experiments.curve import PAIR_SETTINGS, CurveConfig, CurveRun
from likra.experiments.folder import CurveFolder, read_curve, read_scores
from likra.model.heads import BASE
from likra.model.precision import Precision
from likra.scoring.metrics import METRICS, mode_credits
from likra.scoring.modes import get_mode
from likra.scoring.stats import paired_difference

SIGNIFICANCE = 0.05


class ComparedFolder:
    """One curve folder's configuration, curve.json and per-checkpoint head scores."""

    def __init__(self, root: str | Path):
        self.folder = CurveFolder(root)
        if not self.folder.curve_file.is_file():
            raise LikraError(f"{self.folder.root}: no curve.json (not a finished curve folder)")
        self.curve = read_curve(self.folder.curve_file)  # rows, config, ... as its readers take them, or one line
        values = {**self.curve["config"], "out": str(self.folder.root), "report_to": "none"}
        if values.get("heads") is not None:  # earlier versions took these beside configured heads: they reached none
            values = {k: v for k, v in values.items() if k not in PAIR_SETTINGS}
        if isinstance(values.get("objectives"), dict):  # a DPO section's negatives too (its head trained on one)
            values["objectives"] = {
                name: {k: v for k, v in section.items() if k != "negatives"} if isinstance(section, dict) else section
                for name, section in values["objectives"].items()
            }
        self.cfg: CurveConfig = validate(CurveConfig, values, str(self.folder.curve_file))
        self.run = CurveRun(self.cfg, progress=False)  # heads, modes, eval tag and paths; nothing is loaded
        recorded = self.curve.get("precision")
        if isinstance(recorded, dict) and {"train", "score"} <= recorded.keys():
            self.run.use_precision(Precision(recorded["train"], recorded["score"]))  # where its scores lie
        self.values = {(r["seed"], r["examples"], r["mode"], r["metric"]): r["value"] for r in self.curve["rows"]}

    @property
    def dtype(self) -> str:
        return self.curve.get("dtype", "fp32")  # folders from before the dtype was recorded ran in fp32

    def checkpoints(self, seed: int) -> list[int]:
        """The examples seen at each checkpoint of `seed`, in order (from curve.json)."""
        return sorted({r["examples"] for r in self.curve["rows"] if r["seed"] == seed and r["examples"] > 0})

    def head_files(self, seed: int) -> dict[str, list[Path]]:
        """head -> its score files of `seed`, in checkpoint order."""
        where = self.folder.seed_dir(seed) / "scores" / self.run.eval_tag
        out = {}
        for head in self.run.heads:
            pattern = re.compile(rf"step-(\d+)-{re.escape(head.folder)}\.json")
            found = sorted((int(m.group(1)), p) for p in where.glob("step-*.json") if (m := pattern.fullmatch(p.name)))
            out[head.name] = [p for _, p in found]
        return out

    def scores(self, path: Path, n: int) -> list[np.ndarray]:
        scores = read_scores(path, n)
        if scores is None:
            raise LikraError(f"{path}: missing, or not {n} questions' scores")
        return scores

    def per_head(self, seed: int, n: int) -> list[tuple[int, dict[str, list[np.ndarray]]]]:
        """[(examples, {head or role: scores})] for every checkpoint of `seed`, the base model first (0)."""
        base = self.scores(self.folder.base_scores_file(self.run.eval_tag), n)
        points = [(0, {BASE: base})]
        files = self.head_files(seed)
        examples = self.checkpoints(seed)
        for head in self.run.heads:
            if len(files[head.name]) != len(examples):
                raise LikraError(
                    f"{self.folder.root}: seed {seed} has {len(files[head.name])} score files of head "
                    f"{head.name!r} for {len(examples)} checkpoints in curve.json"
                )
        for k, e in enumerate(examples):
            heads = {BASE: base}
            for head in self.run.heads:
                scores = self.scores(files[head.name][k], n)
                for key in filter(None, (head.name, head.role)):
                    heads[key] = scores
            points.append((e, heads))
        return points

    def check_against_curve(self, key: tuple, value: float) -> None:
        """A recomputed accuracy (key: seed, examples, mode, metric) equals curve.json's: the score files are the
        curve's own."""
        seed, examples, mode, metric = key
        row = self.values.get(key)
        if row is None or not math.isclose(row, value, rel_tol=0, abs_tol=1e-12):
            raise LikraError(
                f"{self.folder.root}: the score files give {mode} {metric} = {value:.4f} at {examples} examples "
                f"(seed {seed}) but curve.json says " + ("nothing" if row is None else f"{row:.4f}")
            )

    def records(self) -> list:
        """The evaluation questions, loaded as the curve loaded them."""
        from likra.data.formats import load_data

        cfg = self.cfg
        tokenizer = None
        if cfg.chat_template:  # only the chat template needs the model's tokenizer
            from likra.model.loading import load_tokenizer

            tokenizer = load_tokenizer(cfg.model)
        records = load_data(cfg.eval_data, cfg.source, cfg.format, cfg.chat_template, tokenizer, shots=cfg.shots)[0]
        return records[: cfg.eval_limit]


def _same(a: ComparedFolder, b: ComparedFolder, what: str, get, needs: str = "the same questions") -> None:
    if get(a) != get(b):
        raise LikraError(
            f"{a.folder.root} and {b.folder.root} differ in {what} ({get(a)!r} vs {get(b)!r}): "
            f"a paired comparison needs {needs}"
        )


def compare_curves(a_root: str | Path, b_root: str | Path, labels: Sequence[str] | None = None) -> dict:
    """The comparison of curve folders A and B over their evaluation questions: one row per (seed, examples,
    mode, metric)."""
    a, b = ComparedFolder(a_root), ComparedFolder(b_root)
    for what, get in (
        ("evaluation data", lambda f: f.cfg.eval_data),
        ("evaluation limit", lambda f: f.cfg.eval_limit),
        ("shots", lambda f: f.cfg.shots),
        ("few-shot data", lambda f: f.cfg.fewshot_data),
        ("prompt format", lambda f: f.cfg.format),
        ("chat template", lambda f: f.cfg.chat_template),
        ("number of questions", lambda f: f.curve.get("n_eval")),
    ):
        _same(a, b, what, get)
    records = a.records()
    n = len(records)
    if a.curve.get("n_eval") != n:
        raise LikraError(f"{a.folder.root}: curve.json has {a.curve.get('n_eval')} questions, the data {n}")
    modes = [m for m in a.run.modes if m in b.run.modes]
    if not modes:
        raise LikraError(f"{a.folder.root} and {b.folder.root} have no mode in common")
    weighted = [m for m in modes if get_mode(m).weighted]
    if weighted:  # the modes that multiply a head by w (likra, negbase, ...) score another setting under another w
        _same(a, b, f"the weight w of {', '.join(weighted)}", lambda f: f.cfg.weight, "the same setting")
    seeds = sorted(set(range(a.cfg.seeds)) & set(range(b.cfg.seeds)))
    rows = []
    for seed in seeds:
        points_a, points_b = a.per_head(seed, n), b.per_head(seed, n)
        if [e for e, _ in points_a] != [e for e, _ in points_b]:
            raise LikraError(
                f"the checkpoints differ (seed {seed}): {[e for e, _ in points_a]} vs {[e for e, _ in points_b]} "
                "examples; compare curves with the same --limit, batch size and points"
            )
        for (examples, heads_a), (_, heads_b) in zip(points_a, points_b):
            wanted = ["base"] if examples == 0 else modes
            credit = {}
            for side, folder, heads in (("a", a, heads_a), ("b", b, heads_b)):
                for mode, by_metric in mode_credits(heads, records, wanted, folder.cfg.weight).items():
                    for metric in METRICS:  # an accuracy is the mean credit, as curve.json's values are
                        credit[side, mode, metric] = by_metric[metric]
                        folder.check_against_curve((seed, examples, mode, metric), by_metric[metric].mean())
            for mode in wanted:
                for metric in METRICS:
                    x, y = credit["a", mode, metric], credit["b", mode, metric]
                    d = paired_difference(x, y, a.cfg.bootstrap, seed=0)
                    rows.append(
                        {
                            "seed": seed,
                            "examples": examples,
                            "mode": mode,
                            "metric": metric,
                            "a": float(x.mean()),
                            "b": float(y.mean()),
                            **d.to_json(),
                            "significant": bool(d.p_mcnemar < SIGNIFICANCE and (d.ci_low > 0 or d.ci_high < 0)),
                        }
                    )
    if not labels:
        labels = [a.dtype, b.dtype] if a.dtype != b.dtype else [a.folder.root.name, b.folder.root.name]
    timing = {side: f.curve.get("timing", {}).get("total_seconds") for side, f in (("a", a), ("b", b))}
    return {
        "a": {"folder": str(a.folder.root), "label": labels[0], "dtype": a.dtype, "model": a.cfg.model},
        "b": {"folder": str(b.folder.root), "label": labels[1], "dtype": b.dtype, "model": b.cfg.model},
        "eval_data": a.cfg.eval_data,
        "n_eval": n,
        "modes": modes,
        "seconds": timing,
        "rows": rows,
    }


def comparison_table(comparison: dict, metric: str = "acc") -> list[str]:
    """Markdown: one line per (seed, examples, mode) for `metric`; a summary of the significant differences."""
    a, b = comparison["a"]["label"], comparison["b"]["label"]
    lines = [
        f"| seed | examples | mode | {a} | {b} | {a} - {b} [95% paired bootstrap] | McNemar p |",
        "|---|---|---|---|---|---|---|",
    ]
    rows = [r for r in comparison["rows"] if r["metric"] == metric]
    for r in rows:
        mark = " *" if r["significant"] else ""
        lines.append(
            f"| {r['seed']} | {r['examples']} | {r['mode']} | {r['a']:.3f} | {r['b']:.3f} | "
            f"{r['diff']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]{mark} | {r['p_mcnemar']:.3f} |"
        )
    significant = sum(r["significant"] for r in rows)
    lines.append("")
    lines.append(
        f"{metric}: {significant} of {len(rows)} differences significant at {SIGNIFICANCE:g} (interval excludes 0 "
        f"and McNemar p < {SIGNIFICANCE:g}; about {SIGNIFICANCE * len(rows):.1f} expected by chance alone); "
        f"largest |a - b| = {max((abs(r['diff']) for r in rows), default=float('nan')):.3f} over "
        f"{comparison['n_eval']} questions."
    )
    return lines
