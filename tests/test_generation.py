"""Generation with a mode's heads: the cached batched decoder against a no-cache reference, w = 0 against the
first head's own greedy decoding (and transformers' generate), the plausibility mask and sampling on hand-made
scores, stop strings, bad input, and lm-eval's generate_until / loglikelihood_rolling."""

import json
import math

import pytest
import torch
from conftest import one_line_error, train_tiny_run
from numerics import assert_kernel_close

from likra.cli import main
from likra.errors import LikraError
from likra.generation import GenerationSettings, HeadDecoder
from likra.generation.decoder import (
    choose_tokens,
    combine_heads,
    encode_prompts,
    find_stop,
    left_pad,
    plausible_mask,
    restrict,
    term_coefficients,
)
from likra.generation.reference import reference_generate_ids
from likra.model.heads import unwrap_lm, use_head
from likra.scoring.modes import get_mode

PROMPTS = [
    "Question: what is item 1 like?\nAnswer:",
    "Hi",
    "Question: which of these is the longest thing in the world?\nAnswer:",
    "Question: why?\nAnswer:",
]


def decode(model, tokenizer, prompts=PROMPTS, **kw):
    settings = GenerationSettings(**{"max_new_tokens": 12, "batch_size": 4, **kw})
    return HeadDecoder(model, tokenizer, settings).generate(prompts)


@pytest.mark.parametrize("mode", ["likra", "negbase", "sft", "base", "positive-0.5*negative", "pos_base"])
def test_cached_batched_greedy_equals_no_cache_reference(tiny_heads, tiny_tokenizer, mode):
    settings = GenerationSettings(mode=mode, max_new_tokens=12, batch_size=3, alpha=0.05)
    got = HeadDecoder(tiny_heads, tiny_tokenizer, settings).generate(PROMPTS)
    for g, ids in zip(got, encode_prompts(tiny_tokenizer, PROMPTS)):
        assert list(g.token_ids) == reference_generate_ids(tiny_heads, tiny_tokenizer, ids, settings)


def test_shared_prefix_runs_once_and_changes_nothing(tiny_heads, tiny_tokenizer):
    shots = "Question: what is red?\nAnswer: a colour\n\nQuestion: what is two?\nAnswer: a number\n\n"
    prompts = [shots + p for p in PROMPTS]
    settings = GenerationSettings(mode="likra", max_new_tokens=10, batch_size=2)
    decoder = HeadDecoder(tiny_heads, tiny_tokenizer, settings)
    calls = []
    original = decoder._prefix_caches
    decoder._prefix_caches = lambda prefix: calls.append(len(prefix)) or original(prefix)
    got = decoder.generate(prompts)
    assert calls and calls[0] >= 16  # the common few-shot block was computed once, apart
    for g, ids in zip(got, encode_prompts(tiny_tokenizer, prompts)):
        assert list(g.token_ids) == reference_generate_ids(tiny_heads, tiny_tokenizer, ids, settings)


def test_weight_zero_is_the_first_heads_own_greedy_decoding(tiny_heads, tiny_tokenizer):
    likra0 = decode(tiny_heads, tiny_tokenizer, mode="likra", weight=0.0)
    sft = decode(tiny_heads, tiny_tokenizer, mode="sft")
    assert [g.token_ids for g in likra0] == [g.token_ids for g in sft]
    likra1 = decode(tiny_heads, tiny_tokenizer, mode="likra", weight=1.0)
    assert [g.token_ids for g in likra1] != [g.token_ids for g in sft]  # the negative head does change the text
    negbase0 = decode(tiny_heads, tiny_tokenizer, mode="negbase", weight=0.0)
    assert [g.token_ids for g in negbase0] == [g.token_ids for g in decode(tiny_heads, tiny_tokenizer, mode="base")]
    # and sft is transformers' own greedy decoding with the positive adapter active
    lm = unwrap_lm(tiny_heads)
    for g, ids in zip(sft, encode_prompts(tiny_tokenizer, PROMPTS)):
        with use_head(tiny_heads, "positive"):
            out = lm.generate(torch.tensor([ids]), do_sample=False, max_new_tokens=12, pad_token_id=0)
        theirs = [t for t in out[0, len(ids) :].tolist() if t != tiny_tokenizer.eos_token_id]
        assert list(g.token_ids) == theirs[: len(g.token_ids)] and len(theirs) >= len(g.token_ids)


