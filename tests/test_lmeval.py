import json

import pytest

pytest.importorskip("lm_eval")

from likra.cli import main  # noqa: E402
from likra.errors import LikraError  # noqa: E402
from likra.lmeval.model import LikraLM  # noqa: E402
from likra.lmeval.tasks import export_task  # noqa: E402
from likra.scoring.engine import common_prefix_length  # noqa: E402

N = 12


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("lmeval") / "run"
    assert (
        main(
            [
                "-q",
                "train",
                "--model",
                "random-tiny",
                "--data",
                "arc_easy:train",
                "--limit",
                "32",
                "--batch-size",
                "8",
                "--lr",
                "0.01",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    return run


@pytest.fixture(scope="module")
def task_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tasks")
    export_task("arc_challenge", folder=folder)
    return folder


def harness(run, folder, mode, shots):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    lm = LikraLM(run=str(run), mode=mode)
    out = simple_evaluate(
        model=lm,
        tasks=["likra_arc_challenge"],
        num_fewshot=shots,
        limit=N,
        task_manager=TaskManager(include_path=str(folder)),
    )
    res = out["results"]["likra_arc_challenge"]
    return res["acc,none"], res["acc_norm,none"]


@pytest.mark.parametrize("shots", [0, 2])
def test_parity_with_likra_eval(tiny_run, task_folder, tmp_path, shots):
    out = tmp_path / "ours.json"
    assert (
        main(
            [
                "-q",
                "eval",
                "--run",
                str(tiny_run),
                "--data",
                "arc_challenge:test",
                "--limit",
                str(N),
                "--shots",
                str(shots),
                "--modes",
                "base,sft,likra,negbase,pos_base",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    ours = json.loads(out.read_text())["metrics"]
    for mode in ("base", "sft", "likra", "negbase", "pos_base"):
        acc, acc_norm = harness(tiny_run, task_folder, mode, shots)
        # lm-eval breaks ties by the first maximum, likra shares them (1/k); a random tiny model has no exact ties.
        assert acc == pytest.approx(ours[mode]["acc"]["value"]), mode
        assert acc_norm == pytest.approx(ours[mode]["acc_norm"]["value"]), mode


def test_scores_are_the_unnormalised_ratio(tiny_run):
    lm = LikraLM(run=str(tiny_run), mode="likra", weight=0.5)
    pairs = [("Question: Is ice cold?\nAnswer:", " yes"), ("Question: Is ice cold?\nAnswer:", " no")]
    scores = [s for s, _ in lm.score_pairs(pairs)]
    parts = {}
    for mode in ("sft", "negbase", "base"):
        parts[mode] = [s for s, _ in LikraLM(run=str(tiny_run), mode=mode).score_pairs(pairs)]
    neg = [b - nb for b, nb in zip(parts["base"], parts["negbase"])]  # log p_neg
    for i in range(2):
        assert scores[i] == pytest.approx(parts["sft"][i] - 0.5 * neg[i], abs=1e-9)
    assert sum(scores) != pytest.approx(0.0)


def test_rolling_refuses_a_ratio_clearly(tiny_run):
    lm = LikraLM(run=str(tiny_run))
    with pytest.raises(LikraError, match="loglikelihood_rolling"):
        lm.loglikelihood_rolling([])
    assert lm.generate_until([]) == []  # generation works (tests/test_generation.py)


def test_common_prefix_length():
    assert common_prefix_length([(1, 2, 3, 4), (1, 2, 3, 5), (1, 2, 9)]) == 2
    assert common_prefix_length([(1, 2, 3), (1, 2, 3)]) == 2  # each keeps at least one token
    assert common_prefix_length([]) == 0


def test_cli_runs_the_stock_harness(tiny_run, tmp_path, capsys):
    code = main(
        [
            "-q",
            "lm-eval",
            "--run",
            str(tiny_run),
            "--mode",
            "negbase",
            "--tasks",
            "likra_arc_challenge",
            "--limit",
            "5",
            "--output_path",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "likra_arc_challenge" in printed and "acc_norm" in printed
    assert list((tmp_path / "out").rglob("results_*.json"))
