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
from conftest import one_line_error

from likra.cli import main
from likra.errors import LikraError
from likra.model.loading import TINY_MODEL

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


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory):
    """One trained run for the tests that only read it (each checks, by hashing, that it stays as it was)."""
    folder = tmp_path_factory.mktemp("shared")
    rows = [{"prompt": f"Q {i}?", "choices": ["red", "blue", "green"], "gold": i % 3} for i in range(8)]
    qa = write_jsonl(folder / "qa.jsonl", rows)
    assert main(TINY_TRAIN + ["--data", str(qa), "--out", str(folder / "run")]) == 0
    return folder / "run"


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


# -- 6. third round: nothing a user wrote is removed or replaced ---------------------------------------
def _user_folder(path: Path) -> Path:
    path.mkdir(parents=True)
    (path / "precious.txt").write_text("keep me")
    (path / "sub").mkdir()
    (path / "sub" / "notes.md").write_text("mine")
    return path


def test_train_never_deletes_a_users_partial_folder(tmp_path, qa, capsys):
    mine = _user_folder(tmp_path / "x" / "tp.partial")
    err = refused(capsys, TINY_TRAIN + ["--data", str(qa), "--out", str(tmp_path / "x" / "tp")], "tp.partial", mine)
    assert "not made by likra" in err and not (tmp_path / "x" / "tp").exists()


def test_export_never_deletes_a_users_partial_folder(tmp_path, shared_run, capsys):
    mine = _user_folder(tmp_path / "x" / "mine.partial")
    refused(capsys, ["-q", "export", str(shared_run), str(tmp_path / "x" / "mine")], "mine.partial", mine, shared_run)
    assert not (tmp_path / "x" / "mine").exists()


def test_overwrite_never_deletes_a_users_old_folder(tmp_path, shared_run, qa, capsys):
    import shutil

    mine = _user_folder(shared_run.parent / "run.old")
    try:
        argv = TINY_TRAIN + ["--data", str(qa), "--out", str(shared_run), "--overwrite"]
        refused(capsys, argv, "run.old: exists and was not made by likra", mine, shared_run)
    finally:
        shutil.rmtree(mine)
    link = tmp_path / "link"
    link.symlink_to(shared_run)
    refused(capsys, TINY_TRAIN + ["--data", str(qa), "--out", str(link), "--overwrite"], "symbolic link", shared_run)


def test_likra_replaces_only_its_own_leftovers(tmp_path, run, qa, capsys):
    from likra.io import TEMPORARY_MARKER, mark_temporary

    for leftover in (tmp_path / "run.partial", tmp_path / "run.old"):  # what a killed run leaves behind
        leftover.mkdir()
        mark_temporary(leftover)
        (leftover / "half.bin").write_bytes(b"x")
    assert main(TINY_TRAIN + ["--data", str(qa), "--out", str(run), "--overwrite"]) == 0
    assert not (tmp_path / "run.partial").exists() and not (tmp_path / "run.old").exists()
    assert (run / "likra.json").is_file() and not (run / TEMPORARY_MARKER).exists()
    out = tmp_path / "exported"
    assert (
        main(["-q", "export", str(run), str(out)]) == 0
        and main(["-q", "export", str(run), str(out), "--overwrite"]) == 0
    )
    assert not (out / TEMPORARY_MARKER).exists() and not (tmp_path / "exported.old").exists()


def test_output_files_need_overwrite(tmp_path, qa, capsys, monkeypatch):
    mine = tmp_path / "mine"
    mine.mkdir()
    existing = mine / "out.jsonl"
    existing.write_text("my own notes\n")
    generate = ["-q", "generate", "--model", "random-tiny", "--prompt", "Hi", "--max-new-tokens", "2"]
    refused(capsys, [*generate, "--out", str(existing)], "already exists", mine)
    refused(capsys, [*generate, "--out", str(mine)], "is a folder", mine)
    evaluate = ["-q", "eval", "--model", "random-tiny", "--data", str(qa)]
    refused(capsys, [*evaluate, "--out", str(existing)], "pass --overwrite", mine)
    (mine / "fig.png").write_bytes(b"png")
    refused(capsys, ["-q", "plot", str(tmp_path / "c.json"), "--out", str(mine / "fig")], "fig.png: already", mine)

    def no_model(*args, **kwargs):
        raise AssertionError("a model was loaded before the outputs were checked")

    with monkeypatch.context() as m:  # refused before anything is scored (or even loaded)
        m.setattr("likra.scoring.evaluate.load_eval_model", no_model)
        refused(
            capsys, [*evaluate, "--out", str(tmp_path / "e.json"), "--lm-eval-out", str(existing)], "not a folder", mine
        )
        refused(
            capsys, TINY_CURVE + ["--out", str(tmp_path / "c"), "--lm-eval-out", str(existing)], "not a folder", mine
        )
    assert not (tmp_path / "c").exists() and not (tmp_path / "e.json").exists()
    assert main([*generate, "--out", str(existing), "--overwrite"]) == 0
    assert "generation" in json.loads(existing.read_text())
    assert main([*evaluate, "--out", str(existing), "--overwrite", "--bootstrap", "10"]) == 0
    assert "metrics" in json.loads(existing.read_text())


