"""Preference pairs (prompt, chosen, rejected): read from JSONL (text and conversations), from a `save_to_disk`
folder and through the hub code path; bad rows are one-line errors naming file:line; the positive head trains
on chosen and the negative head on rejected; `likra eval` reports pairwise accuracy with per-pair scores."""

import json
from pathlib import Path

import numpy as np
import pytest

from likra.cli import main
from likra.data.examples import negative_pairs, positive_pairs
from likra.data.formats import load_data
from likra.data.preferences import read_preference_hub
from likra.errors import LikraError
from likra.model.loading import build_tiny_model, build_tiny_tokenizer
from likra.scoring.preferences import preference_results

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
GEN = "<|im_start|>assistant\n"


def chat_tokenizer():
    tok = build_tiny_tokenizer()
    tok.chat_template = CHATML
    return tok


def plain_rows(n=12):
    return [
        {"id": f"p{i}", "prompt": f"Question: what is {i}?\nAnswer:", "chosen": f" it is {i}",
         "rejected": f" nothing at all {i}"}
        for i in range(n)
    ]  # fmt: skip


def conversation_rows(n=12):
    return [
        {"id": f"c{i}",
         "prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"What is {i}?"}],
         "chosen": [{"role": "assistant", "content": f"It is {i}."}],
         "rejected": [{"role": "assistant", "content": f"No idea {i}."}]}
        for i in range(n)
    ]  # fmt: skip


def implicit_rows(n=12):
    """ultrafeedback_binarized's shape: a text prompt, and whole conversations as chosen and rejected."""
    return [
        {"prompt_id": f"u{i}", "prompt": f"What is {i}?",
         "chosen": [{"role": "user", "content": f"What is {i}?"}, {"role": "assistant", "content": f"It is {i}."}],
         "rejected": [{"role": "user", "content": f"What is {i}?"}, {"role": "assistant", "content": f"No idea {i}."}],
         "score_chosen": 8.0, "score_rejected": 3.0}
        for i in range(n)
    ]  # fmt: skip


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_plain_pairs_are_two_choice_questions(tmp_path):
    records, info = load_data(str(write_jsonl(tmp_path / "p.jsonl", plain_rows())))
    assert info.kind == "preferences" and len(records) == 12
    rec = records[3]
    assert rec.id == "p3" and rec.prompt == "Question: what is 3?\nAnswer:" and rec.gold == 0
    assert rec.choices == (" it is 3", " nothing at all 3")
    assert rec.continuation(0) == " it is 3"  # verbatim, as TRL concatenates prompt and response
    # Positive head on chosen, near-miss negative head on rejected.
    assert [a for _, a in positive_pairs(records)] == [r["chosen"] for r in plain_rows()]
    assert [a for _, a in negative_pairs(records, seed=5)] == [r["rejected"] for r in plain_rows()]


def test_conversational_pairs_render_with_the_chat_template(tmp_path):
    tok = chat_tokenizer()
    records, _ = load_data(str(write_jsonl(tmp_path / "c.jsonl", conversation_rows())), tokenizer=tok)
    rec = records[1]
    assert rec.prompt == f"<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nWhat is 1?<|im_end|>\n{GEN}"
    assert rec.choices == ("It is 1.<|im_end|>\n", "No idea 1.<|im_end|>\n")
    assert rec.continuation(0) == rec.choices[0]
    # The implicit-prompt shape (ultrafeedback_binarized) gives the same prompt and responses.
    implicit, _ = load_data(str(write_jsonl(tmp_path / "u.jsonl", implicit_rows())), tokenizer=tok)
    assert implicit[1].prompt == f"<|im_start|>user\nWhat is 1?<|im_end|>\n{GEN}"
    assert implicit[1].choices == rec.choices
    # Text pairs through --chat-template become a user and an assistant turn.
    chat_plain, info = load_data(
        str(write_jsonl(tmp_path / "p.jsonl", plain_rows())), chat_template=True, tokenizer=tok
    )
    assert info.chat_template and chat_plain[0].prompt.endswith(GEN)
    assert chat_plain[0].choices[0] == " it is 0<|im_end|>\n"
    with pytest.raises(LikraError, match="chat template"):
        load_data(str(tmp_path / "c.jsonl"), tokenizer=build_tiny_tokenizer())


