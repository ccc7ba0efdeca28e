"""Helpers shared by the benchmarks."""

from __future__ import annotations

import time


def best_seconds(fn, repeats: int) -> float:
    """The fastest of `repeats` timed calls (the least disturbed by other load)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
