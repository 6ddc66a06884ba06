"""Study `likelihood`: answer log-likelihoods per token of correct, near-miss and implausible answers under
the base model and the curve's positive and negative heads (trained = their last checkpoint of seed 0): the
paper's finding is that positive-only training barely separates plausible wrong answers, the negative head does."""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from likra.data.negatives import random_other_question
from likra.data.records import MCRecord
from likra.experiments.curve import CurveConfig, CurveRun
from likra.experiments.studies.base import Study, register_study
from likra.model.heads import BASE
from likra.model.loading import load_tokenizer, model_max_length
from likra.scoring.engine import ScoringEngine, tokenize_questions

ANSWER_KINDS = ("correct", "near_miss", "implausible")


def likelihood_table(per_head: dict[str, list[np.ndarray]], records: Sequence[MCRecord], n_tokens) -> dict:
    """Per-token log-likelihoods of each answer kind under each head; the last choice of every record is the
    implausible answer appended for this study."""
    out = {}
    for head, scores in per_head.items():
        values = {k: [] for k in ANSWER_KINDS}
        for rec, s, lengths in zip(records, scores, n_tokens):
            per_token = s / np.asarray(lengths)
            values["correct"].append(per_token[rec.gold])
            values["near_miss"] += [per_token[i] for i in range(len(rec.choices) - 1) if i != rec.gold]
            values["implausible"].append(per_token[-1])
        out[head] = values
    return out


class LikelihoodStudy(Study):
    name = "likelihood"
    help = "likelihoods of correct / near-miss / implausible answers per head"

    def run(self, cfg: CurveConfig, options=None, progress: bool = True) -> dict:
        run = CurveRun(cfg, progress).run()
        positive, negative = run.heads[:2]
        pos_key, neg_key = positive.role or positive.name, negative.role or negative.name
        records = run.eval_records
        implausible = random_other_question(records, seed=0)
        augmented = [replace(r, choices=(*r.choices, text)) for r, (_, text) in zip(records, implausible)]
        _, questions = tokenize_questions(load_tokenizer(cfg.model), augmented, max_length=model_max_length(run.model))
        n_tokens = [[len(c) for c in q.choice_ids] for q in questions]
        last_step = run.folder.last_step(0, positive)
        for head in (positive, negative):
            run.folder.load_adapter(run.model, 0, head, last_step)
        scored = ScoringEngine(run.model, max_batch_tokens=cfg.batch_tokens, progress=progress).loglikelihoods(
            questions, (BASE, positive.adapter, negative.adapter)
        )
        per_head = {BASE: scored[BASE], pos_key: scored[positive.adapter], neg_key: scored[negative.adapter]}
        table = likelihood_table(per_head, augmented, n_tokens)
        means = {h: {k: float(np.mean(v)) for k, v in kinds.items()} for h, kinds in table.items()}
        shift = {h: {k: means[h][k] - means[BASE][k] for k in ANSWER_KINDS} for h in (pos_key, neg_key)}
        summary = {
            "sft_shift_near_miss": shift[pos_key]["near_miss"],
            "sft_shift_correct": shift[pos_key]["correct"],
            "sft_shift_implausible": shift[pos_key]["implausible"],
            "neg_shift_near_miss": shift[neg_key]["near_miss"],
            "neg_shift_correct": shift[neg_key]["correct"],
            "neg_shift_implausible": shift[neg_key]["implausible"],
            # How far each head moves plausible-incorrect answers relative to correct ones.
            "sft_separation": shift[pos_key]["correct"] - shift[pos_key]["near_miss"],
            "neg_separation": shift[neg_key]["near_miss"] - shift[neg_key]["correct"],
        }
        return {
            "study": self.name,
            "model": cfg.model,
            "eval_data": cfg.eval_data,
            "means": means,
            "shift_from_base": shift,
            "summary": summary,
            "n_questions": len(records),
            "last_step": last_step,
            "per_token": {h: {k: [float(x) for x in v] for k, v in kinds.items()} for h, kinds in table.items()},
        }

    def figure(self, result: dict):
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        heads = list(result["per_token"])
        size = (4.7 * len(heads), 4)
        fig, axes = plt.subplots(1, len(heads), figsize=size, dpi=120, sharey=True, squeeze=False, layout="constrained")
        axes = axes[0]
        for ax, head in zip(axes, heads):
            ax.violinplot([result["per_token"][head][k] for k in ANSWER_KINDS], showmeans=True)
            ax.set_xticks(range(1, len(ANSWER_KINDS) + 1), ANSWER_KINDS)
            title = f"{head} head" + ("" if head == BASE else f" after {result['last_step']} steps")
            ax.set_title(title, fontsize=10, wrap=True)
            ax.grid(True, alpha=0.3)
        axes[0].set_ylabel("answer log-likelihood per token")
        fig.suptitle(f"{result['model']}: answer likelihoods on {result['eval_data']}", fontsize=10, wrap=True)
        return fig

    def report(self, result: dict) -> list[str]:
        lines = [
            "Mean answer log-likelihood per token:",
            "",
            "| head | correct | near-miss | implausible |",
            "|---|---|---|---|",
        ]
        for head, means in result["means"].items():
            lines.append(f"| {head} | {means['correct']:.3f} | {means['near_miss']:.3f} | {means['implausible']:.3f} |")
        return lines + [
            "",
            "Summary (shifts from the base model, nats per token): "
            + ", ".join(f"{k} {v:+.3f}" for k, v in result["summary"].items()),
        ]


register_study(LikelihoodStudy())
