"""PairQueue, the monitor's pairing of states, commands and odometry (no ROS): every order of
arrival, the odometry wait, time going back and out-of-order answers. The same rules run
over DDS in test_monitor_region_inputs.py; here each one is pinned down on its own."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from meetup_ros.control.pairing import Pair, PairQueue

MS = 1_000_000
T0 = 1_000 * MS


def _queue(*, needs_odometry: bool = True, max_pending: int = 8, wait_s: float = 0.1,
           reset_back_s: float = 1.0) -> tuple[PairQueue[str], list[tuple[str, str]]]:
    problems: list[tuple[str, str]] = []
    queue: PairQueue[str] = PairQueue(
        max_pending=max_pending, odom_wait_s=wait_s,
        needs_odometry=lambda n: needs_odometry and n == 3,
        report=lambda key, msg: problems.append((key, msg)), state_topic="/controller/state",
        reset_back_s=reset_back_s)
    return queue, problems


def _answered(queue: PairQueue[str], stamp_ns: int, command: str = "go") -> None:
    queue.answered(Pair(stamp_ns, _state(), command))


def _cov(sigma: float) -> np.ndarray:
    return np.eye(6) * sigma**2


def _state(value: float = 1.0) -> np.ndarray:
    return np.full(3, value)


@pytest.mark.parametrize("order", list(itertools.permutations(["state", "command", "odom"])))
def test_one_pair_once_all_three_came_in_any_order(order: tuple[str, ...]) -> None:
    queue, problems = _queue()
    out: list[Pair[str]] = []
    for kind in order:
        assert not out, f"a pair came out before {kind}"
        if kind == "state":
            out += queue.add_state(T0, _state(), now_s=0.0)
        elif kind == "command":
            out += queue.add_command(T0, "go", now_s=0.0)
        else:
            out += queue.add_odometry(T0, _cov(0.1))
    assert [(p.stamp_ns, p.command) for p in out] == [(T0, "go")]
    assert np.array_equal(out[0].state, _state())
    assert queue.covariance_at(T0) is not None and not queue.awaiting and not problems


def test_without_odometry_sizing_a_pair_needs_no_odometry() -> None:
    queue, _ = _queue(needs_odometry=False)
    assert queue.add_state(T0, _state(), 0.0) == []
    assert [p.stamp_ns for p in queue.add_command(T0, "go", 0.0)] == [T0]


def test_a_pair_waits_for_its_own_odometry_not_an_older_one() -> None:
    queue, _ = _queue(wait_s=0.1)
    queue.add_odometry(T0 - 50 * MS, _cov(0.01))
    queue.add_state(T0, _state(), 0.0)
    assert queue.add_command(T0, "go", 0.0) == []
    assert queue.expired(0.099) == []
    assert [p.stamp_ns for p in queue.expired(0.1)] == [T0]
    assert queue.expired(1.0) == [] and queue.covariance_at(T0) is None


def test_a_repeated_pair_keeps_the_first_ones_wait() -> None:
    queue, problems = _queue(wait_s=0.1)
    queue.add_state(T0, _state(1.0), 0.0)
    queue.add_command(T0, "go", 0.0)
    queue.add_state(T0, _state(1.0), 0.08)
    queue.add_command(T0, "go", 0.08)
    out = queue.expired(0.1)
    assert [(p.command, p.conflict) for p in out] == [("go", None)]
    assert [k for k, _ in problems] == ["duplicate_stamps"]


@pytest.mark.parametrize("second", ["state", "command"])
def test_two_different_states_or_commands_for_one_stamp_conflict(second: str) -> None:
    """A tester's state at 1.0 m (violated) and one at 5.0 m, same stamp: the newer one was
    certified. Which is the vehicle's cannot be told: the pair gets the stop."""
    queue, problems = _queue()
    queue.add_odometry(T0, _cov(0.1))
    if second == "state":
        queue.add_state(T0, _state(1.0), 0.0)
        queue.add_state(T0, _state(5.0), 0.0)
        out = queue.add_command(T0, "go", 0.0)
    else:
        queue.add_command(T0, "continue", 0.0)
        queue.add_command(T0, "stop", 0.0)
        out = queue.add_state(T0, _state(1.0), 0.0)
    assert len(out) == 1 and out[0].conflict is not None
    assert f"two different {second}s" in out[0].conflict
    assert ("conflicting_inputs" in [k for k, _ in problems])