def test_save_to_disk_and_hub_path_read_the_same_pairs(tmp_path, monkeypatch):
    import datasets

    tok = chat_tokenizer()
    rows = implicit_rows()
    jsonl, _ = load_data(str(write_jsonl(tmp_path / "u.jsonl", rows)), tokenizer=tok)
    dataset = datasets.Dataset.from_list(rows)
    dataset.save_to_disk(str(tmp_path / "ds"))
    datasets.DatasetDict({"train_prefs": dataset, "test_prefs": dataset.select(range(3))}).save_to_disk(
        str(tmp_path / "dd")
    )
    key = [(r.prompt, r.choices, r.gold) for r in jsonl]
    folder, info = load_data(str(tmp_path / "ds"), tokenizer=tok)
    assert info.kind == "preferences" and [(r.prompt, r.choices, r.gold) for r in folder] == key
    split, _ = load_data(f"{tmp_path / 'dd'}:test_prefs", tokenizer=tok)
    assert [(r.prompt, r.choices) for r in split] == [(p, c) for p, c, _ in key[:3]]
    with pytest.raises(LikraError, match="holds splits"):
        load_data(str(tmp_path / "dd"), tokenizer=tok)

    calls = []

    def fake_load_dataset(name, split=None, **kwargs):
        calls.append((name, split))
        return datasets.load_from_disk(str(tmp_path / "ds"))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    hub, _ = load_data("HuggingFaceH4/ultrafeedback_binarized:train_prefs", tokenizer=tok)
    assert calls == [("HuggingFaceH4/ultrafeedback_binarized", "train_prefs")]
    assert [(r.prompt, r.choices, r.gold) for r in hub] == key

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach the hub")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(LikraError, match="save_to_disk"):
        read_preference_hub("HuggingFaceH4/ultrafeedback_binarized", "train_prefs")


BAD_ROWS = [
    ({"prompt": "Q?", "rejected": "no"}, "missing field 'chosen'"),
    ({"prompt": "Q?", "chosen": "yes"}, "missing field 'rejected'"),
    ({"prompt": "Q?", "chosen": " same ", "rejected": "same"}, "identical"),
    ({"prompt": "Q?", "chosen": "", "rejected": "no"}, "field 'chosen' is empty"),
    ({"prompt": "  ", "chosen": "yes", "rejected": "no"}, "field 'prompt' is empty"),
    ({"prompt": [{"role": "user", "content": "Q?"}], "chosen": [{"role": "assistant", "content": ""}],
      "rejected": [{"role": "assistant", "content": "no"}]}, "empty or non-string content"),
    ({"prompt": [{"role": "wizard", "content": "Q?"}], "chosen": [{"role": "assistant", "content": "yes"}],
      "rejected": [{"role": "assistant", "content": "no"}]}, "unknown role 'wizard'"),
    ({"prompt": [{"role": "user", "content": "Q?"}], "chosen": [{"role": "assistant", "content": "same"}],
      "rejected": [{"role": "assistant", "content": "same"}]}, "identical"),
    ({"prompt": "Q?", "chosen": "yes", "rejected": [{"role": "assistant", "content": "no"}]}, "both be text"),
]  # fmt: skip


@pytest.mark.parametrize("row, match", BAD_ROWS)
@pytest.mark.parametrize("command", ["train", "eval"])
def test_bad_rows_are_one_line_errors_naming_file_and_line(tmp_path, capsys, row, match, command):
    path = write_jsonl(tmp_path / "bad.jsonl", [*plain_rows(2), row])
    out = tmp_path / "out"
    argv = ["-q", command, "--model", "random-tiny", "--data", str(path), "--out", str(out)]
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("likra: error: ") and "\n" not in err and "Traceback" not in err, err
    assert f"{path}:3: " in err and match in err, err
    assert not out.exists()


def test_long_responses_are_skipped_and_counted_never_cut(tmp_path):
    rows = plain_rows(6)
    rows[2]["chosen"] = " long" * 40  # 200 byte tokens: cannot fit 64
    rows[4]["prompt"] = "context " * 20 + rows[4]["prompt"]  # long prompt: cut from the left
    tok = build_tiny_tokenizer()
    records, info = load_data(str(write_jsonl(tmp_path / "p.jsonl", rows)), tokenizer=tok, max_length=64)
    assert [r.id for r in records] == ["p0", "p1", "p3", "p4", "p5"]
    assert info.skipped_too_long == ["p2"] and info.prompts_cut == 1
    assert info.to_json()["skipped_too_long"] == 1
    with pytest.raises(LikraError, match="every preference pair"):
        load_data(str(tmp_path / "p.jsonl"), tokenizer=tok, max_length=8)


