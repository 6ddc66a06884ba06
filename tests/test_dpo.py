import json
import re
import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import make_records
from numerics import assert_kernel_close

from likra.cli import main
from likra.data.examples import negative_pairs
from likra.errors import LikraError
from likra.model.heads import BASE, HeadSpec, LoraSettings, load_adapter_weights
from likra.model.loading import build_tiny_model
from likra.objectives.dpo import (
    ALL_PROJECTIONS,
    DPO_HEAD,
    DPOSettings,
    attach_dpo_head,
    check_loss_type,
    dpo_pairs,
    tokenize_dpo_pairs,
    train_dpo,
)
from likra.objectives.registry import complete_checkpoints
from likra.objectives.settings import TrainSettings
from likra.scoring.engine import ScoringEngine, tokenize_questions


def fast_settings(**kw) -> tuple[DPOSettings, TrainSettings]:
    """DPO settings and the run's training settings (batch size, epochs, seed) of a quick test."""
    train = {k: kw.pop(k) for k in ("batch_size", "epochs", "seed") if k in kw}
    return DPOSettings(**{"learning_rate": 1e-2, "logging_steps": 1, **kw}), TrainSettings(**{"batch_size": 4, **train})


def negative_index(records, seed):
    """{question id: index of the incorrect choice Likra's near-miss sampler picks with `seed`}."""
    return {rec.id: rec.choices.index(text) for rec, text in negative_pairs(records, seed)}


def chosen_minus_rejected(ll, records, seed=0):
    """Per question: log p(gold) - log p(the negative Likra picks with `seed`)."""
    negatives = negative_index(records, seed)
    return np.array([q[rec.gold] - q[negatives[rec.id]] for rec, q in zip(records, ll)])


def test_defaults_are_the_papers_baseline():
    s = DPOSettings()
    assert (s.beta, s.loss_type, s.learning_rate, s.lr_scheduler_type) == (0.1, "sigmoid", 5e-5, "cosine")
    assert (s.lora.r, s.lora.dropout) == (16, 0.0)
    assert sorted(s.lora.target_modules) == sorted(ALL_PROJECTIONS)
    # Any TRL loss type is taken (the authors' code offered sigmoid, hinge, ipo); an unknown one is refused.
    assert check_loss_type(DPOSettings(loss_type="ipo").loss_type) == "ipo"
    with pytest.raises(LikraError, match="unknown DPO loss type 'nope'"):
        check_loss_type("nope")


def test_a_partial_dpo_section_keeps_the_dpo_defaults_and_records_them(tmp_path, capsys):
    """--dpo-lora-r 4 changes the rank of the DPO adapter only: its alpha and modules stay DPO's (not the MLE heads'
    LoRA), as the help says; the manifest records each head's LoRA as its adapter has it."""
    pytest.importorskip("trl")
    from likra.config import validate
    from likra.objectives.dpo import DPOSettings, dpo_lora
    from likra.objectives.registry import head_settings

    assert validate(DPOSettings, {"lora": {"r": 4}}, None).lora == replace(dpo_lora(), r=4)
    head = HeadSpec("d", objective="dpo", data="pairs:near_miss", params=(("lora", {"r": 4}),))
    section = {"dpo": {"lora": {"alpha": 32, "target_modules": ["q_proj", "v_proj"]}}}
    wanted = replace(dpo_lora(), r=4, alpha=32, target_modules=["q_proj", "v_proj"])
    assert head_settings(TrainSettings(), section, head).lora == wanted
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert re.search(r"--dpo-lora-r R\s+LoRA rank \(default: 16\)", capsys.readouterr().out)
    run = tmp_path / "run"
    args = ["-q", "train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", "8", "--batch-size", "8"]
    heads = ["--heads", "positive=mle:gold,d=dpo:pairs:near_miss", "--dpo-lora-r", "4"]
    assert main([*args, *heads, "--out", str(run)]) == 0
    manifest = json.loads((run / "likra.json").read_text())
    for head in ("positive", "d"):
        adapter = json.loads((run / "adapters" / head / "adapter_config.json").read_text())
        lora = manifest["head_settings"][head]["lora"]
        assert (lora["r"], lora["alpha"], set(lora["target_modules"])) == (
            adapter["r"], adapter["lora_alpha"], set(adapter["target_modules"])
        )  # fmt: skip
    assert manifest["head_settings"]["d"]["lora"]["r"] == 4 and manifest["head_settings"]["d"]["lora"]["alpha"] == 16