# -- 7. third round: hostile files ----------------------------------------------------------------------
PAIR = {"prompt": "Q?", "chosen": " yes", "rejected": " no"}
QUESTION = {"prompt": "Q?", "choices": ["yes", "no"], "gold": 0}


def test_deeply_nested_jsonl_lines(tmp_path, capsys):
    from likra.data.preferences import read_preference_jsonl
    from likra.data.records import read_jsonl
    from likra.generation.prompts import read_prompts

    deep = '{"prompt": ' + "[" * 200_000 + "]" * 200_000 + "}"
    cases = [
        (json.dumps(PAIR), read_preference_jsonl, "pairs.jsonl"),
        (json.dumps(QUESTION), read_jsonl, "questions.jsonl"),
        (json.dumps({"prompt": "Hi"}), read_prompts, "prompts.jsonl"),
    ]
    for good, reader, name in cases:
        path = tmp_path / name
        path.write_text(f"{good}\n{deep}\n")
        with pytest.raises(LikraError, match=rf"{name}:2: nested deeper than 100 levels"):
            reader(path)
    shallow = tmp_path / "shallow.jsonl"  # 150 levels: parsed by json, refused by likra's limit
    shallow.write_text('{"prompt": "Q?", "choices": ["a", "b"], "gold": 0, "x": ' + "[" * 150 + "]" * 150 + "}\n")
    with pytest.raises(LikraError, match=r"shallow.jsonl:1: nested deeper than 100"):
        read_jsonl(shallow)
    pairs = tmp_path / "pairs.jsonl"
    refused(
        capsys, TINY_TRAIN + ["--data", str(pairs), "--out", str(tmp_path / "r")], "pairs.jsonl:2: nested", tmp_path
    )


def test_lone_surrogates_are_refused_with_file_and_line(tmp_path, capsys):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(json.dumps(PAIR) + '\n{"prompt": "Q?", "chosen": " \\ud800", "rejected": " no"}\n')
    err = refused(capsys, TINY_TRAIN + ["--data", str(pairs), "--out", str(tmp_path / "r")], "pairs.jsonl:2", tmp_path)
    assert "surrogate" in err
    questions = tmp_path / "questions.jsonl"
    questions.write_text(json.dumps(QUESTION) + '\n{"prompt": "\\uDFFF?", "choices": ["a", "b"], "gold": 0}\n')
    refused(capsys, ["-q", "eval", "--model", "random-tiny", "--data", str(questions)], "questions.jsonl:2", tmp_path)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "x\\ud83d"}\n')
    refused(capsys, ["-q", "generate", "--model", "random-tiny", "--data", str(prompts)], "prompts.jsonl:1", tmp_path)
    fine = tmp_path / "emoji.jsonl"  # a surrogate *pair* is one valid character
    fine.write_text('{"prompt": "Q \\ud83d\\ude00?", "choices": ["a", "b"], "gold": 0}\n')
    from likra.data.records import read_jsonl

    assert read_jsonl(fine)[0].prompt == "Q \U0001f600?"


def test_rows_of_both_kinds_are_refused(tmp_path, capsys):
    later = write_jsonl(tmp_path / "later.jsonl", [PAIR, {**PAIR, "choices": ["a", "b"], "gold": 7}])
    refused(
        capsys, TINY_TRAIN + ["--data", str(later), "--out", str(tmp_path / "r")], "later.jsonl:2: the row has both"
    )
    first = write_jsonl(tmp_path / "first.jsonl", [{**QUESTION, "rejected": "no"}, QUESTION])
    refused(
        capsys, TINY_TRAIN + ["--data", str(first), "--out", str(tmp_path / "r")], "first.jsonl:1: the row has both"
    )


