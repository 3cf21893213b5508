"""Grounded decoding: a language model may not spell out features its evidence does not support.

The guard rejects an explanation that mentions a lexicon feature outside the request's
evidence, and the chain then falls back. ``FeatureBans`` moves that check into decoding: for
each prompt it bans the token sequences of the lexicon features its evidence does not allow
(as whole words after a space, lower-case and capitalised), so the model writes about
something it may mention instead of wasting the request. The guard still checks every output.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from recx_worker.features import Lexicon, words

Sequences = list[tuple[int, ...]]


def _variants(feature: str) -> list[str]:
    return list(dict.fromkeys((f" {feature}", f" {feature[:1].upper()}{feature[1:]}")))


class FeatureBans:
    """Token sequences of every lexicon feature, and the bans for one request's evidence."""

    def __init__(self, lexicon: Lexicon, tokenizer: Any) -> None:
        self.lexicon = lexicon
        self._sequences: dict[str, Sequences] = {}
        for feature in lexicon:
            encoded = tokenizer(_variants(feature), add_special_tokens=False)["input_ids"]
            self._sequences[feature] = [tuple(ids) for ids in encoded if ids]

    def banned(self, allowed: Iterable[str]) -> Sequences:
        """Sequences to ban when ``allowed`` features may be mentioned.

        A feature that is a word of an allowed multi-word feature (``bag`` of ``gig bag``) is
        not banned, so the allowed phrase can still be written.
        """
        allowed_norm = {" ".join(words(f)) for f in allowed}
        allowed_words = {w for f in allowed_norm for w in f.split()}
        out: Sequences = []
        for feature, sequences in self._sequences.items():
            if feature in allowed_norm or feature in allowed_words:
                continue
            out.extend(sequences)
        return out


class BanProcessor:
    """A ``transformers`` logits processor banning per-row token sequences.

    ``bans[i]`` applies to prompt ``i``, whose scores take ``rows_per_prompt`` consecutive
    rows (beams or sampled candidates). The last token of a banned sequence gets ``-inf``
    whenever the row already ends with the sequence's other tokens (a one-token sequence is
    always banned).
    """

    def __init__(self, bans: Sequence[Sequences], rows_per_prompt: int = 1) -> None:
        self.rows_per_prompt = rows_per_prompt
        self.single: list[list[int]] = []
        self.by_prefix: list[dict[tuple[int, ...], list[int]]] = []
        self.prefix_lengths: list[set[int]] = []
        for sequences in bans:
            single: list[int] = []
            by_prefix: dict[tuple[int, ...], list[int]] = defaultdict(list)
            for seq in sequences:
                if len(seq) == 1:
                    single.append(seq[0])
                else:
                    by_prefix[seq[:-1]].append(seq[-1])
            self.single.append(sorted(set(single)))
            self.by_prefix.append(dict(by_prefix))
            self.prefix_lengths.append({len(p) for p in by_prefix})
        self.longest_prefix = max((max(s, default=0) for s in self.prefix_lengths), default=0)
        self._mask: Any = None

    def _single_mask(self, scores: Any) -> Any:
        import torch

        if self._mask is None or self._mask.shape != scores.shape:
            mask = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
            for row in range(scores.shape[0]):
                ids = self.single[row // self.rows_per_prompt]
                if ids:
                    mask[row, [i for i in ids if i < scores.shape[1]]] = True
            self._mask = mask
        return self._mask

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        scores = scores.masked_fill(self._single_mask(scores), float("-inf"))
        if not self.longest_prefix:
            return scores
        for row, tail in enumerate(input_ids[:, -self.longest_prefix :].tolist()):
            prompt = row // self.rows_per_prompt
            by_prefix = self.by_prefix[prompt]
            for length in self.prefix_lengths[prompt]:
                if length <= len(tail):
                    banned = by_prefix.get(tuple(tail[-length:]))
                    if banned:
                        scores[row, banned] = float("-inf")
        return scores
