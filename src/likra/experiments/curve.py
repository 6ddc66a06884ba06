"""`likra curve`: one training run per head with checkpoints after 2^k optimizer steps, every
checkpoint evaluated in every mode, resumable at any point.

Folder layout (everything finished is reused on a re-run with the same settings):

    <out>/curve-config.json          the training settings; a re-run with other ones is refused
    <out>/scores/<eval>/base.json    base-model log-likelihoods (scored once per evaluation set)
    <out>/seed-<s>/<head dir>/checkpoint-<step>/   Trainer checkpoints (adapter; resume state until done)
    <out>/seed-<s>/<head dir>.done.json            training statistics, written when the head finished
    <out>/seed-<s>/scores/<eval>/step-<step>-<head dir>.json   per-question log-likelihoods of a checkpoint
    <out>/curve.json, curve.csv, curve.png, curve.svg, report.md

The head dirs are `positive` and `negative` (near-miss negatives) or `negative-<variant>` for the
studies' other negative sets, which share the folder's positive head.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from likra.data.benchmarks import load_spec
from likra.data.examples import FEWSHOT_SEED, draw_shots, fewshot_prefix, positive_pairs, tokenize_answers
from likra.data.negatives import NEGATIVE_KINDS, build_negatives, contaminate
from likra.errors import LikraError
from likra.distributed import barrier, is_main, rank_and_world, start
from likra.io import atomic_write_json
from likra.model.heads import BASE, NEGATIVE, POSITIVE, LoraSettings, attach_heads, reinit_heads
from likra.model.loading import load_base_model, load_tokenizer
from likra.scoring.engine import ScoringEngine, tokenize_questions
from likra.scoring.evaluate import default_fewshot_spec, mode_metrics
from likra.scoring.metrics import Z95
from likra.scoring.modes import check_modes
from likra.training.pipeline import select_questions
from likra.training.trainer import (TrainSettings, complete_checkpoints, drop_resume_state, steps_per_epoch,
                                    train_head)

log = logging.getLogger(__name__)

METRICS = ("acc", "acc_norm")


@dataclass
class CurveConfig:
    """The embedded default: SmolLM2-135M, ARC outside ARC-Challenge validation/test, evaluated on
    ARC-Challenge validation, sized (limit, points, batch, lr) to fit 20 minutes on 2 CPU cores."""

    model: str = "smollm2-135m"
    data: str = "arc-train"
    eval_data: str = "arc_challenge:validation"
    source: str = "auto"
    limit: int | None = 2048
    points: list[int] | None = None
    seeds: int = 1
    negatives: str = "one"
    negative_kind: str = "near_miss"
    negative_pool: str = "hellaswag:validation"
    contamination: float = 0.0
    modes: list[str] = field(default_factory=lambda: ["base", "sft", "likra", "negbase"])
    weight: float = 1.0
    shots: int = 0
    fewshot_data: str | None = None
    eval_limit: int | None = None
    dtype: str = "auto"
    batch_tokens: int | None = None
    out: str = "runs/curve"
    lora: LoraSettings = field(default_factory=LoraSettings)
    train: TrainSettings = field(default_factory=TrainSettings)


# Settings that define the trained checkpoints: a folder holds one training setup, evaluated any number
# of ways, with any number of negative-set variants (kind, contamination) sharing its positive head.
TRAINING_KEYS = ("model", "data", "source", "limit", "points", "seeds", "negatives", "dtype", "lora", "train")


def checkpoint_schedule(n_examples: int, batch_size: int, points: Sequence[int] | None = None,
                        epochs: float = 1.0) -> list[tuple[int, int]]:
    """(optimizer step, examples seen) pairs: after 1, 2, 4, ... steps by default, or after the steps
    that first reach each requested example count; the last point is always the end of training.
    `batch_size` is examples per optimizer step (over all processes)."""
    if batch_size < 1 or epochs <= 0:
        raise LikraError(f"batch size must be >= 1 and epochs > 0, got {batch_size} and {epochs}")
    per_epoch = steps_per_epoch(n_examples, batch_size)
    total = max(1, math.ceil(epochs * per_epoch))
    seen_total = round(n_examples * epochs)

    def seen(step: int) -> int:
        full, part = divmod(step, per_epoch)
        return min(full * n_examples + min(part * batch_size, n_examples), seen_total)

    if points is None:
        steps = {2**k for k in range(max(total.bit_length(), 1)) if 2**k < total}
    else:
        bad = [p for p in points if not 1 <= p <= seen_total]
        if bad:
            raise LikraError(f"curve points {bad} are outside 1..{seen_total} (the training examples)")
        steps = {next(s for s in range(1, total + 1) if seen(s) >= p) for p in points}
    steps.add(total)
    return [(s, seen(s)) for s in sorted(steps)]


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", text).strip("_")


def variant_name(cfg: CurveConfig) -> str:
    """The negative set's name: its kind (and pool), plus the contamination rate when there is one."""
    kind = cfg.negative_kind + (f"-{slug(cfg.negative_pool)}" if cfg.negative_kind == "other_benchmark" else "")
    return kind + (f"-contaminated{cfg.contamination:g}" if cfg.contamination else "")


