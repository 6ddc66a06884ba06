"""Bad input and faults: each gives exit 2 and one line `likra: error: ...` naming what is wrong, and leaves
what was already there exactly as it was (every folder is hashed before and after)."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from likra.cli import main

TINY_TRAIN = ["-q", "train", "--model", "random-tiny", "--batch-size", "4", "--lr", "0.01"]
TINY_CURVE = [
    "-q",
    "curve",
    "--model",
    "random-tiny",
    "--data",
    "arc_challenge:train",
    "--limit",
    "8",
    "--batch-size",
    "8",
    "--lr",
    "0.01",
    "--eval-data",
    "arc_challenge:validation",
    "--eval-limit",
    "4",
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def folder_hash(folder: Path) -> str:
    h = hashlib.sha256()
    if folder.exists():
        for p in sorted(folder.rglob("*")):
            h.update(str(p.relative_to(folder)).encode())
            if p.is_file():
                h.update(p.read_bytes())
    return h.hexdigest()


def refused(capsys, argv, match, *folders: Path) -> str:
    """Run `argv`; assert exit 2, one line naming `match`, no traceback, and `folders` untouched."""
    before = [folder_hash(f) for f in folders]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("likra: error: ") and "\n" not in err and "Traceback" not in err, err
    assert match in err, err
    assert [folder_hash(f) for f in folders] == before
    return err


@pytest.fixture
def qa(tmp_path):
    rows = [
        {"id": f"q{i}", "prompt": f"Question: item {i}?\nAnswer:", "choices": ["red", "blue", "green"], "gold": i % 3}
        for i in range(8)
    ]
    return write_jsonl(tmp_path / "qa.jsonl", rows)


@pytest.fixture
def run(tmp_path, qa):
    out = tmp_path / "run"
    assert main(TINY_TRAIN + ["--data", str(qa), "--out", str(out)]) == 0
    return out


# -- 1. data loss -----------------------------------------------------------------------------------
def test_overwrite_never_deletes_a_users_folder(tmp_path, qa, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "precious.txt").write_text("keep me")
    refused(capsys, TINY_TRAIN + ["--data", str(qa), "--out", str(mine), "--overwrite"], "not a likra run folder", mine)
    assert (mine / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / "mine.partial").exists() and not (tmp_path / "mine.old").exists()


def test_overwrite_replaces_a_likra_run(run, qa):
    before = json.loads((run / "likra.json").read_text())["created"]
    time.sleep(1.1)
    assert main(TINY_TRAIN + ["--data", str(qa), "--out", str(run), "--overwrite"]) == 0
    assert json.loads((run / "likra.json").read_text())["created"] != before


# -- 2. tracebacks ------------------------------------------------------------------------------------
def test_files_that_are_not_utf8(tmp_path, capsys):
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(
        json.dumps({"prompt": "p", "choices": ["a", "b"], "gold": 0}).encode()
        + b"\n"
        + '{"prompt": "caf\xe9", "choices": ["a", "b"], "gold": 0}\n'.encode("latin-1")
    )
    refused(capsys, TINY_TRAIN + ["--data", str(bad), "--out", str(tmp_path / "r")], "latin1.jsonl:2: not UTF-8")
    cfg = tmp_path / "c.yaml"
    cfg.write_bytes("model: caf\xe9\n".encode("latin-1"))
    refused(capsys, ["-q", "train", "--config", str(cfg)], "c.yaml: not a UTF-8 text file")
    assert not (tmp_path / "r").exists()


def test_prompt_longer_than_the_model_is_cut_from_the_left(tmp_path, capsys):
    # random-tiny has 2048 positions and one token per byte.
    data = write_jsonl(
        tmp_path / "long.jsonl",
        [
            {"prompt": "x" * 5000 + " Answer:", "choices": ["yes", "no"], "gold": 0},
            {"prompt": "Short?", "choices": ["yes", "no"], "gold": 1},
        ],
    )
    out = tmp_path / "res.json"
    assert main(["-q", "eval", "--model", "random-tiny", "--data", str(data), "--out", str(out)]) == 0
    lls = json.loads(out.read_text())["loglikelihoods"]["base"]
    assert all(v == v and v < 0 for q in lls for v in q)  # finite log-probabilities, no NaN
    huge = write_jsonl(tmp_path / "huge.jsonl", [{"prompt": "Q?", "choices": ["y" * 3000, "no"], "gold": 0}])
    refused(capsys, ["-q", "eval", "--model", "random-tiny", "--data", str(huge)], "does not fit the model's 2048")


NUMERIC = [
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-4"], "--batch-size"),
    (["--epochs", "nan"], "--epochs"),
    (["--epochs", "0"], "--epochs"),
    (["--lr", "nan"], "--learning-rate"),
    (["--lr", "inf"], "--learning-rate"),
    (["--lora-r", "0"], "--lora-r"),
    (["--limit", "0"], "--limit"),
    (["--limit", "-1"], "--limit"),
    (["--lora-dropout", "-0.5"], "--lora-dropout"),
    (["--batch-size", "four"], "--batch-size: input should be a valid integer"),
    (["--bogus", "1"], "unrecognized"),
]


@pytest.mark.parametrize("flags, name", NUMERIC)
def test_numeric_training_options_are_range_checked(tmp_path, qa, capsys, flags, name):
    refused(capsys, TINY_TRAIN + ["--data", str(qa), "--out", str(tmp_path / "r"), *flags], name, tmp_path)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "flags, name",
    [
        (["--weight", "nan"], "--weight"),
        (["--weight", "inf"], "--weight"),
        (["--weight=-inf"], "--weight"),
        (["--limit", "0"], "--limit"),
        (["--limit", "-1"], "--limit"),
        (["--shots", "-1"], "--shots"),
        (["--modes", ","], "no modes"),
        (["--batch-tokens", "0"], "--batch-tokens"),
    ],
)
def test_numeric_eval_options_are_range_checked(tmp_path, run, qa, capsys, flags, name):
    refused(capsys, ["-q", "eval", "--run", str(run), "--data", str(qa), *flags], name, run)


def test_lora_modules_the_model_lacks(tmp_path, qa, capsys):
    refused(
        capsys,
        TINY_TRAIN + ["--data", str(qa), "--out", str(tmp_path / "r"), "--lora-target-modules", "foo_proj"],
        "do not fit the model",
    )
    assert not (tmp_path / "r").exists()


def test_model_path_that_is_not_a_model(tmp_path, qa, capsys):
    refused(
        capsys, TINY_TRAIN + ["--data", str(qa), "--model", "../../etc", "--out", str(tmp_path / "r")], "cannot load"
    )


def _damage(run: Path, tmp_path: Path, name: str, how) -> Path:
    import shutil

    copy = shutil.copytree(run, tmp_path / name)
    how(copy)
    return copy


def _set_manifest(value):
    def how(folder):
        manifest = json.loads((folder / "likra.json").read_text())
        (folder / "likra.json").write_text(json.dumps(value(manifest)))

    return how


def _other_model(tmp_path: Path) -> str:
    from transformers import LlamaConfig, LlamaForCausalLM

    from likra.model.loading import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
    )
    folder = tmp_path / "a-smaller-model"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_damaged_run_folders(tmp_path, run, qa, capsys):
    def half_weights(folder):
        p = folder / "adapters" / "negative" / "adapter_model.safetensors"
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])

    def missing_modules(folder):
        p = folder / "adapters" / "positive" / "adapter_config.json"
        cfg = json.loads(p.read_text())
        cfg["target_modules"] = ["no_such_proj"]
        p.write_text(json.dumps(cfg))

    other = _other_model(tmp_path)
    capsys.readouterr()  # saving that model printed progress
    cases = {
        "one": (lambda f: (f / "likra.json").write_text("1"), "not a JSON object"),
        "string-model": (_set_manifest(lambda m: {**m, "model": "random-tiny"}), "'model' must be an object"),
        "other-model": (_set_manifest(lambda m: {**m, "model": {"name": other}}), "cannot load head"),
        "half": (half_weights, "cannot load head 'negative'"),
        "modules": (missing_modules, "cannot load head 'positive'"),
    }
    for name, (how, match) in cases.items():
        folder = _damage(run, tmp_path, name, how)
        refused(
            capsys,
            ["-q", "eval", "--run", str(folder), "--data", str(qa), "--out", str(tmp_path / "x.json")],
            match,
            folder,
        )


def test_damaged_curve_folders(tmp_path, capsys):
    import shutil

    out = tmp_path / "curve"
    assert main(TINY_CURVE + ["--out", str(out)]) == 0
    truncated = shutil.copytree(out, tmp_path / "truncated-config")
    (truncated / "curve-config.json").write_text('{"model": "random')
    refused(capsys, TINY_CURVE + ["--out", str(truncated)], "curve-config.json: damaged file", truncated)
    score = shutil.copytree(out, tmp_path / "truncated-score")
    path = next((score / "seed-0" / "scores").rglob("step-1-negative.json"))
    path.write_text(path.read_text()[:20])
    refused(capsys, TINY_CURVE + ["--out", str(score)], "step-1-negative.json: damaged file", score)
    done = shutil.copytree(out, tmp_path / "truncated-done")
    (done / "seed-0" / "positive.done.json").write_text("{")
    refused(capsys, TINY_CURVE + ["--out", str(done)], "positive.done.json: damaged done-marker", done)


def test_disk_full_while_writing_adapters(tmp_path, run, qa, capsys, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("likra.training.pipeline.save_heads", full)
    refused(capsys, TINY_TRAIN + ["--data", str(qa), "--out", str(run), "--overwrite"], "No space left on device", run)


# -- 3. silently wrong results ------------------------------------------------------------------------
def test_bom_is_read_and_empty_choices_and_duplicate_ids_are_refused(tmp_path, capsys):
    from likra.data.records import read_jsonl

    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"prompt": "p", "choices": ["a", "b"], "gold": 1}).encode() + b"\n")
    assert read_jsonl(bom)[0].choices == ("a", "b")
    empty = write_jsonl(
        tmp_path / "empty.jsonl",
        [{"prompt": "p", "choices": ["a", "b"], "gold": 0}, {"prompt": "p", "choices": ["a", "  "], "gold": 0}],
    )
    refused(
        capsys, TINY_TRAIN + ["--data", str(empty), "--out", str(tmp_path / "r")], "empty.jsonl:2: choice 1 is empty"
    )
    dup = write_jsonl(
        tmp_path / "dup.jsonl",
        [
            {"id": "a", "prompt": "p", "choices": ["a", "b"], "gold": 0},
            {"id": "b", "prompt": "p", "choices": ["a", "b"], "gold": 0},
            {"id": "a", "prompt": "q", "choices": ["a", "b"], "gold": 1},
        ],
    )
    refused(
        capsys,
        TINY_CURVE + ["--data", str(dup), "--out", str(tmp_path / "c")],
        "dup.jsonl:3: duplicate id 'a' (first at line 1)",
    )
    assert not (tmp_path / "c").exists()


# -- 4. a typo never locks a folder ---------------------------------------------------------------------
def test_typo_does_not_lock_the_folder(tmp_path, capsys):
    out = tmp_path / "curve"
    refused(capsys, TINY_CURVE + ["--batch-size", "0", "--out", str(out)], "--batch-size")
    refused(capsys, TINY_CURVE + ["--data", "arc_chalenge:train", "--out", str(out)], "unknown benchmark")
    assert not out.exists()
    assert main(TINY_CURVE + ["--out", str(out)]) == 0


# -- 5. one process per folder --------------------------------------------------------------------------
HOLD = """
import sys, time
from likra.experiments.folder import CurveFolder
with CurveFolder(sys.argv[1]).lock():
    print("locked", flush=True)
    time.sleep(120)