def test_pairwise_accuracy_summed_per_token_per_char():
    from likra.data.records import MCRecord

    records = [
        MCRecord("a", "p", ("x", "yyyy"), 0, separator=""),
        MCRecord("b", "p", ("xx", "y"), 0, separator=""),
        MCRecord("c", "p", ("x", "y"), 0, separator=""),
    ]
    per_head = {"base": [np.array([-2.0, -4.0]), np.array([-3.0, -2.0]), np.array([-1.0, -1.0])]}
    tokens = [[1, 4], [3, 1], [1, 1]]
    out = preference_results(per_head, records, ["base"], 1.0, tokens, resamples=500)
    acc = out["accuracy"]["base"]
    assert acc["summed"]["value"] == pytest.approx((1 + 0 + 0.5) / 3)  # a tie counts 1/2
    assert acc["per_token"]["value"] == pytest.approx((0 + 1 + 0.5) / 3)  # -2/1 < -4/4; -3/3 > -2/1
    assert acc["per_char"]["value"] == pytest.approx((0 + 1 + 0.5) / 3)
    assert 0 <= acc["summed"]["ci_low"] <= acc["summed"]["value"] <= acc["summed"]["ci_high"] <= 1
    assert out["pairs"][1] == {
        "id": "b",
        "tokens": {"chosen": 3, "rejected": 1},
        "chars": {"chosen": 2, "rejected": 1},
        "scores": {"base": {"chosen": -3.0, "rejected": -2.0}},
    }


@pytest.fixture
def chat_model(tmp_path):
    tok = chat_tokenizer()
    folder = tmp_path / "tiny-chat"
    build_tiny_model(len(tok), seed=0).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_train_and_eval_end_to_end_on_conversational_pairs(tmp_path, capsys, chat_model):
    data = write_jsonl(tmp_path / "c.jsonl", conversation_rows(16))
    run = tmp_path / "run"
    argv = ["-q", "train", "--model", str(chat_model), "--data", str(data), "--batch-size", "4", "--lr", "0.05",
            "--out", str(run)]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads((run / "likra.json").read_text())
    assert manifest["data"]["kind"] == "preferences" and manifest["examples"] == {"positive": 16, "negative": 16}
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert main(["-q", "eval", "--run", str(run), "--data", str(data), "--bootstrap", "200", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "pairwise accuracy" in printed and "per_token" in printed and printed.startswith("mode")
    result = json.loads(out.read_text())
    prefs = result["preferences"]
    assert set(prefs["accuracy"]) == {"base", "sft", "likra", "negbase"}
    for mode, by_norm in prefs["accuracy"].items():
        # pairwise accuracy summed = acc of the two-choice question, per char = acc_norm.
        assert by_norm["summed"]["value"] == pytest.approx(result["metrics"][mode]["acc"]["value"])
        assert by_norm["per_char"]["value"] == pytest.approx(result["metrics"][mode]["acc_norm"]["value"])
    assert [p["id"] for p in prefs["pairs"]] == result["question_ids"] == [f"c{i}" for i in range(16)]
    ll = result["loglikelihoods"]
    pair = prefs["pairs"][5]["scores"]
    assert pair["likra"]["chosen"] == pytest.approx(ll["positive"][5][0] - ll["negative"][5][0])
    assert pair["base"]["rejected"] == pytest.approx(ll["base"][5][1])
    # Training on these 16 pairs moves the heads: sft raises chosen, the negative head raises rejected.
    assert np.mean([p["scores"]["sft"]["chosen"] - p["scores"]["base"]["chosen"] for p in prefs["pairs"]]) > 0
    neg_minus_base = [ll["negative"][i][1] - ll["base"][i][1] for i in range(16)]
    assert np.mean(neg_minus_base) > 0
    assert result["data"]["kind"] == "preferences" and result["data"]["skipped_too_long"] == 0


def test_curve_runs_on_preference_pairs(tmp_path, capsys):
    data = write_jsonl(tmp_path / "p.jsonl", plain_rows(16))
    folder = tmp_path / "curve"
    argv = ["-q", "curve", "--model", "random-tiny", "--data", str(data), "--eval-data", str(data), "--limit", "16",
            "--batch-size", "8", "--lr", "0.01", "--out", str(folder)]  # fmt: skip
    assert main(argv) == 0
    curve = json.loads((folder / "curve.json").read_text())
    assert {r["examples"] for r in curve["rows"]} == {0, 8, 16} and curve["n_eval"] == 16
    assert main(argv) == 0  # resumes: everything reused


def test_mixing_pairs_and_questions_or_letter_is_refused(tmp_path):
    data = write_jsonl(tmp_path / "p.jsonl", plain_rows(2))
    with pytest.raises(LikraError, match="mixes"):
        load_data(f"{data},arc_challenge:validation")
    with pytest.raises(LikraError, match="no letter format"):
        load_data(str(data), fmt="letter")
