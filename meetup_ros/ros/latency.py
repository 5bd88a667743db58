"""Latency bookkeeping for nodes: p50/p99 over a bounded window of recent samples."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np


class LatencyTracker:
    """Keeps the last ``window`` durations (seconds) and summarises them in milliseconds."""

    def __init__(self, window: int = 10_000) -> None:
        if window <= 0:
            raise ValueError(f"window must be positive, got {window!r}")
        self._samples_s: deque[float] = deque(maxlen=window)
        self.count = 0

    def add(self, duration_s: float) -> None:
        self._samples_s.append(float(duration_s))
        self.count += 1

    @contextmanager
    def measure(self, clock: Callable[[], float] = time.perf_counter) -> Iterator[None]:
        """Time the body of a ``with`` block (also when it raises) on ``clock`` (wall time;
        ``time.process_time`` gives the CPU time the process spent meanwhile, all its threads:
        torch's intra-op threads as well, which ``thread_time`` missed, and a little of DDS's
        own threads)."""
        start = clock()
        try:
            yield
        finally:
            self.add(clock() - start)

    def summary_ms(self) -> dict[str, float]:
        """``{"p50", "p99", "max", "count"}`` in milliseconds; NaN percentiles when empty."""
        if not self._samples_s:
            return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "count": 0}
        samples_ms = np.asarray(self._samples_s) * 1e3
        p50, p99 = np.percentile(samples_ms, [50.0, 99.0])
        return {"p50": float(p50), "p99": float(p99), "max": float(samples_ms.max()),
                "count": self.count}
