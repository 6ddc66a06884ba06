"""`lmeval:<task>` data: a task YAML read by the harness's TaskManager and rendered by the task, for training and
evaluation, scored exactly as a stock harness run scores it."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lm_eval")

from conftest import one_line_error  # noqa: E402

from likra.cli import main  # noqa: E402

COLOURS = ["red", "blue", "green", "yellow"]


def _write_task(folder, name="toy_mc", extra: str = "", n_test=10, n_train=12):
    """A multiple-choice task over local JSON files, in the harness's YAML, as a user keeps one."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        rows = [{"question": f"What colour is item {split}-{i}?", "options": COLOURS, "label": i % 4} for i in range(n)]
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / f"{name}.yaml").write_text(
        f"""task: {name}
dataset_path: json
dataset_kwargs:
  data_files:
    train: {folder / "train.jsonl"}
    test: {folder / "test.jsonl"}
output_type: multiple_choice
training_split: train
test_split: test
fewshot_split: train
description: "Name the colour.\\n\\n"
doc_to_text: "Question: {{{{question}}}}\\nAnswer:"
doc_to_choice: "{{{{options}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
metadata:
  version: 2.0
{extra}"""
    )
    return folder


@pytest.fixture(scope="module")
def tasks(tmp_path_factory):
    from likra.data.lmeval_tasks import use_include_paths

    folder = _write_task(tmp_path_factory.mktemp("tasks"))
    use_include_paths([str(folder)])
    yield folder
    use_include_paths([])


@pytest.fixture(scope="module")
def tiny_hf(tmp_path_factory):
    """The tiny model as a model folder that stock `lm_eval --model hf` loads."""
    from likra.model.loading import build_tiny_model, build_tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny") / "model"
    tokenizer = build_tiny_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_task_yaml_gives_the_tasks_own_questions(tasks):
    from likra.data.benchmarks import load_spec

    records = load_spec("lmeval:toy_mc")
    assert len(records) == 10 and records[3].gold == 3 and records[3].choices == tuple(COLOURS)
    assert records[3].prompt == "Name the colour.\n\nQuestion: What colour is item test-3?\nAnswer:"
    assert records[3].separator == " " and records[3].id == "toy_mc/test/3"
    train = load_spec("lmeval:toy_mc:train")
    assert len(train) == 12 and train[0].prompt.endswith("item train-0?\nAnswer:")


@pytest.fixture(scope="module")
def embedded_hf():
    from likra.model.loading import embedded_model_dir

    return embedded_model_dir()


@pytest.mark.parametrize(
    "model,shots",
    [("tiny_hf", 0), ("tiny_hf", 3), pytest.param("embedded_hf", 2, marks=pytest.mark.slow)],
)
def test_likra_scores_an_lmeval_task_as_the_stock_harness_does(tasks, request, model, shots):
    """Per-choice log-likelihoods equal those a stock `lm_eval --model hf --log_samples` run records (its own
    few-shot sampler), and so do acc and acc_norm: on the tiny model and on the embedded SmolLM2."""
    tiny_hf = request.getfixturevalue(model)
    import numpy as np
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from likra.data.lmeval_tasks import lmeval_records
    from likra.model.loading import load_base_model, load_tokenizer
    from likra.scoring.engine import ScoringEngine, tokenize_questions
    from likra.scoring.metrics import accuracy, accuracy_norm
    from tests.numerics import assert_kernel_close

    stock = simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_hf},dtype=float32",
        tasks=["toy_mc"],
        num_fewshot=shots,
        log_samples=True,
        task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        device="cpu",
    )
    samples = sorted(stock["samples"]["toy_mc"], key=lambda s: s["doc_id"])
    theirs = np.array([[r[0][0] for r in s["resps"]] for s in samples])
    records = lmeval_records("lmeval:toy_mc", shots=shots)
    assert [s["arguments"][0][0] for s in samples] == [r.prompt for r in records]  # the harness's own contexts
    model, tokenizer = load_base_model(str(tiny_hf), "fp32"), load_tokenizer(str(tiny_hf))
    _, questions = tokenize_questions(tokenizer, records)
    ours = np.array(ScoringEngine(model).loglikelihoods(questions, ("base",))["base"])
    assert_kernel_close(ours, theirs, kind="fp32", what="per-choice log-likelihoods")
    golds = [r.gold for r in records]
    result = stock["results"]["toy_mc"]
    assert accuracy(list(ours), golds).value == pytest.approx(result["acc,none"])
    assert accuracy_norm(list(ours), golds, [r.choices for r in records]).value == pytest.approx(
        result["acc_norm,none"]
    )


