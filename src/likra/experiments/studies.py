"""The paper's studies of negative examples, each one command on top of `likra curve`'s folder:

- negatives:     curves for each kind of negative set (near-miss, random other question, other
                 benchmark, hardest and easiest distractor mined with the base model); one positive head
                 is shared, only the negative head is retrained per kind;
- contamination: curves with a fraction of the negatives replaced by the questions' correct answers;
- weight:        accuracy against the negative weight w in pos - w·neg and base - w·neg at every
                 checkpoint, from the cached log-likelihoods (no re-scoring); w is chosen on a held-out
                 split and reported on the test split;
- dpo:           TRL's DPO on (prompt, gold, the same negatives), checkpointed at the same example counts
                 and evaluated the same way, next to SFT / Likra / Base-Likra;
- likelihood:    answer log-likelihoods of correct, near-miss and implausible answers under the base, the
                 positive and the negative head (untrained = base, trained = last checkpoint).
Each writes study-<name>.json and study-<name>.png (+ .svg) into the curve folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from likra.data.benchmarks import load_spec
from likra.data.negatives import random_other_question
from likra.data.records import MCRecord
from likra.distributed import is_main
from likra.errors import LikraError
from likra.experiments.curve import CurveConfig, CurveRun, checkpoint_schedule
from likra.experiments.report import save_figure, summary_rows
from likra.io import atomic_write_json
from likra.model.heads import BASE, NEGATIVE, POSITIVE
from likra.scoring.metrics import accuracy, accuracy_norm
from likra.scoring.modes import mode_score

METRIC = "acc_norm"


def _points(curve: dict, mode: str, metric: str = METRIC) -> list[tuple[int, float, float, float]]:
    rows = [r for r in summary_rows(curve, metric) if r["mode"] == mode and r["examples"] > 0]
    return sorted((r["examples"], r["value"], r["ci_low"], r["ci_high"]) for r in rows)


def _line_figure(panels: dict[str, list[tuple[str, list]]], base: float | None, title: str, xlabel: str, log_x=True):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 4.2), dpi=120, squeeze=False)
    for ax, (panel, lines) in zip(axes[0], panels.items()):
        for label, pts in lines:
            if not pts:
                continue
            x = [p[0] for p in pts]
            line, = ax.plot(x, [p[1] for p in pts], marker="o", ms=3, label=label)
            if len(pts[0]) > 2 and not any(np.isnan(p[2]) for p in pts):
                ax.fill_between(x, [p[2] for p in pts], [p[3] for p in pts], color=line.get_color(), alpha=0.12, lw=0)
        if base is not None:
            ax.axhline(base, color="gray", ls="--", lw=1, label=f"base model ({base:.3f})")
        if log_x:
            ax.set_xscale("log", base=2)
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(METRIC)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _base_value(curve: dict) -> float | None:
    rows = [r for r in summary_rows(curve, METRIC) if r["mode"] == "base" and r["examples"] == 0]
    return rows[0]["value"] if rows else None


def _write(out: Path, name: str, result: dict, fig) -> list[Path]:
    if not is_main():
        return []
    atomic_write_json(out / f"study-{name}.json", result)
    return [out / f"study-{name}.json", *save_figure(fig, out / f"study-{name}")]


def study_variants(cfg: CurveConfig, name: str, variants: Sequence[dict], label_key: str, progress: bool) -> list[Path]:
    """Curves for several negative sets in one folder (shared positive head), drawn together."""
    curves = {}
    for overrides in variants:
        curves[str(overrides[label_key])] = CurveRun(replace(cfg, **overrides), progress).run()
    first = next(iter(curves.values()))
    panels = {"Likra (pos - neg)": [(k, _points(c, "likra")) for k, c in curves.items()],
              "Base-Likra (base - neg)": [(k, _points(c, "negbase")) for k, c in curves.items()]}
    panels["SFT (shared positive head)"] = [("sft", _points(first, "sft"))]
    fig = _line_figure(panels, _base_value(first), f"{cfg.model}: {name} on {cfg.eval_data}", "training examples")
    result = {"study": name, "by": label_key, "curves": curves}
    return _write(Path(cfg.out), name, result, fig)


def study_negatives(cfg: CurveConfig, kinds: Sequence[str], progress: bool = True) -> list[Path]:
    return study_variants(cfg, "negatives", [{"negative_kind": k, "contamination": 0.0} for k in kinds],
                          "negative_kind", progress)


def study_contamination(cfg: CurveConfig, rates: Sequence[float], progress: bool = True) -> list[Path]:
    bad = [r for r in rates if not 0 <= r <= 1]
    if bad:
        raise LikraError(f"contamination rates must lie in [0, 1], got {bad}")
    return study_variants(cfg, "contamination", [{"contamination": float(r)} for r in rates], "contamination", progress)


# -- weight ----------------------------------------------------------------------------------------
def _load(path: Path) -> list[np.ndarray]:
    return [np.array(v) for v in json.loads(Path(path).read_text())]


def weight_sweep(files: dict[str, Path], records: Sequence[MCRecord], weights: Sequence[float]) -> dict[str, list[float]]:
    """acc_norm of likra and negbase at each weight, from one checkpoint's cached log-likelihoods."""
    ll = {h: _load(p) for h, p in files.items()}
    golds, texts = [r.gold for r in records], [r.choices for r in records]
    out = {}
    for mode in ("likra", "negbase"):
        out[mode] = [accuracy_norm([mode_score(mode, {h: ll[h][i] for h in ll}, w) for i in range(len(records))],
                                   golds, texts).value for w in weights]
    return out