class CurveRun:
    """Executes a CurveConfig in its folder, skipping every piece already finished."""

    def __init__(self, cfg: CurveConfig, progress: bool = True):
        self.cfg = cfg
        self.out = Path(cfg.out)
        self.progress = progress
        check_modes(cfg.modes)
        if cfg.seeds < 1:
            raise LikraError(f"--seeds must be at least 1, got {cfg.seeds}")
        if cfg.negatives != "one":
            raise LikraError("curves pair the heads' checkpoints by questions seen: use one negative per question "
                             "(--negatives one); `likra train --negatives all` trains on every incorrect choice")
        if cfg.negative_kind not in NEGATIVE_KINDS:
            raise LikraError(f"unknown negative kind {cfg.negative_kind!r}; choose from {', '.join(NEGATIVE_KINDS)}")
        self.variant = variant_name(cfg)
        self.negative_dir = NEGATIVE if self.variant == "near_miss" else f"{NEGATIVE}-{self.variant}"
        self.score_files: dict[int, list[tuple[int, dict[str, Path]]]] = {}  # seed -> [(examples, head -> file)]
        self.eval_tag = slug(f"{cfg.eval_data}-{cfg.shots}shot" + (f"-first{cfg.eval_limit}" if cfg.eval_limit else "")
                             + (f"-shots_from_{cfg.fewshot_data}" if cfg.fewshot_data else ""))

    # -- settings -------------------------------------------------------------------------------
    def check_settings(self) -> None:
        path = self.out / "curve-config.json"
        current = {k: v for k, v in asdict(self.cfg).items() if k in TRAINING_KEYS}
        if path.is_file():
            previous = json.loads(path.read_text())
            keys = [k for k in TRAINING_KEYS if previous.get(k) != current[k]]
            if keys:
                raise LikraError(f"{self.out}: holds a curve trained with other settings ({', '.join(keys)}); "
                                 "use another --out or delete it")
        elif is_main():
            atomic_write_json(path, current)

    # -- main -----------------------------------------------------------------------------------
    def run(self) -> dict:
        start()
        cfg = self.cfg
        tokenizer = load_tokenizer(cfg.model)
        self.pad_id = tokenizer.pad_token_id
        model = attach_heads(load_base_model(cfg.model, cfg.dtype), cfg.lora)
        eval_records = load_spec(cfg.eval_data, source=cfg.source)[: cfg.eval_limit]
        train_records = load_spec(cfg.data, source=cfg.source)
        self.check_settings()  # only once the model and the data loaded: a typo must not lock the folder
        prefix_ids, questions = self.eval_tokens(tokenizer, eval_records)
        engine = ScoringEngine(model, max_batch_tokens=cfg.batch_tokens, progress=self.progress)
        self.base_file = self.out / "scores" / self.eval_tag / "base.json"
        base = self.cached_scores(self.base_file, engine, questions, prefix_ids, BASE)
        results = []
        for seed in range(cfg.seeds):
            results.append(self.run_seed(seed, model, tokenizer, train_records, engine, questions, prefix_ids, base,
                                         eval_records))
        barrier()
        return build_curve(cfg, results, eval_records, base, self.variant)

    def eval_tokens(self, tokenizer, records):
        prefix = ""
        if self.cfg.shots:
            pool = load_spec(self.cfg.fewshot_data or default_fewshot_spec(self.cfg.eval_data), source=self.cfg.source)
            prefix = fewshot_prefix(draw_shots(pool, self.cfg.shots, FEWSHOT_SEED, {r.id for r in records}))
        return tokenize_questions(tokenizer, records, prefix)

    def cached_scores(self, path: Path, engine, questions, prefix_ids, head: str) -> list[np.ndarray]:
        if path.is_file():
            return [np.array(v) for v in json.loads(path.read_text())]
        scores = engine.loglikelihoods(questions, (head,), prefix_ids)[head]
        if is_main():
            atomic_write_json(path, [s.tolist() for s in scores])
        return scores

    def negative_examples(self, records, seed, tokenizer, engine) -> list[tuple]:
        """The variant's negative set: drawn by kind (mined with the base model for hardest/easiest),
        then a fraction replaced by correct answers when contaminated."""
        cfg = self.cfg
        pool = load_spec(cfg.negative_pool, source=cfg.source) if cfg.negative_kind == "other_benchmark" else None
        scores = self.mined_scores(records, tokenizer, engine) if cfg.negative_kind in ("hardest", "easiest") else None
        pairs = build_negatives(cfg.negative_kind, records, seed, pool=pool, scores=scores, per_question=cfg.negatives)
        if cfg.contamination:
            pairs, _ = contaminate(records, pairs, cfg.contamination, seed)
        return pairs

    def mined_scores(self, records, tokenizer, engine) -> list[np.ndarray]:
        """Base-model score per choice of each training question (summed log-likelihood per character,
        the acc_norm convention), cached by question id in <out>/mined-base-scores.json."""
        path = self.out / "mined-base-scores.json"
        cache = json.loads(path.read_text()) if path.is_file() else {}
        missing = [r for r in records if r.id not in cache]
        if missing:
            _, questions = tokenize_questions(tokenizer, missing)
            for rec, ll in zip(missing, engine.loglikelihoods(questions, (BASE,))[BASE]):
                cache[rec.id] = (ll / np.array([max(len(c), 1) for c in rec.choices])).tolist()
            if is_main():
                atomic_write_json(path, cache)
        return [np.array(cache[r.id]) for r in records]

    def run_seed(self, seed, model, tokenizer, train_records, engine, questions, prefix_ids, base, eval_records) -> dict:
        from peft import set_peft_model_state_dict
        from peft.utils import load_peft_weights

        cfg = self.cfg
        seed_dir = self.out / f"seed-{seed}"
        records = select_questions(train_records, cfg.limit, seed)
        reinit_heads(model, (POSITIVE, NEGATIVE), seed)
        settings = TrainSettings(**{**asdict(cfg.train), "seed": seed})
        heads = {  # adapter -> (work folder name, examples)
            POSITIVE: (POSITIVE, tokenize_answers(tokenizer, positive_pairs(records), settings.max_length)),
            NEGATIVE: (self.negative_dir, tokenize_answers(tokenizer, self.negative_examples(records, seed, tokenizer, engine),
                                                           settings.max_length)),
        }
        schedules, stats = {}, {}
        for head, (folder, exs) in heads.items():
            schedules[head] = checkpoint_schedule(len(exs), settings.batch_size, cfg.points, settings.epochs)
            stats[head] = self.train_head_once(model, head, folder, exs, settings, seed_dir,
                                               [s for s, _ in schedules[head]])
        points = []
        self.score_files[seed] = []
        for (pos_step, n_pos), (neg_step, n_neg) in zip(schedules[POSITIVE], schedules[NEGATIVE]):
            per_head = {BASE: base}
            files = {BASE: self.base_file}
            self.score_files[seed].append((n_pos, files))
            for head, step in ((POSITIVE, pos_step), (NEGATIVE, neg_step)):
                folder = heads[head][0]
                path = files[head] = seed_dir / "scores" / self.eval_tag / f"step-{step}-{folder}.json"
                if not path.is_file():
                    weights = load_peft_weights(str(seed_dir / folder / f"checkpoint-{step}" / head))
                    set_peft_model_state_dict(model, weights, adapter_name=head)
                per_head[head] = self.cached_scores(path, engine, questions, prefix_ids, head)
            points.append({"step": pos_step, "examples": n_pos, "negative_examples": n_neg,
                           "metrics": mode_metrics(per_head, eval_records, cfg.modes, cfg.weight)})
        return {"seed": seed, "points": points, "train": stats}

    def train_head_once(self, model, head, folder, examples, settings, seed_dir: Path, steps: list[int]) -> dict:
        done = seed_dir / f"{folder}.done.json"
        if done.is_file():
            return json.loads(done.read_text())
        work = seed_dir / folder
        stats = train_head(model, head, examples, settings, work, self.pad_id,
                           checkpoint_steps=steps, resume=True, bf16=_uses_cuda_bf16(model), progress=self.progress)
        barrier()
        missing = [s for s in steps if s not in complete_checkpoints(work, head)]
        if missing:
            raise LikraError(f"{work}: training ended without checkpoints for steps {missing}")
        if is_main():
            atomic_write_json(done, asdict(stats))
            drop_resume_state(work)
        return asdict(stats)


