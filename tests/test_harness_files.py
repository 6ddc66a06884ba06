"""lm-eval-style result files: written through the harness's own tracker, read back with its helpers, loaded
beside a stock harness run's with `datasets`, and re-run from their `configs` block."""

import json
import sys
from pathlib import Path
from unittest import mock

import pytest

pytest.importorskip("lm_eval")

from conftest import save_tiny_model, train_tiny_run  # noqa: E402
from numerics import assert_kernel_close  # noqa: E402

from likra.cli import main  # noqa: E402
from likra.lmeval.model import LikraLM  # noqa: E402
from likra.lmeval.tasks import export_task  # noqa: E402
from likra.reports.harness import SEED_KEYS  # noqa: E402

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


def test_samples_sit_beside_a_stock_run(written, tiny_run, tmp_path):
    """A stock `--model hf` run (the stock CLI, in-process) of the same task and questions: `datasets` loads its
    samples and likra's together, `doc_hash`, `prompt_hash` and `target_hash` agree document by document, and
    mode base's per-choice scores are the hf model's."""
    from datasets import load_dataset

    model_dir = save_tiny_model(tmp_path / "tiny")  # the base of tiny_run, as a model folder
    tasks, stock_out = tmp_path / "tasks", tmp_path / "stock"
    export_task("arc_challenge", folder=tasks)
    argv = ["lm_eval", "--model", "hf", "--model_args", f"pretrained={model_dir},dtype=float32", "--device", "cpu"]
    argv += ["--tasks", "likra_arc_challenge", "--include_path", str(tasks), "--num_fewshot", "2", "--limit", str(N)]
    with mock.patch("sys.argv", argv + ["--batch_size", "16", "--output_path", str(stock_out), "--log_samples"]):
        from lm_eval.__main__ import cli_evaluate

        cli_evaluate()
    (stock_file,) = stock_out.rglob("samples_*.jsonl")
    (likra_file,) = written.rglob("samples_*.jsonl")
    both = load_dataset("json", data_files=[str(stock_file), str(likra_file)], split="train")
    assert len(both) == N + N * len(MODES) and set(both["filter"]) == {"none", *MODES}
    stock = {s["doc_id"]: s for s in both if s["filter"] == "none"}
    for mode in MODES:
        mine = [s for s in both if s["filter"] == mode]
        assert sorted(s["doc_id"] for s in mine) == list(range(N))
        for s in mine:
            a = stock[s["doc_id"]]
            for key in ("doc_hash", "prompt_hash", "target_hash", "doc", "target", "arguments"):
                assert s[key] == a[key], key
            if mode == "base":
                ours, theirs = ([float(r[0]) for r in x["filtered_resps"]] for x in (s, a))
                assert_kernel_close(ours, theirs)
                assert (s["acc"], s["acc_norm"]) == (a["acc"], a["acc_norm"])
    (stock_results,) = stock_out.rglob("results_*.json")
    (likra_results,) = written.rglob("results_*.json")
    stock_results, likra_results = (json.loads(p.read_text()) for p in (stock_results, likra_results))
    theirs_hash = stock_results["task_hashes"]["likra_arc_challenge"]
    assert set(stock_results) <= set(likra_results) and set(stock_results["config"]) <= set(likra_results["config"])
    for key in ("model_num_parameters", "model_dtype"):
        assert likra_results["config"][key] == stock_results["config"][key]
    for key in ("lm_eval_version", "tokenizer_eos_token", "eot_token_id", "max_length"):
        assert likra_results[key] == stock_results[key]
    assert isinstance(likra_results["config"]["model_args"], dict)
    # the same documents hash as the stock run's; every mode's rows are those documents
    assert likra_results["task_hashes"] == stock_results["task_hashes"]
    assert likra_results["likra"]["task_hashes"] == {"likra_arc_challenge": dict.fromkeys(MODES, theirs_hash)}
    for key in SEED_KEYS:  # integers, as the harness writes them (its are its defaults; ours below)
        assert type(likra_results["config"][key]) is type(stock_results["config"][key]) is int
    config = likra_results["configs"]["likra_arc_challenge"]
    assert "filter_list" not in config  # a mode is the model's: stated as the model_args a rerun applies
    assert config["metadata"]["likra_modes"] == {m: f"mode={m},weight=1.0" for m in MODES}


def test_configs_rerun_the_same_contexts(written, tiny_run, tmp_path, monkeypatch):
    """The results file's `configs` block is a task the harness runs as it is, on another machine (the
    evaluated questions and the shots, written beside the results and named relative to them, here copied
    elsewhere): through the `likra` lm-eval model under the mode's model_args, the mode's per-choice scores and
    credits equal likra's samples."""
    import shutil

    from lm_eval import simple_evaluate

    (results_file,) = written.rglob("results_*.json")
    (samples_file,) = written.rglob("samples_*.jsonl")
    results = json.loads(results_file.read_text())
    config = results["configs"]["likra_arc_challenge"]
    ours = [json.loads(line) for line in samples_file.read_text().splitlines()]
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(written / "tasks", elsewhere / "tasks")
    monkeypatch.chdir(elsewhere)
    for mode in ("likra",):  # one harness run: each takes half a minute on a shared CPU
        model_args = dict(kv.split("=") for kv in config["metadata"]["likra_modes"][mode].split(","))
        model = LikraLM(run=str(tiny_run), mode=model_args["mode"], weight=float(model_args["weight"]))
        out = simple_evaluate(model=model, tasks=[config], log_samples=True)
        row = out["results"]["likra_arc_challenge"]
        assert row["acc,none"] == results["results"]["likra_arc_challenge"][f"acc,{mode}"]
        assert row["acc_norm,none"] == results["results"]["likra_arc_challenge"][f"acc_norm,{mode}"]
        stock = sorted(out["samples"]["likra_arc_challenge"], key=lambda s: s["doc_id"])
        mine = sorted((s for s in ours if s["filter"] == mode), key=lambda s: s["doc_id"])
        assert len(stock) == len(mine) == N
        for a, b in zip(stock, mine):
            assert a["doc_hash"] == b["doc_hash"] and a["prompt_hash"] == b["prompt_hash"]
            assert [r[0] for r in a["filtered_resps"]] == pytest.approx([float(r[0]) for r in b["filtered_resps"]])
            assert (a["acc"], a["acc_norm"]) == (b["acc"], b["acc_norm"])
    heads = results["likra"]["loglikelihoods"]
    assert set(heads) >= {"base", "positive", "negative"} and len(heads["base"]) == N