def test_two_different_odometries_for_one_stamp_conflict_before_or_after_the_answer() -> None:
    """A tester's sigma 0.5 then 0.01 at one stamp was certified with 0.01; a second odometry
    at 3 m/s for an answered stamp was not noticed."""
    queue, _ = _queue()
    queue.add_odometry(T0, _cov(0.5))
    assert queue.add_odometry(T0, _cov(0.5)) == []  # the same message again: nothing
    assert queue.add_odometry(T0, _cov(0.01)) == []  # not answered yet: marked
    queue.add_state(T0, _state(), 0.0)
    out = queue.add_command(T0, "go", 0.0)
    assert len(out) == 1 and "two different odometry" in str(out[0].conflict)
    assert queue.covariance_at(T0)[0, 0] == pytest.approx(0.25), "the first stays"
    # answered, then a second odometry saying another velocity: the stop, now
    t1 = T0 + 50 * MS
    queue.add_odometry(t1, _cov(0.1), np.zeros(3), np.zeros(3))
    queue.add_state(t1, _state(), 0.0)
    (pair,) = queue.add_command(t1, "go", 0.0)
    assert pair.conflict is None
    queue.answered(pair)
    late = queue.add_odometry(t1, _cov(0.1), np.array([0.0, 0.0, 3.0]), np.zeros(3))
    assert [(p.stamp_ns, p.command) for p in late] == [(t1, "go")] and late[0].conflict


def test_an_odometry_differing_only_in_pose_is_a_second_source() -> None:
    queue, problems = _queue()
    pose = np.eye(4)
    moved = np.eye(4)
    moved[0, 3] = 0.5
    queue.add_odometry(T0, _cov(0.1), np.zeros(3), np.zeros(3), pose)
    queue.add_odometry(T0, _cov(0.1), np.zeros(3), np.zeros(3), pose.copy())  # the same
    assert not problems
    queue.add_odometry(T0, _cov(0.1), np.zeros(3), np.zeros(3), moved)
    assert [k for k, _ in problems] == ["conflicting_inputs"]


def test_a_different_state_for_an_answered_stamp_is_the_stop_now() -> None:
    queue, _ = _queue(needs_odometry=False)
    (pair,) = queue.add_state(T0, _state(1.0), 0.0) + queue.add_command(T0, "go", 0.0)
    queue.answered(pair)
    late = queue.add_state(T0, _state(5.0), 0.0)
    assert len(late) == 1 and "different /controller/state state" in str(late[0].conflict)


@pytest.mark.parametrize("back_ms", [1, 100, 999])
def test_a_small_step_back_is_out_of_order_not_a_new_timeline(back_ms: int) -> None:
    """A tester's complete triple stamped 1 ms or 100 ms before one passed was taken for a
    clock reset and passed; two interleaved streams passed 12 of 12."""
    queue, problems = _queue(needs_odometry=False)
    t1 = T0 + 2_000 * MS
    (pair,) = queue.add_state(t1, _state(), 0.0) + queue.add_command(t1, "go", 0.0)
    queue.answered(pair)
    (older,) = (queue.add_state(t1 - back_ms * MS, _state(), 0.0)
                + queue.add_command(t1 - back_ms * MS, "go", 0.0))
    assert queue.out_of_order(older.stamp_ns) is not None
    assert [k for k, _ in problems] == ["out_of_order_states"]


def test_a_jump_back_of_reset_back_s_is_a_new_timeline() -> None:
    queue, problems = _queue(needs_odometry=False)
    t1 = T0 + 2_000 * MS
    (pair,) = queue.add_state(t1, _state(), 0.0) + queue.add_command(t1, "go", 0.0)
    queue.answered(pair)
    (loop,) = queue.add_state(T0, _state(), 0.0) + queue.add_command(T0, "go", 0.0)
    assert queue.out_of_order(loop.stamp_ns) is None
    assert [k for k, _ in problems] == ["time_jumped_back"]


def test_the_same_pair_twice_is_answered_once() -> None:
    queue, _ = _queue(needs_odometry=False)
    (pair,) = queue.add_state(T0, _state(), 0.0) + queue.add_command(T0, "go", 0.0)
    assert queue.out_of_order(T0) is None
    queue.answered(pair)
    (again,) = queue.add_state(T0, _state(), 0.0) + queue.add_command(T0, "go", 0.0)
    assert "answered already" in str(queue.out_of_order(again.stamp_ns))


