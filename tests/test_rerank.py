"""The candidate reranker: its features, its choice, its file, and fitting it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recx_worker.events import Evidence, RecommendationEvent, SupportingItem
from recx_worker.explainer import ExplainRequest
from recx_worker.features import Lexicon
from recx_worker.guard import Guard
from recx_worker.lm.rerank import (
    FEATURES,
    RERANKER_FILE,
    CandidateGroup,
    Reranker,
    RerankerError,
    WordPrior,
    candidate_features,
)

LEXICON = Lexicon(["tuner", "display", "price", "strings", "cable"])
EVIDENCE = Evidence(
    item_features=["tuner", "display"],
    user_features=["price"],
    supporting_items=[SupportingItem(item_id="h1", similarity=0.9, features=["strings"])],
    item_snippet="The tuner is accurate and the display is bright.",
)
TEXTS = [
    "The tuner is accurate and the display is bright.",
    "The tuner is accurate and easy to read.",
    "The tuner is accurate and easy to read.",
    "The tuner broke after a week, terrible cable, terrible terrible.",
]


def col(rows: list[list[float]], name: str) -> list[float]:
    return [row[FEATURES.index(name)] for row in rows]


def test_features_describe_each_candidate_without_a_reference():
    group = CandidateGroup(
        TEXTS, EVIDENCE, planned="tuner", logprobs=[-0.5, -0.7, -0.7, -2.0],
        guard_ok=[True, True, True, False], item_snippets=["easy to read", "accurate tuner"],
        prior=WordPrior(["the tuner is accurate", "easy to read and accurate"]),
    )  # fmt: skip
    rows = candidate_features(group, LEXICON)
    assert len(rows) == 4 and all(len(r) == len(FEATURES) for r in rows)
    assert col(rows, "rank") == pytest.approx([0, 1 / 3, 2 / 3, 1])
    assert col(rows, "first") == [1, 0, 0, 0]
    assert col(rows, "logprob_gap") == pytest.approx([0.0, -0.2, -0.2, -1.5])
    assert col(rows, "is_consensus") == [0, 1, 0, 0]  # the two identical ones agree most
    assert col(rows, "duplicates") == [0, 1, 1, 0]
    assert col(rows, "words") == [9, 8, 8, 10]
    assert col(rows, "words_gap") == pytest.approx([0.25, -0.75, -0.75, 1.25])
    assert col(rows, "item_top") == [1, 1, 1, 1]
    assert col(rows, "item_features") == [2, 1, 1, 1]
    assert col(rows, "user_focus") == [0, 0, 0, 0]
    assert col(rows, "planned") == [1, 1, 1, 1]
    assert col(rows, "other_features") == [0, 0, 0, 1]  # "cable" is not the item's
    assert col(rows, "snippet_overlap")[0] == pytest.approx(1.0)
    assert col(rows, "item_reviews")[1] > col(rows, "item_reviews")[3] > 0
    train_words = col(rows, "train_words")
    assert train_words[1] > train_words[0] > train_words[3]  # the most ordinary wording first
    assert 3 < col(rows, "zipf")[0] < 7  # common English words
    assert col(rows, "negative") == [0, 0, 0, 1]
    assert col(rows, "sentiment")[3] < -0.05 < col(rows, "sentiment")[0]
    assert col(rows, "repetition")[3] == pytest.approx(0.2)  # 10 words, 8 distinct
    assert col(rows, "repetition")[0] == pytest.approx(2 / 9)  # "the", "is" twice
    assert col(rows, "guard_ok") == [1, 1, 1, 0]


def test_features_of_a_single_or_empty_group():
    assert candidate_features(CandidateGroup([], EVIDENCE), LEXICON) == []
    (row,) = candidate_features(CandidateGroup(TEXTS[:1], EVIDENCE), LEXICON)
    assert col([row], "consensus") == [1.0] and col([row], "guard_ok") == [1.0]
    assert col([row], "item_reviews") == [0.0] and col([row], "train_words") == [0.0]


def test_word_prior_ranks_ordinary_wording_higher():
    prior = WordPrior(["great tuner", "great price", "great strings"])
    assert prior.mean("great great") > prior.mean("tuner") > prior.mean("zither")
    assert prior.mean("zither") == prior.mean("") == prior.mean("kazoo")


def reranker(weights: dict[str, float], guard_first: bool = False, **meta) -> Reranker:
    n = len(FEATURES)
    return Reranker(
        FEATURES, (0.0,) * n, (1.0,) * n,
        tuple(weights.get(f, 0.0) for f in FEATURES), guard_first, meta,
    )  # fmt: skip


def test_reranker_picks_the_best_scored_candidate():
    rows = candidate_features(
        CandidateGroup(TEXTS, EVIDENCE, guard_ok=[True, True, True, False]), LEXICON
    )
    assert reranker({"words": 1.0}).choose(rows) == 3  # the longest
    assert reranker({"words": 1.0}, guard_first=True).choose(rows) == 0  # longest that passes
    assert reranker({"snippet_overlap": 1.0}).choose(rows) == 0
    assert reranker({"duplicates": 1.0}).choose(rows) == 1  # ties: the earlier
    assert reranker({}).choose(rows[:1]) == 0


def test_reranker_file_round_trip_and_clear_errors(tmp_path):
    with pytest.raises(RerankerError, match=r"needs .*reranker\.json; fit one with"):
        Reranker.load(tmp_path)
    saved = reranker({"words": -0.5}, True, adapter_checksum="sha256:aa", data_checksum="x")
    saved.save(tmp_path)
    loaded = Reranker.load(tmp_path, "sha256:aa")
    assert loaded == saved and loaded.meta["data_checksum"] == "x"
    with pytest.raises(RerankerError, match="fitted on the candidates of adapter sha256:aa"):
        Reranker.load(tmp_path, "sha256:bb")
    data = json.loads((tmp_path / RERANKER_FILE).read_text())
    (tmp_path / RERANKER_FILE).write_text(json.dumps(data | {"features": ["colour"] * 19}))
    with pytest.raises(RerankerError, match="unknown reranker features"):
        Reranker.load(tmp_path)
    (tmp_path / RERANKER_FILE).write_text(json.dumps(data | {"weights": [1.0]}))
    with pytest.raises(RerankerError, match="differ in length"):
        Reranker.load(tmp_path)
    (tmp_path / RERANKER_FILE).write_text("{not json")
    with pytest.raises(RerankerError, match="is not valid"):
        Reranker.load(tmp_path)


def test_lora_selection_option(tmp_path):
    from recx_worker.default_plugins.lora import LoraExplainer

    with pytest.raises(ValueError, match="selection must be one of typical, consensus, reranker"):
        LoraExplainer(adapter_dir=tmp_path, selection="best")
    with pytest.raises(RerankerError, match="selection 'reranker' needs"):
        LoraExplainer(adapter_dir=tmp_path, selection="reranker")
    reranker({"words": 1.0}).save(tmp_path)
    assert LoraExplainer(adapter_dir=tmp_path, selection="reranker").reranker is not None
    assert LoraExplainer(adapter_dir=tmp_path).reranker is None


def test_lora_candidate_groups_carry_guard_verdicts_and_the_planned_feature(tmp_path):
    from recx_worker.default_plugins.lora import LoraExplainer
    from recx_worker.explainer import ExplainerContext

    explainer = LoraExplainer(adapter_dir=tmp_path, context=ExplainerContext(lexicon=LEXICON))
    event = RecommendationEvent(event_id="e1", user_id="u1", item_id="i1")
    request = ExplainRequest(event=event, evidence=EVIDENCE)
    texts = [TEXTS[0], TEXTS[3]]  # the second is negative and names an ungrounded feature
    (group,) = explainer.candidate_groups([request], [texts], [[-1.0, -1.0]])
    assert group.planned == "tuner" and list(group.logprobs or []) == [-1.0, -1.0]
    assert list(group.guard_ok or []) == [True, False]
    assert not Guard.with_plugins(LEXICON).check(request, TEXTS[3]).ok
    (bare,) = explainer.candidate_groups([request], [texts])
    assert bare.logprobs is None


def test_fitting_learns_a_feature_that_predicts_the_score():
    from training.rerank import Table, cross_validate, fit_reranker, picks_score

    rng = np.random.default_rng(0)
    feats, targets = [], []
    for _ in range(60):
        x = rng.normal(size=(4, len(FEATURES)))
        feats.append(x)
        targets.append(0.3 * x[:, FEATURES.index("snippet_overlap")] + 0.01 * rng.normal(size=4))
    model = fit_reranker(feats, targets, c=1.0, guard_first=False)
    weights = dict(zip(model.features, model.weights, strict=True))
    assert max(weights, key=lambda f: abs(weights[f])) == "snippet_overlap"
    assert weights["snippet_overlap"] > 0
    picks = [model.choose(x.tolist()) for x in feats]
    oracle = [int(np.argmax(t)) for t in targets]
    assert picks_score(picks, targets) == pytest.approx(picks_score(oracle, targets), abs=0.5)
    results = cross_validate(Table(feats, targets, list(range(60))), folds=3)
    assert max(score for score, _ in results.values()) > picks_score([0] * 60, targets)


def test_answer_logprobs_agree_between_engines(tmp_path):
    """The model score is the same number whether CTranslate2 or torch computes it."""
    pytest.importorskip("ctranslate2")
    torch = pytest.importorskip("torch")
    from lm_tiny import build_model

    from recx_worker.lm.ct2 import Ct2Generator, ensure_ct2_model
    from recx_worker.lm.generation import Generator
    from recx_worker.lm.loading import load_causal_lm, load_tokenizer
    from recx_worker.lm.rerank import answer_logprobs

    torch.set_num_threads(1)
    folder = build_model(tmp_path / "llama", "llama")
    model, tokenizer, _ = load_causal_lm(str(folder))
    path = ensure_ct2_model(
        tmp_path / "cache", "tiny", {"base": "t"}, lambda: (model, tokenizer), "float32"
    )
    contexts = ["Product features: tuner\nExplanation:"] * 2 + ["Shopper cares about: sound"]
    answers = ["The tuner is accurate", "The strings sound bright and stay in tune", "great"]
    by_torch = answer_logprobs(Generator(model, tokenizer), contexts, answers)
    ct2 = Ct2Generator(path, load_tokenizer(str(path)), threads=1)
    by_ct2 = answer_logprobs(ct2, contexts, answers)
    assert by_ct2 == pytest.approx(by_torch, abs=1e-3)
    assert all(lp < 0 for lp in by_torch) and len(set(by_torch)) == 3


def test_candidate_cache_key_changes_with_every_decoding_input(tmp_path):
    """Cached candidates are reused only for the same prompt and decoding: the key changes with
    the prompt's "Shopper liked:" line and with the beam-search length options."""
    from recx_worker.default_plugins.lora import LoraExplainer
    from training.rerank import cache_key

    split = tmp_path / "valid.jsonl"
    split.write_text("{}\n")

    def key(**options):
        return cache_key(LoraExplainer(adapter_dir=tmp_path, **options), split, "sha256:a")

    assert key() == key()
    variants = [key(shopper_liked=False), key(length_penalty=1.0), key(min_new_tokens=10)]
    assert all(v != key() for v in variants) and len({json.dumps(v) for v in variants}) == 3


def test_fitting_a_reranker_for_a_one_candidate_adapter_fails_before_decoding(
    worker_data, tmp_path, monkeypatch
):
    """A distilled student (the default adapter) decodes one row per request: `recx train
    reranker` says so at once, naming the fix, instead of decoding a split for nothing."""
    from typer.testing import CliRunner

    from recx_worker.cli import app

    data, index = worker_data
    student = tmp_path / "student"
    student.mkdir()
    (student / "manifest.json").write_text(json.dumps({"decoding": {"num_beams": 1}}))
    monkeypatch.delenv("RECX_CONFIG", raising=False)
    args = ["train", "reranker", "--adapter", str(student), "--data", str(data)]
    args += ["--index", str(index), "--cache", str(tmp_path / "cache"), "--no-write"]
    result = CliRunner().invoke(app, args)
    said = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "decodes one candidate per request" in said and "candidates >= 2" in said
    assert not (tmp_path / "cache").exists()  # nothing decoded