def test_hostile_json_in_run_and_curve_folders(tmp_path, shared_run, qa, capsys):
    import shutil

    deep = shutil.copytree(shared_run, tmp_path / "deep")
    (deep / "likra.json").write_text("[" * 100_000 + "]" * 100_000)
    refused(capsys, ["-q", "eval", "--run", str(deep), "--data", str(qa)], "unreadable manifest (nested deeper", deep)
    digits = shutil.copytree(shared_run, tmp_path / "digits")
    (digits / "likra.json").write_text('{"format": ' + "1" * 5000 + "}")
    refused(capsys, ["-q", "eval", "--run", str(digits), "--data", str(qa)], "unreadable manifest", digits)
    from likra.experiments.folder import read_json

    scores = tmp_path / "scores.json"
    scores.write_text("[" * 5000 + "]" * 5000)
    with pytest.raises(LikraError, match="scores.json: damaged file"):
        read_json(scores)


def _config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


YAML_CASES = [
    ("model: " + "[" * 50_000 + "]" * 50_000 + "\n", "c.yaml:1: nested deeper than 100 levels"),
    ("train:\n  batch_size: true\n", "train.batch_size: true is a boolean"),
    ("lora:\n  r: yes\n", "lora.r: input should be a valid integer, unable to parse string as an integer, got 'yes'"),
    ("limit: false\n", "limit: false is a boolean"),
    (
        "model: random-tiny\ntrain:\n  epochs: 1\nmodel: other\n",
        "c.yaml:4: invalid YAML (duplicate key 'model' (first at line 1))",
    ),
    ('model: "\\ud800"\n', "lone surrogate"),
    ("model: [unclosed\n", "c.yaml:2: invalid YAML"),
]


@pytest.mark.parametrize("text, match", YAML_CASES)
def test_hostile_yaml_configs(tmp_path, capsys, text, match):
    cfg = _config(tmp_path, text)
    refused(capsys, ["-q", "train", "--config", str(cfg), "--out", str(tmp_path / "r")], match, tmp_path)


def test_yaml_alias_bomb_fails_fast_in_one_short_line(tmp_path, capsys):
    lines = ["a: &a [" + ", ".join(["lol"] * 10) + "]"]
    for k in range(1, 12):  # 10^12 values once expanded
        lines.append(f"l{k}: &l{k} [" + ", ".join([f"*{'a' if k == 1 else f'l{k - 1}'}"] * 10) + "]")
    cfg = _config(tmp_path, "\n".join(lines) + "\n")
    started = time.perf_counter()
    err = refused(capsys, ["-q", "train", "--config", str(cfg)], "aliases expand to more than 10,000 values")
    assert time.perf_counter() - started < 5 and len(err) < 300
    small = _config(tmp_path, "base: &b {r: 4}\nlora: *b\n")  # anchors within the budget are fine
    from likra.config import load_yaml

    assert load_yaml(small)["lora"] == {"r": 4}


def test_huge_values_give_short_error_lines(tmp_path, capsys):
    cfg = _config(tmp_path, "train:\n  batch_size: " + "x" * (10**7) + "\n")
    err = refused(capsys, ["-q", "train", "--config", str(cfg)], "c.yaml: a config file of more than 1 MiB")
    assert len(err) < 300
    cfg = _config(tmp_path, "train:\n  batch_size: " + "x" * 500_000 + "\n")
    err = refused(capsys, ["-q", "train", "--config", str(cfg)], "train.batch_size")
    assert len(err) < 1100
    err = refused(capsys, TINY_TRAIN + ["--data", "y" * 1_000_000, "--out", str(tmp_path / "r")], "")
    assert len(err) < 1100


def test_long_jsonl_lines_are_refused(tmp_path, monkeypatch):
    from likra.data.records import read_jsonl

    monkeypatch.setattr("likra.data.records.MAX_LINE_BYTES", 100)
    path = write_jsonl(tmp_path / "long.jsonl", [QUESTION, {**QUESTION, "prompt": "x" * 200}])
    with pytest.raises(LikraError, match=r"long.jsonl:2: a line longer than"):
        read_jsonl(path)


