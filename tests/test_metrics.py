"""Quality metrics against small hand-computed examples and identities."""

from __future__ import annotations

import math
import random

import pytest

from training.evaluation.metrics import (
    FeatureMatcher,
    bleu_totals,
    corpus_bleu,
    feature_coverage_ratio,
    feature_diversity,
    feature_diversity_naive,
    feature_matching_ratio,
    lcs_length,
    rouge,
    rouge_l,
    rouge_n,
    score,
    unique_sentence_ratio,
)
from training.evaluation.text import tokenize, truncate


def toks(text: str) -> list[str]:
    return text.split()


def test_tokenize_splits_punctuation_and_contractions():
    assert tokenize("It's GREAT, isn't it?!") == [
        "it", "'s", "great", ",", "is", "n't", "it", "?", "!",
    ]  # fmt: skip
    assert tokenize("Wow... really!!!  I'd   buy") == ["wow", ".", "really", "!", "i", "'d", "buy"]
    assert tokenize("") == []


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        # PEPLER's postprocessing, case by case
        ("I'm sure you've heard it'd do", "i 'm sure you 've heard it 'd do"),
        ("they'll", "they 'll"),
        ("We're fine. Don't", "we 're fine . do n't"),
        ("the (black) case", "the ( black ) case"),
        ("((nested))", "( ( nested ) )"),
        ("price, sound,, and looks", "price , sound , and looks"),
        ("pros: light; cons: none", "pros , light . cons , none"),
        ("wait::: what;;; ok...", "wait , what . ok ."),
        ("great!!! really??", "great ! really ?"),
        # substitutions run one after another, as in PEPLER: mixed runs give several tokens
        ("so,: and;. end", "so , , and . . end"),
        ("what?!", "what ? !"),
        # nothing else is normalised: a typographic apostrophe stays inside its word
        ("they\u2019re fine", "they\u2019re fine"),
        ("  Tabs\tand\nnewlines  ", "tabs and newlines"),
        ("3.5mm jack", "3 . 5mm jack"),
    ],
)
def test_tokenize_is_peplers_postprocessing(text: str, tokens: str):
    assert tokenize(text) == tokens.split()


def test_truncate_keeps_first_words():
    assert truncate(list("abcdef"), 3) == ["a", "b", "c"]
    assert truncate(list("ab"), None) == ["a", "b"]


def test_bleu_identity_is_100():
    corpus = [toks("the strings sound bright and warm"), toks("a solid tuner for the price")]
    assert corpus_bleu(corpus, corpus, 4) == pytest.approx(100.0)
    assert corpus_bleu(corpus, corpus, 1) == pytest.approx(100.0)


def test_bleu1_clips_counts():
    # "the" occurs twice in the reference: 2 of 7 unigrams match; hyp longer -> no penalty.
    ref, hyp = toks("the cat is on the mat"), toks("the the the the the the the")
    assert corpus_bleu([ref], [hyp], 1) == pytest.approx(100 * 2 / 7)


def test_bleu_brevity_penalty():
    assert corpus_bleu([toks("a b c d")], [toks("a b")], 1) == pytest.approx(100 * math.exp(-1))


def test_bleu4_is_corpus_level():
    refs = [toks("a b c d e"), toks("x y z w")]
    hyps = [toks("a b c d e"), toks("x y q w")]
    # p1 = 8/9, p2 = 5/7, p3 = 3/5, p4 = 2/3 pooled over the corpus; equal lengths.
    expected = 100 * (8 / 9 * 5 / 7 * 3 / 5 * 2 / 3) ** 0.25
    assert corpus_bleu(refs, hyps, 4) == pytest.approx(expected)
    # The second sample alone has no 4-gram match: no smoothing -> 0.
    assert corpus_bleu(refs[1:], hyps[1:], 4) == 0.0


def test_bleu_totals_clip_and_sum_matches_per_order():
    refs = [["the", "tuner", "is", "great", "and", "cheap"], ["a", "a", "b"]]
    hyps = [["the", "tuner", "is", "great", "and", "loud"], ["a", "a", "a", "b"]]
    # record 1: 5 unigrams, 4 bigrams, 3 trigrams, 2 four-grams; record 2: "a" clipped to 2,
    # "b" 1; bigrams "a a" 1 (clipped), "a b" 1; trigram "a a b" 1
    matches, possible, ref_len, hyp_len = bleu_totals(refs, hyps, 4)
    assert matches == [5 + 3, 4 + 2, 3 + 1, 2]
    assert possible == [6 + 4, 5 + 3, 4 + 2, 3 + 1] and (ref_len, hyp_len) == (9, 10)