def test_train_and_eval_on_a_task_yaml_from_the_command_line(tmp_path):
    from likra.data.lmeval_tasks import lmeval_records, use_include_paths

    tasks = _write_task(tmp_path / "tasks", n_train=16)
    run, out = tmp_path / "run", tmp_path / "eval.json"
    include = ["--include-path", str(tasks)]
    train = ["-q", "train", "--model", "random-tiny", "--data", "lmeval:toy_mc:train", *include, "--batch-size", "4"]
    assert main([*train, "--out", str(run)]) == 0
    manifest = json.loads((run / "likra.json").read_text())
    assert manifest["data"]["questions"] == 16 and manifest["data"]["lmeval"]["toy_mc"]["version"] == 2.0
    assert manifest["data"]["lmeval"]["toy_mc"]["split"] == "train" and manifest["examples"]["negative"] == 16
    evaluate = ["-q", "eval", "--run", str(run), "--data", "lmeval:toy_mc", *include, "--shots", "3", "--out", str(out)]
    assert main(evaluate) == 0
    result = json.loads(out.read_text())
    assert result["metrics"]["likra"]["acc"]["n"] == 10
    use_include_paths([str(tasks)])
    with_shots = lmeval_records("lmeval:toy_mc", shots=3)
    assert result["question_ids"] == [r.id for r in with_shots] if "question_ids" in result else True
    assert with_shots[0].prompt.count("Answer:") == 4  # three shots from the harness's sampler, then the question


@pytest.mark.parametrize(
    "extra,name,said",
    [
        ("", "nope_task", "no such lm-eval task or group"),
        ("", "toy_gen", "output type 'generate_until'"),
        ("", "toy_wino", "multiple_input"),
    ],
)
def test_tasks_likra_cannot_take_are_one_line_before_the_model_loads(tmp_path, capsys, monkeypatch, extra, name, said):
    tasks = _write_task(tmp_path / "tasks")
    (tasks / "toy_gen.yaml").write_text(
        (tasks / "toy_mc.yaml").read_text().replace("task: toy_mc", "task: toy_gen")
        .replace("output_type: multiple_choice", "output_type: generate_until")
    )  # fmt: skip
    (tasks / "toy_wino.yaml").write_text(
        (tasks / "toy_mc.yaml").read_text().replace("task: toy_mc", "task: toy_wino")
        .replace('doc_to_text: "Question: {{question}}\\nAnswer:"', "doc_to_text: label")
        .replace('doc_to_choice: "{{options}}"', 'doc_to_choice: "{{options}}"')
        .replace("doc_to_target: label", 'doc_to_target: "is it."')
    )  # fmt: skip
    monkeypatch.setattr("likra.scoring.evaluate.load_eval_model", lambda *a: pytest.fail("model loaded"))
    argv = [
        "eval",
        "--model",
        "random-tiny",
        "--data",
        f"lmeval:{name}",
        "--include-path",
        str(tasks),
        "--modes",
        "base",
    ]
    err = one_line_error(capsys, main([*argv, "--out", str(tmp_path / "e.json")]))
    assert said in err and not (tmp_path / "e.json").exists()