# -- 8. third round: every option checked before the first model loads ------------------------------------
def _no_model(monkeypatch):
    def loaded(*args, **kwargs):
        raise AssertionError("a model was loaded before every option was checked")

    for where in ("likra.training.pipeline.load_base_model", "likra.experiments.curve.load_tokenizer"):
        monkeypatch.setattr(where, loaded)


@pytest.mark.parametrize("objectives", ["likra,kto", "dpo-ipo", "dpo"])
def test_a_studys_objective_settings_are_checked_first(tmp_path, capsys, monkeypatch, objectives):
    _no_model(monkeypatch)
    argv = ["-q", "study", "objectives", *TINY_CURVE[2:], "--objectives", objectives, "--dpo-loss", "nope"]
    refused(capsys, argv + ["--out", str(tmp_path / "s")], "unknown DPO loss type 'nope'", tmp_path)
    assert not (tmp_path / "s").exists()


def test_out_of_range_mode_coefficients(tmp_path, shared_run, qa, capsys, monkeypatch):
    nines = "9" * 400
    _no_model(monkeypatch)
    monkeypatch.setattr("likra.scoring.evaluate.load_eval_model", lambda *a: pytest.fail("model loaded"))
    for modes in (f"positive-{nines}*negative", "positive-1000000.5*negative", f"{nines}.0*w*negative"):
        err = refused(
            capsys,
            ["-q", "eval", "--run", str(shared_run), "--data", str(qa), "--modes", modes],
            "out of range",
            shared_run,
        )
        assert len(err) < 400
    refused(
        capsys, TINY_CURVE + ["--modes", f"positive-{nines}*negative", "--out", str(tmp_path / "c")], "out of range"
    )
    refused(
        capsys,
        ["-q", "eval", "--run", str(shared_run), "--data", str(qa), "--weight", "1e7"],
        "--weight",
        shared_run,
    )
    assert not (tmp_path / "c").exists()


def test_lm_eval_bad_tasks_and_limits(tmp_path, capsys, monkeypatch):
    """Refused in one line before the harness loads a model or data (its task index is real: the harness's)."""
    pytest.importorskip("lm_eval")
    base = ["-q", "lm-eval", "--base-model", "random-tiny"]
    refused(capsys, [*base, "--tasks", "no_such_task"], "Tasks not found: no_such_task")
    refused(capsys, [*base, "--tasks", "arc_easy", "--limit", "-3"], "--limit -3")
    refused(capsys, [*base, "--tasks", "arc_easy", "--limit", "nan"], "--limit nan")
    refused(capsys, [*base, "--tasks", "arc_easy", "--num_fewshot", "-1"], "--num_fewshot -1")
    refused(capsys, [*base, "--tasks", "arc_easy", "--weight", "inf"], "weight=inf: not a finite number")


# -- 9. third round: a full disk ----------------------------------------------------------------------------
def test_full_disk_while_writing_adapters_names_the_path_and_the_space(tmp_path, qa, capsys, monkeypatch):
    from safetensors import SafetensorError

    def full(*args, **kwargs):
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    out = tmp_path / "r"
    with monkeypatch.context() as m:
        m.setattr("peft.peft_model.safe_save_file", full)
        err = refused(
            capsys, TINY_TRAIN + ["--data", str(qa), "--out", str(out)], "r.partial/adapters: no space left on device"
        )
    assert "needed" in err and "free" in err and not out.exists()
    assert main(TINY_TRAIN + ["--data", str(qa), "--out", str(out)]) == 0  # the rerun clears likra's leftover
    assert (out / "likra.json").is_file() and not (tmp_path / "r.partial").exists()


def test_full_disk_in_a_curve_checkpoint_then_resume(tmp_path, capsys, monkeypatch):
    import torch

    out = tmp_path / "curve"
    real_save = torch.save

    def full(obj, f, *args, **kwargs):
        if str(f).endswith("optimizer.pt") and "checkpoint-2" in str(f):
            raise RuntimeError(
                "[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0 basic_ios::clear: iostream error"
            )
        return real_save(obj, f, *args, **kwargs)

    with monkeypatch.context() as m:
        m.setattr(torch, "save", full)
        err = refused(capsys, TINY_CURVE + ["--limit", "16", "--out", str(out)], "writing failed (is the disk full?)")
    assert "checkpoints of 'positive'" in err and "seed-0/positive" in err
    assert main(TINY_CURVE + ["--limit", "16", "--out", str(out)]) == 0
    assert (out / "curve.json").is_file()


