"""Time from process start to a warm explain core (imports, evidence store, explainers'
warm-up) and the process's peak memory: what bounds a replacement worker's recovery.

    RECX_CHAIN__EXPLAINERS='["template"]' PYTHONPATH=. python deploy/experiments/warmup_time.py

Run it alternately on two checkouts (``PYTHONPATH`` on each) to compare them.
"""

from __future__ import annotations

import resource
import sys
import time

started = time.perf_counter()

from recx_worker.config import Settings  # noqa: E402  (the imports are part of what is timed)
from recx_worker.core import ExplainCore  # noqa: E402


def main() -> None:
    core = ExplainCore.open(Settings())
    core.warm_up()
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    torch = "torch" in sys.modules
    print(f"warm after {seconds:.2f} s, peak {peak_mb:.0f} MB, torch loaded: {torch}")


if __name__ == "__main__":
    main()
