"""The GPU path on the CPU: random-weight models of real shapes, out-of-memory handling, packing decided per head,
the sync-free answer loss, and the prepared GPU check itself at toy sizes (so that it cannot rot)."""

import json
import logging
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_records, one_line_error
from numerics import assert_kernel_close

from likra.cli import main
from likra.errors import LikraError
from likra.model.loading import load_base_model, load_tokenizer
from likra.model.shapes import SHAPES, get_shape

ROOT = Path(__file__).parents[1]


def test_random_shapes_are_the_real_architectures_and_reproducible():
    assert round(SHAPES["llama-3.2-1b"].parameters() / 1e9, 2) == 1.24
    assert round(SHAPES["mistral-7b"].parameters() / 1e9, 2) == 7.24
    assert round(SHAPES["llama-3.1-8b"].parameters() / 1e9, 2) == 8.03
    assert round(SHAPES["llama-3.1-70b"].parameters() / 1e9, 1) == 70.6
    a, b = load_base_model("random:tiny", "fp32"), load_base_model("random:tiny", "fp32")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert sum(p.numel() for p in a.parameters()) == SHAPES["tiny"].parameters()
    mistral = load_base_model("random:tiny-mistral", "fp32")
    assert type(mistral).__name__ == "MistralForCausalLM"
    assert sum(p.numel() for p in mistral.parameters()) == SHAPES["tiny-mistral"].parameters()
    tokenizer = load_tokenizer("random:tiny")
    assert len(tokenizer) <= SHAPES["tiny"].vocab_size and tokenizer.eos_token_id == len(tokenizer) - 1
    assert tokenizer.decode(tokenizer("Which gas do plants absorb?").input_ids) == "Which gas do plants absorb?"


def test_unknown_or_too_large_shapes_are_one_line(monkeypatch, capsys):
    with pytest.raises(LikraError, match="unknown random shape 'llama-99b'; shapes: random:smollm2-135m"):
        get_shape("random:llama-99b")
    monkeypatch.setattr("likra.model.shapes.available_bytes", lambda device: 8 * 2**30)
    err = one_line_error(capsys, main(["-q", "eval", "--model", "random:llama-3.1-8b", "--modes", "base"]))
    assert "random:llama-3.1-8b: its weights need 29.9 GiB (fp32) and cpu has 8.0 GiB free" in err
    assert "8.0 GiB free" in err and "--quantize 4bit" in err and "--device-map auto" in err


def test_a_random_weight_run_says_so_wherever_a_metric_is_shown(tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["eval", "--model", "random:tiny", "--modes", "base", "--limit", "4", "--out", str(out)]) == 0
    assert "random weights" in capsys.readouterr().out
    assert json.loads(out.read_text())["random_weights"] is True
    curve = tmp_path / "curve"
    args = ["--model", "random:tiny", "--limit", "16", "--batch-size", "8", "--eval-limit", "4", "--out", str(curve)]
    assert main(["-q", "curve", *args]) == 0
    result = json.loads((curve / "curve.json").read_text())
    assert result["random_weights"] is True and "Random weights" in (curve / "report.md").read_text()
    timing = result["timing"]
    assert timing["scoring_passes"] == 5 and set(timing["train_seconds"]) == {"seed-0/positive", "seed-0/negative"}
    assert 0 < timing["load_seconds"] < timing["total_seconds"]


def test_out_of_memory_in_scoring_halves_the_budget_and_goes_on(tiny_heads, tiny_tokenizer, caplog):
    from likra.scoring.engine import ScoringEngine, tokenize_questions

    _, questions = tokenize_questions(tiny_tokenizer, make_records(12))
    want = ScoringEngine(tiny_heads, max_batch_tokens=4096).loglikelihoods(questions, ("base", "positive"))
    engine = ScoringEngine(tiny_heads, max_batch_tokens=4096)
    real, calls = engine._score_all, []

    def once_out_of_memory(*args):
        calls.append(engine.max_batch_tokens)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(*args)

    engine._score_all = once_out_of_memory
    with caplog.at_level(logging.WARNING):
        got = engine.loglikelihoods(questions, ("base", "positive"))
    assert calls[:2] == [4096, 2048] and engine.max_batch_tokens == 2048
    assert "token budget halved to 2048" in caplog.text
    for head in want:
        assert_kernel_close(got[head], want[head], what=head)
    engine.max_batch_tokens = 256
    engine._score_all = lambda *args: (_ for _ in ()).throw(torch.OutOfMemoryError("simulated"))
    with pytest.raises(LikraError, match="out of memory scoring head 'base' even with 256-token batches"):
        engine.loglikelihoods(questions, ("base",))


