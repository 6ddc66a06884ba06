"""Models larger than one device: accelerate's device maps (here: layers offloaded to disk, the only
other place a CPU machine has) and a 4-bit bitsandbytes base (QLoRA) for training and scoring."""

import importlib.util
import json

import numpy as np
import pytest
import torch
from conftest import make_records, one_line_error
from numerics import assert_kernel_close

from likra.cli import main
from likra.data.examples import positive_pairs, tokenize_answers
from likra.errors import LikraError
from likra.model.heads import LoraSettings, attach_heads, load_heads, offloaded, save_heads, use_head
from likra.model.loading import TINY_MODEL, is_quantized, load_base_model, load_tokenizer
from likra.objectives.mle import train_mle_head
from likra.objectives.settings import TrainSettings
from likra.runs import load_run_model
from likra.scoring.engine import ScoringEngine, tokenize_questions
from likra.scoring.reference import reference_loglikelihoods
from likra.training.pipeline import TrainConfig, train_run


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The saved random-tiny folder and offloaded weights go to a cache of the test's own."""
    monkeypatch.setenv("LIKRA_CACHE", str(tmp_path / "cache"))


def with_random_heads(base, seed: int = 1):
    model = attach_heads(base, LoraSettings())
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


# The tiny model's second layer on disk, loaded by accelerate on each call; the rest in CPU memory.
SPLIT = {
    "model.embed_tokens": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.norm": "cpu",
    "model.rotary_emb": "cpu",
    "lm_head": "cpu",
}


def test_device_map_offloading_layers_scores_like_the_plain_model(tmp_path):
    tokenizer = load_tokenizer(TINY_MODEL)
    _, questions = tokenize_questions(tokenizer, make_records())
    plain = with_random_heads(load_base_model(TINY_MODEL, "fp32"))
    save_heads(plain, tmp_path / "heads")
    spread = load_base_model(TINY_MODEL, "fp32", device_map=SPLIT)
    assert offloaded(spread)
    spread = load_heads(spread, tmp_path / "heads")
    # peft would leave the offloaded layer's adapters on the meta device, without their weights.
    assert not any(p.is_meta for n, p in spread.named_parameters() if "lora_" in n)
    engine = ScoringEngine(spread)
    assert not engine.fold_heads  # offloaded weights cannot take the LoRA fold
    heads = ("base", "positive", "negative")
    got = engine.loglikelihoods(questions, heads)
    want = ScoringEngine(plain).loglikelihoods(questions, heads)
    for head in heads:
        assert_kernel_close(got[head], want[head], what=head)
    reference = reference_loglikelihoods(plain, questions, "positive", pad_id=tokenizer.pad_token_id)
    assert_kernel_close(got["positive"], reference)


def test_new_heads_on_an_offloaded_base_get_real_weights():
    model = attach_heads(load_base_model(TINY_MODEL, "fp32", device_map=SPLIT), LoraSettings())
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n and ".layers.1." in n}
    assert lora and not any(p.is_meta for p in lora.values())
    assert any(p.abs().sum() > 0 for n, p in lora.items() if "lora_A" in n)  # initialised, not left empty


def test_likra_eval_takes_a_device_map(tmp_path, capsys):
    outs = []
    for extra in ([], ["--device-map", "auto"]):
        out = tmp_path / f"eval{len(extra)}.json"
        args = ["eval", "--model", TINY_MODEL, "--data", "arc_challenge:validation", "--limit", "6"]
        assert main([*args, "--bootstrap", "50", "--out", str(out), *extra]) == 0
        outs.append(json.loads(out.read_text()))
    assert outs[0]["metrics"] == outs[1]["metrics"]
    assert_kernel_close(outs[0]["loglikelihoods"]["base"], outs[1]["loglikelihoods"]["base"])
    assert main(["eval", "--model", TINY_MODEL, "--device-map", "everywhere"]) == 2
    assert "everywhere" in capsys.readouterr().err


needs_bnb = pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes not installed")


@needs_bnb
def test_4bit_base_scores_like_the_straightforward_scorer():
    tokenizer = load_tokenizer(TINY_MODEL)
    _, questions = tokenize_questions(tokenizer, make_records())
    base = load_base_model(TINY_MODEL, "fp32", quantize="4bit")
    assert is_quantized(base)
    import bitsandbytes as bnb

    assert any(isinstance(m, bnb.nn.Linear4bit) for m in base.modules())
    model = with_random_heads(base)
    engine = ScoringEngine(model)
    assert not engine.fold_heads
    for head in ("base", "positive"):
        got = engine.loglikelihoods(questions, (head,))[head]
        want = reference_loglikelihoods(model, questions, head, pad_id=tokenizer.pad_token_id)
        assert_kernel_close(got, want, what=head)  # one 4-bit kernel, other shapes (batched vs one question)
    # 4 bits moved the scores, but not far: the same model, rounded.
    full = ScoringEngine(load_base_model(TINY_MODEL, "fp32")).loglikelihoods(questions, ("base",))["base"]
    quantized = engine.loglikelihoods(questions, ("base",))["base"]
    assert 0 < np.abs(np.concatenate(full) - np.concatenate(quantized)).max() < 0.5 * np.abs(np.concatenate(full)).max()