def _uses_cuda_bf16(model) -> bool:
    import torch

    p = next(model.parameters())
    return p.device.type == "cuda" and p.dtype == torch.bfloat16


# -- results ---------------------------------------------------------------------------------------
def across_seeds(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, 95% CI low, high) of per-seed values (normal interval on the seeds' standard error)."""
    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, float("nan"), float("nan")
    half = Z95 * float(v.std(ddof=1)) / math.sqrt(len(v))
    return mean, mean - half, mean + half


def build_curve(cfg: CurveConfig, seeds: list[dict], eval_records, base, variant: str = "near_miss") -> dict:
    """curve.json content: one row per (seed, examples, mode, metric), plus seed means."""
    base_metrics = mode_metrics({BASE: base}, eval_records, ["base"], cfg.weight)["base"]
    rows = []
    for result in seeds:
        for metric in METRICS:
            m = base_metrics[metric]
            rows.append({"seed": result["seed"], "examples": 0, "step": 0, "mode": "base", "metric": metric,
                         "value": m["value"], "n": m["n"], "ci_low": m["ci_low"], "ci_high": m["ci_high"]})
        for point in result["points"]:
            for mode, metrics in point["metrics"].items():
                for metric in METRICS:
                    m = metrics[metric]
                    rows.append({"seed": result["seed"], "examples": point["examples"], "step": point["step"],
                                 "mode": mode, "metric": metric, "value": m["value"], "n": m["n"],
                                 "ci_low": m["ci_low"], "ci_high": m["ci_high"]})
    if len(seeds) > 1:
        keys = sorted({(r["examples"], r["step"], r["mode"], r["metric"]) for r in rows})
        for examples, step, mode, metric in keys:
            vals = [r["value"] for r in rows if (r["examples"], r["step"], r["mode"], r["metric"]) == (examples, step, mode, metric)
                    and r["seed"] != "mean"]
            mean, lo, hi = across_seeds(vals)
            rows.append({"seed": "mean", "examples": examples, "step": step, "mode": mode, "metric": metric,
                         "value": mean, "n": len(vals), "ci_low": lo, "ci_high": hi})
    return {
        "model": cfg.model, "data": cfg.data, "eval_data": cfg.eval_data, "seeds": cfg.seeds, "negatives": variant,
        "processes": rank_and_world()[1],
        "n_eval": len(eval_records), "config": asdict(cfg), "rows": rows,
        "train": [s["train"] for s in seeds],
    }
