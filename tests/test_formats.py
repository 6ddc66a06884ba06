"""Prompt formats (cloze | letter) and the chat template: the letter prompt is lm-eval's mmlu prompt, the
format and the template are recorded in the run and a mismatch is refused, and the template is applied in
training and scoring alike."""

import json
from pathlib import Path

import pytest
import yaml

from likra.cli import main
from likra.data.benchmarks import load_spec
from likra.data.examples import tokenize_answers
from likra.data.formats import format_records, letter_record, load_data, question_stem, run_prompt_settings
from likra.data.records import MCRecord
from likra.model.loading import build_tiny_model, build_tiny_tokenizer
from likra.scoring.engine import tokenize_questions

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
FIXTURE = Path(__file__).parent / "fixtures" / "likra-0.1"


def harness_mmlu(subject: str):
    """(description, doc_to_text template, choices, target delimiter) of lm-eval's installed mmlu task files."""
    import lm_eval

    folder = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    base = yaml.safe_load((folder / "_default_template_yaml").read_text())
    task = yaml.safe_load((folder / f"mmlu_{subject}.yaml").read_text())
    assert task["include"] == "_default_template_yaml"
    return task["description"], base["doc_to_text"], base["doc_to_choice"], base.get("target_delimiter", " ")


@pytest.mark.parametrize("subject", ["abstract_algebra", "anatomy", "formal_logic", "world_religions"])
def test_letter_prompt_is_lm_eval_mmlu_prompt(subject):
    import datasets
    from lm_eval.utils import apply_template

    from likra.data.benchmarks import offline_root

    rows = datasets.load_from_disk(str(offline_root() / "hf_datasets" / "hails" / "mmlu_no_train" / subject / "test"))
    records = load_spec(f"mmlu/{subject}:test", source="offline")
    description, doc_to_text, choices, delimiter = harness_mmlu(subject)
    checked = 0
    for rec, row in zip(records, rows):
        letter = letter_record(rec)
        assert letter.prompt == description + apply_template(doc_to_text, row)
        assert [letter.continuation(i) for i in range(4)] == [delimiter + c for c in choices]
        assert letter.gold == row["answer"]
        checked += 1
    assert checked == len(rows) > 0
    # Questions that end in whitespace are stripped by the harness (question.strip()), and here too.
    assert any(row["question"] != row["question"].strip() for row in rows) or subject != "formal_logic"


def test_letter_format_of_other_benchmarks_and_files():
    rec = MCRecord("q", "Question: Which gas?\nAnswer:", ("oxygen", "carbon dioxide", "argon"), 1, "arc_easy")
    letter = letter_record(rec)
    assert letter.prompt == "Which gas?\nA. oxygen\nB. carbon dioxide\nC. argon\nAnswer:"
    assert letter.choices == ("A", "B", "C") and letter.gold == 1 and letter.continuation(1) == " B"
    hella = MCRecord("h", "Baking: She mixes the flour", ("and bakes.", "and swims."), 0, "hellaswag")
    assert letter_record(hella).prompt == "Baking: She mixes the flour\nA. and bakes.\nB. and swims.\nAnswer:"
    assert question_stem("Support.\nQuestion: Why?\nAnswer:") == "Support.\nQuestion: Why?"
    cloze = format_records([rec], "cloze")[0]
    assert cloze == rec and cloze.continuation(1) == " carbon dioxide"


def test_chat_template_wraps_the_prompt_and_drops_the_space():
    tok = build_tiny_tokenizer()
    tok.chat_template = CHATML
    rec = MCRecord("q", "Question: Which gas?\nAnswer:", ("oxygen", "carbon dioxide"), 1, "arc_easy")
    (chat,) = format_records([rec], "letter", chat_template=True, tokenizer=tok)
    assert (
        chat.prompt
        == "<|im_start|>user\nWhich gas?\nA. oxygen\nB. carbon dioxide\nAnswer:<|im_end|>\n<|im_start|>assistant\n"
    )
    assert chat.continuation(1) == "B"  # lm-eval --apply_chat_template: no target delimiter
    with pytest.raises(Exception, match="no chat template"):
        format_records([rec], "cloze", chat_template=True, tokenizer=build_tiny_tokenizer())


def test_chat_template_applied_alike_in_training_and_scoring():
    tok = build_tiny_tokenizer()
    tok.chat_template = CHATML
    records = format_records(
        [MCRecord(f"q{i}", f"Question: item {i}?\nAnswer:", ("yes", f"no {i}"), 0, "s") for i in range(3)],
        chat_template=True,
        tokenizer=tok,
    )
    train = tokenize_answers(tok, [(r, r.choices[r.gold]) for r in records])
    _, questions = tokenize_questions(tok, records)
    for ex, q, rec in zip(train, questions, records):
        assert ex.prompt_ids == q.context_ids
        assert ex.answer_ids == q.choice_ids[rec.gold]
        assert tok.decode(list(ex.prompt_ids)).endswith("<|im_start|>assistant\n")
        assert tok.decode(list(ex.answer_ids)) == "yes"


