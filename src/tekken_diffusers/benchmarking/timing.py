"""Timing that a shared CPU cannot skew towards one configuration, and the tables the results go into.

Timings of several configurations are interleaved (a few calls of each in turn, round after round) so that a burst of
load from other jobs hits every configuration alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from tqdm.auto import tqdm

__all__ = ["interleaved_times", "markdown_table", "percentile", "timed"]


def timed(function: Callable[[], object]) -> Callable[[], float]:
    """`function` made to return the seconds it took (the form `interleaved_times` takes)."""

    def run() -> float:
        started = time.perf_counter()
        function()
        return time.perf_counter() - started

    return run


def interleaved_times(
    cases: Mapping[str, Callable[[], float]],
    rounds: int,
    per_round: int = 1,
    warmup: int = 1,
    desc: str | None = None,
) -> dict[str, list[float]]:
    """Time every case `rounds x per_round` times, in rounds: `per_round` calls of the first case, then of the second,
    and so on, round after round, so that a change of load on a shared CPU hits every case alike.

    Args:
        cases: name → a call that does its own untimed preparation, then returns the seconds of the timed work.
        rounds: rounds of calls.
        per_round: consecutive calls of one case per round (a few keep its weights in the CPU's caches).
        warmup: untimed calls of each case first.
        desc: a progress bar's label (none without it).

    Returns:
        name → the seconds of each timed call.
    """
    for call in cases.values():
        for _ in range(warmup):
            call()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in tqdm(range(rounds), desc=desc, unit="round", disable=True if desc is None else None, leave=False):
        for name, call in cases.items():
            times[name].extend(call() for _ in range(per_round))
    return times


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100, linear interpolation) of `values`."""
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]], text_columns: int = 1) -> str:
    """A markdown table: the first `text_columns` columns left-aligned, the numbers after them right-aligned."""
    align = ["---" if index < text_columns else "---:" for index in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])
