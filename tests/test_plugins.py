"""An out-of-tree plug-in package, built here in a temporary folder, adds an objective, a mode, a benchmark and a
study without any edit to likra; each is used from the command line and from YAML, found through its entry point
(`likra.plugins`), through `--plugin MODULE` and through `$LIKRA_PLUGINS`. Every run is a fresh process, as a
user's is (registries are per process)."""

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

PLUGIN = '''
"""likra_toy: a plug-in adding the objective `echo`, the mode `echo_ratio`, the benchmark `toybench` and the study
`toystudy`."""
import json
from pathlib import Path

from likra.config import PositiveFloat, option, settings
from likra.data.benchmarks import Benchmark, register_benchmark
from likra.experiments.curve import CurveRun, variant_name
from likra.experiments.studies import Study, register_study
from likra.model.heads import HeadSpec
from likra.objectives import OptimizerSettings, register_objective
from likra.objectives.mle import MLE
from likra.scoring.modes import Mode, Term, register_mode

DATA = json.loads((Path(__file__).parent / "toybench.json").read_text())


@settings
class EchoSettings(OptimizerSettings):
    learning_rate: PositiveFloat = option(0.02, help="echo's learning rate", flags=("--lr",))


class Echo(MLE):
    """MLE on the head's data with an optimizer of its own (the run's batch size, epochs and seed)."""

    name = "echo"
    help = "MLE with its own learning rate (a plug-in's objective)"
    settings = EchoSettings

    def build_trainer(self, ctx, head, items, settings, arguments, callbacks):
        assert arguments["learning_rate"] == settings.learning_rate  # the registry used this objective's settings
        return super().build_trainer(ctx, head, items, ctx.train, arguments, callbacks)


class ToyStudy(Study):
    name = "toystudy"
    help = "an echo head beside the Likra pair (a plug-in's study)"

    def run(self, cfg, options, progress=True):
        head = HeadSpec("echo", objective="echo", data="negatives:" + variant_name(cfg), init=7)
        curve = CurveRun(cfg, progress, extra_heads=[head], extra_modes=["echo_ratio", "echo-base"]).run().curve
        return {"study": self.name, "modes": sorted({r["mode"] for r in curve["rows"]}), "n": curve["n_eval"]}

    def report(self, result):
        return ["toystudy modes: " + ", ".join(result["modes"])]


register_objective(Echo())
register_mode(Mode("echo_ratio", (Term(1, "positive"), Term(-1, "echo", True)), "pos - echo", "black"))
register_benchmark(
    Benchmark(
        "toybench",
        "nobody/toybench",
        None,
        ("train", "test"),
        lambda row: (row["question"], tuple(row["choices"]), row["answer"]),
        id_field="id",
        local_rows=lambda split: DATA[split],
    )
)
register_study(ToyStudy())
'''

CLASH = """
from likra.objectives.mle import MLE
from likra.objectives import register_objective


class Echo(MLE):
    name = "echo"


register_objective(Echo())
"""


def toybench() -> dict:
    """Two splits of 4-choice questions whose answer is the word the prompt names."""
    words = ["red", "blue", "green", "black", "white", "pink", "gray", "gold"]
    out = {}
    for split, n in (("train", 24), ("test", 10)):
        rows = []
        for i in range(n):
            gold = words[i % len(words)]
            choices = [gold] + [w for w in words if w != gold][i % 5 : i % 5 + 3]
            k = i % 4
            choices[0], choices[k] = choices[k], choices[0]
            rows.append({"id": f"{split}{i}", "question": f"Question: say {gold}\nAnswer:", "choices": choices,
                         "answer": k})  # fmt: skip
        out[split] = rows
    return out


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """site/: the package likra_toy with an entry point (its dist-info); bare/: the same package without one;
    clash/: a second plug-in registering `echo` again."""
    root = tmp_path_factory.mktemp("plugins")
    for folder, with_entry_point in (("site", True), ("bare", False)):
        package = root / folder / "likra_toy"
        package.mkdir(parents=True)
        (package / "__init__.py").write_text(PLUGIN)
        (package / "toybench.json").write_text(json.dumps(toybench()))
        if with_entry_point:
            info = root / folder / "likra_toy-0.1.dist-info"
            info.mkdir()
            (info / "METADATA").write_text("Metadata-Version: 2.1\nName: likra-toy\nVersion: 0.1\n")
            (info / "entry_points.txt").write_text("[likra.plugins]\ntoy = likra_toy\n")
    (root / "clash").mkdir()
    (root / "clash" / "likra_clash.py").write_text(CLASH)
    return root


def likra(args, path, extra_env=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != "LIKRA_PLUGINS"}
    env.update({"PYTHONPATH": os.pathsep.join(str(p) for p in path), **(extra_env or {})})
    return subprocess.run(
        [sys.executable, "-m", "likra", *args], capture_output=True, text=True, timeout=600, env=env, cwd=cwd
    )