def test_bleu_empty_hypotheses_score_zero():
    assert corpus_bleu([toks("a b")], [[]], 4) == 0.0


def test_rouge_n_uses_sets():
    ref, hyp = toks("the cat the dog"), toks("the the cat")
    p, r, f = rouge_n(ref, hyp, 1)  # {the, cat} vs {the, cat, dog}
    assert (p, r) == (1.0, pytest.approx(2 / 3))
    assert f == pytest.approx(0.8)
    p, r, f = rouge_n(ref, hyp, 2)  # {the the, the cat} vs {the cat, cat the, the dog}
    assert (p, r, f) == (0.5, pytest.approx(1 / 3), pytest.approx(0.4))


def test_rouge_l_hand_example():
    ref, hyp = toks("the cat the dog"), toks("the the cat")
    assert lcs_length(hyp, ref) == 2
    p, r, f = rouge_l(ref, hyp)
    assert (p, r) == (pytest.approx(2 / 3), 0.5)
    # beta = P/R = 4/3: F = (1 + b^2) R P / (R + b^2 P) = 50/91
    assert f == pytest.approx(50 / 91)


def test_rouge_identity_and_average():
    corpus = [toks("great tone"), toks("the tuner holds well")]
    scores = rouge(corpus, corpus)
    for key in ("rouge_1_f", "rouge_2_f", "rouge_l_f", "rouge_1_p", "rouge_l_r"):
        assert scores[key] == pytest.approx(100.0)
    scores = rouge([toks("a b"), toks("c d")], [toks("a b"), toks("x y")])
    assert scores["rouge_1_f"] == pytest.approx(50.0)
    assert scores["rouge_l_p"] == pytest.approx(50.0)


def test_usr():
    assert unique_sentence_ratio([toks("a b"), toks("a b"), toks("c")]) == pytest.approx(2 / 3)


def test_feature_matcher_contiguous_multiword():
    matcher = FeatureMatcher(["gig bag", "bag", "tone", "strings"])
    assert matcher.find(toks("the gig bag has good tone")) == {"gig bag", "bag", "tone"}
    assert matcher.find(toks("the gig and the bag")) == {"bag"}
    assert FeatureMatcher.contains(tokenize("Nice gig bag."), "gig bag")
    assert not FeatureMatcher.contains(tokenize("gig, bag"), "gig bag")


def test_fmr():
    hyps = [tokenize("The gig bag is great"), tokenize("nice tone")]
    assert feature_matching_ratio(hyps, ["gig bag", "strings"]) == 0.5


def test_fcr():
    assert feature_coverage_ratio([{"a", "b"}, {"b", "c"}, set()], 4) == 0.75
    assert feature_coverage_ratio([{"a"}], 0) == 0.0


def test_div_hand_example():
    sets = [{"a", "b"}, {"a"}, {"b", "c"}, set()]
    # pairs sharing: (0,1) a, (0,2) b -> 2 shared over C(4,2) = 6 pairs
    assert feature_diversity(sets) == pytest.approx(1 / 3)
    assert feature_diversity([{"a"}]) == 0.0


def test_div_fast_equals_naive_on_random_sets():
    rng = random.Random(7)
    features = [f"f{i}" for i in range(12)]
    for _ in range(20):
        sets = [set(rng.sample(features, rng.randint(0, 4))) for _ in range(rng.randint(2, 40))]
        assert feature_diversity(sets) == pytest.approx(feature_diversity_naive(sets))


def test_score_truncates_references_only():
    ref = "one two three four five six"
    full = score([ref], [ref], ["two"], FeatureMatcher(["two"]), {"data": 2}, None)
    assert full["bleu_4"] == pytest.approx(100.0)
    assert full["fmr"] == 1.0 and full["fcr_data"] == 0.5 and full["mean_tokens"] == 6
    cut = score([ref], [ref], ["two"], FeatureMatcher(["two"]), {"data": 2}, 3)
    assert cut["rouge_1_r"] == pytest.approx(100.0)
    assert cut["rouge_1_p"] == pytest.approx(50.0)
