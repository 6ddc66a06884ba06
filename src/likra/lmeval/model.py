"""The lm-eval model `likra`: loglikelihood requests scored in a Likra mode by the scoring engine.

The stock harness takes a model's loglikelihood as given: it is the HF model class that applies
log_softmax to logits. This class returns, per (context, continuation), the mode's combination of
per-head summed log-softmax log-likelihoods (e.g. log p_pos - w log p_neg) with no renormalisation,
so acc / acc_norm of any multiple-choice task are Likra's.

`generate_until` decodes with the same mode through likra.generation (next token by the mode's combination of
the heads' log-softmax among the first head's plausible tokens); `loglikelihood_rolling` answers only for modes
that are one head's own likelihood (base, sft): a ratio of heads is not a likelihood of text.

Importing this module registers the model with the harness. lm-eval 0.4 has no entry points for models, so
the stock `lm_eval` command finds `likra` only in a process that imported it: `python -m likra.lmeval ...`
(the stock command line, see likra.lmeval.__main__) and `likra lm-eval ...` do. The harness names a model's
result folder after its `pretrained` / `model` / `path` argument (a random name otherwise); importing this
module teaches it `run` too, so `--output_path OUT` with `run=RUN` writes `OUT/<RUN, sanitised>/`.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import lm_eval.models  # noqa: F401  (the harness's own models first: it loads them only into an empty registry)
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model
from tqdm.auto import tqdm

from likra.data.examples import encode_pair
from likra.errors import LikraError
from likra.scoring.engine import QuestionTokens, ScoringEngine, common_prefix_length
from likra.scoring.modes import check_modes, get_mode

MIN_SHARED_PREFIX = 16


def _name_results_after_the_run() -> None:
    """Make the harness's tracker name the result folder of `model_args` with a `run` after the run."""
    from lm_eval.loggers.evaluation_tracker import GeneralConfigTracker

    original = GeneralConfigTracker.__dict__.get("_get_model_name")
    if original is None or getattr(original.__func__, "likra", False):
        return

    def model_name(model_args):
        if isinstance(model_args, dict) and model_args.get("run"):
            return str(model_args["run"])
        if isinstance(model_args, str) and "run=" in model_args and "pretrained=" not in model_args:
            return model_args.split("run=", 1)[1].split(",")[0]
        return original.__func__(model_args)

    model_name.likra = True
    GeneralConfigTracker._get_model_name = staticmethod(model_name)


_name_results_after_the_run()


# What lm-eval 0.4 hands every model beside its model_args: `simple_evaluate` adds batch_size, max_batch_size and
# device (the non-None ones) through `create_from_arg_string` / `create_from_arg_obj`, and `--trust_remote_code` adds
# trust_remote_code to the model_args. likra accepts these and does not use them (device excepted: a parameter).
HARNESS_ARGS = ("batch_size", "max_batch_size", "trust_remote_code")


def model_args_names() -> list[str]:
    """The keywords of the `likra` model's model_args (its own settings, then those the harness adds)."""
    import inspect

    own = [
        name
        for name, p in inspect.signature(LikraLM.__init__).parameters.items()
        if name != "self" and p.kind is not inspect.Parameter.VAR_KEYWORD
    ]
    return [*own, *HARNESS_ARGS]


def check_model_args(model_args: dict) -> None:
    """Refuse keywords the `likra` model has no setting for (a setting given and not applied), in one line naming
    them and the valid ones; its own settings and the harness's additions (`HARNESS_ARGS`) pass."""
    import difflib

    valid = model_args_names()
    unknown = [k for k in model_args if k not in valid]
    if not unknown:
        return
    hints = [f"{k!r}: did you mean {close[0]!r}?" for k in unknown if (close := difflib.get_close_matches(k, valid, 1))]
    raise LikraError(
        f"model_args {', '.join(map(str, unknown))}: not a setting of the likra model"
        + (f" ({'; '.join(hints)})" if hints else "")
        + f"; valid: {', '.join(valid)}"
    )


