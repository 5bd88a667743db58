"""Multi-rate IMU windowing: every IMU sample between two camera frames, each with its dt.

Camera frames arrive at 20 Hz and IMU samples at 200 Hz on separate streams. The windower
holds IMU samples in a bounded, stamp-ordered queue; a frame at ``stamp_ns`` takes every queued
sample with a stamp up to and including it. Guarantees, counted in :class:`WindowStats`:

- none dropped: a sample is either used in exactly one window, rejected with a counted reason
  (NaN/inf, duplicate stamp, queue overflow) or discarded by a reset;
- none used twice: a window removes what it takes from the queue;
- slightly late samples (stamp before the newest one) are inserted in stamp order; one that
  arrives after its window has closed (the frame came first) goes to the next window instead
  of being lost, and is counted as ``late_merged``;
- a stamp that goes back by more than ``reset_backwards_s`` (a bag played in a loop), or
  jumps forward by more than ``reset_forward_s`` (a clock step, a driver that restarted)
  resets the windower, and the samples then queued are counted as ``discarded_on_reset``:
  nothing is known of the motion across such a gap, and one sample integrated over it would
  throw the pose far away;
- a missing camera frame loses nothing: the next frame's window spans both intervals;
- samples that never came (a driver or transport that lost them upstream) are a gap between
  two used samples of more than ``GAP_PERIODS`` periods (the median of the recent steps and
  the window's own: a clean 100 Hz IMU is not half missing): counted (``gaps``,
  ``samples_missing``) and logged. The window still integrates across it, with the longer
  dt: a tester's 0.5 s without IMU left no trace but fewer zero-velocity updates. A sample
  that did come but was refused (NaN, here or in the node's message check: ``refuse``) is
  dropped, not missing, and one that comes late into a stretch already counted as a gap
  takes its share back out of the gap's count (a tester's NaN sample and 7 ms late sample
  were each reported as never received).
"""

from __future__ import annotations

import bisect
import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np

logger = logging.getLogger(__name__)

# Beyond the full scale of common MEMS IMUs (+-2000 deg/s, +-16 g), with margin: larger
# values are corrupt messages, and one integrated sample would throw the pose kilometres.
# The nodes refuse such messages (ros.convert), offline scoring drops such samples
# (odometry.dataset.imu_measurements).
IMU_GYRO_LIMIT_RADPS = 40.0
IMU_ACCEL_LIMIT_MPS2 = 200.0
NS_PER_S = 1_000_000_000


def say_again(count: int) -> bool:
    """Whether the ``count``-th occurrence of a problem is logged: the first few, then every
    100th, so that a flood (a bad stream, clocks that disagree) cannot stall the node; the
    counts themselves go to the diagnostics."""
    return count <= 3 or count % 100 == 0

GAP_PERIODS = 1.9  # one sample missing (2 periods) is a gap; jitter under 90 % is not
REMEMBERED = 256  # refused stamps and gaps kept for the accounting above (>1 s at 200 Hz)


class OdometryError(Exception):
    """Bad input to the odometry core (IMU sample, image, weights, configuration)."""


@dataclass
class WindowStats:
    """Counters of IMU samples; ``received == used + dropped + pending + discarded_on_reset``."""

    received: int = 0
    used: int = 0
    dropped: int = 0
    late_merged: int = 0
    discarded_on_reset: int = 0
    resets: int = 0
    windows: int = 0
    gaps: int = 0  # stretches without samples between two used ones (none lost here)
    samples_missing: int = 0  # the nominal samples those stretches lack
    dropped_by_reason: dict[str, int] = field(default_factory=dict)

    def drop(self, reason: str) -> None:
        self.dropped += 1
        self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + 1