def test_dpo_negatives_all_is_refused_where_the_heads_data_names_them():
    pytest.importorskip("trl")
    from likra.training.plan import plan_heads

    head = HeadSpec("d", objective="dpo", data="pairs:near_miss")
    for sections, params in (({"dpo": {"negatives": "all"}}, ()), ({}, (("negatives", "all"),))):
        with pytest.raises(LikraError, match="head 'd': negatives=all: .* pairs:near_miss\\?per_question=all"):
            plan_heads([replace(head, params=params)], TrainSettings(), sections)
    assert plan_heads([head], TrainSettings(), {}).settings(head, TrainSettings()).negatives == "one"


def test_pairs_use_likras_negatives():
    records = make_records(30)
    for seed in (0, 3):
        pairs = dpo_pairs(records, seed)
        likra_negatives = negative_pairs(records, seed)
        assert len(pairs) == len(records) == len(likra_negatives)
        for pair, rec, (neg_rec, wrong) in zip(pairs, records, likra_negatives):
            assert pair["id"] == rec.id == neg_rec.id and pair["prompt"] == rec.prompt
            assert pair["chosen"] == " " + rec.choices[rec.gold]
            assert pair["rejected"] == " " + wrong
            assert wrong != rec.choices[rec.gold]
    # "all" negatives: one pair per incorrect choice, the gold always chosen.
    every = dpo_pairs(records, 0, "all")
    assert len(every) == sum(len(r.choices) - 1 for r in records)
    assert all(p["rejected"] != p["chosen"] for p in every)
    assert [p["id"] for p in every] == [r.id for r in records for _ in range(len(r.choices) - 1)]
    # Negatives built elsewhere (another kind of negative) are used as given.
    given = [(records[0], "elsewhere"), (records[2], "other")]
    assert [(p["id"], p["rejected"]) for p in dpo_pairs(records, 0, negatives=given)] == [
        ("q0", " elsewhere"),
        ("q2", " other"),
    ]


def test_tokens_match_the_scoring_boundary(tiny_tokenizer):
    records = make_records(12)
    rows = tokenize_dpo_pairs(tiny_tokenizer, dpo_pairs(records, 0))
    _, questions = tokenize_questions(tiny_tokenizer, records)
    negatives = negative_index(records, 0)
    eos = tiny_tokenizer.eos_token_id
    for row, rec, q in zip(rows, records, questions):
        assert tuple(row["prompt_ids"]) == q.context_ids
        assert tuple(row["chosen_ids"]) == q.choice_ids[rec.gold]
        assert tuple(row["rejected_ids"]) == q.choice_ids[negatives[rec.id]]
        assert eos not in row["chosen_ids"] + row["rejected_ids"]
    with_eos = tokenize_dpo_pairs(tiny_tokenizer, dpo_pairs(records, 0), append_eos=True)
    assert all(r["chosen_ids"][-1] == eos and r["rejected_ids"][-1] == eos for r in with_eos)
    # Too long: prompt tokens go from the left, answers stay whole.
    cut = tokenize_dpo_pairs(tiny_tokenizer, dpo_pairs(records, 0), max_length=32)
    for full, short in zip(rows, cut):
        assert short["chosen_ids"] == full["chosen_ids"] and short["rejected_ids"] == full["rejected_ids"]
        assert short["prompt_ids"] == full["prompt_ids"][-len(short["prompt_ids"]) :]
        assert len(short["prompt_ids"]) + max(len(short["chosen_ids"]), len(short["rejected_ids"])) <= 32


