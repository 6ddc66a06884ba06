"""The embedded SmolLM2-135M: loading, tokenisation boundary, one tiny training run, engine parity."""

import numpy as np
import pytest
import torch

from likra.data.benchmarks import load_spec
from likra.data.examples import encode_pair, positive_pairs, tokenize_answers
from likra.model.heads import LoraSettings, attach_heads, use_head
from likra.model.loading import load_base_model, load_tokenizer
from likra.objectives.losses import answer_token_loss
from likra.objectives.mle import PadCollator, train_mle_head
from likra.objectives.settings import TrainSettings
from likra.scoring.engine import ScoringEngine, tokenize_questions
from likra.scoring.reference import reference_loglikelihoods

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smol():
    return load_base_model("smollm2-135m", "fp32"), load_tokenizer("smollm2-135m")


@pytest.fixture(scope="module")
def arc():
    return load_spec("arc_challenge:validation")[:6]


def test_embedded_model_is_plain_and_trainable(smol):
    model, tokenizer = smol
    assert type(model).__name__ == "LlamaForCausalLM"
    assert getattr(model, "hf_quantizer", None) is None
    assert model.config.num_hidden_layers == 30 and model.config.vocab_size == 49152
    assert sum(p.numel() for p in model.parameters()) > 130e6
    assert tokenizer.pad_token is not None


def test_the_rebuild_parses_the_gguf_once(monkeypatch, smol):
    """transformers reads the GGUF anew for config, tokenizer and weights; inside `gguf_parsed_once` one reader
    serves every read, with the same content, and afterwards nothing is left patched."""
    import gguf
    from transformers import AutoConfig

    from likra.model.loading import gguf_parsed_once, smollm2_gguf_path

    path = smollm2_gguf_path()
    made = []

    class Counted(gguf.GGUFReader):
        def __init__(self, *args, **kwargs):
            made.append(args[0])
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", Counted)
    with gguf_parsed_once():
        first, second = (AutoConfig.from_pretrained(path.parent, gguf_file=path.name) for _ in range(2))
    assert len(made) == 1 and gguf.GGUFReader is Counted
    model, _ = smol
    for config in (first, second):
        assert (config.num_hidden_layers, config.vocab_size) == (30, model.config.vocab_size)


def test_boundary_on_embedded_tokenizer(smol, arc):
    _, tokenizer = smol
    for rec in arc:
        for i, choice in enumerate(rec.choices):
            ctx, ans = encode_pair(tokenizer, rec.prompt, rec.continuation(i))
            assert ctx == tokenizer(rec.prompt, add_special_tokens=False).input_ids
            assert tokenizer.decode(ans) == " " + choice
            assert ctx + ans == tokenizer(rec.prompt + " " + choice, add_special_tokens=False).input_ids
    # A trailing space in the prompt moves into the answer: same tokens as the spaced continuation.
    assert encode_pair(tokenizer, "Answer: ", "yes") == encode_pair(tokenizer, "Answer:", " yes")


def test_engine_matches_reference_on_embedded(smol, arc):
    model, tokenizer = smol
    heads = attach_heads(model, LoraSettings(), names=("positive",))
    for prefix in ("", "Question: What is 2+2?\nAnswer: 4\n\n"):
        prefix_ids, questions = tokenize_questions(tokenizer, arc, prefix)
        got = ScoringEngine(heads, max_batch_tokens=256).loglikelihoods(questions, ("base",), prefix_ids)["base"]
        ref = reference_loglikelihoods(heads, questions, "base", prefix_ids)
        assert max(float(np.abs(a - b).max()) for a, b in zip(got, ref)) < 1e-4
    heads.unload()


def test_tiny_training_run_lowers_answer_loss(smol, arc, tmp_path):
    model, tokenizer = smol
    heads = attach_heads(model, LoraSettings(), names=("positive",))
    examples = tokenize_answers(tokenizer, positive_pairs(arc))
    batch = PadCollator(tokenizer.pad_token_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
    with torch.no_grad(), use_head(heads, "positive"):
        before = answer_token_loss(heads, batch).item()
    train_mle_head(
        heads,
        "positive",
        examples,
        TrainSettings(learning_rate=3e-3, batch_size=3, epochs=3),
        tmp_path,
        tokenizer.pad_token_id,
        progress=False,
    )
    with torch.no_grad(), use_head(heads, "positive"):
        after = answer_token_loss(heads, batch).item()
    assert after < before - 0.2, (before, after)
    heads.unload()
