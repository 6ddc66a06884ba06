"""lm-eval-style result files: read back with the harness's own helpers and compared with a stock harness run."""

import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from conftest import train_tiny_run  # noqa: E402

from likra.cli import main  # noqa: E402
from likra.lmeval.model import LikraLM  # noqa: E402
from likra.lmeval.tasks import export_task  # noqa: E402

N = 12
MODES = ["base", "sft", "likra", "negbase"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("harness") / "run", limit=16)


@pytest.fixture(scope="module")
def written(tiny_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("lm-eval-out")
    args = ["-q", "eval", "--run", str(tiny_run), "--data", "arc_challenge:test", "--limit", str(N), "--shots", "2"]
    assert main(args + ["--modes", ",".join(MODES), "--out", str(out / "likra.json"), "--lm-eval-out", str(out)]) == 0
    return out


def test_results_read_back_with_the_harness_helpers(written):
    from lm_eval.utils import get_latest_filename, get_results_filenames, get_sample_results_filenames, make_table

    files = sorted(str(p) for p in written.rglob("*.json*"))
    results_files = get_results_filenames(files)
    samples_files = get_sample_results_filenames(files)
    assert len(results_files) == 1 and len(samples_files) == 1
    results = json.loads(Path(get_latest_filename(results_files)).read_text())
    assert Path(results_files[0]).parent.name == results["model_name_sanitized"] == "likra__run"
    assert "likra_arc_challenge" in samples_files[0]
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in make_table(results).splitlines()[2:]]
    assert {(r[2], r[4]) for r in rows} == {(m, metric) for m in MODES for metric in ("acc", "acc_norm")}
    ours = json.loads((written / "likra.json").read_text())
    row = results["results"]["likra_arc_challenge"]
    assert results["n-shot"]["likra_arc_challenge"] == 2
    assert results["n-samples"]["likra_arc_challenge"]["effective"] == N
    for mode in MODES:
        for metric in ("acc", "acc_norm"):
            assert row[f"{metric},{mode}"] == ours["metrics"][mode][metric]["value"]
            assert row[f"{metric}_stderr,{mode}"] == ours["metrics"][mode][metric]["stderr"]


def test_samples_match_a_stock_harness_run(written, tiny_run, tmp_path):
    """The same mode through the stock harness (`--log_samples`) gives the same per-choice scores and credits."""
    from datasets import load_dataset
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    folder = tmp_path / "tasks"
    export_task("arc_challenge", folder=folder)
    (samples_file,) = written.rglob("samples_*.jsonl")
    ours = load_dataset("json", data_files=str(samples_file), split="train")  # as the harness's card code reads it
    assert len(ours) == N * len(MODES)
    for mode in ("likra", "sft"):
        out = simple_evaluate(
            model=LikraLM(run=str(tiny_run), mode=mode),
            tasks=["likra_arc_challenge"],
            num_fewshot=2,
            limit=N,
            log_samples=True,
            task_manager=TaskManager(include_path=str(folder)),
        )
        stock = sorted(out["samples"]["likra_arc_challenge"], key=lambda s: s["doc_id"])
        mine = sorted((s for s in ours if s["filter"] == mode), key=lambda s: s["doc_id"])
        for a, b in zip(stock, mine):
            assert a["doc_id"] == b["doc_id"] and a["target"] == b["target"]
            assert [r[0] for r in b["filtered_resps"]] == pytest.approx([r[0] for r in a["filtered_resps"]], abs=1e-4)
            assert (a["acc"], a["acc_norm"]) == (b["acc"], b["acc_norm"])
            # in memory the harness keeps (context, continuation) tuples; its writer turns them into gen_args_j
            assert [tuple(x) for x in a["arguments"]] == [
                (b["arguments"][f"gen_args_{j}"]["arg_0"], b["arguments"][f"gen_args_{j}"]["arg_1"])
                for j in range(len(a["arguments"]))
            ]
        heads = mine[0]["likra"]["heads"]
        assert set(heads) >= {"base", "positive", "negative"}


def test_curve_writes_one_harness_model_per_checkpoint(tmp_path):
    from conftest import TINY_CURVE_ARGS
    from lm_eval.utils import get_results_filenames

    out, harness_out = tmp_path / "curve", tmp_path / "lm-eval"
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--out", str(out), "--lm-eval-out", str(harness_out)]) == 0
    curve = json.loads((out / "curve.json").read_text())
    files = get_results_filenames([str(p) for p in harness_out.rglob("*.json")])
    points = {(r["seed"], r["examples"]) for r in curve["rows"]}
    assert len(files) == len(points)
    for f in files:
        results = json.loads(Path(f).read_text())
        examples = results["likra"]["examples"]
        (row,) = results["results"].values()
        for r in curve["rows"]:
            if r["examples"] == examples:
                assert row[f"{r['metric']},{r['mode']}"] == r["value"]
        assert len(list(Path(f).parent.glob("samples_arc_challenge_validation_*.jsonl"))) == 1


def test_samples_hold_the_prompts_in_the_evaluated_format(tmp_path):
    """A letter-style evaluation writes its lettered contexts and " A", " B", ... continuations."""
    out = tmp_path / "h"
    args = ["-q", "eval", "--model", "random-tiny", "--data", "arc_challenge:validation", "--limit", "4"]
    assert main(args + ["--format", "letter", "--lm-eval-out", str(out)]) == 0
    (samples,) = out.rglob("samples_*.jsonl")
    assert samples.name.startswith("samples_arc_challenge_validation_letter_")  # not taken for the cloze task
    (results,) = out.rglob("results_*.json")
    results = json.loads(results.read_text())
    n = results["n-samples"]["arc_challenge_validation_letter"]
    assert n["effective"] == 4 and n["original"] == 299 and results["config"]["limit"] == 4  # a subset says so
    assert "format=letter" in results["config"]["model_args"]
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(lines) == 4
    for line in lines:
        args = line["arguments"]
        assert args["gen_args_0"]["arg_1"] == " A" and args["gen_args_1"]["arg_1"] == " B"
        assert "\nA. " in args["gen_args_0"]["arg_0"] and args["gen_args_0"]["arg_0"].endswith("\nAnswer:")