"""


def test_a_second_process_is_refused_and_a_dead_holder_does_not_block(tmp_path, capsys):
    out = tmp_path / "curve"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        err = refused(
            capsys, TINY_CURVE + ["--out", str(out)], f"in use by another likra process (PID {holder.pid})", out
        )
        assert "another --out" in err
    finally:
        holder.kill()
        holder.wait()
    assert (out / ".likra.lock").is_file()  # left behind by the killed process: stale, and harmless
    assert main(TINY_CURVE + ["--out", str(out)]) == 0
    assert (out / "curve.json").is_file()


def test_lock_is_reentrant_and_cleans_up_an_empty_folder(tmp_path):
    from likra.experiments.folder import CurveFolder

    folder = CurveFolder(tmp_path / "new")
    with folder.lock():
        with folder.lock():  # a study's curves inside the study's lock
            assert (tmp_path / "new" / ".likra.lock").read_text().strip() == str(os.getpid())
    assert not (tmp_path / "new").exists()


def test_more_damaged_files_and_flag_values(tmp_path, capsys):
    import shutil

    out = tmp_path / "curve"
    assert main(TINY_CURVE + ["--lora-bias", "none", "--out", str(out)]) == 0  # "none" is a value, not null
    done = shutil.copytree(out, tmp_path / "list-done")
    (done / "seed-0" / "negative.done.json").write_text("[1, 2]")
    refused(
        capsys,
        TINY_CURVE + ["--lora-bias", "none", "--out", str(done)],
        "negative.done.json: damaged done-marker",
        done,
    )
    curve = json.loads((out / "curve.json").read_text())
    del curve["seeds"]
    (tmp_path / "old.json").write_text(json.dumps(curve))
    refused(
        capsys, ["-q", "plot", str(tmp_path / "old.json"), "--out", str(tmp_path / "fig")], "not a likra curve.json"
    )
    mined = shutil.copytree(out, tmp_path / "mined")
    (mined / "mined-base-scores.json").write_text("[]")
    refused(
        capsys,
        TINY_CURVE + ["--negative-kind", "hardest", "--out", str(mined)],
        "mined-base-scores.json: damaged",
        mined,
    )
    cfg = tmp_path / "study.yaml"
    cfg.write_text("study:\nmodel: random-tiny\n")  # an empty study section
    refused(
        capsys,
        [
            "-q",
            "study",
            "negatives",
            "--config",
            str(cfg),
            *TINY_CURVE[2:],
            "--kinds",
            "bogus",
            "--out",
            str(tmp_path / "s"),
        ],
        "unknown negative kind",
    )
