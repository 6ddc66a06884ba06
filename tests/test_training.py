import numpy as np
import torch
from conftest import make_records

from likra.data.examples import negative_pairs, positive_pairs, tokenize_answers
from likra.model.heads import LoraSettings, attach_heads, use_head
from likra.objectives.mle import PadCollator, TrainSettings, answer_token_loss, train_head
from likra.scoring.engine import ScoringEngine, tokenize_questions


def mean_answer_loss(model, head, examples, pad_id):
    batch = PadCollator(pad_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
    with use_head(model, head), torch.no_grad():
        return answer_token_loss(model, batch).item()


def test_answer_only_loss_equals_full_logits_loss(tiny_heads, tiny_tokenizer, records):
    examples = tokenize_answers(tiny_tokenizer, positive_pairs(records))
    batch = PadCollator(tiny_tokenizer.pad_token_id)([{"input_ids": e.input_ids, "labels": e.labels} for e in examples])
    with torch.no_grad():
        full = tiny_heads(**batch).loss.item()
        ours = answer_token_loss(tiny_heads, batch).item()
    assert abs(full - ours) < 1e-5


def test_each_head_learns_its_own_data_only(tiny_model, tiny_tokenizer, tmp_path):
    records = make_records(48)
    pos = tokenize_answers(tiny_tokenizer, positive_pairs(records))
    neg = tokenize_answers(tiny_tokenizer, negative_pairs(records, seed=0))
    model = attach_heads(tiny_model, LoraSettings())
    pad = tiny_tokenizer.pad_token_id
    before = {h: mean_answer_loss(model, h, ex, pad) for h, ex in (("positive", pos), ("negative", neg))}
    settings = TrainSettings(learning_rate=1e-2, batch_size=8, epochs=2)
    train_head(model, "positive", pos, settings, tmp_path / "p", pad, progress=False)
    neg_state = {k: v.clone() for k, v in model.named_parameters() if "negative" in k}
    assert all(torch.count_nonzero(v) == 0 for k, v in neg_state.items() if "lora_B" in k)
    after_pos = mean_answer_loss(model, "positive", pos, pad)
    assert after_pos < before["positive"] - 0.1
    # The negative head was untouched by positive training.
    assert mean_answer_loss(model, "negative", neg, pad) == before["negative"]
    train_head(model, "negative", neg, settings, tmp_path / "n", pad, progress=False)
    assert mean_answer_loss(model, "negative", neg, pad) < before["negative"] - 0.1
    assert mean_answer_loss(model, "positive", pos, pad) == after_pos


def test_identical_heads_give_likra_zero(tiny_model, tiny_tokenizer, tmp_path, records):
    model = attach_heads(tiny_model, LoraSettings())
    pos = tokenize_answers(tiny_tokenizer, positive_pairs(records))
    train_head(model, "positive", pos, TrainSettings(learning_rate=1e-2, batch_size=4), tmp_path, 0, progress=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".negative." in name:
                p.copy_(dict(model.named_parameters())[name.replace(".negative.", ".positive.")])
    _, questions = tokenize_questions(tiny_tokenizer, records)
    ll = ScoringEngine(model).loglikelihoods(questions, ("positive", "negative", "base"))
    for p, n, b in zip(ll["positive"], ll["negative"], ll["base"]):
        assert np.array_equal(p - n, np.zeros_like(p))
        assert not np.array_equal(p, b)