def test_left_padded_batch_equals_one_at_a_time(tiny_heads, tiny_tokenizer):
    batched = decode(tiny_heads, tiny_tokenizer, mode="likra", batch_size=4)
    single = decode(tiny_heads, tiny_tokenizer, mode="likra", batch_size=1)
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_plausibility_mask_on_hand_made_logits():
    logprobs = torch.log_softmax(torch.tensor([[2.0, 1.0, 0.0, -5.0]]), dim=-1)
    # p / max p = 1, e^-1 = 0.37, e^-2 = 0.14, e^-7 = 0.0009
    assert plausible_mask(logprobs, 0.3).tolist() == [[True, True, False, False]]
    assert plausible_mask(logprobs, 0.1).tolist() == [[True, True, True, False]]
    assert plausible_mask(logprobs, 1.0).tolist() == [[True, False, False, False]]
    assert plausible_mask(logprobs, 1e-4).tolist() == [[True, True, True, True]]
    with pytest.raises(LikraError, match="alpha"):
        plausible_mask(logprobs, 0.0)


def test_restriction_stops_the_ratio_from_picking_junk():
    pos = torch.log(torch.tensor([[0.6, 0.3, 0.0999, 0.0001]]))
    neg = torch.log(torch.tensor([[0.5, 0.1, 0.399999, 0.000001]]))
    coefficients = term_coefficients(get_mode("likra"), 1.0)
    scores = combine_heads(coefficients, {"positive": pos, "negative": neg})
    assert scores.argmax().item() == 3  # 1e-4 / 1e-6: the largest ratio, an implausible token
    restricted = restrict(scores, plausible_mask(pos, 0.1))
    assert choose_tokens(restricted).item() == 1  # 0.3 / 0.1 beats 0.6 / 0.5 among the plausible ones
    assert torch.isinf(restricted[0, 3]) and restricted[0, 1] == pytest.approx(math.log(3.0))


def test_zero_coefficient_heads_are_dropped_and_never_nan():
    assert term_coefficients(get_mode("likra"), 0.0) == {"positive": 1.0}
    assert term_coefficients(get_mode("negbase"), 2.0) == {"base": 1.0, "negative": -2.0}
    inf = torch.tensor([[0.0, float("-inf")]])
    scores = combine_heads({"positive": 1.0, "negative": 0.0}, {"positive": torch.zeros(1, 2), "negative": inf})
    assert not torch.isnan(scores).any()
    ruled_out = combine_heads({"positive": 1.0, "negative": -1.0}, {"positive": torch.zeros(1, 2), "negative": inf})
    assert torch.isfinite(ruled_out).all() and ruled_out.argmax().item() == 1


def test_top_p_sampling_keeps_the_smallest_set():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    gen = torch.Generator().manual_seed(0)
    drawn = choose_tokens(logits, temperature=1.0, top_p=0.7, generator=gen)
    assert set(drawn.tolist()) == {0, 1}
    share = (drawn == 0).float().mean().item()
    assert share == pytest.approx(0.5 / 0.8, abs=0.04)  # renormalised over the kept set
    masked = restrict(logits[:500], torch.tensor([[False, True, True, True]]))
    assert 0 not in choose_tokens(masked, temperature=2.0, generator=gen).tolist()


def test_sampling_is_reproducible_by_seed(tiny_heads, tiny_tokenizer):
    kw = dict(mode="likra", temperature=1.0, top_p=0.95, alpha=0.01, max_new_tokens=16)
    a = decode(tiny_heads, tiny_tokenizer, seed=3, **kw)
    b = decode(tiny_heads, tiny_tokenizer, seed=3, **kw)
    c = decode(tiny_heads, tiny_tokenizer, seed=4, **kw)
    assert [g.token_ids for g in a] == [g.token_ids for g in b]
    assert [g.token_ids for g in a] != [g.token_ids for g in c]