def test_dpo_widens_the_margin_and_checkpoints_reload_and_resume(tiny_tokenizer, tmp_path):
    records = make_records(16)
    _, questions = tokenize_questions(tiny_tokenizer, records)
    settings, train = fast_settings(learning_rate=2e-2, batch_size=16, epochs=2)  # 2 full-batch steps
    model, stats = train_dpo(
        build_tiny_model(len(tiny_tokenizer), seed=0),
        tiny_tokenizer,
        records,
        settings,
        tmp_path,
        train,
        checkpoint_steps=[1, 2],
    )
    assert stats.steps == 2 and stats.examples == 16 and len(stats.losses) == 2
    assert abs(stats.losses[0] - np.log(2)) < 1e-4  # the policy starts as the reference (B = 0)
    assert list(model.peft_config) == [DPO_HEAD]
    assert set(model.peft_config[DPO_HEAD].target_modules) == set(ALL_PROJECTIONS)

    ll = ScoringEngine(model).loglikelihoods(questions, (BASE, DPO_HEAD))
    # TRL's step-1 batch is every pair, scored by the untrained policy (= base): its log-probs are likra's.
    negatives = negative_index(records, train.seed)
    first = stats.log[0]
    assert_kernel_close(first["logps/chosen"], np.mean([q[r.gold] for r, q in zip(records, ll[BASE])]))
    assert_kernel_close(first["logps/rejected"], np.mean([q[negatives[r.id]] for r, q in zip(records, ll[BASE])]))
    before = chosen_minus_rejected(ll[BASE], records)
    after = chosen_minus_rejected(ll[DPO_HEAD], records)
    assert after.mean() > before.mean() + 0.5
    print("margin growth", (after - before).mean(), (after > before).mean())
    assert (after > before).mean() > 0.5

    found = complete_checkpoints(tmp_path, DPO_HEAD)
    assert set(found) == {1, 2}
    fresh = attach_dpo_head(build_tiny_model(len(tiny_tokenizer), seed=0))
    engine = ScoringEngine(fresh)
    untrained = engine.loglikelihoods(questions, (DPO_HEAD,))[DPO_HEAD]
    assert all(np.array_equal(u, b) for u, b in zip(untrained, ll[BASE]))
    scores = {}
    for step, path in found.items():
        load_adapter_weights(fresh, DPO_HEAD, path)
        scores[step] = engine.loglikelihoods(questions, (DPO_HEAD, BASE))
        assert all(np.array_equal(a, b) for a, b in zip(scores[step][BASE], ll[BASE]))
    assert not all(np.array_equal(a, b) for a, b in zip(scores[1][DPO_HEAD], scores[2][DPO_HEAD]))
    # The last checkpoint is the in-memory adapter, bit for bit.
    assert all(np.array_equal(a, b) for a, b in zip(scores[2][DPO_HEAD], ll[DPO_HEAD]))
    with pytest.raises(LikraError):
        load_adapter_weights(fresh, DPO_HEAD, tmp_path)  # no adapter at the top of the work dir
    mlp_only = attach_dpo_head(
        build_tiny_model(len(tiny_tokenizer), seed=0),
        LoraSettings(r=16, alpha=16, target_modules=["gate_proj", "up_proj", "down_proj"]),
    )
    with pytest.raises(LikraError, match="unexpected"):
        load_adapter_weights(mlp_only, DPO_HEAD, found[2])

    # Resuming from checkpoint-1 finishes as the uninterrupted run did.
    shutil.rmtree(found[2])
    kept = (found[1] / DPO_HEAD / "adapter_model.safetensors").stat().st_mtime_ns
    resumed, resumed_stats = train_dpo(
        build_tiny_model(len(tiny_tokenizer), seed=0),
        tiny_tokenizer,
        records,
        settings,
        tmp_path,
        train,
        checkpoint_steps=[1, 2],
        resume=True,
    )
    assert resumed_stats.steps == 2
    assert resumed_stats.losses == pytest.approx(stats.losses, abs=1e-6)  # step 1's loss comes from the state
    assert (found[1] / DPO_HEAD / "adapter_model.safetensors").stat().st_mtime_ns == kept  # not retrained
    assert set(complete_checkpoints(tmp_path, DPO_HEAD)) == {1, 2}
    final = ScoringEngine(resumed).loglikelihoods(questions, (DPO_HEAD,))[DPO_HEAD]
    assert_kernel_close(final, ll[DPO_HEAD], passes=3)  # two steps each, the second resumed from a checkpoint
