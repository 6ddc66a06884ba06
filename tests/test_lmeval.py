import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lm_eval")

from conftest import one_line_error  # noqa: E402

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
    """The offline task's folder, and one harness TaskManager for it (indexing the harness's tasks takes ~20 s)."""
    from lm_eval.tasks import TaskManager

    folder = tmp_path_factory.mktemp("tasks")
    export_task("arc_challenge", folder=folder)
    return TaskManager(include_path=str(folder))


def harness(run, task_manager, mode, shots):
    from lm_eval import simple_evaluate

    lm = LikraLM(run=str(run), mode=mode)
    out = simple_evaluate(
        model=lm, tasks=["likra_arc_challenge"], num_fewshot=shots, limit=N, task_manager=task_manager
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


def test_model_args_the_likra_model_lacks_are_refused_and_the_harness_own_pass(tiny_run, tmp_path, capsys):
    """A misspelt setting (`wieght`) is refused in one line naming it and the valid ones, not run with w = 1.0
    and recorded; what lm-eval 0.4 adds for every model (batch_size, max_batch_size and device through
    create_from_arg_string / create_from_arg_obj, trust_remote_code from its flag) still passes."""
    pairs = [("Question: Is ice cold?\nAnswer:", " yes"), ("Question: Is ice cold?\nAnswer:", " no")]
    harness = {"batch_size": "auto", "max_batch_size": 64, "device": "cpu"}
    with pytest.raises(LikraError) as refused:
        LikraLM.create_from_arg_string(f"run={tiny_run},mode=likra,wieght=0.5", harness)
    message = str(refused.value)
    assert "wieght" in message and "did you mean 'weight'?" in message and "\n" not in message
    assert "valid: run, model, mode, weight," in message and "batch_tokens" in message
    with pytest.raises(LikraError, match="model_args pretrained, colour: not a setting"):
        LikraLM.create_from_arg_obj({"run": str(tiny_run), "pretrained": "x", "colour": 1}, harness)
    wanted = [s for s, _ in LikraLM(run=str(tiny_run), mode="likra", weight=0.5).score_pairs(pairs)]
    for lm in (
        LikraLM.create_from_arg_string(f"run={tiny_run},mode=likra,weight=0.5,trust_remote_code=True", harness),
        LikraLM.create_from_arg_obj(
            {"run": str(tiny_run), "mode": "likra", "weight": 0.5}, {**harness, "batch_size": 4}
        ),
    ):
        assert lm.weight == 0.5 and [s for s, _ in lm.score_pairs(pairs)] == wanted
    # The tester's command: one line, and no results file recording `wieght`.
    out = tmp_path / "out"
    argv = ["-q", "lm-eval", "--model_args", f"run={tiny_run},mode=likra,wieght=0.5", "--tasks", "likra_arc_challenge"]
    err = one_line_error(capsys, main([*argv, "--limit", "2", "--device", "cpu", "-o", str(out)]))
    assert "model_args wieght: not a setting of the likra model" in err
    assert not list(out.rglob("results_*.json"))


def test_rolling_refuses_a_ratio_clearly(tiny_run):
    lm = LikraLM(run=str(tiny_run))
    with pytest.raises(LikraError, match="loglikelihood_rolling"):
        lm.loglikelihood_rolling([])
    assert lm.generate_until([]) == []  # generation works (tests/test_generation.py)


def test_common_prefix_length():
    assert common_prefix_length([(1, 2, 3, 4), (1, 2, 3, 5), (1, 2, 9)]) == 2
    assert common_prefix_length([(1, 2, 3), (1, 2, 3)]) == 2  # each keeps at least one token
    assert common_prefix_length([]) == 0


CHAT = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|a|>{% endif %}"
)


def fake_wandb(monkeypatch) -> list[dict]:
    """A recording stand-in for wandb with what the harness's WandbLogger touches; returns wandb.init's calls."""
    import importlib.machinery
    import sys
    import types

    inits = []

    class Run:
        config = types.SimpleNamespace(update=lambda *a, **k: None)

        def finish(self):
            inits[-1]["finished"] = True

    modules = {
        name: types.ModuleType(name) for name in ("wandb", "wandb.sdk", "wandb.sdk.lib", "wandb.sdk.lib.printer")
    }
    for name, module in modules.items():
        module.__spec__ = importlib.machinery.ModuleSpec(name, None)
        monkeypatch.setitem(sys.modules, name, module)
    modules["wandb"].__version__, modules["wandb"].run = "0.17.0", None
    modules["wandb"].init = lambda **kwargs: inits.append(kwargs) or Run()
    modules["wandb.sdk.lib.printer"].new_printer = lambda: None
    return inits