def test_stop_strings_cut_the_text_and_end_the_row(tiny_heads, tiny_tokenizer):
    assert find_stop("abc\nQuestion: x", ["\n\n", "Question:", "c"]) == 2
    assert find_stop("abc", ["z", ""]) is None
    full = decode(tiny_heads, tiny_tokenizer, mode="base", max_new_tokens=20)
    for prompt, g in zip(PROMPTS, full):
        ascii_chars = [c for c in g.text if c.isascii() and c.isprintable()]
        if not ascii_chars or g.text.index(ascii_chars[0]) > 15:
            continue
        stop = ascii_chars[0]
        (cut,) = decode(tiny_heads, tiny_tokenizer, [prompt], mode="base", max_new_tokens=20, stop=[stop])
        assert cut.text == g.text[: g.text.index(stop)]
        assert cut.finish == "stop" and len(cut.token_ids) < 20
        assert cut.token_ids == g.token_ids[: len(cut.token_ids)]
        break
    else:
        pytest.fail("no generation with an ASCII character to stop at")


def test_missing_heads_and_empty_prompts_are_errors(tiny_heads, tiny_tokenizer):
    with pytest.raises(LikraError, match="needs head"):
        HeadDecoder(tiny_heads, tiny_tokenizer, GenerationSettings(mode="positive-negative_other"))
    with pytest.raises(LikraError, match="empty prompt"):
        decode(tiny_heads, tiny_tokenizer, ["fine", "  "])
    with pytest.raises(LikraError, match="alpha"):
        HeadDecoder(tiny_heads, tiny_tokenizer, GenerationSettings(alpha=1.5))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return train_tiny_run(tmp_path_factory.mktemp("gen") / "run", limit=32)