def test_likras_exported_tasks_read_back_as_likras_own_records(tmp_path):
    """`likra_<benchmark>` (the offline task likra writes for the harness) read as lmeval: data gives the records of
    the benchmark's split: the same prompts, choices, separators and golds, in order."""
    from likra.data.benchmarks import load_spec
    from likra.data.lmeval_tasks import lmeval_records, use_include_paths
    from likra.lmeval.tasks import export_task

    folder = tmp_path / "exported"
    export_task("arc_challenge", folder=folder)
    use_include_paths([str(folder)])
    try:
        ours = load_spec("arc_challenge:test")
        read = lmeval_records("lmeval:likra_arc_challenge")
    finally:
        use_include_paths([])
    key = [(r.prompt, r.choices, r.gold, r.separator) for r in ours]
    assert [(r.prompt, r.choices, r.gold, r.separator) for r in read] == key and len(read) > 1000


def test_lm_eval_files_of_a_task_are_that_tasks_files(tasks, tiny_hf, tmp_path):
    """`likra eval --lm-eval-out` on lmeval: data names the task as the harness does and its task_hashes equal a
    stock run's over the same documents, prompts and targets; its configs block is the task's own."""
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager
    from lm_eval.utils import hash_string

    stock = simple_evaluate(
        model="hf",
        model_args=f"pretrained={tiny_hf},dtype=float32",
        tasks=["toy_mc"],
        num_fewshot=2,
        log_samples=True,
        task_manager=TaskManager(include_path=str(tasks), include_defaults=False),
        device="cpu",
    )
    samples = stock["samples"]["toy_mc"]
    stock_hash = hash_string("".join(s["doc_hash"] + s["prompt_hash"] + s["target_hash"] for s in samples))
    out = tmp_path / "harness"
    argv = ["-q", "eval", "--model", str(tiny_hf), "--data", "lmeval:toy_mc", "--include-path", str(tasks)]
    assert main([*argv, "--shots", "2", "--modes", "base", "--lm-eval-out", str(out)]) == 0
    written = json.loads(next(out.rglob("results_*.json")).read_text())
    assert written["task_hashes"] == {"toy_mc": stock_hash}
    assert written["configs"]["toy_mc"]["task"] == "toy_mc" and written["configs"]["toy_mc"]["num_fewshot"] == 2
    assert written["configs"]["toy_mc"]["doc_to_text"] == stock["configs"]["toy_mc"]["doc_to_text"]


