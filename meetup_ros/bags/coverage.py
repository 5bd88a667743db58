"""How much of a time window a stamped series covers (no ROS).

A sensor series split by a gap (a dropped IMU, a ground truth with a hole) covers only part
of a window; integrating or interpolating across the gap gives figures that are guesses (a
tester's 3 s IMU outage put dead reckoning 139 m off). The importer warns with this, and the
VIO evaluation scores only the covered part.
"""

from __future__ import annotations

import numpy as np

NS_PER_S = 1_000_000_000
# A series silent for this many of its periods has a gap (EuRoC's IMU never misses a sample:
# 5.000 ms +- 0.2 us).
MAX_GAP_PERIODS = 10


def covered_window(stamps_ns: np.ndarray, start_ns: int, end_ns: int, topic: str,
                   max_gap_periods: float) -> tuple[int, int, str] | None:
    """The part of [start_ns, end_ns] that a series covers without a gap, and what cut it.

    The series' stamps form runs split at gaps (``max_gap_periods`` of its median period
    without a stamp); the window is the first run that reaches into [start_ns, end_ns],
    clipped to it. Ends within one gap's length of the run's are not cuts. The reason, naming
    ``topic``, is "" when the window is the whole of [start_ns, end_ns].

    None when no stamp is in or near the window.
    """
    stamps = np.asarray(stamps_ns, dtype=np.int64)
    steps = np.diff(stamps)
    max_gap = max_gap_periods * (float(np.median(steps)) if steps.size else 0.0)
    gaps = np.flatnonzero(steps > max_gap)
    run_first = np.concatenate([[0], gaps + 1])
    run_last = np.concatenate([gaps, [stamps.size - 1]])
    for k, (i, j) in enumerate(zip(run_first, run_last, strict=True)):
        first, last = int(stamps[i]), int(stamps[j])
        if last + max_gap < start_ns:
            continue
        if first - max_gap > end_ns:
            break
        reasons = []
        window_start, window_end = start_ns, end_ns
        if first - start_ns > max_gap:
            window_start = first
            reasons.append(f"{topic} starts {(first - start_ns) / NS_PER_S:.3f} s after it"
                           if k == 0 else f"{topic} has a gap of "
                           f"{(first - int(stamps[i - 1])) / NS_PER_S:.3f} s before {first} ns")
        if end_ns - last > max_gap:
            window_end = last
            reasons.append(f"{topic} has a gap of {(int(stamps[j + 1]) - last) / NS_PER_S:.3f} s "
                           f"at {last} ns" if j + 1 < stamps.size else
                           f"{topic} ends {(end_ns - last) / NS_PER_S:.3f} s before it")
        return window_start, window_end, "; ".join(reasons)
    return None