def choose_weight(weights: Sequence[float], tune_acc: Sequence[float]) -> float:
    """The weight with the best held-out accuracy; ties go to the one closest to 1 (the default)."""
    best = max(tune_acc)
    candidates = [w for w, a in zip(weights, tune_acc) if a == best]
    return min(candidates, key=lambda w: (abs(w - 1.0), w))


def study_weight(cfg: CurveConfig, tune_data: str, weights: Sequence[float], progress: bool = True) -> list[Path]:
    """Sweep w on every checkpoint; choose it on `tune_data`, report it on `cfg.eval_data`."""
    if tune_data == cfg.eval_data:
        raise LikraError("the weight must be tuned on a held-out split: --tune-data must differ from --eval-data")
    tune_ids = {r.id for r in load_spec(tune_data, source=cfg.source)}
    for other, what in ((cfg.eval_data, "the test data"), (cfg.data, "the training data")):
        overlap = tune_ids & {r.id for r in load_spec(other, source=cfg.source)}
        if overlap:
            raise LikraError(f"--tune-data {tune_data} shares {len(overlap)} questions with {what} ({other}); "
                             "tune the weight on held-out questions")
    runs = {}
    for role, data in (("tune", tune_data), ("test", cfg.eval_data)):
        run = CurveRun(replace(cfg, eval_data=data), progress)
        run.run()
        runs[role] = (run, load_spec(data, source=cfg.source)[: cfg.eval_limit])
    rows = []
    for seed, points in runs["test"][0].score_files.items():
        tune_points = dict(runs["tune"][0].score_files[seed])
        for examples, test_files in points:
            tune = weight_sweep(tune_points[examples], runs["tune"][1], weights)
            test = weight_sweep(test_files, runs["test"][1], weights)
            for mode in ("likra", "negbase"):
                w_star = choose_weight(weights, tune[mode])
                rows.append({"seed": seed, "examples": examples, "mode": mode, "chosen_weight": w_star,
                             "test_at_chosen": test[mode][list(weights).index(w_star)],
                             "test_at_1": test[mode][list(weights).index(1.0)] if 1.0 in weights else None,
                             "tune_curve": tune[mode], "test_curve": test[mode]})
    last = max(r["examples"] for r in rows)
    panels = {f"{mode} after {last} examples": [("tune", list(zip(weights, r["tune_curve"]))),
                                               ("test", list(zip(weights, r["test_curve"])))]
              for mode in ("likra", "negbase") for r in rows if r["mode"] == mode and r["examples"] == last and r["seed"] == 0}
    fig = _line_figure(panels, None, f"{cfg.model}: negative-head weight w (tuned on {tune_data}, reported on "
                       f"{cfg.eval_data})", "w", log_x=False)
    result = {"study": "weight", "tune_data": tune_data, "eval_data": cfg.eval_data, "weights": list(weights),
              "rows": rows}
    return _write(Path(cfg.out), "weight", result, fig)


