import numpy as np
import torch
from conftest import make_records
from numerics import assert_kernel_close

from likra.data.examples import IGNORE_INDEX, negative_pairs, positive_pairs, tokenize_answers
from likra.model.heads import LoraSettings, attach_heads, reinit_heads, use_head
from likra.objectives.losses import answer_token_loss
from likra.objectives.mle import PackCollator, PadCollator, train_mle_head
from likra.objectives.settings import TrainSettings
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
    train_mle_head(model, "positive", pos, settings, tmp_path / "p", pad, progress=False)
    neg_state = {k: v.clone() for k, v in model.named_parameters() if "negative" in k}
    assert all(torch.count_nonzero(v) == 0 for k, v in neg_state.items() if "lora_B" in k)
    after_pos = mean_answer_loss(model, "positive", pos, pad)
    assert after_pos < before["positive"] - 0.1
    # The negative head was untouched by positive training.
    assert mean_answer_loss(model, "negative", neg, pad) == before["negative"]
    train_mle_head(model, "negative", neg, settings, tmp_path / "n", pad, progress=False)
    assert mean_answer_loss(model, "negative", neg, pad) < before["negative"] - 0.1
    assert mean_answer_loss(model, "positive", pos, pad) == after_pos


def test_identical_heads_give_likra_zero(tiny_model, tiny_tokenizer, tmp_path, records):
    model = attach_heads(tiny_model, LoraSettings())
    pos = tokenize_answers(tiny_tokenizer, positive_pairs(records))
    train_mle_head(model, "positive", pos, TrainSettings(learning_rate=1e-2, batch_size=4), tmp_path, 0, progress=False)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".negative." in name:
                p.copy_(dict(model.named_parameters())[name.replace(".negative.", ".positive.")])
    _, questions = tokenize_questions(tiny_tokenizer, records)
    ll = ScoringEngine(model).loglikelihoods(questions, ("positive", "negative", "base"))
    for p, n, b in zip(ll["positive"], ll["negative"], ll["base"]):
        assert np.array_equal(p - n, np.zeros_like(p))
        assert not np.array_equal(p, b)


def as_rows(examples):
    return [{"input_ids": e.input_ids, "labels": e.labels} for e in examples]


def test_pack_collator_lays_examples_back_to_back(tiny_tokenizer, records):
    examples = tokenize_answers(tiny_tokenizer, positive_pairs(records))
    width = 2 * max(len(e.input_ids) for e in examples)
    batch = PackCollator(tiny_tokenizer.pad_token_id, width=width)(as_rows(examples))
    assert batch["input_ids"].shape[0] < len(examples)  # several examples share a row
    assert "attention_mask" not in batch
    found = []
    for ids, labels, pos in zip(batch["input_ids"], batch["labels"], batch["position_ids"]):
        starts = [i for i in range(len(pos)) if pos[i] == 0] + [len(pos)]
        for a, b in zip(starts, starts[1:]):
            assert pos[a:b].tolist() == list(range(b - a))
            found.append((ids[a:b].tolist(), labels[a:b].tolist()))
    wanted = [(e.input_ids, e.labels) for e in examples]
    assert all(w in found for w in wanted)
    # Whatever is not an example is padding: one more sequence, never a label.
    rest = [f for f in found if f not in wanted]
    assert all(set(labels) == {IGNORE_INDEX} for _, labels in rest)


def test_packed_batch_gives_the_padded_loss_and_gradients(tiny_heads, tiny_tokenizer, records):
    examples = tokenize_answers(tiny_tokenizer, positive_pairs(records))
    pad = tiny_tokenizer.pad_token_id
    width = 2 * max(len(e.input_ids) for e in examples)
    padded, packed = PadCollator(pad)(as_rows(examples)), PackCollator(pad, width)(as_rows(examples))
    assert packed["input_ids"].numel() < padded["input_ids"].numel()
    tiny_heads.set_adapter("positive")
    grads = []
    for batch in (padded, packed):
        tiny_heads.zero_grad()
        loss = answer_token_loss(tiny_heads, batch)
        loss.backward()
        grads.append((loss.item(), [p.grad.clone() for n, p in tiny_heads.named_parameters() if p.requires_grad]))
    (loss_a, grad_a), (loss_b, grad_b) = grads
    assert_kernel_close(loss_b, loss_a)
    for a, b in zip(grad_a, grad_b):
        assert_kernel_close(b, a)
    # Without restarted positions the examples would see each other: the loss would differ.
    flat = dict(packed, position_ids=torch.arange(packed["input_ids"].shape[1]).expand_as(packed["input_ids"]))
    with torch.no_grad():
        assert abs(answer_token_loss(tiny_heads, flat).item() - loss_a) > 1e-3


def per_example_losses(model, head, examples, pad_id):
    return [mean_answer_loss(model, head, [e], pad_id) for e in examples]


def test_training_with_packing_gives_the_same_per_example_loss(tiny_model, tiny_tokenizer, tmp_path):
    examples = tokenize_answers(tiny_tokenizer, positive_pairs(make_records(48)))
    model = attach_heads(tiny_model, LoraSettings())
    pad = tiny_tokenizer.pad_token_id
    before = per_example_losses(model, "positive", examples, pad)
    losses = {}
    for packing in (False, True):
        reinit_heads(model, ("positive",), seed=0)
        settings = TrainSettings(learning_rate=1e-2, batch_size=8, epochs=2, packing=packing)
        stats = train_mle_head(model, "positive", examples, settings, tmp_path / str(packing), pad, progress=False)
        losses[packing] = (per_example_losses(model, "positive", examples, pad), stats.losses)
    (plain, logged_plain), (packed, logged_packed) = losses[False], losses[True]
    assert np.mean(plain) < np.mean(before) - 0.1  # it trained
    steps = stats.steps  # each optimizer step feeds one pass's rounding into the next
    assert_kernel_close(packed, plain, passes=steps + 1)
    assert_kernel_close(logged_packed, logged_plain, passes=steps + 1)