def test_odometry_going_back_clears_the_old_pass() -> None:
    queue, _ = _queue(reset_back_s=0.1)  # a loop 0.1 s long
    for k in range(3):
        queue.add_odometry(T0 + k * 50 * MS, _cov(0.01))
    queue.add_odometry(T0, _cov(20.0))  # a loop: the same stamps again
    assert list(queue.odometry) == [T0]
    assert queue.covariance_at(T0 + 50 * MS) is None
    assert queue.covariance_at(T0)[0, 0] == pytest.approx(400.0)


def test_state_going_back_before_its_odometry_drops_the_old_pass_covariance() -> None:
    """The state of the new pass comes first: what is held at or after its stamp, a repeated
    stamp included, is the old pass's, and must not size the new state's region."""
    queue, problems = _queue(reset_back_s=0.1)  # a loop 0.1 s long
    for k in range(3):
        stamp = T0 + k * 50 * MS
        queue.add_odometry(stamp, _cov(0.01))
        queue.add_state(stamp, _state(), 0.0)
        (pair,) = queue.add_command(stamp, "go", 0.0)
        queue.answered(pair)
    queue.add_command(T0 + 150 * MS, "old pass", 0.0)  # pending from the old pass
    queue.add_command(T0, "new pass", 0.0)  # the new pass's command came first
    assert queue.add_state(T0, _state(), 1.0) == []
    assert [k for k, _ in problems] == ["time_jumped_back"]
    assert "/controller/state" in problems[0][1]
    assert list(queue.odometry) == [] and list(queue.commands) == []
    assert list(queue.awaiting) == [T0], "the new pass's pair waits for its own odometry"
    assert queue.out_of_order(T0) is None, "the old pass's answers no longer count"
    out = queue.add_odometry(T0, _cov(20.0))
    assert [p.command for p in out] == ["new pass"]
    assert queue.covariance_at(T0)[0, 0] == pytest.approx(400.0)


def test_state_going_back_after_its_odometry_keeps_the_new_covariance() -> None:
    queue, _ = _queue(reset_back_s=0.1)  # a loop 0.1 s long
    queue.add_odometry(T0 + 100 * MS, _cov(0.01))
    queue.add_state(T0 + 100 * MS, _state(), 0.0)
    queue.add_odometry(T0, _cov(2.0))  # the odometry went back first
    queue.add_command(T0, "go", 1.0)
    out = queue.add_state(T0, _state(), 1.0)
    assert [p.stamp_ns for p in out] == [T0]
    assert queue.covariance_at(T0)[0, 0] == pytest.approx(4.0)


def test_an_older_pair_after_a_newer_answer_is_out_of_order() -> None:
    queue, _ = _queue()
    _answered(queue, T0 + 50 * MS)
    why = queue.out_of_order(T0)
    assert why is not None and "answered after the newer one" in why
    assert queue.out_of_order(T0 + 100 * MS) is None


def test_a_full_queue_drops_the_oldest_and_says_so() -> None:
    queue, problems = _queue(max_pending=2)
    for k in range(3):
        queue.add_command(T0 + k * MS, "go", 0.0)
    assert list(queue.commands) == [T0 + MS, T0 + 2 * MS]
    assert problems == [("unpaired_dropped", f"no state/command pair for stamp {T0!r} ns")]


def test_too_many_waiting_pairs_hand_out_the_oldest_without_odometry() -> None:
    queue, _ = _queue(max_pending=2)
    out: list[Pair[str]] = []
    for k in range(3):
        queue.add_state(T0 + k * MS, _state(), 0.0)
        out += queue.add_command(T0 + k * MS, "go", 0.0)
    assert [p.stamp_ns for p in out] == [T0] and list(queue.awaiting) == [T0 + MS, T0 + 2 * MS]


def test_a_forgotten_state_is_no_reference_for_time_going_back() -> None:
    queue, problems = _queue()
    queue.add_state(T0 + 10_000 * MS, _state(), 0.0)  # another time base
    queue.forget_last_state()
    queue.add_state(T0, _state(), 0.0)
    assert problems == []