# -- DPO -------------------------------------------------------------------------------------------
def study_dpo(cfg: CurveConfig, dpo_settings, progress: bool = True) -> list[Path]:
    """DPO on the same questions and negatives, checkpoints at the curve's example counts, same scoring."""
    from likra.model.loading import load_base_model, load_tokenizer
    from likra.scoring.engine import ScoringEngine
    from likra.training.dpo import DPO_HEAD, dpo_pairs, load_dpo_checkpoint, train_dpo
    from likra.training.pipeline import select_questions
    from likra.training.trainer import complete_checkpoints, drop_resume_state

    curve_run = CurveRun(cfg, progress)
    curve = curve_run.run()
    tokenizer = load_tokenizer(cfg.model)
    eval_records = load_spec(cfg.eval_data, source=cfg.source)[: cfg.eval_limit]
    prefix_ids, questions = curve_run.eval_tokens(tokenizer, eval_records)
    train_records = load_spec(cfg.data, source=cfg.source)
    dpo_rows = []
    for seed in range(cfg.seeds):
        records = select_questions(train_records, cfg.limit, seed)
        settings = replace(dpo_settings, seed=seed, batch_size=cfg.train.batch_size)
        schedule = checkpoint_schedule(len(records), settings.batch_size, cfg.points)
        work = Path(cfg.out) / f"seed-{seed}" / "dpo"
        done = Path(cfg.out) / f"seed-{seed}" / "dpo.done.json"
        model = None
        if not done.is_file():
            model, stats = train_dpo(load_base_model(cfg.model, cfg.dtype), tokenizer,
                                     dpo_pairs(records, seed, cfg.negatives), settings, work,
                                     checkpoint_steps=[s for s, _ in schedule], resume=True, progress=progress)
            missing = [s for s, _ in schedule if s not in complete_checkpoints(work, DPO_HEAD)]
            if missing:
                raise LikraError(f"{work}: DPO ended without checkpoints for steps {missing}")
            if is_main():
                drop_resume_state(work)
                atomic_write_json(done, asdict(stats))
        if model is None:
            from likra.training.dpo import attach_dpo_head

            model = attach_dpo_head(load_base_model(cfg.model, cfg.dtype), settings.lora, seed)
        engine = ScoringEngine(model, max_batch_tokens=cfg.batch_tokens, progress=progress)
        base = _load(curve_run.base_file)
        for step, examples in schedule:
            path = Path(cfg.out) / f"seed-{seed}" / "scores" / curve_run.eval_tag / f"step-{step}-dpo.json"
            if not path.is_file():
                load_dpo_checkpoint(model, work / f"checkpoint-{step}")
            scores = curve_run.cached_scores(path, engine, questions, prefix_ids, DPO_HEAD)
            golds, texts = [r.gold for r in eval_records], [r.choices for r in eval_records]
            for mode, s in (("dpo", scores), ("dpo_base", [a - b for a, b in zip(scores, base)])):
                for metric, fn in (("acc", lambda x: accuracy(x, golds)), ("acc_norm", lambda x: accuracy_norm(x, golds, texts))):
                    m = fn(s)
                    dpo_rows.append({"seed": seed, "examples": examples, "step": step, "mode": mode, "metric": metric,
                                     "value": m.value, "n": m.n, "ci_low": m.ci_low, "ci_high": m.ci_high})
    dpo_curve = {**curve, "rows": dpo_rows}
    panels = {"DPO vs Likra": [("SFT", _points(curve, "sft")), ("Likra", _points(curve, "likra")),
                               ("Base-Likra", _points(curve, "negbase")),
                               ("DPO (log p_dpo)", _points(dpo_curve, "dpo")),
                               ("DPO (log p_dpo - log p_base)", _points(dpo_curve, "dpo_base"))]}
    fig = _line_figure(panels, _base_value(curve), f"{cfg.model}: DPO baseline on {cfg.eval_data}", "training examples")
    result = {"study": "dpo", "settings": asdict(dpo_settings), "rows": dpo_rows, "curve": curve}
    return _write(Path(cfg.out), "dpo", result, fig)


# -- likelihood ------------------------------------------------------------------------------------
ANSWER_KINDS = ("correct", "near_miss", "implausible")