def likra_together(*calls):
    """Independent commands started together (each is a fresh process; most of their time is start-up)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: likra(*call), calls))


TOY = ["--model", "random-tiny", "--data", "toybench:train", "--batch-size", "8", "--lr", "0.01",
       "--eval-data", "toybench:test", "--limit", "16"]  # fmt: skip


def test_entry_point_plugin_from_the_command_line(plugin_site, tmp_path):
    site = [plugin_site / "site"]
    # likra info; likra curve with the plug-in's objective as a configured head, its flag, its mode and its
    # benchmark; likra eval on the plug-in's benchmark; likra study with the plug-in's study.
    out = tmp_path / "curve"
    heads = "positive=mle:gold,negative=mle:negatives:near_miss,echo=echo:negatives:near_miss"
    info, proc, evaluated, study = likra_together(
        (["info"], site),
        (["-q", "curve", *TOY, "--heads", heads, "--echo-lr", "0.03", "--modes", "base,likra,echo_ratio,echo-base",
          "--out", str(out)], site),
        (["-q", "eval", "--model", "random-tiny", "--data", "toybench:test", "--out", str(tmp_path / "e.json")], site),
        (["-q", "study", "toystudy", *TOY, "--out", str(tmp_path / "study")], site),
    )  # fmt: skip
    assert info.returncode == 0, info.stderr
    assert "echo" in info.stdout and "toybench" in info.stdout and "likra_toy" in info.stdout
    assert proc.returncode == 0, proc.stderr
    curve = json.loads((out / "curve.json").read_text())
    assert {r["mode"] for r in curve["rows"]} == {"base", "likra", "echo_ratio", "echo-base"}
    recorded = json.loads((out / "curve-config.json").read_text())
    assert [h["name"] for h in recorded["heads"]] == ["positive", "negative", "echo"]
    echo_record = json.loads((out / "seed-0" / "echo" / "head-settings.json").read_text())
    assert echo_record["objective"] == "echo" and echo_record["settings"]["learning_rate"] == 0.03
    assert (out / "seed-0" / "echo.done.json").is_file() and (out / "seed-0" / "negative.done.json").is_file()
    # The same head trained by the built-in objective would differ: echo used its own learning rate.
    echo = json.loads((out / "seed-0" / "scores" / "toybench_test-0shot" / "step-2-echo.json").read_text())
    negative = json.loads((out / "seed-0" / "scores" / "toybench_test-0shot" / "step-2-negative.json").read_text())
    assert echo != negative
    assert evaluated.returncode == 0, evaluated.stderr
    assert json.loads((tmp_path / "e.json").read_text())["n_questions"] == 10
    assert study.returncode == 0, study.stderr
    result = json.loads((tmp_path / "study" / "study-toystudy.json").read_text())
    assert {"echo_ratio", "echo-base", "likra"} <= set(result["modes"]) and result["n"] == 10
    proc = likra(["report", str(tmp_path / "study")], site)
    assert proc.returncode == 0 and "toystudy modes:" in (tmp_path / "study" / "report.md").read_text()


def test_plugin_from_yaml_with_plugin_flag_and_environment(plugin_site, tmp_path):
    bare = [plugin_site / "bare"]  # no entry point: not found unless named
    config = tmp_path / "curve.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            model: random-tiny
            data: toybench:train
            eval_data: toybench:test
            limit: 16
            out: {tmp_path / "yaml-curve"}
            modes: [base, echo-base, positive-echo]
            heads:
              - positive=mle:gold
              - {{name: echo, objective: echo, data: "gold", settings: {{learning_rate: 0.05}}}}
            objectives:
              echo: {{logging_steps: 1}}
            train: {{batch_size: 8}}
            """
        )
    )
    # Not found without being named; named by --plugin (both spellings); by $LIKRA_PLUGINS in a train run.
    run = tmp_path / "run"
    unnamed, proc, info, trained = likra_together(
        (["-q", "curve", "--config", str(config), "--out", str(tmp_path / "unnamed")], bare),
        (["-q", "--plugin", "likra_toy", "curve", "--config", str(config)], bare),
        (["--plugin=likra_toy", "info"], bare),
        (["-q", "train", "--model", "random-tiny", "--data", "toybench:train", "--batch-size", "8", "--heads",
          "positive=mle:gold,echo=echo:gold", "--out", str(run)], bare, {"LIKRA_PLUGINS": "likra_toy"}),
    )  # fmt: skip
    assert unnamed.returncode == 2 and "unknown objective 'echo'" in unnamed.stderr
    assert proc.returncode == 0, proc.stderr
    assert info.returncode == 0 and "likra_toy (--plugin)" in info.stdout, info.stderr
    curve = json.loads((tmp_path / "yaml-curve" / "curve.json").read_text())
    assert {r["mode"] for r in curve["rows"]} == {"base", "echo-base", "positive-echo"}
    recorded = json.loads((tmp_path / "yaml-curve" / "curve-config.json").read_text())
    assert recorded["heads"][1]["settings"] == {"learning_rate": 0.05}
    echo_record = json.loads((tmp_path / "yaml-curve" / "seed-0" / "echo" / "head-settings.json").read_text())
    assert echo_record["settings"]["logging_steps"] == 1 and echo_record["settings"]["learning_rate"] == 0.05
    done = json.loads((tmp_path / "yaml-curve" / "seed-0" / "echo.done.json").read_text())
    assert [entry["learning_rate"] for entry in done["log"]] == [0.05, 0.05]  # the head's own rate, logged each step
    assert trained.returncode == 0, trained.stderr
    manifest = json.loads((run / "likra.json").read_text())
    assert manifest["heads"] == ["positive", "echo"] and (run / "adapters" / "echo" / "adapter_config.json").is_file()
    proc = likra(["-q", "eval", "--run", str(run), "--data", "toybench:test", "--modes", "positive-echo,base",
                  "--out", str(tmp_path / "e.json")], bare, {"LIKRA_PLUGINS": "likra_toy"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_a_name_registered_by_two_plugins_is_one_line_naming_both(plugin_site):
    proc = likra(["--plugin", "likra_clash", "info"], [plugin_site / "site", plugin_site / "clash"])
    assert proc.returncode == 2
    err = proc.stderr.strip()
    assert err.startswith("likra: error: plug-in likra_clash: objective 'echo' is registered twice: by likra_toy")
    assert "and by likra_clash" in err and "\n" not in err
    proc = likra(["--plugin", "no_such_plugin", "info"], [])
    assert proc.returncode == 2 and "plug-in no_such_plugin: cannot load 'no_such_plugin'" in proc.stderr
