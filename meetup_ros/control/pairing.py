"""Pairing the controller's states and commands with the odometry of their stamp (no ROS).

The safety monitor certifies a command over the region around the state it was computed
from, and the region's width comes from the twist covariance of the odometry at the same
stamp. The three arrive on their own topics, in any order: the state and the command from
the controller, the odometry from the VIO on its own path (it came after the state for 7 of
the 95 pairs of `make demo`). :class:`PairQueue` holds each until its partners come and hands
out complete pairs; a pair whose odometry is missing waits for it up to ``odom_wait_s``.

Time going back (a looped replay, a restarted driver) is where this goes wrong silently: a
repeated stamp must not find the previous pass's covariance, and an older pair answered after
a newer one must not replace the newer answer. Only a jump back of at least ``reset_back_s``
starts a new timeline; a smaller step back is an out-of-order message (a second publisher, a
replayed message), and its pair gets the stop. Two different messages for one stamp (two
odometry sources, two controllers) say the inputs cannot be trusted: that stamp's pair gets
the stop, also when the second one comes after the first was answered. The rules, each from a
tester's case, are written where they apply. ``now_s`` is the caller's monotonic clock, so
that a wait ends while a replay's /clock stands still, and so that the rules can be tested
without ROS.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

C = TypeVar("C")  # the command's type (a TwistStamped in the node)


@dataclass(frozen=True)
class Pair(Generic[C]):
    """A state and the command computed from it, with one stamp; ``conflict`` says why its
    inputs disagree (then it is to be answered with the stop, not certified)."""

    stamp_ns: int
    state: np.ndarray
    command: C
    conflict: str | None = None


@dataclass(frozen=True)
class OdometryTwist:
    """What the monitor takes from an odometry message: its twist and twist covariance."""

    covariance: np.ndarray  # (6, 6)
    v_base_mps: np.ndarray | None = None  # (3,); None where only the covariance is known
    omega_base_radps: np.ndarray | None = None
    pose: np.ndarray | None = None  # (4, 4): not used, but a second source shows in it too

    def same_as(self, other: OdometryTwist) -> bool:
        return all(a is b or (a is not None and b is not None and np.array_equal(a, b))
                   for a, b in ((self.covariance, other.covariance),
                                (self.v_base_mps, other.v_base_mps),
                                (self.omega_base_radps, other.omega_base_radps),
                                (self.pose, other.pose)))


class PairQueue(Generic[C]):
    """States, commands and twist covariances by stamp; complete pairs come out in the order
    they complete.

    Args:
        max_pending: the most states (commands, covariances, waiting pairs) held; beyond it
            the oldest unpaired ones are dropped, and a waiting pair is answered without
            its odometry.
        odom_wait_s: how long a pair waits for the odometry of its stamp.
        needs_odometry: whether a state of this many inputs is sized by the odometry's twist
            (else a pair is complete without it).
        report: ``report(counter, message)`` for every problem (the node's health).
        state_topic: the states' topic, for those messages.
        reset_back_s: a state or odometry stamped at least this far before the previous one
            starts a new timeline (a loop, a restart); less far, it is out of order.
    """

    def __init__(self, *, max_pending: int, odom_wait_s: float,
                 needs_odometry: Callable[[int], bool], report: Callable[[str, str], None],
                 state_topic: str = "state", reset_back_s: float = 1.0) -> None:
        self.max_pending = int(max_pending)
        self.odom_wait_s = float(odom_wait_s)
        self.reset_back_ns = round(float(reset_back_s) * 1e9)
        self._needs_odometry = needs_odometry
        self._report = report
        self._state_topic = state_topic
        self.states: OrderedDict[int, np.ndarray] = OrderedDict()
        self.commands: OrderedDict[int, C] = OrderedDict()
        self.odometry: OrderedDict[int, OdometryTwist] = OrderedDict()
        # Pairs waiting for the odometry of their stamp: stamp -> (state, command, since).
        self.awaiting: OrderedDict[int, tuple[np.ndarray, C, float]] = OrderedDict()
        # Stamps whose inputs disagree (two different states, commands or odometries).
        self.conflicts: OrderedDict[int, str] = OrderedDict()
        # Pairs answered, for a late disagreeing message: stamp -> (state, command).
        self.answered_pairs: OrderedDict[int, tuple[np.ndarray, C]] = OrderedDict()
        self.odom_newest_ns: int | None = None  # the stamp of the odometry that came last
        self.last_answered_ns: int | None = None  # the newest pair answered
        self.last_state_ns: int | None = None

    # ---- inputs ------------------------------------------------------------------------------

    def add_odometry(self, stamp_ns: int, twist_cov: np.ndarray,
                     v_base_mps: np.ndarray | None = None,
                     omega_base_radps: np.ndarray | None = None,
                     pose: np.ndarray | None = None) -> list[Pair[C]]:
        """A twist covariance (and the twist, the pose); returns the pair that waited for it,
        if one did, or the stop for an answered pair whose odometry this contradicts."""
        odometry = OdometryTwist(np.asarray(twist_cov), v_base_mps, omega_base_radps, pose)
        newest = self.odom_newest_ns
        if newest is not None and stamp_ns <= newest - self.reset_back_ns:
            # The odometry went back (a loop, a restart): what is held is another pass's,
            # and a stamp that repeats must not find it.
            self.odometry.clear()
            self.answered_pairs.clear()
            self.conflicts.clear()
            self.odom_newest_ns = stamp_ns
        elif stamp_ns in self.odometry and not self.odometry[stamp_ns].same_as(odometry):
            # Two odometry sources, or one that restamped: the later one replaced the first,
            # and a tester's sigma 0.5 then 0.01 at one stamp was certified with 0.01.
            return self._conflict(stamp_ns, "two different odometry messages for this stamp "
                                  "(two sources on the topic?)")
        if self.odom_newest_ns is None or stamp_ns > self.odom_newest_ns:
            self.odom_newest_ns = stamp_ns
        self._put(self.odometry, stamp_ns, odometry)
        if stamp_ns in self.awaiting:
            return [self._pop_awaiting(stamp_ns)]
        return []

    def add_state(self, stamp_ns: int, state: np.ndarray, now_s: float) -> list[Pair[C]]:
        answered = self.answered_pairs.get(stamp_ns)
        if answered is not None and not np.array_equal(answered[0], state):
            return self._conflict(stamp_ns, f"a second, different {self._state_topic} state "
                                  "for an answered stamp")
        if (self.last_state_ns is not None and stamp_ns < self.last_state_ns
                and stamp_ns > self.last_state_ns - self.reset_back_ns):
            # Not a new timeline: a message out of order (a second publisher, a replayed
            # message). It stays the older one: its pair gets the stop (out_of_order), where
            # taking it for a reset passed a tester's command 1 ms older than one passed.
            self._report(
                "out_of_order_states",
                f"{self._state_topic}: stamp {stamp_ns!r} ns is "
                f"{(self.last_state_ns - stamp_ns) * 1e-9:.3f} s before {self.last_state_ns!r}"
                f" ns (less than reset_backwards_s {self.reset_back_ns * 1e-9:g} s): out of "
                "order",
            )
        elif self.last_state_ns is not None and stamp_ns < self.last_state_ns:
            self._report(
                "time_jumped_back",
                f"{self._state_topic}: stamp {stamp_ns!r} ns before {self.last_state_ns!r} ns;"
                " dropping pending states and commands stamped after it",
            )
            # The previous pass's pending messages go: those stamped after this state. A
            # command of this stamp may have come first (another topic): it stays, to pair.
            for queue in (self.states, self.commands, self.awaiting):
                for old_ns in [t for t in queue if t > stamp_ns]:
                    del queue[old_ns]
            # Covariances of the previous pass go; the new pass's stay. If the odometry went
            # back already (it usually comes first), add_odometry cleared the old pass and
            # what is held is the new one's (clearing it all certified a tester's state with
            # a 2 m/s sigma as if exact, when sigma 0 was the rule). If not, everything held
            # at or after this stamp is the old pass's, a repeated stamp included (a tester's
            # loop certified with the old pass's 0.01 m/s where the new one's said 20 m/s).
            if self.odom_newest_ns is not None and self.odom_newest_ns > stamp_ns:
                for cov_ns in [t for t in self.odometry if t >= stamp_ns]:
                    del self.odometry[cov_ns]
            self.last_answered_ns = None
            self.answered_pairs.clear()
            self.conflicts.clear()
            self.last_state_ns = stamp_ns
        if self.last_state_ns is None or stamp_ns > self.last_state_ns:
            self.last_state_ns = stamp_ns
        self._hold(self.states, stamp_ns, state, "state")
        return self._try_pair(stamp_ns, now_s)

    def add_command(self, stamp_ns: int, command: C, now_s: float) -> list[Pair[C]]:
        self._hold(self.commands, stamp_ns, command, "command")
        return self._try_pair(stamp_ns, now_s)

    def expired(self, now_s: float) -> list[Pair[C]]:
        """Pairs whose odometry did not come within ``odom_wait_s``: to be answered now,
        without it."""
        return [self._pop_awaiting(stamp_ns)
                for stamp_ns, (_, _, since) in list(self.awaiting.items())
                if now_s - since >= self.odom_wait_s]

    # ---- answers -----------------------------------------------------------------------------

    def out_of_order(self, stamp_ns: int) -> str | None:
        """Why the pair at ``stamp_ns`` must not be answered now, or None.

        A pair answered after a newer one (its odometry came later) would replace the newer
        answer (a tester's older 'continue' after a newer 'stop'): it gets the stop instead,
        as does a second pair for a stamp already answered (the same messages sent twice).
        """
        if self.last_answered_ns is not None and stamp_ns < self.last_answered_ns:
            return (f"pair at {stamp_ns} ns answered after the newer one at "
                    f"{self.last_answered_ns} ns")
        if stamp_ns in self.answered_pairs:
            return f"a second pair for stamp {stamp_ns} ns, answered already"
        return None

    def answered(self, pair: Pair[C]) -> None:
        """``pair`` is being answered: older ones are out of order now."""
        if self.last_answered_ns is None or pair.stamp_ns > self.last_answered_ns:
            self.last_answered_ns = pair.stamp_ns
        self._put(self.answered_pairs, pair.stamp_ns, (pair.state, pair.command))

    def forget_last_state(self) -> None:
        """A state from another time base (far ahead of the clock) is not the reference for
        time going back: the next good state must not be taken for a jump."""
        self.last_state_ns = None

    def odometry_at(self, stamp_ns: int) -> OdometryTwist | None:
        return self.odometry.get(stamp_ns)

    def covariance_at(self, stamp_ns: int) -> np.ndarray | None:
        odometry = self.odometry.get(stamp_ns)
        return None if odometry is None else odometry.covariance

    def latest_covariance(self) -> np.ndarray | None:
        return next(reversed(self.odometry.values())).covariance if self.odometry else None

    @property
    def newest_covariance_ns(self) -> int | None:
        return next(reversed(self.odometry)) if self.odometry else None

    # ---- queues ------------------------------------------------------------------------------

    def _hold(self, queue: OrderedDict[int, Any], stamp_ns: int, item: Any, kind: str) -> None:
        if stamp_ns in queue:
            held = queue[stamp_ns]
            same = (np.array_equal(held, item) if isinstance(item, np.ndarray)
                    else bool(held == item))
            if same:
                self._report("duplicate_stamps", f"the same {kind} twice for stamp {stamp_ns}"
                             " ns before its pair was complete")
            else:
                # Which one is the vehicle's? A tester's depth 1.0 m state (violated) and a
                # 5.0 m one at the same stamp: the newer was certified.
                self._mark_conflict(stamp_ns, f"two different {kind}s for this stamp")
        for dropped_ns in self._put(queue, stamp_ns, item):
            self._report("unpaired_dropped", f"no state/command pair for stamp {dropped_ns!r} ns")

    def _put(self, held: OrderedDict[int, Any], stamp_ns: int, item: Any) -> list[int]:
        """``held[stamp_ns] = item``, the oldest beyond ``max_pending`` dropped (returned)."""
        held[stamp_ns] = item
        dropped = []
        while len(held) > self.max_pending:
            dropped.append(held.popitem(last=False)[0])
        return dropped

    def _mark_conflict(self, stamp_ns: int, why: str) -> None:
        message = f"stamp {stamp_ns} ns: {why}; its pair gets the stop"
        self._report("conflicting_inputs", message)
        self._put(self.conflicts, stamp_ns, message)

    def _conflict(self, stamp_ns: int, why: str) -> list[Pair[C]]:
        """Mark ``stamp_ns``; if its pair was answered already, the stop for it now."""
        self._mark_conflict(stamp_ns, why)
        answered = self.answered_pairs.get(stamp_ns)
        if answered is None:
            return []
        return [Pair(stamp_ns, answered[0], answered[1], self.conflicts[stamp_ns])]

    def _try_pair(self, stamp_ns: int, now_s: float) -> list[Pair[C]]:
        if stamp_ns not in self.states or stamp_ns not in self.commands:
            return []
        state = self.states.pop(stamp_ns)
        command = self.commands.pop(stamp_ns)
        if stamp_ns in self.conflicts:
            return [Pair(stamp_ns, state, command, self.conflicts[stamp_ns])]
        if not self._needs_odometry(state.size) or stamp_ns in self.odometry:
            return [Pair(stamp_ns, state, command)]
        # The state's own odometry (same stamp) sizes the region. Certified with an older
        # covariance, a tester's state whose odometry's sigma had grown to 10 m/s was verified
        # over a region for 0.01 m/s.
        since = now_s
        if stamp_ns in self.awaiting:
            # The same stamp again: the newest pair waits, but from the first one's time (a
            # tester's repeats every 50 ms kept the wait from ever ending).
            since = self.awaiting[stamp_ns][2]
            self._report("duplicate_stamps", f"a second pair for stamp {stamp_ns} ns while it "
                         "waits for its odometry: the newer is used")
        self.awaiting[stamp_ns] = (state, command, since)
        overflow = []
        while len(self.awaiting) > self.max_pending:
            overflow.append(self._pop_awaiting(next(iter(self.awaiting))))
        return overflow

    def _pop_awaiting(self, stamp_ns: int) -> Pair[C]:
        state, command, _ = self.awaiting.pop(stamp_ns)
        return Pair(stamp_ns, state, command, self.conflicts.get(stamp_ns))