@register_model("likra")
class LikraLM(LM):
    """`--model likra --model_args run=RUN,mode=likra,weight=1.0[,dtype=bf16,batch_tokens=N]` (dtype: what scores
    are computed in; default auto, fp32 where an fp32 copy of the base fits)
    (or `model=HUB_ID_OR_PATH` for the base model alone, mode base); a model too large for one device
    takes `device_map=auto`, a 4-bit base `quantize=4bit`; generation tasks also take
    `alpha` (plausibility, default 0.1), `max_gen_toks` (default 256), `gen_batch_size`, `seed`."""

    def __init__(
        self,
        run: str | None = None,
        model: str | None = None,
        mode: str = "likra",
        weight: float = 1.0,
        dtype: str | None = None,
        device_map: str | None = None,
        quantize: str | None = None,
        batch_tokens: int | None = None,
        alpha: float = 0.1,
        max_gen_toks: int = 256,
        gen_batch_size: int = 8,
        seed: int = 0,
        device: str | None = None,
        **harness_kwargs,
    ):
        """`harness_kwargs`: only what the harness adds for every model (`HARNESS_ARGS`: batch_size,
        max_batch_size, where likra sizes its batches by tokens: `batch_tokens`; trust_remote_code), accepted and
        unused; any other keyword (a misspelt `wieght`) is refused, naming the valid ones."""
        check_model_args(harness_kwargs)
        super().__init__()
        import torch

        from likra.model.loading import load_base_model, load_tokenizer
        from likra.model.precision import mark, scoring_precision
        from likra.plugins import load_plugins
        from likra.runs import load_run_model

        load_plugins()  # a plug-in's modes work through the harness too (entry points and $LIKRA_PLUGINS)
        (self.mode,) = check_modes([mode])
        self.weight = float(weight)
        self.alpha, self.max_gen_toks = float(alpha), int(max_gen_toks)
        self.gen_batch_size, self.seed = int(gen_batch_size), int(seed)
        # The harness's `--device` defaults to cuda:0, also where there is no GPU: likra's default device then.
        if device and device.startswith("cuda") and not torch.cuda.is_available():
            logging.getLogger(__name__).warning("--device %s: no CUDA device here; using the CPU", device)
            device = None
        try:
            where = torch.device(device) if device else None
        except RuntimeError as e:
            raise LikraError(f"--device {device!r}: {e}") from None
        if run:
            self.model, self.tokenizer, _ = load_run_model(run, dtype, where, device_map=device_map, quantize=quantize)
        elif model:
            if mode != "base":
                raise LikraError(f"a plain model has no heads: mode {mode!r} needs run=RUN_FOLDER")
            precision = scoring_precision(model, dtype, None, where, quantize, device_map)
            base = load_base_model(model, precision.score, where, device_map=device_map, quantize=quantize)
            self.model, self.tokenizer = mark(base, precision), load_tokenizer(model)
        else:
            raise LikraError("model_args need run=RUN_FOLDER (or model=NAME for mode base)")
        self.engine = ScoringEngine(self.model, max_batch_tokens=int(batch_tokens) if batch_tokens else None)

    # -- what the harness records and its chat templates use ------------------------------------------
    @property
    def eot_token_id(self) -> int | None:
        return self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int | None:
        from likra.model.loading import model_max_length

        return model_max_length(self.model)

    @property
    def tokenizer_name(self) -> str:
        return self.tokenizer.name_or_path.replace("/", "__")

    def get_model_info(self) -> dict:
        """The model facts a stock `hf` run records in its results' `config` (the base, without the heads)."""
        from likra.reports.harness import model_info

        info = model_info(self.model, self.tokenizer)
        return {k: info[k] for k in ("model_num_parameters", "model_dtype", "model_revision", "model_sha")}

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The tokenizer's chat template (`--apply_chat_template [NAME]`), None when not asked."""
        if chat_template is False or chat_template is None:
            return None
        template = getattr(self.tokenizer, "chat_template", None)
        if isinstance(template, dict):
            template = template.get(chat_template if isinstance(chat_template, str) else "default")
        if not template:
            raise LikraError("--apply_chat_template: this model's tokenizer has no chat template")
        return template

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        self.chat_template(True)  # a tokenizer without one: one line
        return self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    # -- requests ---------------------------------------------------------------------------------------
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

    def _single_head(self, what: str) -> str:
        """The head of a mode that is one head's own log-likelihood (base, sft, a head name), else a LikraError."""
        mode = get_mode(self.mode)
        if len(mode.terms) == 1 and mode.terms[0].coefficient == 1 and not mode.terms[0].weighted:
            return mode.terms[0].head
        raise LikraError(
            f"{what} (perplexity tasks) needs a language model: mode {self.mode!r} combines heads into a "
            "multiple-choice score, not a likelihood of text; use a single-head mode (base, sft) or "
            "multiple-choice tasks"
        )

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        """Log-likelihood of whole texts under a single-head mode, in lm-eval's disjoint rolling windows (each
        text opens with the end-of-text token as context)."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        from likra.model.loading import model_max_length

        head = self._single_head("loglikelihood_rolling")
        max_length = model_max_length(self.model) or 2048
        eot = self.tokenizer.eos_token_id
        windows, owners = [], []
        for k, req in enumerate(requests):
            (text,) = req.args
            ids = self.tokenizer(text, add_special_tokens=False).input_ids
            for context, continuation in map(
                make_disjoint_window,
                get_rolling_token_windows(token_list=ids, prefix_token=eot, max_seq_len=max_length, context_len=1),
            ):
                windows.append(QuestionTokens(tuple(context), (tuple(continuation),)))
                owners.append(k)
        totals = [0.0] * len(requests)
        if windows:
            scored = self.engine.loglikelihoods(windows, (head,))[head]
            for k, ll in zip(owners, scored):
                totals[k] += float(ll[0])
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Generations in the mode (likra.generation's decoder), cut at the request's `until` strings; honours
        `max_gen_toks`, `do_sample`, `temperature` and `top_p` of its gen_kwargs. Requests with the same
        gen_kwargs are decoded together."""
        import json

        from likra.generation.decoder import GenerationSettings, HeadDecoder

        groups: OrderedDict[str, list[int]] = OrderedDict()
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        results: list[str | None] = [None] * len(requests)
        for members in tqdm(groups.values(), desc=f"likra generate {self.mode}", disable=disable_tqdm):
            kwargs = dict(requests[members[0]].args[1] or {})
            until = kwargs.pop("until", None) or []
            until = [until] if isinstance(until, str) else list(until)
            temperature = float(kwargs.pop("temperature", 0.0) or 0.0)
            do_sample = bool(kwargs.pop("do_sample", temperature > 0))
            settings = GenerationSettings(
                mode=self.mode,
                weight=self.weight,
                alpha=self.alpha,
                max_new_tokens=int(kwargs.pop("max_gen_toks", self.max_gen_toks)),
                temperature=(temperature or 1.0) if do_sample else 0.0,
                top_p=float(kwargs.pop("top_p", 1.0) or 1.0),
                seed=self.seed,
                stop=until,
                batch_size=self.gen_batch_size,
            )
            decoder = HeadDecoder(self.model, self.tokenizer, settings)
            for i, g in zip(members, decoder.generate([requests[i].args[0] for i in members])):
                results[i] = g.text
                self.cache_hook.add_partial("generate_until", requests[i].args, g.text)
        return results