def test_out_of_memory_in_training_is_one_line_and_keeps_checkpoints(tmp_path, monkeypatch, capsys):
    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr("transformers.Trainer.train", out_of_memory)
    args = ["-q", "train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", "8", "--batch-size", "4"]
    err = one_line_error(capsys, main([*args, "--out", str(tmp_path / "run")]))
    assert "out of memory training head 'positive' (4 rows per optimizer step)" in err
    assert "--batch-size" in err and "--gradient-checkpointing" in err


def test_packing_is_decided_from_the_batch_shapes(tiny_tokenizer, caplog):
    from types import SimpleNamespace

    from likra.data.examples import Example
    from likra.objectives.mle import choose_packing, padding_waste

    assert padding_waste([10, 10, 5, 5], [[0, 1], [2, 3]]) == 0.0
    assert padding_waste([10, 2, 10, 2], [[0, 1], [2, 3]]) == pytest.approx(40 / 24 - 1)
    examples = [Example(f"e{i}", (1,) * (3 + (37 * i) % 90), (2, 3)) for i in range(2048)]  # 5 to 94 tokens
    grouped = SimpleNamespace(data_seed=0, train_sampling_strategy="group_by_length")
    shuffled = SimpleNamespace(data_seed=0, train_sampling_strategy="random")
    pack_grouped, waste_grouped = choose_packing(examples, 16, grouped)
    pack_shuffled, waste_shuffled = choose_packing(examples, 16, shuffled)
    assert waste_grouped < 0.1 < 0.25 < waste_shuffled  # length grouping pads little, random batches a lot
    assert (pack_grouped, pack_shuffled) == (False, True)


def test_the_sync_free_answer_loss_equals_the_boolean_one(tiny_heads, tiny_tokenizer):
    from likra.data.examples import positive_pairs, tokenize_answers
    from likra.model.heads import use_head
    from likra.objectives.losses import answer_logits, answer_token_loss
    from likra.objectives.mle import PackCollator, PadCollator

    examples = tokenize_answers(tiny_tokenizer, positive_pairs(make_records(12)))
    rows = [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]
    for collator in (PadCollator(tiny_tokenizer.pad_token_id), PackCollator(tiny_tokenizer.pad_token_id)):
        batch = collator(rows)
        with use_head(tiny_heads, "positive"), torch.no_grad():
            a, b = answer_logits(tiny_heads, batch, sync_free=False), answer_logits(tiny_heads, batch, sync_free=True)
            assert all(torch.equal(x, y) for x, y in zip(a[1:], b[1:]))  # the same targets, rows, order
            assert_kernel_close(a[0], b[0])  # the projection of another shape may sum in another order
            loss = answer_token_loss(tiny_heads, batch, sync_free=True)
            assert_kernel_close(loss, answer_token_loss(tiny_heads, batch, sync_free=False))


def test_the_gpu_check_runs_at_toy_sizes(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    results = gpu_check.main(["--toy", "--out", str(tmp_path / "out"), "--work", str(tmp_path / "work")])
    written = {p.stem for p in (tmp_path / "out").glob("*.json")}
    assert written == {"environment", *gpu_check.SECTIONS}
    for name in gpu_check.SECTIONS:
        assert "error" not in results[name], (name, results[name].get("traceback"))
    assert results["correctness"]["fp32"]["passes"] and results["correctness"]["trainer"]["passes"]
    assert {r["shape"] for r in results["training"]["rows"]} == {"tiny", "tiny-mistral"}
    assert results["curve"]["rows"][0]["exit"] == 0 and results["curve"]["rows"][0]["timing"]["scoring_passes"] == 5
    assert "aten::" in results["profile"]["training"]