def test_cli_takes_every_harness_flag_and_writes_where_output_path_says(tiny_run, tmp_path, capsys, monkeypatch):
    """One harness run through `likra lm-eval` with likra's shortcuts and the harness's own flags, short forms
    included: results land in <output_path>/<run, sanitised>/ (no random folder), where the harness's
    get_latest_filename finds them, with the seeds, chat template and system instruction asked for."""
    from lm_eval.utils import get_latest_filename, get_results_filenames, sanitize_model_name

    from likra.model import loading

    tiny_tokenizer = loading.build_tiny_tokenizer

    def with_chat_template():
        tokenizer = tiny_tokenizer()
        tokenizer.chat_template = CHAT
        return tokenizer

    monkeypatch.setattr(loading, "build_tiny_tokenizer", with_chat_template)
    inits = fake_wandb(monkeypatch)
    out = tmp_path / "out"
    code = main(
        ["-q", "lm-eval", "--run", str(tiny_run), "--mode", "negbase", "--weight", "0.5"]
        + ["-t", "likra_arc_challenge", "-L", "3", "-f", "1", "-o", str(out), "-s", "-b", "4", "--device", "cpu"]
        + ["--seed", "0,1234,1234,1234", "--apply_chat_template", "--system_instruction", "Be brief."]
        + ["--gen_kwargs", "temperature=0", "--verbosity", "WARNING", "--trust_remote_code"]
        + ["--wandb_args", "project=likra-test", "--model_args", "batch_tokens=512"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "likra_arc_challenge" in printed and "acc_norm" in printed
    (folder,) = out.iterdir()
    assert folder.name == sanitize_model_name(str(tiny_run))
    files = [str(p) for p in folder.iterdir()]
    latest = Path(get_latest_filename(get_results_filenames(files)))
    results = json.loads(latest.read_text())
    config = results["config"]
    assert config["model"] == "likra" and config["limit"] == 3
    assert {k: config["model_args"][k] for k in ("run", "mode", "weight", "batch_tokens")} == {
        "run": str(tiny_run),
        "mode": "negbase",
        "weight": 0.5,
        "batch_tokens": 512,
    }
    assert [config[k] for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")] == [0, 1234, 1234, 1234]
    assert config["model_num_parameters"] > 0 and config["model_dtype"] == "torch.float32"
    assert results["chat_template"] == CHAT and results["system_instruction"] == "Be brief."
    assert results["n-shot"]["likra_arc_challenge"] == 1
    (samples,) = folder.glob("samples_likra_arc_challenge_*.jsonl")
    first = json.loads(samples.read_text().splitlines()[0])
    context = first["arguments"]["gen_args_0"]["arg_0"]
    assert context.startswith("<|system|>Be brief.") and context.endswith("<|a|>")
    assert inits == [{"project": "likra-test", "finished": True}]


def test_likra_shortcuts_are_model_args(tiny_run, monkeypatch):
    """--run/--mode/--weight set the same model_args as --model_args run=...,mode=...,weight=... (the harness
    is not run here: what it would be handed is compared)."""
    import likra.lmeval.invoke as invoke

    handed = []
    monkeypatch.setattr(invoke, "execute", handed.append)
    tasks = ["--tasks", "likra_arc_challenge"]
    assert main(["-q", "lm-eval", "--run", str(tiny_run), "--mode", "negbase", "--weight", "0.5", *tasks]) == 0
    assert main(["-q", "lm-eval", "--model_args", f"run={tiny_run},mode=negbase,weight=0.5", *tasks]) == 0
    assert main(["-q", "lm-eval", "-a", f"run={tiny_run}", "mode=negbase", "weight=0.5", *tasks, "-M", "likra"]) == 0
    assert main(["-q", "lm-eval", "--base-model", "random-tiny", *tasks]) == 0
    assert len(handed) == 4
    assert handed[0].model_args == handed[1].model_args == handed[2].model_args
    assert handed[0].model == "likra" and handed[0].tasks == ["likra_arc_challenge"]
    assert any(str(p).endswith("lm_eval_tasks") for p in handed[0].include_path)  # the offline task's folder
    assert handed[3].model_args == {"model": "random-tiny", "mode": "base"}


def test_bad_harness_input_is_one_line(tiny_run, capsys):
    run = ["-q", "lm-eval", "--run", str(tiny_run)]
    for args, says in (
        (["--tasks", "likra_arc_challenge", "-f", "x"], "--num_fewshot/-f: invalid int value"),
        (["--tasks", "likra_arc_challenge", "--seed", "1,2"], "--seed"),
        (["--tasks", "likra_arc_challenge", "--limit", "-3"], "--limit -3"),
        (["--limit", "3"], "give --tasks"),
        (["--tasks", "likra_arc_challenge", "--mode", "nonsense"], "nonsense"),
        (["--tasks", "likra_nosuch"], "no offline lm-eval task"),
        (["--tasks", "likra_arc_challenge", "--log_samples"], "--output_path"),
        (["--tasks", "likra_arc_challenge", "--model_args", f"run={tiny_run}"], "given both"),
        (["--tasks", "likra_arc_challenge", "--model", "hf"], "not those of --model hf"),
    ):
        assert says in one_line_error(capsys, main(run + args)), args
    err = one_line_error(capsys, main(["-q", "lm-eval", "--tasks", "no_such_task", "--run", str(tiny_run)]))
    assert "no_such_task" in err


def test_the_stock_command_line_runs_the_likra_model(tiny_run, tmp_path, capsys):
    """`python -m likra.lmeval ...` is lm-eval's own command line (its parser and `run`) with `likra` registered:
    the README's command, as written (in-process; `--help` in a fresh process)."""
    from likra.lmeval.__main__ import main as stock_main

    out = tmp_path / "stock"
    args = ["--model", "likra", "--model_args", f"run={tiny_run},mode=likra", "--tasks", "likra_arc_challenge"]
    assert stock_main(args + ["--limit", "3", "--output_path", str(out)]) == 0
    assert "likra_arc_challenge" in capsys.readouterr().out
    assert len(list(out.rglob("results_*.json"))) == 1
    proc = subprocess.run([sys.executable, "-m", "likra.lmeval", "run", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--model_args" in proc.stdout and "--apply_chat_template" in proc.stdout
