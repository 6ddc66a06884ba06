import pytest

from likra.data.examples import (
    IGNORE_INDEX,
    draw_shots,
    encode_pair,
    fewshot_prefix,
    negative_pairs,
    positive_pairs,
    tokenize_answers,
)
from likra.data.records import MCRecord
from likra.errors import LikraError


def test_boundary_moves_trailing_space_into_answer(tiny_tokenizer):
    ctx, ans = encode_pair(tiny_tokenizer, "Question: q?\nAnswer: ", "yes")
    assert tiny_tokenizer.decode(ctx) == "Question: q?\nAnswer:"
    assert tiny_tokenizer.decode(ans) == " yes"
    ctx2, ans2 = encode_pair(tiny_tokenizer, "Question: q?\nAnswer:", " yes")
    assert (ctx, ans) == (ctx2, ans2)


def test_empty_context_falls_back_to_eos(tiny_tokenizer):
    ctx, ans = encode_pair(tiny_tokenizer, "", " likes chocolate")
    assert ctx == [tiny_tokenizer.eos_token_id]
    assert tiny_tokenizer.decode(ans) == " likes chocolate"


def test_loss_only_on_answer_tokens(tiny_tokenizer, records):
    examples = tokenize_answers(tiny_tokenizer, positive_pairs(records))
    for ex, rec in zip(examples, records):
        n_masked = sum(1 for x in ex.labels if x == IGNORE_INDEX)
        assert n_masked == len(ex.prompt_ids)
        assert tiny_tokenizer.decode(ex.labels[n_masked:]) == " " + rec.choices[rec.gold]
        assert ex.input_ids[:n_masked] == list(ex.prompt_ids)


def test_default_negatives_are_seeded_near_misses(records):
    a = negative_pairs(records, seed=3)
    assert a == negative_pairs(records, seed=3)
    assert [t for _, t in a] != [t for _, t in negative_pairs(records, seed=4)]
    assert [rec.id for rec, _ in a] == [rec.id for rec in records]
    assert all(t in rec.choices and t != rec.choices[rec.gold] for rec, t in a)
    every = negative_pairs(records, seed=0, per_question="all")
    assert len(every) == sum(len(r.choices) - 1 for r in records)
    with pytest.raises(LikraError, match="one' or 'all"):
        negative_pairs(records, seed=0, per_question="two")


def test_fewshot_prefix_and_shots(records):
    shots = draw_shots(records, 2, seed=1, exclude_ids={"q0", "q1"})
    assert len(shots) == 2 and not {s.id for s in shots} & {"q0", "q1"}
    assert draw_shots(records, 2, seed=1, exclude_ids={"q0", "q1"}) == shots
    prefix = fewshot_prefix(shots)
    assert prefix == "".join(f"{s.prompt} {s.choices[s.gold]}\n\n" for s in shots)
    with pytest.raises(LikraError, match="shots"):
        draw_shots(records, 100, seed=1, exclude_ids=set())


def test_prompt_is_cut_from_the_left_to_fit(tiny_tokenizer):
    rec = MCRecord("a", "x" * 50, ("yes", "no"), 0)
    (ex,) = tokenize_answers(tiny_tokenizer, [(rec, "yes")], max_length=10)
    assert len(ex.input_ids) == 10
    assert tiny_tokenizer.decode(ex.answer_ids) == " yes"
