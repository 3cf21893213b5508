"""The automatic lexicon's filters and `recx data lexicon` / `recx data subset` on small
real-shaped reviews (the spaCy tagger runs for real)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from typer.testing import CliRunner

from recx_worker.cli import app
from recx_worker.features import Lexicon
from recx_worker.nouns import parse
from training.data.auto_lexicon import (
    MIN_SPECIFICITY,
    RESCUE_SPECIFICITY,
    CandidateCounts,
    build_lexicon,
    compare,
    count_candidates,
    opinion_targets,
    rank_candidates,
)
from training.data.subset import select_items, write_subset

SENTENCES = [
    "The tuner is accurate and the display is bright.",
    "The capo is really sturdy and the rubber pad protects the neck.",
    "Great strap for the price, the leather is soft and very comfortable.",
    "The strings sound bright and warm, and the tone is very clear.",
    "The display is easy to read on stage, even in sunlight, and the clip holds.",
]
# As rare as in real reviews: three reviews out of 600, each put differently.
RARE = (
    "My husband loves it. This Fender strap felt greasy at first.",
    "I bought it as a gift for my son. The finish is a little greasy.",
    "A Fender classic for my son, my husband agrees. Not greasy at all.",
)


def reviews(n: int = 600) -> list[dict]:
    """Real-shaped 5-core rows: two sentences each; the rare one in the first three only."""
    rows = []
    for i in range(n):
        text = f"{SENTENCES[i % len(SENTENCES)]} {SENTENCES[(i * 3 + 1) % len(SENTENCES)]}"
        rows.append(
            {
                "reviewerID": f"U{i % 50}",
                "asin": f"I{i % 6}",
                "reviewText": f"{text} {RARE[i]}" if i < len(RARE) else text,
                "overall": 5.0,
                "summary": "Works",
            }
        )
    return rows


def test_nouns_stay_adjectives_people_and_names_drop_out() -> None:
    lexicon = build_lexicon((r["reviewText"] for r in reviews()), size=40)
    for feature in ("tuner", "capo", "strap", "display", "leather", "strings"):
        assert feature in lexicon, (feature, lexicon.features)
    for word in ("greasy", "bright", "comfortable", "husband", "son", "fender", "great"):
        assert word not in lexicon, (word, lexicon.features)


def test_compare_counts_the_overlap_of_the_tops() -> None:
    result = compare(Lexicon(["tuner", "capo", "strap"]), Lexicon(["capo", "strap", "cable"]), 3)
    assert result["overlap"] == 2 and result["precision"] == result["recall"] == round(2 / 3, 4)


def test_lexicon_cli_compares_only_with_a_reference_given(tmp_path: Path) -> None:
    path = tmp_path / "reviews.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in reviews()), encoding="utf-8")
    runner = CliRunner()
    plain = runner.invoke(app, ["data", "lexicon", "--reviews", str(path), "--top", "20"])
    assert plain.exit_code == 0, plain.output
    assert "precision" not in plain.output
    missing = runner.invoke(
        app, ["data", "lexicon", "--reviews", str(path), "--reference", str(tmp_path / "no.txt")]
    )
    assert missing.exit_code == 2 and "reference lexicon not found" in missing.output
    reference = tmp_path / "features.txt"
    reference.write_text("tuner\ncapo\ncable\n", encoding="utf-8")
    compared = runner.invoke(
        app,
        ["data", "lexicon", "--reviews", str(path), "--reference", str(reference), "--top", "3"],
    )
    assert compared.exit_code == 0 and "precision" in compared.output


def test_subset_keeps_the_items_whose_reviews_name_the_keywords(tmp_path: Path) -> None:
    rows = reviews(60)
    for i, row in enumerate(rows):  # item I9: capo reviews only; I8: one capo review in five
        row["asin"] = "I9" if i % 5 == 1 else "I8"
    path = tmp_path / "reviews.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert select_items(path, ["capo", "capos"], share=0.6) == {"I9"}
    assert select_items(path, ["capo"], share=0.2) == {"I8", "I9"}
    out = tmp_path / "subset.json.gz"
    assert write_subset(path, {"I9"}, out) == 12
    assert write_subset(path, {"I9"}, tmp_path / "rest.json", invert=True) == 48


def test_subset_cli_cuts_a_domain_and_its_complement(tmp_path: Path) -> None:
    """`recx data subset` and `--invert` split the file into two domains: disjoint items,
    every review in exactly one of them (the second-domain protocol of docs/data.md)."""
    rows = reviews(60)
    for i, row in enumerate(rows):
        row["asin"] = "I9" if i % 5 == 1 else f"I{i % 3}"
    path = tmp_path / "reviews.json"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    runner = CliRunner()
    outs = {}
    for name, flag in (("b", "--no-invert"), ("a", "--invert")):
        outs[name] = tmp_path / f"reviews_{name}.json.gz"
        args = ["data", "subset", "--reviews", str(path), "--keywords", "capo,capos"]
        result = runner.invoke(app, [*args, "--out", str(outs[name]), flag])
        assert result.exit_code == 0, result.output
        assert "1 items name the keywords" in result.output
    items = {}
    for name, out in outs.items():
        with gzip.open(out, "rt", encoding="utf-8") as lines:
            items[name] = [json.loads(line)["asin"] for line in lines]
    assert set(items["b"]) == {"I9"} and len(items["b"]) == 12
    assert "I9" not in items["a"] and len(items["a"]) == 48
    assert "other items (--invert)" in result.output


# A common-English aspect that opinions are about, and a person word as common that they are
# not: each in six of 1,100 reviews, too rare against general English to pass on specificity.
OPINION_ON_CONSTRUCTION = (
    "The construction is solid.",
    "Excellent construction for the money.",
    "The construction is great.",
    "Nice construction overall.",
    "I like the solid construction.",
    "The construction is excellent, no complaints.",
)
PERSON_NO_OPINION = (
    "My husband uses it every day.",
    "I bought it for my husband.",
    "My husband plays it at church.",
    "Ordered one for my husband last month.",
    "My husband tried it first.",
    "It was for my husband.",
)


def opinion_reviews() -> list[str]:
    texts = [r["reviewText"] for r in reviews(1100)]  # about 30,000 tokens
    pairs = zip(OPINION_ON_CONSTRUCTION, PERSON_NO_OPINION, strict=True)
    for k, (opinion, person) in enumerate(pairs):
        texts[100 + 50 * k] += f" {opinion}"
        texts[125 + 50 * k] += f" {person}"
    return texts


def test_opinion_targets_are_what_opinion_adjectives_are_about() -> None:
    text = "The construction is solid and it is a great value, but it took a long time to arrive."
    parsed = next(parse([text]))
    targets = {parsed[i][0] for i in opinion_targets(parsed)}
    assert {"construction", "value"} <= targets, targets
    assert "time" not in targets  # "long" rates no sentiment in VADER's lexicon


def test_a_common_word_opinions_are_about_is_rescued_a_person_is_not() -> None:
    parsed_reviews = list(parse(opinion_reviews()))
    counts = count_candidates(parsed_reviews)
    for word in ("construction", "husband"):  # both below the specificity cut, above the rescue's
        assert RESCUE_SPECIFICITY <= counts.specificity(word) < MIN_SPECIFICITY, word
    assert counts.opinion_share("construction") == 1.0 and counts.opinion_share("husband") == 0
    lexicon = rank_candidates(counts, size=40)
    assert "construction" in lexicon and "husband" not in lexicon, lexicon.features
    no_opinions = CandidateCounts(is_opinion=lambda word: False)
    for parsed in parsed_reviews:
        no_opinions.add(parsed)
    assert "construction" not in rank_candidates(no_opinions, size=40)
