import math

import numpy as np
import pytest
from scipy.stats import binomtest

from likra.errors import LikraError
from likra.scoring.metrics import accuracy, accuracy_norm, summarise, tie_credit
from likra.scoring.modes import MODES, heads_for, mode_score, question_scores


def ll(base, pos, neg):
    return {"base": np.array(base, float), "positive": np.array(pos, float), "negative": np.array(neg, float)}


def test_modes_on_hand_made_loglikelihoods():
    q = ll(base=[-3.0, -5.0], pos=[-2.0, -6.0], neg=[-4.0, -1.0])
    np.testing.assert_array_equal(mode_score("base", q), [-3.0, -5.0])
    np.testing.assert_array_equal(mode_score("sft", q), [-2.0, -6.0])
    np.testing.assert_array_equal(mode_score("likra", q), [2.0, -5.0])
    np.testing.assert_array_equal(mode_score("negbase", q), [1.0, -4.0])
    np.testing.assert_array_equal(mode_score("pos_base", q), [1.0, -1.0])
    np.testing.assert_array_equal(mode_score("likra", q, weight=0.5), [0.0, -5.5])
    np.testing.assert_array_equal(mode_score("negbase", q, weight=2.0), [5.0, -3.0])


def test_likra_is_not_renormalised():
    # A log-softmax over choices would change the argmax here; the raw ratio must be kept.
    q = ll(base=[0, 0, 0], pos=[-1.0, -1.2, -30.0], neg=[-0.5, -3.0, -31.5])
    scores = mode_score("likra", q)
    np.testing.assert_allclose(scores, [-0.5, 1.8, 1.5])
    assert int(np.argmax(scores)) == 1


def test_heads_for_runs_each_head_once():
    assert heads_for(["likra", "negbase", "sft", "base"]) == ("base", "positive", "negative")
    assert heads_for(["sft"]) == ("positive",)
    assert heads_for(["negbase"]) == ("base", "negative")
    # An unregistered name is an expression over head names; a malformed one is refused.
    assert heads_for(["likra", "other_head"]) == ("positive", "negative", "other_head")
    with pytest.raises(LikraError, match="cannot read"):
        heads_for(["likra", "positive-*negative"])
    assert {"base", "sft", "likra", "negbase", "pos_base"} <= set(MODES)


def test_question_scores_over_questions():
    per_head = {
        "positive": [np.array([-1.0, -2.0]), np.array([-3.0, -1.0, -2.0])],
        "negative": [np.array([-1.0, -1.0]), np.array([-1.0, -4.0, -1.0])],
    }
    out = question_scores("likra", per_head)
    np.testing.assert_array_equal(out[0], [0.0, -1.0])
    np.testing.assert_array_equal(out[1], [-2.0, 3.0, -1.0])


def test_ties_share_credit():
    assert tie_credit(np.array([0.0, 0.0, 0.0, 0.0]), 2) == 0.25
    assert tie_credit(np.array([1.0, 1.0, 0.0]), 0) == 0.5
    assert tie_credit(np.array([1.0, 1.0, 0.0]), 2) == 0.0
    assert tie_credit(np.array([1.0, 2.0, 0.0]), 1) == 1.0
    # An untrained head scores every choice 0: chance level, never "always the first choice".
    m = accuracy([np.zeros(4)] * 10, [0] * 10)
    assert m.value == pytest.approx(0.25)


def test_accuracy_and_interval():
    scores = [np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.array([2.0, 1.0]), np.array([0.0, 3.0])]
    m = accuracy(scores, [0, 0, 0, 1])
    assert m.value == 0.75 and m.n == 4
    sd = np.std([1, 0, 1, 1], ddof=1)
    assert m.stderr == pytest.approx(sd / 2)
    # Wilson's interval, not the normal one (which would be clipped at 1 and collapse at 0 or 1).
    low, high = binomtest(3, 4).proportion_ci(0.95, method="wilson")
    assert (m.ci_low, m.ci_high) == pytest.approx((low, high))
    assert m.ci_high < 1.0
    assert math.isnan(summarise([]).value)


@pytest.mark.parametrize("k,n", [(0, 5), (5, 5), (1, 10), (94, 299), (150, 299), (299, 299), (0, 1), (1, 1)])
def test_accuracy_intervals_are_wilson(k, n):
    m = summarise([1.0] * k + [0.0] * (n - k))
    low, high = binomtest(k, n).proportion_ci(0.95, method="wilson")
    assert (m.ci_low, m.ci_high) == pytest.approx((low, high), abs=1e-12)
    assert m.ci_low <= m.value <= m.ci_high and m.ci_high > m.ci_low  # never [0, 0] or [1, 1]


def test_acc_norm_divides_by_character_length():
    # Summed log-likelihood favours the short choice; per-character it favours the long one.
    scores = [np.array([-4.0, -10.0])]
    texts = [("ab", "abcdefghijklmnopqrst")]
    assert accuracy(scores, [1]).value == 0.0
    assert accuracy_norm(scores, [1], texts).value == 1.0


def test_a_pair_naming_a_mode_not_evaluated_is_warned_about_unless_a_default(caplog):
    from likra.scoring.stats import DEFAULT_PAIRS, parse_pairs

    assert parse_pairs([*DEFAULT_PAIRS, "likra:sfft"], ["base", "sft", "likra"]) == [("likra", "sft"), ("sft", "base")]
    assert "pair likra:sfft: sfft not evaluated (--modes): skipped" in caplog.text
    assert "negbase:base" not in caplog.text  # a default pair whose modes are not evaluated is skipped quietly
