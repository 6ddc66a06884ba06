"""The lm-eval model `likra`: loglikelihood requests scored in a Likra mode by the scoring engine.

The stock harness takes a model's loglikelihood as given: it is the HF model class that applies
log_softmax to logits. This class returns, per (context, continuation), the mode's combination of
per-head summed log-softmax log-likelihoods (e.g. log p_pos - w log p_neg) with no renormalisation,
so acc / acc_norm of any multiple-choice task are Likra's.
"""

from __future__ import annotations

from collections import OrderedDict

from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

from likra.data.examples import encode_pair
from likra.errors import LikraError
from likra.scoring.engine import QuestionTokens, ScoringEngine, common_prefix_length
from likra.scoring.modes import check_modes, get_mode

MIN_SHARED_PREFIX = 16


@register_model("likra")
class LikraLM(LM):
    """`--model likra --model_args run=RUN,mode=likra,weight=1.0[,dtype=bf16,batch_tokens=N]`
    (or `model=HUB_ID_OR_PATH` for the base model alone, mode base)."""

    def __init__(
        self,
        run: str | None = None,
        model: str | None = None,
        mode: str = "likra",
        weight: float = 1.0,
        dtype: str | None = None,
        batch_tokens: int | None = None,
        **harness_kwargs,
    ):
        super().__init__()
        from likra.model.loading import load_base_model, load_tokenizer
        from likra.runs import load_run_model

        (self.mode,) = check_modes([mode])
        self.weight = float(weight)
        if run:
            self.model, self.tokenizer, _ = load_run_model(run, dtype)
        elif model:
            if mode != "base":
                raise LikraError(f"a plain model has no heads: mode {mode!r} needs run=RUN_FOLDER")
            self.model, self.tokenizer = load_base_model(model, dtype or "auto"), load_tokenizer(model)
        else:
            raise LikraError("model_args need run=RUN_FOLDER (or model=NAME for mode base)")
        self.engine = ScoringEngine(self.model, max_batch_tokens=int(batch_tokens) if batch_tokens else None)

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        pairs = [req.args for req in requests]
        results = self.score_pairs(pairs, progress=not disable_tqdm)
        for req, result in zip(requests, results):
            self.cache_hook.add_partial("loglikelihood", req.args, result)
        return results

    def score_pairs(self, pairs: list[tuple[str, str]], progress: bool = False) -> list[tuple[float, bool]]:
        """Mode scores of (context, continuation) pairs; continuations of one context share its pass."""
        groups: OrderedDict[str, list[int]] = OrderedDict()
        for i, (context, _) in enumerate(pairs):
            groups.setdefault(context, []).append(i)
        contexts, answers = [], []
        for context, members in groups.items():
            encoded = [encode_pair(self.tokenizer, context, pairs[i][1]) for i in members]
            contexts.append(tuple(encoded[0][0]))
            answers.append(tuple(tuple(ans) for _, ans in encoded))
        shared = common_prefix_length(contexts)
        shared = shared if shared >= MIN_SHARED_PREFIX else 0
        questions = [QuestionTokens(ctx[shared:], ans) for ctx, ans in zip(contexts, answers)]
        mode = get_mode(self.mode)
        heads = mode.heads
        iterator = tqdm(heads, desc=f"likra {self.mode}", disable=not progress)
        scored = {h: self.engine.score(questions, (h,), contexts[0][:shared] if shared else ())[h] for h in iterator}
        greedy_head = mode.greedy_head
        results: list[tuple[float, bool] | None] = [None] * len(pairs)
        for q, members in enumerate(groups.values()):
            scores = mode.score({h: scored[h][q][0] for h in heads}, self.weight)
            greedy = scored[greedy_head][q][1]
            for j, i in enumerate(members):
                results[i] = (float(scores[j]), bool(greedy[j]))
        return results

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False):
        raise LikraError(
            "loglikelihood_rolling (perplexity tasks) is not supported by likra: a likelihood ratio "
            "of two heads is a multiple-choice score, not a language-model likelihood; "
            "use multiple-choice tasks"
        )

    def generate_until(self, requests, disable_tqdm: bool = False):
        raise LikraError(
            "generate_until (generation tasks) is not supported by likra: the two-head ratio has no "
            "well-defined sampling distribution; use multiple-choice tasks"
        )