def test_full_disk_in_any_file_write(tmp_path, monkeypatch):
    import errno

    from likra.io import atomic_write_text, write_failure

    path = tmp_path / "scores.json"
    path.write_text("old")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("likra.io.os.fsync", full)
    with pytest.raises(LikraError, match=r"scores.json: no space left on device \(about 5 B needed, .* free\)"):
        atomic_write_text(path, "12345")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["scores.json"]
    assert write_failure(RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"))
    assert write_failure(ValueError("something else")) is None


def test_main_turns_a_full_disk_anywhere_into_one_line(tmp_path, qa, capsys, monkeypatch):
    import errno

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "fig.png"))

    monkeypatch.setattr("likra.scoring.evaluate.evaluate", full)
    refused(capsys, ["-q", "eval", "--model", "random-tiny", "--data", str(qa)], "fig.png: no space left on device")


# -- 10. third round: local paths stay local, the hub fails fast ---------------------------------------------
def _no_network(monkeypatch):
    def network(*args, **kwargs):
        raise AssertionError("the network was asked")

    monkeypatch.setattr("likra.locations.hub_reachable", network)
    monkeypatch.setattr("huggingface_hub.snapshot_download", network)


def test_a_missing_local_path_is_refused_locally(tmp_path, qa, capsys, monkeypatch):
    _no_network(monkeypatch)
    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    for model in ("runs/does_not_exist", "./nope", "/no/such/folder", "a/b/c"):
        err = refused(capsys, TINY_TRAIN + ["--data", str(qa), "--model", model, "--out", "r"], "no such local folder")
        assert "hub:" in err
    for run in ("runs/does_not_exist", "nope"):
        refused(capsys, ["-q", "eval", "--run", run, "--data", str(qa)], "run folder does not exist")
    assert not Path("r").exists()


def test_an_unknown_hub_model_fails_fast_offline(monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    from likra import locations
    from likra.model.loading import load_base_model, load_tokenizer

    class Unreachable:
        def head(self, *args, **kwargs):
            raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.utils, "get_session", lambda: Unreachable())
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    locations.hub_reachable.cache_clear()
    try:
        started = time.perf_counter()
        assert locations.hub_reachable() is False and constants.HF_HUB_OFFLINE is True
        for load in (load_tokenizer, load_base_model):
            with pytest.raises(LikraError, match="no_such_model.*not in the local hub cache"):
                load("no_such_model")
        assert time.perf_counter() - started < 5
    finally:
        locations.hub_reachable.cache_clear()


def test_hub_ids_still_reach_the_hub(tmp_path, monkeypatch):
    import transformers

    from likra.model.loading import build_tiny_tokenizer, load_tokenizer
    from likra.runs import resolve_run

    monkeypatch.chdir(tmp_path)
    Path("runs").mkdir()
    monkeypatch.setattr("likra.locations.hub_reachable", lambda: True)
    asked = []

    def from_pretrained(name, **kwargs):
        asked.append((name, kwargs))
        return build_tiny_tokenizer()

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)
    for name, repo in (("someone/model", "someone/model"), ("gpt2", "gpt2"), ("hub:runs/model", "runs/model")):
        load_tokenizer(name)
        assert asked.pop() == (repo, {})
    downloads = []
    monkeypatch.setattr(
        "huggingface_hub.snapshot_download", lambda repo_id, **kw: downloads.append((repo_id, kw)) or str(tmp_path)
    )
    assert resolve_run("hub:runs/heads") == tmp_path and resolve_run("someone/heads") == tmp_path
    assert downloads == [("runs/heads", {"repo_type": "model"}), ("someone/heads", {"repo_type": "model"})]
    monkeypatch.setattr("likra.locations.hub_reachable", lambda: False)  # offline: the hub cache alone
    assert resolve_run("someone/other") == tmp_path and downloads[-1][1]["local_files_only"] is True