def test_seeds_hashes_and_configs_are_what_ran_and_travel(written, tmp_path):
    """Seeds are the integers in effect (python, numpy and torch seeded as the harness seeds them, the few-shot
    order's own seed); task_hashes is what the harness's own code computes over one sample per document (and
    per mode in the likra block); the configs block names no folder of this machine."""
    import random

    import numpy as np
    import torch
    from lm_eval.utils import hash_string

    out = tmp_path / "h"
    args = ["-q", "eval", "--model", "random-tiny", "--data", "arc_challenge:validation", "--limit", "4"]
    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    assert main(args + ["--shots", "1", "--fewshot-seed", "7", "--lm-eval-out", str(out)]) == 0
    # the scoring drew nothing: the generators are where the recorded seeds put them
    drawn = (random.random(), np.random.random(), torch.rand(1).item())
    results = json.loads(next(out.rglob("results_*.json")).read_text())
    config = results["config"]
    assert [config[k] for k in SEED_KEYS] == [0, 1234, 1234, 7] and all(type(config[k]) is int for k in SEED_KEYS)
    random.seed(config["random_seed"]), np.random.seed(config["numpy_seed"]), torch.manual_seed(config["torch_seed"])
    assert drawn == (random.random(), np.random.random(), torch.rand(1).item())

    for folder in (out, written):
        results = json.loads(next(folder.rglob("results_*.json")).read_text())
        samples = [json.loads(line) for line in next(folder.rglob("samples_*.jsonl")).read_text().splitlines()]
        ((task, hashed),) = results["task_hashes"].items()
        modes = list(results["likra"]["task_hashes"][task])
        for mode in modes:
            rows = [s for s in samples if s["filter"] == mode]
            harness = hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in rows))
            assert results["likra"]["task_hashes"][task][mode] == harness
            assert [s["doc_id"] for s in rows] == list(range(len(rows)))
        assert hashed == results["likra"]["task_hashes"][task]["base"]
        block = json.dumps(results["configs"])
        assert str(folder) not in block and str(Path.cwd()) not in block and str(Path.home()) not in block
        files = results["configs"][task]["dataset_kwargs"]["data_files"]
        assert all(not Path(f).is_absolute() and (folder / f).is_file() for f in files.values())


def test_files_have_the_same_keys_and_types_without_lm_eval(tmp_path, monkeypatch, records):
    """Where lm-eval is not installed the files are written by the same rules: same keys, same types."""
    import numpy as np

    from likra.reports.harness import HarnessEvaluation, HarnessModel, write_harness_files

    rng = np.random.default_rng(0)
    per_head = {h: [rng.normal(size=len(r.choices)) for r in records] for h in ("base", "positive", "negative")}
    ev = HarnessEvaluation("questions.jsonl", records, per_head, ["likra", "base"], 1.0, records[:2], "x", 20)
    model = HarnessModel("likra__x", {"run": "x"}, {"model_num_parameters": 3, "model_dtype": "torch.float32"})
    written_by = {"harness": write_harness_files(tmp_path / "a", model, ev)}
    for name in ("lm_eval", "lm_eval.loggers", "lm_eval.config.task"):
        monkeypatch.setitem(sys.modules, name, None)
    written_by["likra"] = write_harness_files(tmp_path / "b", model, ev)

    def shape(value):
        if isinstance(value, dict):
            return {k: shape(v) for k, v in value.items()}
        if isinstance(value, list):
            return [shape(v) for v in value]
        return type(value).__name__

    results, samples = [], []
    for results_path, samples_path in written_by.values():
        assert results_path.parent.name == "likra__x" and samples_path.name.startswith("samples_questions_")
        r = json.loads(results_path.read_text())
        r.pop("configs"), r.pop("date"), r.pop("total_evaluation_time_seconds")  # defaults filled by lm-eval only
        results.append(shape(r))
        samples.append([json.loads(line) for line in samples_path.read_text().splitlines()])
    assert results[0] == results[1]
    assert [shape(s) for s in samples[0]] == [shape(s) for s in samples[1]] and samples[0] == samples[1]
    assert samples[0][0]["target"] == str(records[0].gold)


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
        seeds = [results["config"][k] for k in SEED_KEYS]
        # the base as the harness seeds; a checkpoint of seed 0 trained with --seed 0 + 0; FEWSHOT_SEED's order
        assert seeds == ([0, 1234, 1234, 1234] if examples == 0 else [0, 0, 0, 1234])
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
    assert results["config"]["model_args"]["format"] == "letter"
    lines = [json.loads(line) for line in samples.read_text().splitlines()]
    assert len(lines) == 4
    for line in lines:
        args = line["arguments"]
        assert args["gen_args_0"]["arg_1"] == " A" and args["gen_args_1"]["arg_1"] == " B"
        assert "\nA. " in args["gen_args_0"]["arg_0"] and args["gen_args_0"]["arg_0"].endswith("\nAnswer:")