@needs_bnb
def test_qlora_head_learns_on_a_4bit_base(tmp_path):
    tokenizer = load_tokenizer(TINY_MODEL)
    from likra.model.loading import prepare_for_training

    base = prepare_for_training(load_base_model(TINY_MODEL, "fp32", quantize="4bit"))
    model = attach_heads(base, LoraSettings())
    examples = tokenize_answers(tokenizer, positive_pairs(make_records(48)))
    frozen = base_weight_values(model)

    def loss():
        from likra.objectives.losses import answer_token_loss
        from likra.objectives.mle import PadCollator

        batch = PadCollator(tokenizer.pad_token_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
        with use_head(model, "positive"), torch.no_grad():
            return answer_token_loss(model, batch).item()

    before = loss()
    settings = TrainSettings(learning_rate=1e-2, batch_size=8, epochs=2)
    train_mle_head(model, "positive", examples, settings, tmp_path / "w", tokenizer.pad_token_id, progress=False)
    assert loss() < before - 0.1
    # Only the adapter moved; the 4-bit base is untouched (compared as values: see base_weight_values).
    assert_same_weights(base_weight_values(model), frozen)


def base_weight_values(model) -> dict:
    """Every non-LoRA weight as (values, kernel kind): a 4-bit weight dequantized ("nf4"), whatever layout
    bitsandbytes stores it in (its CPU backend repacks each weight on the first no-grad forward where the CPU has
    AVX512-BF16 or AMX: uint8 (2048, 1) becomes (64, 32) and the scales bf16, so the stored tensors change although
    nothing was trained), every other weight as it is (None: stored, not computed)."""
    import copy

    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu_inverse, dequantize_4bit

    out = {}
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear4bit):
            data, state = module.weight.data, module.weight.quant_state
            if getattr(state, "packing_format_for_cpu", False):
                data, state = _convert_weight_packed_for_cpu_inverse(data.clone(), copy.deepcopy(state))
            out[f"{name}.weight"] = (dequantize_4bit(data, state).float(), "nf4")
    for name, p in model.named_parameters():
        if "lora_" not in name and name not in out:
            out[name] = (p.detach().float().clone(), None)
    return out


def assert_same_weights(got: dict, want: dict) -> None:
    """Stored weights bit for bit (nothing computes them); dequantized 4-bit ones as close as the 4-bit kernels
    allow (the CPU repack rounds their scales to bf16: `numerics`), whatever the module is called."""
    assert got.keys() == want.keys()
    for name, (value, kind) in got.items():
        expected, expected_kind = want[name]
        assert kind == expected_kind, name
        if value.shape != expected.shape:
            raise AssertionError(f"{name}: shape {tuple(value.shape)} != {tuple(expected.shape)}")
        if kind is None:
            assert torch.equal(value, expected), name
        else:
            assert_kernel_close(value, expected, kind, what=name)


@needs_bnb
def test_base_weight_values_do_not_depend_on_the_cpu_repack():
    """The comparison above holds with and without bitsandbytes' CPU repack, on every CPU: the repack (a pure
    layout change, runnable anywhere) is applied by hand to half the layers of a 4-bit base."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    base = load_base_model(TINY_MODEL, "fp32", quantize="4bit")
    before = base_weight_values(base)
    layers = [m for m in base.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for module in layers[::2]:
        shape = module.weight.data.shape
        module.weight.data, module.weight.quant_state = _convert_weight_packed_for_cpu(
            module.weight.data, module.weight.quant_state
        )
        assert module.weight.data.shape != shape  # the storage did change
    assert_same_weights(base_weight_values(base), before)
    # ... and the comparison still sees a real change of a weight.
    layers[0].weight.quant_state.absmax.mul_(1.5)
    with pytest.raises(AssertionError):
        assert_same_weights(base_weight_values(base), before)


@needs_bnb
def test_a_qlora_run_records_and_reloads_its_4bit_base(tmp_path):
    cfg = TrainConfig(
        model=TINY_MODEL, data="arc_challenge:train", limit=16, quantize="4bit", out=str(tmp_path / "run")
    )
    cfg.train.batch_size = 8
    run = train_run(cfg, progress=False)
    manifest = json.loads((run / "likra.json").read_text())
    assert manifest["model"]["quantize"] == "4bit"
    model, _, _ = load_run_model(run)
    assert is_quantized(model)
    out = tmp_path / "eval.json"
    args = ["eval", "--run", str(run), "--data", "arc_challenge:validation", "--limit", "6", "--bootstrap", "50"]
    assert main([*args, "--out", str(out)]) == 0
    quantized = json.loads(out.read_text())
    assert {"base", "sft", "likra"} <= set(quantized["metrics"])
    assert quantized["config"]["quantize"] == "4bit"  # as the run was trained, recorded as applied
    # --quantize none scores the same heads on the full-precision base, and says so
    full = tmp_path / "full.json"
    assert main([*args, "--quantize", "none", "--out", str(full)]) == 0
    full_precision = json.loads(full.read_text())
    assert full_precision["config"]["quantize"] == "none" and "4bit" not in str(full_precision["precision"])
    assert full_precision["loglikelihoods"]["base"] != quantized["loglikelihoods"]["base"]
    plain = load_run_model(run, quantize="none")[0]
    assert not is_quantized(plain)


def test_4bit_without_bitsandbytes_is_one_line(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a)
    )
    with pytest.raises(LikraError, match="needs bitsandbytes"):
        load_base_model(TINY_MODEL, "fp32", quantize="4bit")
    one_line_error(capsys, main(["eval", "--model", TINY_MODEL, "--quantize", "4bit", "--limit", "2"]))


def test_a_device_map_is_one_process_and_no_generation(monkeypatch):
    from likra.generation import GenerationSettings, HeadDecoder

    spread = load_base_model(TINY_MODEL, "fp32", device_map=SPLIT)
    with pytest.raises(LikraError, match="not supported"):
        HeadDecoder(spread, load_tokenizer(TINY_MODEL), GenerationSettings(mode="base"))
    monkeypatch.setattr("likra.distributed.rank_and_world", lambda: (0, 2))
    with pytest.raises(LikraError, match="one process"):
        load_base_model(TINY_MODEL, "fp32", device_map="auto")
