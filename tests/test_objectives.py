"""The objectives added through the registry: unlikelihood (its loss on hand-made logits), KTO, DPO loss types,
and `likra study objectives` on the tiny model (shared heads, resume after a kill, bad names)."""

import json
import math

import pytest
import torch
from conftest import TINY_CURVE_ARGS

import likra.objectives.unlikelihood as ul
from likra.cli import main
from likra.objectives.dpo import dpo_loss_types
from likra.objectives.unlikelihood import unlikelihood_loss

TINY = [*TINY_CURVE_ARGS, "--dpo-lr", "0.01", "--kto-lr", "0.01"]
OBJECTIVES = "likra,dpo-ipo,kto,kto-negatives-only,unlikelihood,unlikelihood-negatives-only"


def test_unlikelihood_loss_on_hand_made_logits():
    # Two tokens of vocabulary 2: p(target) = 0.5 for both, then 0.8 / 0.2.
    logits = torch.tensor([[0.0, 0.0], [math.log(4.0), 0.0]])
    targets = torch.tensor([0, 0])
    gold_only = unlikelihood_loss(logits, targets, torch.tensor([1, 1]))
    assert gold_only.item() == pytest.approx(-(math.log(0.5) + math.log(0.8)) / 2)
    negative_only = unlikelihood_loss(logits, targets, torch.tensor([-1, -1]))
    assert negative_only.item() == pytest.approx(-(math.log(0.5) + math.log(0.2)) / 2)
    mixed = unlikelihood_loss(logits, targets, torch.tensor([1, -1]), alpha=0.5)
    assert mixed.item() == pytest.approx(-math.log(0.5) - 0.5 * math.log(0.2))
    # A near-certain negative token is clamped (finite loss) and its gradient pushes its probability down.
    sure = torch.tensor([[30.0, 0.0]], requires_grad=True)
    loss = unlikelihood_loss(sure, torch.tensor([0]), torch.tensor([-1]))
    loss.backward()
    assert math.isfinite(loss.item()) and loss.item() == pytest.approx(-math.log(1e-6), rel=1e-3)
    small = torch.tensor([[0.0, 0.0]], requires_grad=True)
    unlikelihood_loss(small, torch.tensor([0]), torch.tensor([-1])).backward()
    assert small.grad[0, 0] > 0 > small.grad[0, 1]  # descending lowers the negative token's logit


def test_dpo_loss_types_come_from_trl():
    types = dpo_loss_types()
    assert {"sigmoid", "hinge", "ipo", "nca_pair", "apo_zero", "sppo_hard"} <= set(types)


@pytest.mark.parametrize(
    "objectives, message",
    [
        ("likra,dpo-nope", "unknown DPO loss type 'nope'; TRL's DPOTrainer takes: sigmoid"),
        ("likra,orpo", "unknown objective 'orpo'; valid: likra, a registered objective (mle, dpo, kto"),
        ("likra,kto-nope", "loss_type: 'nope' is not one of kto, apo_zero_unpaired"),
        ("likra,mle-nope", "objective 'mle-nope': mle has no loss types to pick from"),
        ("likra,dpo-negatives-only", "objective 'dpo-negatives-only': dpo does not train on negatives"),
    ],
)
def test_bad_objective_names_are_one_line(tmp_path, capsys, objectives, message):
    out = tmp_path / "c"
    assert main(["-q", "study", "objectives", *TINY, "--objectives", objectives, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not out.exists()


def values(study):
    return {(r["mode"], r["examples"], r["metric"]): r["value"] for r in study["curve"]["rows"]}


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    out = tmp_path_factory.mktemp("objectives") / "full"
    assert main(["-q", "study", "objectives", *TINY, "--objectives", OBJECTIVES, "--out", str(out)]) == 0
    return out


def test_objectives_study_outputs(full):
    study = json.loads((full / "study-objectives.json").read_text())
    assert list(study["objectives"]) == OBJECTIVES.split(",")
    modes = {r["mode"] for r in study["curve"]["rows"]}
    for mode in (
        "likra",
        "negbase",
        "dpo_ipo",
        "dpo_ipo-base",
        "kto",
        "kto-base",
        "kto_negatives_only-base",
        "unlikelihood",
        "unlikelihood_negatives_only-base",
    ):
        assert mode in modes
    v = values(study)
    assert {e for (_, e, _) in v} == {0, 8, 16}
    # Every head's checkpoints differ from the base model (each objective trained its adapter).
    for mode in ("dpo_ipo-base", "kto-base", "unlikelihood-base", "kto_negatives_only-base"):
        rows = [r for r in study["curve"]["rows"] if r["mode"] == mode]
        assert rows and all(0 <= r["value"] <= 1 for r in rows)
    gains = {g["objective"]: g for g in study["gains"]}
    assert set(gains) == set(OBJECTIVES.split(",")) and all(g["gain_low"] is not None for g in study["gains"])
    assert set(study["train_seconds"]) == set(OBJECTIVES.split(",")) and all(study["train_seconds"].values())
    assert set(study["curve"]["train"][0]) >= {"positive", "negative", "dpo_ipo", "kto", "unlikelihood"}
    for folder in ("positive", "negative", "dpo-ipo", "kto", "kto-negatives-only", "unlikelihood"):
        assert (full / "seed-0" / f"{folder}.done.json").is_file()
    assert main(["-q", "report", str(full)]) == 0
    assert "## Study: objectives" in (full / "report.md").read_text()


def test_objective_resumes_after_a_kill_with_identical_numbers(full, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    real = ul.unlikelihood_loss
    calls = {"n": 0}

    def dying(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the unlikelihood head's second step
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ul, "unlikelihood_loss", dying)
    assert main(["-q", "study", "objectives", *TINY, "--objectives", "likra,unlikelihood", "--out", str(out)]) == 130
    assert not (out / "seed-0" / "unlikelihood.done.json").exists()
    assert (out / "seed-0" / "positive.done.json").is_file()  # finished heads stay finished
    monkeypatch.setattr(ul, "unlikelihood_loss", real)
    assert main(["-q", "study", "objectives", *TINY, "--objectives", "likra,unlikelihood", "--out", str(out)]) == 0
    resumed = values(json.loads((out / "study-objectives.json").read_text()))
    uninterrupted = values(json.loads((full / "study-objectives.json").read_text()))
    for key, value in resumed.items():
        assert value == pytest.approx(uninterrupted[key], abs=1e-12), key


def test_kto_with_one_row_per_step_is_a_one_line_error(tmp_path, capsys):
    args = [a if a != "8" else "1" for a in TINY]  # --batch-size 1
    assert (
        main(["-q", "study", "objectives", *args, "--objectives", "kto-negatives-only", "--out", str(tmp_path / "c")])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert "KL term" in err and "\n" not in err