def test_cli_prompt_and_jsonl(tiny_run, tmp_path, capsys):
    assert main(["-q", "generate", "--run", str(tiny_run), "--prompt", "Question: why?\nAnswer:"]) == 0
    printed = capsys.readouterr().out
    data = tmp_path / "prompts.jsonl"
    data.write_text('{"id": "a", "prompt": "Question: why?\\nAnswer:"}\n\n{"prompt": "Hi"}\n')
    out = tmp_path / "out.jsonl"
    args = ["-q", "generate", "--run", str(tiny_run), "--data", str(data), "--out", str(out), "--max-new-tokens", "64"]
    assert main(args + ["--mode", "negbase", "--stop", "\\n"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("id") for r in rows] == ["a", None]
    assert all("\n" not in r["generation"] and r["finish"] in ("eos", "stop", "length") for r in rows)
    assert printed.strip() != "" or rows  # the printed generation may be blank text; the command ran


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--prompt", ""], "empty prompt"),
        (["--prompt", "   "], "empty prompt"),
        (["--prompt", "x", "--max-new-tokens", "0"], "--max-new-tokens"),
        (["--prompt", "x", "--max-new-tokens", "-3"], "--max-new-tokens"),
        (["--prompt", "x", "--alpha", "0"], "--alpha"),
        (["--prompt", "x", "--alpha", "1.5"], "--alpha"),
        (["--prompt", "x", "--alpha", "nan"], "--alpha"),
        (["--prompt", "x", "--temperature", "-1"], "--temperature"),
        (["--prompt", "x", "--top-p", "0"], "--top-p"),
        (["--prompt", "x", "--mode", "positive-negative_random_question"], "needs head"),
        (["--prompt", "x", "--mode", "likra+"], "cannot read"),
        ([], "--prompt"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2(tiny_run, capsys, extra, message):
    err = one_line_error(capsys, main(["-q", "generate", "--run", str(tiny_run), *extra]))
    assert message in err


def test_cli_bad_prompt_file_names_the_line(tiny_run, tmp_path, capsys):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "ok"}\n{"prompt": ""}\n')
    err = one_line_error(capsys, main(["-q", "generate", "--run", str(tiny_run), "--data", str(data)]))
    assert f"{data}:2" in err
    data.write_text('{"prompt": "ok"}\n{"text": "x"}\n')
    err = one_line_error(capsys, main(["-q", "generate", "--run", str(tiny_run), "--data", str(data)]))
    assert f"{data}:2" in err and "prompt" in err
    err = one_line_error(capsys, main(["-q", "generate", "--model", "random-tiny", "--prompt", "x", "--mode", "likra"]))
    assert "no heads" in err


def test_cli_plain_model_generates_in_base_mode(capsys):
    assert main(["-q", "generate", "--model", "random-tiny", "--prompt", "Hello", "--max-new-tokens", "4"]) == 0


def instances(request_type, args):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=request_type, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def test_lmeval_generate_until_cuts_at_until(tiny_run):
    pytest.importorskip("lm_eval")
    from likra.lmeval.model import LikraLM

    lm = LikraLM(run=str(tiny_run), mode="likra")
    contexts = ["Question: why?\nAnswer:", "Question: what is item 2 like?\nAnswer:"]
    free = lm.generate_until(instances("generate_until", [(c, {"until": [], "max_gen_toks": 24}) for c in contexts]))
    assert all(isinstance(t, str) for t in free)
    # a stop character taken from each free generation: the harness's text ends right before it
    for context, text in zip(contexts, free):
        chars = [c for c in text if c.isascii() and c.isprintable()]
        if not chars:
            continue
        until = chars[0]
        (cut,) = lm.generate_until(instances("generate_until", [(context, {"until": [until], "max_gen_toks": 24})]))
        assert cut == text[: text.index(until)] and until not in cut
    greedy = GenerationSettings(mode="likra", max_new_tokens=24)
    ours = [g.text for g in HeadDecoder(lm.model, lm.tokenizer, greedy).generate(contexts)]
    assert free == ours
    sampled = lm.generate_until(
        instances("generate_until", [(contexts[0], {"until": ["\n"], "do_sample": True, "temperature": 0.7})])
    )
    assert "\n" not in sampled[0]


def test_lmeval_rolling_for_single_heads_only(tiny_run):
    pytest.importorskip("lm_eval")
    from likra.lmeval.model import LikraLM

    lm = LikraLM(run=str(tiny_run), mode="sft")
    text = "The cat sat on the mat."
    (rolling,) = lm.loglikelihood_rolling(instances("loglikelihood_rolling", [(text,)]))
    ids = [lm.tokenizer.eos_token_id, *lm.tokenizer(text, add_special_tokens=False).input_ids]
    with torch.no_grad(), use_head(lm.model, "positive"):
        logits = unwrap_lm(lm.model)(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    expected = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(ids[1:])[:, None]).sum().item()
    assert_kernel_close(rolling, expected)
    with pytest.raises(LikraError, match="loglikelihood_rolling"):
        LikraLM(run=str(tiny_run), mode="likra").loglikelihood_rolling([])


def test_head_switch_leaves_the_model_as_found(tiny_heads, tiny_tokenizer):
    from peft.tuners.lora import LoraLayer

    layers = [m for m in tiny_heads.modules() if isinstance(m, LoraLayer)]
    before = [(list(m.active_adapters), m.disable_adapters) for m in layers]
    decode(tiny_heads, tiny_tokenizer, mode="negbase")
    assert [(list(m.active_adapters), m.disable_adapters) for m in layers] == before
    assert tiny_heads.active_adapter == "positive"


def test_stop_strings_typed_on_a_command_line():
    from likra.generation.prompts import unescape

    assert unescape("\\n") == "\n" and unescape("a\\tb") == "a\tb" and unescape("\\\\n") == "\\n"
    assert unescape("Question:") == "Question:" and unescape("x\\") == "x\\"