def test_overwrite_replaces_only_a_folder_likra_wrote_whole(tmp_path, capsys):
    """A look-alike manifest or a user's file inside a run: refused in one line before any work, nothing touched."""
    args = ["train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", "8", "--batch-size", "8"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("four years of work")
    (mine / "likra.json").write_text('{"note": "my own notes"}')
    err = one_line_error(capsys, main([*args, "--out", str(mine), "--overwrite"]))
    assert "likra.json" in err and "--overwrite only replaces folders likra wrote" in err
    assert (mine / "thesis.txt").read_text() == "four years of work" and not (tmp_path / "mine.partial").exists()
    run = tmp_path / "run"
    assert main(["-q", *args, "--out", str(run)]) == 0
    assert "adapters/positive/adapter_model.safetensors" in json.loads((run / "likra.json").read_text())["files"]
    (run / "adapters" / "notes.md").write_text("mine")
    err = one_line_error(capsys, main([*args, "--out", str(run), "--overwrite"]))
    assert "1 file(s) likra did not write there (e.g. adapters/notes.md)" in err
    assert (run / "adapters" / "notes.md").read_text() == "mine"
    (run / "adapters" / "notes.md").unlink()
    assert main(["-q", *args, "--out", str(run), "--overwrite"]) == 0  # all likra's: replaced


def test_yaml_1_1_surprises_read_as_meant_or_refused(tmp_path, capsys):
    from likra.config import load_yaml

    config = tmp_path / "c.yaml"
    config.write_text("seed: 010\nlimit: 0o10\nmodel: on\ndata: 1:30\n")
    assert load_yaml(config) == {"seed": 10, "limit": 8, "model": "on", "data": "1:30"}
    config.write_text("model: random-tiny\nlimit: 1:30\n")
    err = one_line_error(capsys, main(["train", "--config", str(config), "--out", str(tmp_path / "r")]))
    assert "limit" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "source, target, said",
    [
        ("import sys\nsys.exit(3)\n", "exits_at_import", "it called sys.exit(3)"),
        ("def setup():\n    raise ValueError('bad plug-in')\n", "raises_in_setup:setup", "ValueError: bad plug-in"),
        ("def setup():\n    raise SystemExit(4)\n", "exits_in_setup:setup", "it called sys.exit(4)"),
    ],
)
def test_a_plugin_that_exits_or_raises_is_one_line(tmp_path, monkeypatch, capsys, source, target, said):
    module = target.partition(":")[0]
    (tmp_path / f"{module}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    err = one_line_error(capsys, main(["--plugin", target, "info"]))
    assert module in err and said in err


def test_a_plugin_function_of_the_standard_library_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("LIKRA_PLUGINS", "os:system")  # os.system() wants an argument: a TypeError
    err = one_line_error(capsys, main(["info"]))
    assert "os:system" in err and "TypeError" in err


def test_options_are_checked_against_the_library_and_unused_sections_are_said(tmp_path, capsys, caplog):
    args = ["train", "--model", "random-tiny", "--data", "arc_easy:train", "--limit", "8", "--batch-size", "8"]
    err = one_line_error(capsys, main([*args, "--dpo-lr-scheduler-type", "bogus", "--out", str(tmp_path / "r")]))
    assert "'bogus' is not a schedule transformers knows" in err and not (tmp_path / "r.partial").exists()
    err = one_line_error(capsys, main([*args, "--lr-scheduler-type", "bogus", "--out", str(tmp_path / "r")]))
    assert "--lr-scheduler-type" in err and not (tmp_path / "r").exists()
    with caplog.at_level("WARNING"):
        assert main(["-q", *args, "--dpo-beta", "0.5", "--out", str(tmp_path / "r")]) == 0
    assert "settings given for objective dpo, but no head trains with it: not applied" in caplog.text


def test_compare_of_a_folder_with_itself_and_lmeval_output_into_a_file_are_one_line(tmp_path, capsys):
    (tmp_path / "c").mkdir()
    err = one_line_error(capsys, main(["compare", str(tmp_path / "c"), str(tmp_path / "c") + "/"]))
    assert "A and B are the same folder" in err
    pytest.importorskip("lm_eval")
    (tmp_path / "results").write_text("not a folder")
    args = ["lm-eval", "--base-model", "random-tiny", "--tasks", "likra_arc_easy", "--limit", "2"]
    err = one_line_error(capsys, main([*args, "--output_path", str(tmp_path / "results")]))
    assert "--output_path" in err and "is a file" in err


CACHE_UNDER_LIMIT = r"""
import os, resource, sys
import torch
from likra.errors import LikraError
from likra.model.loading import TINY_MODEL
from likra.model import shapes
from likra.model.loading import random_model_dir, resolve_dtype

torch.set_num_threads(1)
# a 12-layer shape of 0.75 GiB in fp32 (0.38 GiB in bf16); its largest layer is 16.8M parameters
shapes.SHAPES["wide"] = shapes._shape("wide", "a wide Llama", "llama", 512, 1024, 4096, 12, 8, 8, True, 1e4, 2048)
random_model_dir("random:tiny")  # every import and the tokenizer made before the limit
shape = shapes.SHAPES["wide"]
used = int(next(line for line in open("/proc/self/status") if line.startswith("VmSize")).split()[1]) * 1024
limit = used + 256 * 2**20  # below the whole model in bf16, let alone fp32
assert limit - used < shape.weight_bytes("bf16") < shape.weight_bytes("fp32")
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
folder = random_model_dir("random:wide")
try:  # what building the whole model takes: it does not fit under this limit
    shapes.build_random_model("random:wide", resolve_dtype("bf16", torch.device("cpu")), torch.device("cpu"))
    print("whole model built")
except (MemoryError, RuntimeError):
    print("whole model refused")
print(folder)
"""


def test_a_random_shape_is_cached_in_memory_of_one_layer(tmp_path):
    """Caching `random:<shape>` (for 4-bit and device-map loads) holds one layer at a time: under an address-space
    limit below the model's bf16 size it writes the folder, which loads into the shape's model, while building the
    whole model under the same limit fails."""
    env = {**os.environ, "LIKRA_CACHE": str(tmp_path), "MALLOC_ARENA_MAX": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", CACHE_UNDER_LIMIT], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines() == ["whole model refused", str(tmp_path / "models" / "random-shape-wide")]
    import torch
    from transformers import AutoModelForCausalLM

    from likra.model import shapes

    lm = AutoModelForCausalLM.from_pretrained(tmp_path / "models" / "random-shape-wide", dtype=torch.bfloat16)
    assert lm.config.num_hidden_layers == 12 and lm.config.hidden_size == 1024
    weights = dict(lm.named_parameters())
    std = lm.config.initializer_range
    for name in ("model.embed_tokens.weight", "model.layers.11.mlp.down_proj.weight", "model.norm.weight"):
        drawn = shapes.random_tensor(name, tuple(weights[name].shape), torch.bfloat16, std)
        assert torch.equal(weights[name].detach(), drawn), name
    assert lm.lm_head.weight.data_ptr() == lm.model.embed_tokens.weight.data_ptr()  # tied, as the shape says
    assert abs(weights["model.layers.0.self_attn.q_proj.weight"].float().std().item() - std) < 1e-3


def test_a_plugins_mode_without_its_plugin_is_named_as_an_unknown_mode(tmp_path, shared_run, qa, capsys, monkeypatch):
    monkeypatch.setattr("likra.runs.load_run_model", lambda *a, **k: pytest.fail("model loaded"))
    argv = ["-q", "eval", "--run", str(shared_run), "--data", str(qa), "--out", str(tmp_path / "e.json")]
    err = refused(capsys, argv + ["--modes", "base,half"], "unknown mode 'half'", shared_run)
    assert "not a registered mode" in err and "nor a head of this run (negative, positive)" in err
    refused(capsys, argv + ["--modes", "positive-w*nothere"], "mode 'positive-w*nothere' needs head(s) nothere")
    refused(capsys, TINY_CURVE + ["--modes", "base,half", "--out", str(tmp_path / "c")], "unknown mode 'half'")
    assert not (tmp_path / "c").exists() and not (tmp_path / "e.json").exists()


def test_a_head_name_too_long_for_a_file_name_is_one_line_and_leaves_nothing(tmp_path, qa, capsys):
    out = tmp_path / "run"
    name = "h" * 300
    err = refused(capsys, TINY_TRAIN + ["--data", str(qa), "--out", str(out), "--heads", f"{name}=mle:gold"], "300")
    assert "at most 64" in err and len(err) < 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qa.jsonl"]  # no run, no <out>.partial
    from likra.model.heads import likra_heads

    variant = "other_benchmark-mmlu_high_school_government_and_politics_test-contaminated0.25"  # likra's own name
    assert len(likra_heads("other_benchmark", variant)[1].name) > 64  # a generated name is not a configured one


def test_a_plain_train_prints_likras_progress_line_and_no_trainer_bars(tmp_path, qa, capsys):
    assert main(TINY_TRAIN[1:] + ["--data", str(qa), "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "likra train run: 100%" in err and "positive trained" in err and "negative trained" in err
    assert "it/s" not in err and "s/it" not in err  # no tqdm bar of the Trainer's


def test_a_head_named_like_a_torch_method_is_one_line(tmp_path, capsys):
    args = ["train", "--model", TINY_MODEL, "--data", "arc_easy:train", "--limit", "8", "--out", str(tmp_path / "r")]
    err = one_line_error(capsys, main([*args, "--heads", "half=mle:gold"]))
    assert "'half' is an attribute of every torch module" in err and not (tmp_path / "r").exists()


@pytest.mark.parametrize("name", ["sft", "likra", "w"])
def test_a_head_named_like_a_mode_or_the_weight_is_refused(tmp_path, capsys, name):
    args = ["train", "--model", TINY_MODEL, "--data", "arc_easy:train", "--limit", "8", "--out", str(tmp_path / "r")]
    err = one_line_error(capsys, main([*args, "--heads", f"positive=mle:gold,{name}=mle:negatives:near_miss"]))
    assert f"head name {name!r} is" in err and not (tmp_path / "r").exists()


def test_an_older_run_with_a_head_named_like_a_mode_loads_with_a_warning(tmp_path, caplog):
    run = tmp_path / "run"
    args = ["-q", "train", "--model", TINY_MODEL, "--data", "arc_easy:train", "--limit", "8", "--batch-size", "8"]
    assert main([*args, "--heads", "positive=mle:gold,negative=mle:negatives:near_miss", "--out", str(run)]) == 0
    manifest = json.loads((run / "likra.json").read_text())
    manifest["heads"] = ["positive", "sft"]  # as a version before the check could have written it
    (run / "adapters" / "negative").rename(run / "adapters" / "sft")
    (run / "likra.json").write_text(json.dumps(manifest))
    args = ["-q", "eval", "--run", str(run), "--limit", "4", "--modes", "base,sft", "--out", str(tmp_path / "e.json")]
    with caplog.at_level("WARNING"):
        assert main(args) == 0
    assert "head 'sft' is the name of the registered mode 'sft'" in caplog.text


def test_a_registered_mode_whose_heads_a_run_lacks_names_them(tmp_path, qa, capsys, monkeypatch):
    """A run with configured heads (positive, nm) and the default modes: likra needs a negative head, which is what
    the line says (not that likra is an unknown mode)."""
    run = tmp_path / "nm"
    heads = ["--heads", "positive=mle:gold,nm=mle:negatives:near_miss"]
    assert main([*TINY_TRAIN, "--data", str(qa), *heads, "--out", str(run)]) == 0
    monkeypatch.setattr("likra.runs.load_run_model", lambda *a, **k: pytest.fail("model loaded"))
    err = refused(capsys, ["-q", "eval", "--run", str(run), "--data", str(qa)], "mode 'likra' needs head(s) negative")
    assert "this run has nm, positive" in err and "unknown mode" not in err


@pytest.mark.parametrize(
    "flags", [["--fewshot-data", "arc_easy:train"], ["--fewshot-seed", "7"]], ids=["fewshot-data", "fewshot-seed"]
)
def test_a_fewshot_setting_with_no_shots_is_refused_before_anything_loads(tmp_path, qa, capsys, monkeypatch, flags):
    monkeypatch.setattr("likra.runs.load_run_model", lambda *a, **k: pytest.fail("model loaded"))
    monkeypatch.setattr("likra.scoring.evaluate.load_eval_model", lambda *a, **k: pytest.fail("model loaded"))
    out = tmp_path / "e.json"
    refused(capsys, ["-q", "eval", "--model", TINY_MODEL, "--data", str(qa), *flags, "--out", str(out)], "--shots 0")
    if flags[0] == "--fewshot-data":  # a curve's scores would be named by it (and compare would call them apart)
        refused(capsys, [*TINY_CURVE, *flags, "--out", str(tmp_path / "c")], "--shots 0 draws no shots")
    assert not out.exists() and not (tmp_path / "c").exists()


def test_a_json_key_given_twice_is_one_line(tmp_path, capsys):
    data = tmp_path / "dup.jsonl"
    data.write_text('{"id": "a", "prompt": "x", "choices": ["1", "2"], "gold": 0, "gold": 1}\n')
    refused(capsys, ["-q", "eval", "--model", TINY_MODEL, "--data", str(data)], f"{data}:1: key 'gold' given twice")
