"""The precision policy (`likra.model.precision`): `--dtype auto` trains in bf16 where bf16 is native (CPUs with
bf16 instructions a probe finds faster, CUDA) and scores in fp32 wherever an fp32 copy fits; each resolved dtype is
recorded (never `auto`) and is the one that ran. The bf16 path runs on any CPU (emulated bf16 is only slower), so it
is tested here by making this CPU look like an AMX one."""

import json

import pytest
import torch
from numerics import assert_kernel_close

from likra.cli import main
from likra.errors import LikraError
from likra.experiments.folder import CurveFolder
from likra.model import loading, precision
from likra.model.precision import Precision, computing_in, resolve_precision


@pytest.fixture
def cpu_kind(monkeypatch):
    """Make this CPU look like one with (or without) bf16 instructions of a given measured speed-up."""

    def set_kind(flags: list[str], speedup: float = 3.0) -> None:
        monkeypatch.setattr(loading, "cpu_bf16_flags", lambda: list(flags))
        monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: speedup)  # the figure, measured or cached
        loading.warn_emulated_bf16.cache_clear()

    yield set_kind
    loading.warn_emulated_bf16.cache_clear()


CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "flags, speedup, train",
    [([], 0.01, "fp32"), (["avx512_bf16"], 2.1, "bf16"), (["amx_bf16"], 6.3, "bf16"), (["avx512_bf16"], 0.9, "fp32")],
)
def test_auto_trains_in_bf16_where_it_is_native_and_faster_and_scores_in_fp32(cpu_kind, flags, speedup, train):
    cpu_kind(flags, speedup)
    assert resolve_precision("auto", device=CPU, parameters=1000) == Precision(train, "fp32")
    assert resolve_precision("fp32", device=CPU) == Precision("fp32", "fp32")  # --dtype X means both
    assert resolve_precision("bf16", device=CPU) == Precision("bf16", "bf16")
    assert resolve_precision("auto", "fp32", "bf16", device=CPU) == Precision("fp32", "bf16")  # each overridable
    assert resolve_precision("auto", device=CPU, trains=False) == Precision(None, "fp32")