@pytest.fixture
def chat_model(tmp_path):
    """A tiny model folder whose tokenizer has a chat template (what `--model <folder>` loads)."""
    tok = build_tiny_tokenizer()
    tok.chat_template = CHATML
    folder = tmp_path / "tiny-chat"
    build_tiny_model(len(tok), seed=0).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def write_questions(path: Path, n: int = 12) -> Path:
    rows = [
        {"id": f"q{i}", "prompt": f"Question: what is {i}?\nAnswer:", "choices": [f"it is {i}", "nothing", "a cat"],
         "gold": i % 3}
        for i in range(n)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def one_line_refusal(capsys, argv, match):
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("likra: error: ") and "\n" not in err and match in err, err


def test_format_and_template_recorded_and_mismatch_refused(tmp_path, capsys, chat_model):
    data = write_questions(tmp_path / "q.jsonl")
    run = tmp_path / "run"
    train = ["-q", "train", "--model", str(chat_model), "--data", str(data), "--batch-size", "4", "--lr", "0.01"]
    assert main([*train, "--format", "letter", "--chat-template", "--out", str(run)]) == 0
    manifest = json.loads((run / "likra.json").read_text())
    assert manifest["data"]["format"] == "letter" and manifest["data"]["chat_template"] is True
    assert run_prompt_settings(manifest) == ("letter", True)
    capsys.readouterr()

    out = tmp_path / "eval.json"
    assert main(["-q", "eval", "--run", str(run), "--data", str(data), "--bootstrap", "100", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["config"]["format"] == "letter" and result["config"]["chat_template"] is True
    assert result["data"]["format"] == "letter" and result["data"]["chat_template"] is True
    capsys.readouterr()

    ev = ["-q", "eval", "--run", str(run), "--data", str(data), "--bootstrap", "100", "--out", str(tmp_path / "x.json")]
    one_line_refusal(capsys, [*ev, "--format", "cloze"], "trained on the letter format")
    one_line_refusal(capsys, [*ev, "--no-chat-template"], "with the chat template")
    assert main([*ev, "--format", "cloze", "--cross-format"]) == 0
    assert json.loads((tmp_path / "x.json").read_text())["config"]["format"] == "cloze"


def test_eval_letter_scores_letters(tmp_path, capsys):
    """A letter-format evaluation of a plain model scores the continuations ' A', ' B', ' C'."""
    data = write_questions(tmp_path / "q.jsonl", 6)
    out = tmp_path / "e.json"
    assert main(["-q", "eval", "--model", "random-tiny", "--data", str(data), "--format", "letter",
                 "--bootstrap", "100", "--out", str(out)]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    assert result["data"]["format"] == "letter"
    tok = build_tiny_tokenizer()
    records, _ = load_data(str(data), fmt="letter")
    assert all(len(tok(r.continuation(0)).input_ids) == 2 for r in records)  # " A": a space and a letter byte
    # The letter scores differ from the cloze scores of the same questions.
    cloze = tmp_path / "c.json"
    assert main(["-q", "eval", "--model", "random-tiny", "--data", str(data), "--bootstrap", "100", "--out",
                 str(cloze)]) == 0  # fmt: skip
    assert json.loads(cloze.read_text())["loglikelihoods"] != result["loglikelihoods"]


def test_old_run_means_cloze_without_template():
    manifest = json.loads((FIXTURE / "run" / "likra.json").read_text())
    assert "format" not in manifest.get("data", {})
    assert run_prompt_settings(manifest) == ("cloze", False)


def test_curve_records_format_and_keeps_old_folders_matching(tmp_path, capsys):
    from conftest import TINY_CURVE_ARGS

    from likra.experiments.curve import CurveConfig, CurveRun

    assert "format" not in CurveRun(CurveConfig(out=str(tmp_path / "a"))).training_settings()
    settings = CurveRun(CurveConfig(out=str(tmp_path / "b"), format="letter")).training_settings()
    assert settings["format"] == "letter"
    folder = tmp_path / "curve"
    args = ["-q", "curve", *TINY_CURVE_ARGS, "--limit", "8", "--eval-limit", "4", "--out", str(folder)]
    assert main([*args, "--format", "letter"]) == 0
    assert json.loads((folder / "curve.json").read_text())["config"]["format"] == "letter"
    capsys.readouterr()
    one_line_refusal(capsys, args, "other settings (format)")


@pytest.mark.slow
def test_embedded_tokenizer_chat_and_letter_boundaries():
    """On SmolLM2's own tokenizer and template: the letters are one token each, and a chat-rendered answer is
    exactly the tokens that follow the assistant header in the whole rendered conversation."""
    from likra.data.examples import encode_pair
    from likra.data.preferences import PreferencePair, pair_record
    from likra.model.loading import load_tokenizer

    tok = load_tokenizer("smollm2-135m")
    rec = load_spec("mmlu/anatomy:test", source="offline")[0]
    letter = letter_record(rec)
    for i in range(4):
        _, answer = encode_pair(tok, letter.prompt, letter.continuation(i))
        assert tok.decode(answer) == " " + "ABCD"[i] and len(answer) == 1
    pair = PreferencePair(
        "x",
        (("user", "Which gas do plants absorb?"),),
        (("assistant", "Carbon dioxide."),),
        (("assistant", "Oxygen."),),
        "t",
    )
    record = pair_record(pair, tok)
    whole = tok.apply_chat_template(
        [
            {"role": "user", "content": "Which gas do plants absorb?"},
            {"role": "assistant", "content": "Carbon dioxide."},
        ],
        tokenize=False,
    )
    context, answer = encode_pair(tok, record.prompt, record.continuation(0))
    assert context + answer == tok(whole, add_special_tokens=False).input_ids
    assert tok.decode(answer) == "Carbon dioxide.<|im_end|>\n"