def likelihood_table(per_head: dict[str, list[np.ndarray]], records: Sequence[MCRecord], n_tokens) -> dict:
    """Mean per-token log-likelihood of each answer kind under each head; the last choice of every
    record is the implausible answer appended for this study."""
    out = {}
    for head, scores in per_head.items():
        values = {k: [] for k in ANSWER_KINDS}
        for rec, s, lengths in zip(records, scores, n_tokens):
            per_token = s / np.asarray(lengths)
            values["correct"].append(per_token[rec.gold])
            values["near_miss"] += [per_token[i] for i in range(len(rec.choices) - 1) if i != rec.gold]
            values["implausible"].append(per_token[-1])
        out[head] = {k: v for k, v in values.items()}
    return out


def study_likelihood(cfg: CurveConfig, progress: bool = True) -> list[Path]:
    """Likelihoods of correct / near-miss / implausible answers before (base) and after training."""
    from likra.model.heads import attach_heads
    from likra.model.loading import load_base_model, load_tokenizer
    from likra.scoring.engine import ScoringEngine, tokenize_questions

    run = CurveRun(cfg, progress)
    run.run()
    tokenizer = load_tokenizer(cfg.model)
    records = load_spec(cfg.eval_data, source=cfg.source)[: cfg.eval_limit]
    implausible = random_other_question(records, seed=0)
    augmented = [MCRecord(r.id, r.prompt, (*r.choices, text), r.gold, r.source) for r, (_, text) in zip(records, implausible)]
    _, questions = tokenize_questions(tokenizer, augmented)
    n_tokens = [[len(c) for c in q.choice_ids] for q in questions]
    model = attach_heads(load_base_model(cfg.model, cfg.dtype), cfg.lora)
    from peft import set_peft_model_state_dict
    from peft.utils import load_peft_weights

    seed_dir = Path(cfg.out) / "seed-0"
    last_step = max(int(p.name.split("-")[1]) for p in (seed_dir / POSITIVE).glob("checkpoint-*"))
    for head, folder in ((POSITIVE, POSITIVE), (NEGATIVE, run.negative_dir)):
        set_peft_model_state_dict(model, load_peft_weights(str(seed_dir / folder / f"checkpoint-{last_step}" / head)),
                                  adapter_name=head)
    per_head = ScoringEngine(model, max_batch_tokens=cfg.batch_tokens, progress=progress).loglikelihoods(
        questions, (BASE, POSITIVE, NEGATIVE))
    table = likelihood_table(per_head, augmented, n_tokens)
    means = {h: {k: float(np.mean(v)) for k, v in kinds.items()} for h, kinds in table.items()}
    shift = {h: {k: means[h][k] - means[BASE][k] for k in ANSWER_KINDS} for h in (POSITIVE, NEGATIVE)}
    summary = {
        "sft_shift_near_miss": shift[POSITIVE]["near_miss"], "sft_shift_correct": shift[POSITIVE]["correct"],
        "sft_shift_implausible": shift[POSITIVE]["implausible"],
        "neg_shift_near_miss": shift[NEGATIVE]["near_miss"], "neg_shift_correct": shift[NEGATIVE]["correct"],
        "neg_shift_implausible": shift[NEGATIVE]["implausible"],
        # How far each head moves plausible-incorrect answers relative to correct ones (paper's finding:
        # the positive head barely separates them, the negative head does).
        "sft_separation": shift[POSITIVE]["correct"] - shift[POSITIVE]["near_miss"],
        "neg_separation": shift[NEGATIVE]["near_miss"] - shift[NEGATIVE]["correct"],
    }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4), dpi=120, sharey=True)
    for ax, head in zip(axes, (BASE, POSITIVE, NEGATIVE)):
        ax.violinplot([table[head][k] for k in ANSWER_KINDS], showmeans=True)
        ax.set_xticks(range(1, 4), ANSWER_KINDS)
        ax.set_title(f"{head} head" + ("" if head == BASE else f" after {last_step} steps"), fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("answer log-likelihood per token")
    fig.suptitle(f"{cfg.model}: answer likelihoods on {cfg.eval_data}", fontsize=10)
    fig.tight_layout()
    result = {"study": "likelihood", "means": means, "shift_from_base": shift, "summary": summary,
              "n_questions": len(records), "last_step": last_step}
    return _write(Path(cfg.out), "likelihood", result, fig)