def test_auto_scores_in_the_training_dtype_where_fp32_does_not_fit_and_says_why(cpu_kind, monkeypatch, caplog):
    cpu_kind(["amx_bf16"], 3.0)
    monkeypatch.setattr(precision, "available_memory", lambda device: 10 * 2**30)
    assert resolve_precision("auto", device=CPU, parameters=2 * 2**30 // 6) == Precision("bf16", "fp32")
    with caplog.at_level("WARNING", logger="likra.model.precision"):
        big = resolve_precision("auto", device=CPU, parameters=70 * 10**9)
    assert (big.train, big.score) == ("bf16", "bf16") and "fp32 copy of the base needs" in big.note
    assert big.note in caplog.text and big.to_json()["note"] == big.note
    quantized = resolve_precision("auto", device=CPU, quantize="4bit")
    assert quantized.score == "bf16" and "4bit" in quantized.note
    spread = resolve_precision("auto", device=CPU, device_map="auto")
    assert spread.score == "bf16" and "device map" in spread.note
    scored_only = resolve_precision("auto", device=CPU, parameters=3 * 2**30 // 4 * 4, trains=False)
    assert scored_only == Precision(None, "bf16", scored_only.note) and scored_only.note  # 12 GiB > 80% of 10
    with pytest.raises(LikraError, match="unknown score dtype"):
        resolve_precision("auto", score_dtype="int8")


def test_an_explicit_bf16_on_a_cpu_without_it_is_said_once(cpu_kind, caplog):
    cpu_kind([], 0.01)
    with caplog.at_level("WARNING", logger="likra.model.loading"):
        for _ in range(2):
            assert loading.resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16  # still honoured
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "emulated" in caplog.records[0].message and len(caplog.records) == 1
    cpu_kind(["amx_bf16"], 3.0)
    caplog.clear()
    with caplog.at_level("WARNING", logger="likra.model.loading"):
        loading.resolve_dtype("bf16", torch.device("cpu"))
        loading.resolve_dtype("bf16", torch.device("cuda"))
    assert not caplog.records


def test_the_probe_measures_this_cpu_and_the_flags_can_be_set(monkeypatch):
    speedup = loading.cpu_bf16_speedup(size=128, repeats=2)
    monkeypatch.delenv("LIKRA_CPU_BF16_FLAGS")
    assert speedup > 0 and set(loading.cpu_bf16_flags()) <= {"avx512_bf16", "amx_bf16"}  # what /proc/cpuinfo says
    monkeypatch.setenv("LIKRA_CPU_BF16_FLAGS", "amx_bf16,avx2")
    assert loading.cpu_bf16_flags() == ["amx_bf16"]


def test_the_probe_runs_once_per_machine_and_its_figure_is_kept(monkeypatch, tmp_path, caplog):
    """The first resolution times the CPU and logs the figure; the next ones read it from likra's cache (the
    timing would fail) and log it at debug level only; another key (flags, torch, threads) is timed anew."""
    monkeypatch.setenv("LIKRA_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("LIKRA_CPU_BF16_FLAGS", "avx512_bf16")
    timed = []
    real = loading.cpu_bf16_speedup
    monkeypatch.setattr(loading, "cpu_bf16_speedup", lambda: timed.append(1) or real(size=256, repeats=3))
    with caplog.at_level("DEBUG", logger="likra.model.precision"):
        first = precision.cpu_bf16_speedup()
    assert timed == [1] and first > 0
    (said,) = [r for r in caplog.records if r.levelname == "INFO"]
    assert f"{first:.2f}x fp32 (measured once" in said.getMessage()
    kept = json.loads((tmp_path / "cache" / precision.BF16_PROBE_FILE).read_text())
    assert kept[precision.bf16_probe_key()]["speedup"] == first

    def no_timing(*args, **kwargs):
        raise AssertionError("timed again")

    monkeypatch.setattr(loading, "cpu_bf16_speedup", no_timing)
    caplog.clear()
    with caplog.at_level("DEBUG", logger="likra.model.precision"):
        assert precision.cpu_bf16_speedup() == first
        train = resolve_precision("auto", device=CPU, parameters=1000).train
    assert train == ("bf16" if first > precision.BF16_FASTER else "fp32")
    assert {r.levelname for r in caplog.records} == {"DEBUG"}  # read back: said at debug level only
    monkeypatch.setenv("LIKRA_CPU_BF16_FLAGS", "amx_bf16")  # another CPU kind: measured for it
    with pytest.raises(AssertionError, match="timed again"):
        precision.cpu_bf16_speedup()


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"KEY": {"speedup": "fast"}}', '{"KEY": -1}', "\xff\xfe"])
def test_a_damaged_probe_cache_is_measured_again_and_rewritten(monkeypatch, tmp_path, damage):
    monkeypatch.setenv("LIKRA_CACHE", str(tmp_path))
    monkeypatch.setenv("LIKRA_CPU_BF16_FLAGS", "amx_bf16")
    path = tmp_path / precision.BF16_PROBE_FILE
    path.write_bytes(damage.replace("KEY", precision.bf16_probe_key().replace('"', "")).encode("latin-1"))
    timed = []
    real = loading.cpu_bf16_speedup
    monkeypatch.setattr(loading, "cpu_bf16_speedup", lambda: timed.append(1) or real(size=256, repeats=3))
    speedup = precision.cpu_bf16_speedup()
    assert timed == [1] and speedup > 0
    assert json.loads(path.read_text())[precision.bf16_probe_key()]["speedup"] == speedup
    assert precision.cpu_bf16_speedup() == speedup and timed == [1]


def test_computing_in_swaps_a_bf16_copy_of_the_base_and_gives_the_exact_fp32_weights_back(tiny_heads):
    base = {n: p for n, p in tiny_heads.named_parameters() if "lora_" not in n}
    lora = {n: p for n, p in tiny_heads.named_parameters() if "lora_" in n}
    before = {n: p.data for n, p in base.items()}
    storage = {n: p.data_ptr() for n, p in base.items()}
    with computing_in(tiny_heads, "bf16"):
        assert {p.dtype for p in base.values()} == {torch.bfloat16} and {p.dtype for p in lora.values()} == {
            torch.float32
        }
        copy = {n: p.data for n, p in base.items()}
        copied = {n: p.data_ptr() for n, p in base.items()}
        assert all(torch.equal(copy[n], before[n].bfloat16()) for n in base)
    assert all(p.data_ptr() == storage[n] and p.dtype == torch.float32 for n, p in base.items())  # never rounded
    with computing_in(tiny_heads, "bf16"):
        assert all(p.data_ptr() == copied[n] for n, p in base.items())  # the copy is made once
    with computing_in(tiny_heads, "fp32"):
        assert all(p.data_ptr() == storage[n] for n, p in base.items())  # nothing to do


def adapter(run) -> dict:
    from safetensors.torch import load_file

    return load_file(run / "adapters" / "positive" / "adapter_model.safetensors")


def run_and_eval(tmp_path, name: str, *train_flags: str, eval_flags: tuple = ()) -> tuple[dict, dict, dict]:
    run = tmp_path / name
    args = ["-q", "train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", "8", "--batch-size", "4"]
    assert main([*args, *train_flags, "--out", str(run)]) == 0
    out = tmp_path / f"{name}.json"
    assert main(["-q", "eval", "--run", str(run), "--limit", "4", *eval_flags, "--out", str(out)]) == 0
    return json.loads((run / "likra.json").read_text()), json.loads(out.read_text()), {"run": run}


def test_auto_trains_a_run_in_bf16_and_evaluates_it_in_fp32(cpu_kind, tmp_path):
    cpu_kind(["amx_bf16"], 3.0)
    manifest, scored, where = run_and_eval(tmp_path, "auto")
    assert manifest["model"]["dtype"] == "bf16" and manifest["precision"] == {"train": "bf16"}
    assert scored["dtype"] == "fp32" and scored["precision"] == {"train": "bf16", "score": "fp32"}
    # The effect: trained in bf16 (as --dtype bf16 trains), not fp32, and scored from fp32 weights.
    run_and_eval(tmp_path, "bf16", "--dtype", "bf16")
    run_and_eval(tmp_path, "fp32", "--dtype", "fp32")
    trained = {name: adapter(tmp_path / name) for name in ("auto", "bf16", "fp32")}
    assert all(torch.equal(trained["auto"][k], trained["bf16"][k]) for k in trained["auto"])
    assert not all(torch.equal(trained["auto"][k], trained["fp32"][k]) for k in trained["auto"])
    from likra.runs import load_run_model

    model, _, _ = load_run_model(where["run"])
    assert {p.dtype for n, p in model.named_parameters()} == {torch.float32}
    _, in_bf16, _ = run_and_eval(tmp_path, "scored-bf16", eval_flags=("--score-dtype", "bf16"))
    assert in_bf16["dtype"] == "bf16" and in_bf16["loglikelihoods"] != scored["loglikelihoods"]
    assert_kernel_close(in_bf16["loglikelihoods"]["positive"], scored["loglikelihoods"]["positive"], "bf16")


def test_settings_that_would_not_apply_are_refused(tmp_path, capsys):
    args = ["train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", "8", "--out", str(tmp_path / "r")]
    assert main([*args, "--score-dtype", "bf16"]) == 2
    assert "likra train scores nothing" in capsys.readouterr().err
    assert main(["eval", "--model", "random-tiny", "--limit", "2", "--train-dtype", "bf16"]) == 2
    assert "trains nothing" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_a_curve_trains_in_bf16_scores_in_fp32_and_records_both(cpu_kind, tmp_path, capsys):
    from conftest import TINY_CURVE_ARGS

    cpu_kind(["amx_bf16"], 3.0)
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--out", str(tmp_path / "auto")]) == 0
    curve = json.loads((tmp_path / "auto" / "curve.json").read_text())
    assert curve["dtype"] == "bf16/fp32" and curve["precision"] == {"train": "bf16", "score": "fp32"}
    assert json.loads(CurveFolder(tmp_path / "auto").config_file.read_text())["dtype"] == "bf16"  # resolved
    # Trained as a curve trained and scored in bf16 is (the same bf16 base weights: losses agree to bf16 rounding).
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--dtype", "bf16", "--out", str(tmp_path / "bf16")]) == 0
    losses = [json.loads(p.read_text())["losses"] for p in sorted((tmp_path / "auto").rglob("*.done.json"))]
    bf16 = [json.loads(p.read_text())["losses"] for p in sorted((tmp_path / "bf16").rglob("*.done.json"))]
    assert [len(x) for x in losses] == [len(x) for x in bf16] == [1, 1]  # each head's last step logs its loss
    assert_kernel_close(losses, bf16, kind="bf16", passes=2)  # a bf16 copy of the base, or a base loaded in bf16
    tags = {p.parent.name for p in (tmp_path / "auto").rglob("step-*.json")}
    assert len(tags) == 1 and tags.pop().endswith("scored_fp32")
    # Re-run with --dtype fp32 into the bf16-trained folder: other checkpoints, refused in one line that says how.
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--dtype", "fp32", "--out", str(tmp_path / "auto")]) == 2
    assert "--train-dtype bf16 continues it" in capsys.readouterr().err
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--train-dtype", "bf16", "--out", str(tmp_path / "auto")]) == 0


def test_a_curve_records_the_dtype_it_ran_in(cpu_kind, tmp_path):
    from conftest import TINY_CURVE_ARGS

    cpu_kind([], 1.0)
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--out", str(tmp_path / "c")]) == 0
    curve = json.loads((tmp_path / "c" / "curve.json").read_text())
    assert curve["dtype"] == "fp32" and curve["precision"] == {"train": "fp32", "score": "fp32"}


def load_emulation():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "bf16_emulation.py"
    spec = importlib.util.spec_from_file_location("bf16_emulation", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bf16_emulation_computes_what_a_native_bf16_kernel_does():
    """benchmarks/bf16_emulation.py: bf16 products as fp32 products of bf16-rounded operands, rounded to bf16; within
    one bf16 rounding of this CPU's own bf16 kernel, under autocast too (with gradients), and fp32 work untouched."""
    emulation = load_emulation()
    torch.manual_seed(0)
    a, b = torch.randn(48, 320).bfloat16(), torch.randn(320, 24).bfloat16()
    with emulation.fast_bf16() as mode:
        product = a @ b
    native = (a @ b).float()
    assert product.dtype == torch.bfloat16 and mode.calls == 1
    # one bf16 unit in the last place, plus what any order of an fp32 sum of 320 products may differ by (another
    # CPU's kernel, AMX's tiles say, sums in another order)
    ulp = torch.maximum(product.float().abs(), native.abs()) * 2**-7
    summation = 320 * 2**-24 * (a.float().abs() @ b.float().abs())
    assert ((product.float() - native).abs() <= ulp + summation).all()
    x, w = torch.randn(6, 32, requires_grad=True), torch.randn(16, 32, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with emulation.fast_bf16() as mode:
            y = torch.nn.functional.linear(x, w)
        expected = torch.nn.functional.linear(x, w)
    assert y.dtype == expected.dtype == torch.bfloat16 and mode.calls == 1
    assert_kernel_close(y, expected, "bf16")
    y.float().sum().backward()
    assert x.grad is not None and w.grad is not None
    assert_kernel_close(x.grad, w.sum(0).expand(6, 32), "bf16")
    with emulation.fast_bf16() as mode:  # fp32 outside autocast: not touched
        plain = torch.nn.functional.linear(x.detach(), w.detach())
    assert mode.calls == 0 and torch.equal(plain, torch.nn.functional.linear(x.detach(), w.detach()))
