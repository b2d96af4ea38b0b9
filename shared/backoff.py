"""Retry delays, in one place for the worker's job table, the recorder's camera and the cloud drainer.

Two shapes, each kept as it was measured and tested:
- exponential_s: base * 2**n up to a cap, times a random factor. The job table draws the whole delay at random
  (full jitter, so devices back online do not retry in step); the drainer keeps 80-100 % of it (an outage
  waits at least most of the way before the cloud is asked again).
- StepBackoff: a fixed table of waits (the camera: quick at first, then at most every RETRY_S[-1] seconds).
"""

from __future__ import annotations

import random


def exponential_s(n: int, base: float, cap: float, *, jitter: tuple[float, float] = (1.0, 1.0),
                  max_doublings: int | None = None) -> float:
    """min(cap, base * 2**n) times a factor drawn uniformly from `jitter` (n counted from 0; `max_doublings`
    bounds n, so a long streak of failures never builds a huge power)."""
    doublings = n if max_doublings is None else min(n, max_doublings)
    return min(cap, base * 2 ** doublings) * random.uniform(*jitter)


class StepBackoff:
    """The next wait from a table, one step further per failure (the last step repeats) until reset."""

    def __init__(self, steps: tuple[float, ...]) -> None:
        self.steps = steps
        self.failures = 0

    def next(self) -> float:
        delay = self.steps[min(self.failures, len(self.steps) - 1)]
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
