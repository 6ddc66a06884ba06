import numpy as np
import pytest
import torch
from conftest import make_records
from numerics import assert_kernel_close

from likra.data.records import MCRecord
from likra.model.heads import LoraSettings, attach_heads
from likra.scoring.engine import ScoringEngine, pack_questions, plan_batches, tokenize_questions, tree_attention_mask
from likra.scoring.reference import reference_loglikelihoods

HEADS = ("base", "positive", "negative")


def max_diff(a, b):
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b))


@pytest.mark.parametrize("prefix", ["", "Question: warm-up?\nAnswer: yes\n\n"])
@pytest.mark.parametrize("batch_tokens", [1, 64, 100_000])
def test_engine_equals_reference_fp32(tiny_heads, tiny_tokenizer, records, prefix, batch_tokens):
    prefix_ids, questions = tokenize_questions(tiny_tokenizer, records, prefix)
    assert {len(c) for q in questions for c in q.choice_ids} >= {2}  # " x" is two byte tokens
    result = ScoringEngine(tiny_heads, max_batch_tokens=batch_tokens).loglikelihoods(questions, HEADS, prefix_ids)
    for head in HEADS:
        ref = reference_loglikelihoods(tiny_heads, questions, head, prefix_ids, batch_size=3)
        assert_kernel_close(result[head], ref, what=head)
    assert max_diff(result["positive"], result["negative"]) > 1e-3  # the heads really differ


def test_one_token_answers_and_distinct_prompts(tiny_heads, tiny_tokenizer):
    recs = [MCRecord(f"r{i}", f"{'Why ' * (i + 1)}?", ("a", "b", "c"), 0) for i in range(5)]
    prefix_ids, questions = tokenize_questions(tiny_tokenizer, recs)
    assert all(len(c) == 2 for q in questions for c in q.choice_ids)  # " a" = space + letter
    single = [MCRecord("s", "Q", ("a", "bb"), 0)]
    _, q_single = tokenize_questions(tiny_tokenizer, single)
    result = ScoringEngine(tiny_heads, max_batch_tokens=50).loglikelihoods(questions + q_single, ("positive",))
    ref = reference_loglikelihoods(tiny_heads, questions + q_single, "positive")
    assert_kernel_close(result["positive"], ref)


def test_engine_bf16_close_to_fp32(tiny_tokenizer, tiny_model, records):
    heads = attach_heads(tiny_model, LoraSettings())
    _, questions = tokenize_questions(tiny_tokenizer, records)
    fp32 = ScoringEngine(heads).loglikelihoods(questions, ("base",))["base"]
    bf16 = ScoringEngine(heads.to(torch.bfloat16)).loglikelihoods(questions, ("base",))["base"]
    # bf16 keeps ~3 significant digits per activation; summed answer log-likelihoods stay within bf16's bound.
    assert_kernel_close(bf16, fp32, "bf16")


def test_untrained_negative_head_gives_negbase_zero_exactly(tiny_model, tiny_tokenizer, records):
    heads = attach_heads(tiny_model, LoraSettings())  # B = 0: every head equals the base
    _, questions = tokenize_questions(tiny_tokenizer, records)
    result = ScoringEngine(heads).loglikelihoods(questions, HEADS)
    for base, neg, pos in zip(result["base"], result["negative"], result["positive"]):
        assert np.array_equal(base - neg, np.zeros_like(base))
        assert np.array_equal(pos - neg, np.zeros_like(base))


def test_tree_mask_isolates_choices_and_questions():
    from likra.scoring.engine import QuestionTokens

    q1 = QuestionTokens((1, 2), ((3,), (4, 5, 8)))
    q2 = QuestionTokens((6,), ((7, 9),))
    packed = pack_questions([[q1, q2]], prefix_len=3)
    # A choice's last token (3, 8, 9) is scored but never fed.
    assert packed.input_ids.tolist() == [[1, 2, 4, 5, 6, 7]]
    assert packed.position_ids.tolist() == [[3, 4, 5, 6, 3, 4]]
    mask = tree_attention_mask(packed.question, packed.segment, 3, torch.float32)[0, 0] == 0
    assert mask.shape == (6, 9)
    assert mask[:, :3].all()  # everyone sees the prefix
    # Token 5 (second token of q1's choice 2) sees the prefix, q1's context and its own choice.
    assert mask[3].tolist() == [True] * 3 + [True, True, True, True, False, False]
    # Token 7 (q2's only choice) sees the prefix and q2 alone.
    assert mask[5].tolist() == [True] * 3 + [False] * 4 + [True, True]
    # Targets 3 and 4 are predicted by the last context token, 5 by token 4, 8 by token 5, 7 by q2's context.
    assert packed.predictor_cols.tolist() == [1, 1, 2, 3, 4, 5]
    assert packed.targets.tolist() == [3, 4, 5, 8, 7, 9]
    assert packed.choice_of_target.tolist() == [0, 1, 1, 1, 2, 2]


def test_plan_batches_packs_rows_and_covers_all(tiny_tokenizer):
    _, questions = tokenize_questions(tiny_tokenizer, make_records(30))
    batches = plan_batches(questions, max_batch_tokens=600, row_width=200)
    flat = [i for batch in batches for row in batch for i in row]
    assert sorted(flat) == list(range(30))
    width = max(200, max(q.row_length for q in questions))
    for batch in batches:
        assert len(batch) * width <= max(600, width)
        for row in batch:
            assert sum(questions[i].row_length for i in row) <= width
    rows = [row for batch in batches for row in batch]
    assert any(len(row) > 1 for row in rows)  # several questions share a row


def test_fewshot_contexts_are_tokenized_whole(tiny_tokenizer, records):
    prefix = "Question: warm-up?\nAnswer: yes\n\n"
    prefix_ids, questions = tokenize_questions(tiny_tokenizer, records, prefix)
    for rec, q in zip(records, questions):
        whole = tiny_tokenizer(prefix + rec.prompt, add_special_tokens=False).input_ids
        assert list(prefix_ids) + list(q.context_ids) == whole
    assert len(prefix_ids) >= len(tiny_tokenizer(prefix).input_ids)