@dataclass(frozen=True)
class ImuWindow:
    """The IMU samples of one frame interval (``start_ns``, ``end_ns``], in stamp order.

    ``dt_s[i]`` is the time covered by sample i: its stamp minus the previous sample's (across
    windows); the first sample after a (re)start gets the nominal period.
    """

    start_ns: int  # previous frame stamp (or first sample stamp minus dt after a start)
    end_ns: int  # this frame's stamp
    stamps_ns: np.ndarray  # (n,) int64
    gyro_radps: np.ndarray  # (n, 3) float64
    accel_mps2: np.ndarray  # (n, 3) float64
    dt_s: np.ndarray  # (n,) float64

    def __len__(self) -> int:
        return int(self.stamps_ns.shape[0])


class ImuWindower:
    """Bounded, stamp-ordered IMU queue cut into windows at camera frame stamps.

    Args:
        rate_hz: nominal IMU rate; sets the dt of a first sample and the default capacity.
        capacity: most samples held between frames (default: 5 s at ``rate_hz``, so a camera
            outage of up to 5 s loses nothing; the estimator closes inertial-only windows
            long before that).
        reset_backwards_s: a stamp this far before the newest one means time went back.
        reset_forward_s: a stamp this far after the newest one means the clock jumped.
    """

    def __init__(
        self, rate_hz: float = 200.0, capacity: int | None = None,
        reset_backwards_s: float = 0.5, reset_forward_s: float = 1.0,
    ) -> None:
        if not rate_hz > 0:
            raise OdometryError(f"IMU rate_hz = {rate_hz!r}, expected > 0")
        if not reset_backwards_s > 0:
            raise OdometryError(f"reset_backwards_s = {reset_backwards_s!r}, expected > 0")
        self.rate_hz = float(rate_hz)
        self.capacity = int(capacity) if capacity is not None else round(5 * rate_hz)
        if self.capacity < 1:
            raise OdometryError(f"IMU queue capacity = {capacity!r}, expected >= 1")
        if not reset_forward_s > 0:
            raise OdometryError(f"reset_forward_s = {reset_forward_s!r}, expected > 0")
        self.reset_backwards_ns = int(reset_backwards_s * NS_PER_S)
        self.reset_forward_ns = int(reset_forward_s * NS_PER_S)
        self.nominal_dt_s = 1.0 / self.rate_hz
        self.stats = WindowStats()
        self._stamps: list[int] = []
        self._samples: list[tuple[float, float, float, float, float, float]] = []
        self._newest_ns: int | None = None  # newest stamp accepted
        self._last_used_ns: int | None = None  # stamp of the last sample put in a window
        self._last_end_ns: int | None = None  # end of the last window
        self._steps: deque[float] = deque(maxlen=64)  # recent sample periods (s): the rate
        self.reset_happened = False  # set by add() when its sample reset the windower
        self.last_reset_reason = ""
        self.last_rejection = ""  # "reason: detail" of the newest rejected sample
        # Stamps of recent refused samples, and recent gaps [before, after, missing]: what a
        # gap's count leaves out, and what a late sample may fill.
        self._refused: deque[int] = deque(maxlen=REMEMBERED)
        self._recent_gaps: deque[list[int]] = deque(maxlen=REMEMBERED)

    # -- input ---------------------------------------------------------------------------------
    def add(self, stamp_ns: int, gyro_radps: np.ndarray, accel_mps2: np.ndarray) -> bool:
        """Queue one sample; returns False if it was rejected (reason counted and logged).

        A stamp more than ``reset_backwards_s`` before the newest one resets the windower
        first (``reset_happened`` tells the caller); the sample is then queued.
        """
        self.stats.received += 1
        stamp_ns = int(stamp_ns)
        gyro = np.asarray(gyro_radps, dtype=np.float64).reshape(-1)
        accel = np.asarray(accel_mps2, dtype=np.float64).reshape(-1)
        if gyro.shape != (3,) or accel.shape != (3,):
            self._reject("bad_shape", stamp_ns, f"gyro {gyro.shape}, accel {accel.shape}, "
                         "expected (3,) each")
            return False
        if not (np.all(np.isfinite(gyro)) and np.all(np.isfinite(accel))):
            self._reject("non_finite", stamp_ns,
                         f"gyro_radps {gyro.tolist()!r} accel_mps2 {accel.tolist()!r} has "
                         "NaN or inf")
            return False
        self.reset_happened = False
        if self._newest_ns is not None and stamp_ns < self._newest_ns - self.reset_backwards_ns:
            self.reset(
                f"IMU stamp {stamp_ns} ns is {(self._newest_ns - stamp_ns) / 1e9:.3f} s before "
                f"the newest {self._newest_ns} ns (time went back)"
            )
            self.reset_happened = True
        elif self._newest_ns is not None and stamp_ns > self._newest_ns + self.reset_forward_ns:
            self.reset(
                f"IMU stamp {stamp_ns} ns is {(stamp_ns - self._newest_ns) / 1e9:.3f} s after "
                f"the newest {self._newest_ns} ns (a gap of unknown motion)"
            )
            self.reset_happened = True
        i = bisect.bisect_left(self._stamps, stamp_ns)
        if i < len(self._stamps) and self._stamps[i] == stamp_ns:
            self._reject("duplicate_stamp", stamp_ns, "a queued sample has the same stamp")
            return False
        if self._last_used_ns is not None and stamp_ns == self._last_used_ns:
            self._reject("duplicate_stamp", stamp_ns, "a used sample had the same stamp")
            return False
        if len(self._stamps) >= self.capacity:
            self._reject("queue_full", stamp_ns,
                         f"{len(self._stamps)} samples queued (capacity {self.capacity}); "
                         "no camera frame has closed a window")
            return False
        if self._last_end_ns is not None and stamp_ns <= self._last_end_ns:
            # Its window closed before it arrived: it joins the next one, first in line.
            self.stats.late_merged += 1
            self._fill_gap(stamp_ns)
            i = 0
        self._stamps.insert(i, stamp_ns)
        self._samples.insert(i, (gyro[0], gyro[1], gyro[2], accel[0], accel[1], accel[2]))
        if self._newest_ns is None or stamp_ns > self._newest_ns:
            self._newest_ns = stamp_ns
        return True

    def refuse(self, stamp_ns: int | None, reason: str, detail: str) -> None:
        """Count a sample the caller received and refused before ``add`` (a node's message
        check): received and dropped, not missing. The caller has said why; not logged."""
        self.stats.received += 1
        self._reject(reason, stamp_ns, detail, log=False)

    def _reject(self, reason: str, stamp_ns: int | None, detail: str, log: bool = True) -> None:
        self.stats.drop(reason)
        self.last_rejection = f"{reason}: {detail}"
        if stamp_ns is not None:
            self._refused.append(int(stamp_ns))
        count = self.stats.dropped_by_reason[reason]
        if log and say_again(count):
            logger.warning("IMU sample at %s ns rejected (%s, %d so far): %s",
                           stamp_ns, reason, count, detail)

    def _fill_gap(self, stamp_ns: int) -> None:
        """A late sample inside a stretch counted as a gap: one sample fewer missing."""
        for gap in self._recent_gaps:
            before, after, missing = gap
            if before < stamp_ns < after and missing > 0:
                gap[2] -= 1
                self.stats.samples_missing -= 1
                if gap[2] == 0:
                    self.stats.gaps -= 1
                return

    # -- output --------------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._stamps)

    @property
    def newest_ns(self) -> int | None:
        return self._newest_ns

    @property
    def oldest_pending_ns(self) -> int | None:
        return self._stamps[0] if self._stamps else None

    def measured_rate_hz(self, min_steps: int = 3) -> tuple[float, int] | None:
        """The IMU's rate as the windows measured it (the inverse of the median of the recent
        sample periods, the one gap detection uses) and how many periods it is the median of;
        None before ``min_steps`` periods since the last (re)start."""
        if len(self._steps) < max(1, min_steps):
            return None
        return 1.0 / float(np.median(self._steps)), len(self._steps)

    def count_until(self, end_ns: int) -> int:
        """How many queued samples have a stamp <= ``end_ns`` (what ``take`` would take)."""
        return bisect.bisect_right(self._stamps, int(end_ns))

    def take(self, end_ns: int) -> ImuWindow:
        """Remove and return every queued sample with a stamp <= ``end_ns`` (may be empty)."""
        end_ns = int(end_ns)
        n = bisect.bisect_right(self._stamps, end_ns)
        # Late-merged samples sit at the front with stamps before the last window's end.
        stamps = np.asarray(self._stamps[:n], dtype=np.int64)
        values = np.asarray(self._samples[:n], dtype=np.float64).reshape(n, 6)
        del self._stamps[:n]
        del self._samples[:n]
        dt_s = np.empty(0, dtype=np.float64)
        if n:
            # Each sample's step from the newest stamp before it (this window's or the last
            # used one; none for the first sample after a start).
            newest = np.maximum.accumulate(stamps)
            if self._last_used_ns is not None:
                newest = np.maximum(newest, self._last_used_ns)
            first = stamps[0] if self._last_used_ns is None else self._last_used_ns
            before = np.concatenate([[first], newest[:-1]])
            steps = (stamps - before) / NS_PER_S
            advanced = steps > 0
            # A late-merged sample's stamp precedes the previous one, and the first after a
            # start has none: each still covers a nominal period that no other sample covered.
            dt_s = np.where(advanced, steps, self.nominal_dt_s)
            # The IMU's period: the median of the recent steps, this window's included, so
            # that the first window already knows a slower IMU's rate (gaps are rare: the
            # median passes over them).
            self._steps.extend(steps[advanced].tolist())
            period_s = (float(np.median(self._steps)) if len(self._steps) >= 3
                        else self.nominal_dt_s)
            for i in np.flatnonzero(advanced & (steps > GAP_PERIODS * period_s)):
                self._gap(int(before[i]), int(stamps[i]), float(steps[i]), period_s)
            self._last_used_ns = int(newest[-1])
        start_ns = (self._last_end_ns if self._last_end_ns is not None
                    else (int(stamps[0]) - int(dt_s[0] * NS_PER_S) if n else end_ns))
        self._last_end_ns = max(end_ns, self._last_end_ns or end_ns)
        self.stats.used += n
        self.stats.windows += 1
        return ImuWindow(start_ns, end_ns, stamps, values[:, :3].copy(), values[:, 3:].copy(),
                         dt_s)

    def _gap(self, before_ns: int, after_ns: int, step_s: float,
             period_s: float) -> None:
        refused = sum(1 for t in self._refused if before_ns < t < after_ns)
        missing = max(1, round(step_s / period_s) - 1) - refused
        if missing <= 0:  # every sample of the stretch came, and was refused
            return
        self._recent_gaps.append([before_ns, after_ns, missing])
        self.stats.gaps += 1
        self.stats.samples_missing += missing
        if say_again(self.stats.gaps):
            logger.warning("IMU gap: no sample for %.1f ms between %d and %d ns (about %d "
                           "sample(s) at %.0f Hz never arrived; %d gap(s) so far)",
                           step_s * 1e3, before_ns, after_ns, missing, 1.0 / period_s,
                           self.stats.gaps)

    def reset(self, reason: str) -> None:
        """Forget all state; queued samples are counted as ``discarded_on_reset``."""
        self.last_reset_reason = reason
        self.stats.discarded_on_reset += len(self._stamps)
        self.stats.resets += 1
        # Throttled as rejections are: a stream flipping between two clocks resets every
        # sample; the count and the newest reason stay in the stats for the diagnostics.
        if say_again(self.stats.resets):
            logger.warning("IMU windower reset (%s); discarding %d queued sample(s) (%d "
                           "resets so far)", reason, len(self._stamps), self.stats.resets)
        self._stamps.clear()
        self._samples.clear()
        self._refused.clear()
        self._recent_gaps.clear()
        self._newest_ns = None
        self._last_used_ns = None
        self._last_end_ns = None
        self._steps.clear()