def test_the_readmes_example_task_trains_and_evaluates(tmp_path, monkeypatch):
    """configs/tasks/arith_mc.yaml, as the README runs it from the repository's root."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    run = tmp_path / "arith"
    include = ["--include-path", "configs/tasks"]
    train = ["-q", "train", "--model", "random-tiny", "--data", "lmeval:arith_mc:train", *include, "--batch-size", "8"]
    assert main([*train, "--out", str(run)]) == 0
    out = tmp_path / "e.json"
    evaluate = [
        "-q",
        "eval",
        "--run",
        str(run),
        "--data",
        "lmeval:arith_mc",
        *include,
        "--shots",
        "3",
        "--out",
        str(out),
    ]
    assert main(evaluate) == 0
    result = json.loads(out.read_text())
    assert result["metrics"]["likra"]["acc"]["n"] == 20
    assert json.loads((run / "likra.json").read_text())["data"]["questions"] == 40


def test_a_curve_on_task_yamls_records_the_tasks(tmp_path):
    tasks = _write_task(tmp_path / "tasks", n_train=16)
    out = tmp_path / "curve"
    argv = ["-q", "curve", "--model", "random-tiny", "--data", "lmeval:toy_mc:train", "--eval-data", "lmeval:toy_mc"]
    harness = tmp_path / "harness"
    argv += ["--include-path", str(tasks), "--batch-size", "8", "--shots", "2", "--lm-eval-out", str(harness)]
    assert main([*argv, "--out", str(out)]) == 0
    written = list(harness.rglob("results_*.json"))
    assert written
    for results in written:  # the training data (0 shots) was rendered after the evaluation
        config = json.loads(results.read_text())["configs"]["toy_mc"]
        assert (config["num_fewshot"], config["test_split"]) == (2, "test")
    curve = json.loads((out / "curve.json").read_text())
    assert curve["n_eval"] == 10 and curve["lmeval"]["eval_data"]["shots"] == 2
    assert curve["lmeval"]["data"]["toy_mc"]["split"] == "train" and curve["lmeval"]["eval_data"]["toy_mc"]["version"]


def test_a_group_expands_to_its_tasks(tmp_path):
    from likra.data.lmeval_tasks import lmeval_records, use_include_paths

    tasks = _write_task(tmp_path / "tasks")
    _write_task(tmp_path / "tasks", name="toy_mc2")
    (tasks / "toy_group.yaml").write_text("group: toy_group\ntask:\n  - toy_mc\n  - toy_mc2\n")
    use_include_paths([str(tasks)])
    try:
        records = lmeval_records("lmeval:toy_group")
    finally:
        use_include_paths([])
    assert len(records) == 20 and {r.source for r in records} == {"lmeval:toy_mc", "lmeval:toy_mc2"}
    assert len({r.id for r in records}) == 20


def test_every_command_refuses_a_task_it_cannot_take_before_a_model_loads(tmp_path, capsys, monkeypatch):
    import likra.training.pipeline as pipeline

    tasks = _write_task(tmp_path / "tasks")
    (tasks / "toy_gen.yaml").write_text(
        (tasks / "toy_mc.yaml").read_text().replace("task: toy_mc", "task: toy_gen")
        .replace("output_type: multiple_choice", "output_type: generate_until")
    )  # fmt: skip
    monkeypatch.setattr(pipeline, "load_base_model", lambda *a, **k: pytest.fail("model loaded"))
    common = ["--model", "random-tiny", "--include-path", str(tasks)]
    for argv in (
        ["train", *common, "--data", "lmeval:toy_gen:train", "--out", str(tmp_path / "r")],
        [
            "curve",
            *common,
            "--data",
            "lmeval:toy_mc:train",
            "--eval-data",
            "lmeval:toy_gen",
            "--out",
            str(tmp_path / "c"),
        ],
        ["study", "negatives", *common, "--eval-data", "lmeval:toy_gen", "--out", str(tmp_path / "s")],
    ):
        assert "output type 'generate_until'" in one_line_error(capsys, main(argv))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tasks"]


def test_a_hub_task_offline_without_its_data_is_one_line_in_seconds(tmp_path, capsys, monkeypatch):
    import time

    monkeypatch.setattr("likra.locations.hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", tmp_path)  # an empty datasets cache
    started = time.perf_counter()
    argv = ["eval", "--model", "random-tiny", "--data", "lmeval:arc_easy", "--modes", "base"]
    err = one_line_error(capsys, main(argv))
    assert "lmeval:arc_easy: the harness could not load it (offline: not in the datasets cache)" in err
    assert time.perf_counter() - started < 60  # indexing the harness's tasks takes most of it


def test_a_users_group_may_name_the_harnesss_own_tasks(tmp_path):
    """A group in --include-path listing a harness task beside the user's: built with the harness's tasks indexed
    (the harness task's data is not here offline, so its load is what fails, named, not the group)."""
    from likra.data.lmeval_tasks import lmeval_records, use_include_paths
    from likra.errors import LikraError

    tasks = _write_task(tmp_path / "tasks")
    (tasks / "mixed_group.yaml").write_text("group: mixed_group\ntask:\n  - toy_mc\n  - toy_mc_copy\n")
    _write_task(tasks, name="toy_mc_copy")
    use_include_paths([str(tasks)])
    try:
        assert len(lmeval_records("lmeval:mixed_group")) == 20
        (tasks / "mixed_group.yaml").write_text("group: mixed_group2\ntask:\n  - toy_mc\n  - arc_easy\n")
        with pytest.raises(LikraError, match="mixed_group2: the harness could not load it"):
            lmeval_records("lmeval:mixed_group2")
    finally:
        use_include_paths([])
