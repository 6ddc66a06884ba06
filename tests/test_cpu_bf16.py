"""`--dtype auto` on CPUs: bf16 where the CPU has bf16 matrix instructions and a probe finds them faster, fp32
otherwise; the chosen dtype recorded (never `auto`). The bf16 path runs on any CPU (emulated bf16 is only slower),
so it is tested here by making this CPU look like an AMX one."""

import json

import pytest
import torch
from numerics import assert_kernel_close

from likra.cli import main
from likra.model import loading


@pytest.fixture
def cpu_kind(monkeypatch):
    """Make this CPU look like one with (or without) bf16 instructions of a given measured speed-up."""

    def set_kind(flags: list[str], speedup: float = 3.0) -> None:
        monkeypatch.setattr(loading, "cpu_bf16_flags", lambda: list(flags))
        monkeypatch.setattr(loading, "cpu_bf16_speedup", lambda *a, **k: speedup)
        loading.auto_dtype.cache_clear()
        loading.warn_emulated_bf16.cache_clear()

    yield set_kind
    loading.auto_dtype.cache_clear()
    loading.warn_emulated_bf16.cache_clear()


@pytest.mark.parametrize("flags, speedup", [([], 0.01), (["avx512_bf16"], 2.1), (["amx_bf16"], 6.3)])
def test_auto_is_fp32_on_every_cpu_and_says_what_bf16_would_give(cpu_kind, caplog, flags, speedup):
    """bf16 changed the demo's small-sample results (README, fp32 and bf16), so auto keeps fp32 on CPUs; where the
    CPU has bf16 instructions the log says how much faster an explicit --dtype bf16 would be."""
    cpu_kind(flags, speedup)
    with caplog.at_level("INFO", logger="likra.model.loading"):
        assert loading.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    said = " ".join(r.message for r in caplog.records)
    assert said.startswith("dtype auto: fp32") and (f"{speedup:.1f}x" in said) == bool(flags)
    assert loading.resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16  # an explicit dtype is kept
    assert loading.resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16


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


def test_the_probe_measures_this_cpu():
    speedup = loading.cpu_bf16_speedup(size=128, repeats=2)
    assert speedup > 0 and set(loading.cpu_bf16_flags()) <= {"avx512_bf16", "amx_bf16"}


def test_bf16_trains_in_autocast_with_fp32_lora_and_records_bf16(cpu_kind, tmp_path, capsys):
    cpu_kind(["amx_bf16"], 3.0)
    run = tmp_path / "run"
    args = ["-q", "train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", "8", "--batch-size", "4",
            "--dtype", "bf16"]  # fmt: skip
    assert main([*args, "--out", str(run)]) == 0
    manifest = json.loads((run / "likra.json").read_text())
    assert manifest["model"]["dtype"] == "bf16"
    from likra.runs import load_run_model

    model, _, _ = load_run_model(run)
    dtypes = {n.split(".")[-2] if "lora_" in n else "base": p.dtype for n, p in model.named_parameters()}
    assert dtypes["base"] == torch.bfloat16 and {dtypes[k] for k in dtypes if k != "base"} == {torch.float32}
    assert loading.trains_in_bf16(model)
    out = tmp_path / "e.json"
    assert main(["-q", "eval", "--run", str(run), "--dtype", "bf16", "--limit", "4", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["dtype"] == "bf16"
    out = tmp_path / "e32.json"  # auto scores a bf16-trained run in fp32 on a CPU, as any other
    assert main(["-q", "eval", "--run", str(run), "--limit", "4", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["dtype"] == "fp32"


def test_a_curve_records_the_dtype_it_ran_in(cpu_kind, tmp_path):
    from conftest import TINY_CURVE_ARGS

    cpu_kind([], 1.0)
    assert main(["-q", "curve", *TINY_CURVE_ARGS, "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "curve.json").read_text())["dtype"] == "fp32"


def test_the_matmul_benchmark_records_the_machine_with_every_figure(tmp_path):
    import runpy
    import sys
    from pathlib import Path

    script = Path(__file__).parents[1] / "benchmarks" / "bench_matmul.py"
    out = tmp_path / "m.json"
    argv = sys.argv
    sys.argv = [str(script), "--sizes", "32", "--dtypes", "fp32", "bf16", "--repeats", "1", "--json", str(out)]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    result = json.loads(out.read_text())
    LAYOUTS = ("a@b", "linear")
    assert set(result["machine"]) >= {"cpu", "cpu_bf16_flags", "threads"} and result["auto_dtype"] in ("fp32", "bf16")
    pairs = {(r["dtype"], r["layout"]) for r in result["rows"]}
    assert pairs == {(d, lay) for d in ("fp32", "bf16") for lay in LAYOUTS}
    for layout in LAYOUTS:
        rows = {r["dtype"]: r for r in result["rows"] if r["layout"] == layout}
        assert rows["fp32"]["vs_fp32"] == 1.0 and rows["bf16"]["gflops"] > 0
        assert rows["bf16"]["vs_fp32"] == rows["bf16"]["gflops"] / rows["fp32"]["gflops"]


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
