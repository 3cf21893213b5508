"""Per-request minimum answer lengths: a fractional ``min_new_tokens`` as a stable mix of two.

An engine call takes one minimum, and ``min_new_tokens`` moves an answer's length in steps
(the default adapter: 11.6 words at 7, 13.1 at 8 on the validation split, against the
references' 12.3). ``min_new_tokens = 7.5`` asks for 7 on half of the requests and 8 on the
other half, so the mean length lands between the steps. Which request gets which is a stable
hash of its user and item, so the same recommendation always gets the same minimum (a
redelivered event, a replay, another worker).
"""

from __future__ import annotations

import hashlib
import math

#: Hash buckets a request's key falls into (the share is resolved to 1 / BUCKETS).
BUCKETS = 10_000


class MinimumMix:
    """``floor(mean)`` new tokens at least for a share ``1 - frac(mean)`` of the requests,
    one more for the rest."""

    def __init__(self, mean: float) -> None:
        if not math.isfinite(mean) or mean < 0:
            raise ValueError("min_new_tokens must be a finite number >= 0")
        self.mean = float(mean)
        self.low = math.floor(mean)
        self.share = round((mean - self.low) * BUCKETS)  # buckets that get low + 1

    @property
    def high(self) -> int:
        """The largest minimum a request may get."""
        return self.low + 1 if self.share else self.low

    @staticmethod
    def bucket(key: str) -> int:
        """A stable bucket in ``[0, BUCKETS)`` for ``key`` (the same in every process)."""
        digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % BUCKETS

    def minimum(self, key: str) -> int:
        """The minimum for the request identified by ``key``."""
        if not self.share:
            return self.low
        return self.low + (self.bucket(key) < self.share)


def request_key(user_id: str, item_id: str) -> str:
    """What identifies a recommendation for the mix: its user and item."""
    return f"{user_id}\x1f{item_id}"
