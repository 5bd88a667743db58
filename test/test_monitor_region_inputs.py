"""safety_monitor_node and controller_node against inputs that would narrow what a "verified"
covers or change what a command means. Real nodes over DDS (loopback), real rcl parameter
parsing; nothing of either node is mocked. Each case is a tester's finding (2026-12-05):

- the odometry's uncertainty is never taken as zero for want of it: no /odom yet, a twist
  covariance of all zeros (ROS's "unknown"), or one dropped because a state's stamp went back;
- a property file that names its variables must name the monitor's, in order;
- a namespaced monitor still gets the pipeline file's section, and the code's defaults are
  the pipeline's region, not a narrower one;
- timing parameters that would switch the watchdog or the age check off are refused;
- commands in another frame, odometry of another child frame, a state naming a value twice
  and a rejected command in fixed mode are each refused and said.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rclpy")

from geometry_msgs.msg import TwistStamped
from governors import always_continue_onnx
from sensor_msgs.msg import JointState
from test_monitor_faults import BENIGN, TICK_NS, _cmds, _statuses
from test_nodes import (
    REPO_ROOT,
    STAMP0_NS,
    Harness,
    _monitor,
    _odom,
    _overrides,
    _propose,
)

from meetup_ros.control.state import STATE_NAMES
from meetup_ros.ros import RosInputError
from meetup_ros.ros import convert as cv
from meetup_ros.ros.params import load_params_file

pytestmark = pytest.mark.dds

SMALL_RADII = [0.05, 0.05, 0.05, 0.05, 0.1]
PIPELINE = REPO_ROOT / "config" / "pipeline.yaml"


def _odom_sigma(stamp_ns: int, forward_sigma_mps: float, child: str = "base_link") -> object:
    cov = np.eye(6) * 1e-6
    cov[2, 2] = forward_sigma_mps**2  # forward = body +z (EuRoC)
    return cv.odometry_msg(stamp_ns, np.eye(4), [0.0, 0.0, 0.0], [0.0, 0.0, 0.0],
                           np.eye(6) * 1e-4, cov, child_frame_id=child)


def test_a_state_stamp_going_back_keeps_its_odometry_uncertainty(harness: Harness,
                                                                 tmp_path: Path) -> None:
    """At rest 2 m from an obstacle with a 2 m/s speed sigma, an always-'continue' network is
    not safe over the region. The odometry arrives before the state; when the state's stamp
    goes back, the monitor used to drop that odometry's covariance with the old pass's and
    certify the state as if its speed were exact: 'verified', 1 m/s on /cmd."""
    # a loop 0.5 s long: a new timeline at reset_backwards_s 0.1
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"), radii=SMALL_RADII,
                    reset_backwards_s=0.1)
    state = [0.0, 0.0, 0.0, 0.0, 2.0]
    later, earlier = STAMP0_NS + 10 * TICK_NS, STAMP0_NS
    for n, stamp_ns in enumerate((later, earlier), start=1):
        harness.publish("/odom", _odom_sigma(stamp_ns, 2.0))
        harness.wait_for(lambda s=stamp_ns: s in node.pairing.odometry, 5, "the odometry")
        _propose(harness, stamp_ns, state, 1.0)
        harness.wait_for(lambda n=n: len(_cmds(harness)) == n, 10, f"/cmd {n}")
        assert _statuses(harness)[-1] != "verified", (_statuses(harness), node.last)
        assert _cmds(harness)[-1].twist.linear.z == 0.0
    assert node.health.counters["time_jumped_back"] == 1
    assert node.certificates["verified"] == 0


def test_no_odometry_or_an_unknown_covariance_certifies_nothing(harness: Harness,
                                                                tmp_path: Path) -> None:
    """use_odometry_covariance true and no /odom yet (a wrong odom_topic, a QoS mismatch):
    every tick was verified with a sigma of 0, silently. Now unknown, the fallback, and the
    reason names /odom; likewise a twist covariance of all zeros; a real one then passes."""
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"))
    _propose(harness, STAMP0_NS, BENIGN, 1.0)
    harness.wait_for(lambda: len(_cmds(harness)) == 1, 10, "/cmd without odometry")
    assert _statuses(harness) == ["unknown"]
    assert _cmds(harness)[-1].twist.linear.z == 0.0
    assert node.last is not None and "no twist covariance from /odom" in node.last.reason
    stamp_ns = STAMP0_NS + TICK_NS
    harness.publish("/odom", cv.odometry_msg(stamp_ns, np.eye(4), [0.0, 0.0, 0.1], [0, 0, 0],
                                             np.eye(6) * 1e-4, np.zeros((6, 6))))
    harness.wait_for(lambda: stamp_ns in node.pairing.odometry, 5, "the zero-covariance odometry")
    _propose(harness, stamp_ns, BENIGN, 1.0)
    harness.wait_for(lambda: len(_cmds(harness)) == 2, 10, "/cmd with a zero covariance")
    assert _statuses(harness)[-1] == "unknown" and "all zeros" in node.last.reason
    stamp_ns += TICK_NS
    harness.publish("/odom", _odom(stamp_ns, 0.1))
    harness.wait_for(lambda: stamp_ns in node.pairing.odometry, 5, "a real odometry")
    _propose(harness, stamp_ns, BENIGN, 1.0)
    harness.wait_for(lambda: len(_cmds(harness)) == 3, 10, "/cmd with a real covariance")
    assert _statuses(harness)[-1] == "verified"
    assert _cmds(harness)[-1].twist.linear.z == 1.0


def _property(tmp_path: Path, name: str, inputs: list[str], outputs: list[str]) -> Path:
    path = tmp_path / name
    path.write_text(
        f"inputs: [{', '.join(inputs)}]\noutputs: [{', '.join(outputs)}]\n"
        "domain:\n  lower: [null, null, null, null, null]\n"
        "  upper: [null, null, null, null, null]\n"
        f"unsafe:\n  - [\"{outputs[0]} >= {outputs[2]}\"]\n")
    return path


def test_property_names_must_be_the_monitors(harness: Harness, tmp_path: Path) -> None:
    """The constraints are read by position: a clearance property with its inputs listed in
    another order was 'verified' over the wrong variables (0.3 m/s let through 0.2 m from an
    obstacle); outputs named in another order, or inputs named otherwise, likewise taken."""
    onnx = always_continue_onnx(tmp_path / "g.onnx")
    reordered = [*STATE_NAMES[1:], STATE_NAMES[0]]
    for path, what in (
        (_property(tmp_path, "in.yaml", reordered, ["continue", "slow", "stop"]), "inputs"),
        (_property(tmp_path, "out.yaml", list(STATE_NAMES), ["stop", "slow", "continue"]),
         "outputs"),
        (_property(tmp_path, "uvw.yaml", ["u", "v", "w", "p", "q"],
                   ["continue", "slow", "stop"]), "inputs"),
    ):
        with pytest.raises(RosInputError, match=rf"property file '{path.name}' names its "
                                                rf"{what} .* the same names in the same order"):
            _monitor(harness, onnx, property_paths=[str(path)])
    # Positional names (VNN-LIB's X_i / Y_j) and the monitor's own names are taken.
    ok = _property(tmp_path, "ok.yaml", list(STATE_NAMES), ["continue", "slow", "stop"])
    positional = _property(tmp_path, "pos.yaml", [f"X_{i}" for i in range(5)],
                           ["Y_0", "Y_1", "Y_2"])
    node = _monitor(harness, onnx, property_paths=[str(ok), str(positional)])
    assert [name for name, _ in node.monitors] == ["ok.yaml", "pos.yaml"]


def test_a_namespaced_monitor_gets_the_pipeline_section(harness: Harness) -> None:
    """Under a namespace (a launch's PushRosNamespace), a section keyed `safety_monitor_node`
    matched nothing and the node ran on the code's defaults. The shipped file keys its
    sections /**/<node>; and the defaults are the pipeline's region, so a node that misses
    the file certifies no narrower a region than the pipeline's."""
    from meetup_ros.nodes.safety_monitor_node import MonitorParams, SafetyMonitorNode

    node = harness.add(SafetyMonitorNode(
        context=harness.context, namespace="/robot1",
        cli_args=["--ros-args", "--params-file", str(PIPELINE)],
        parameter_overrides=_overrides(diagnostics_period_s=0.0)))
    assert node.get_fully_qualified_name() == "/robot1/safety_monitor_node"
    # The file's topics are relative: they resolve in the namespace (absolute, a tester's
    # two robots' monitors paired each other's states and shared one /cmd).
    subscribed = {s.topic_name for s in node.subscriptions}
    published = {pub.topic_name for pub in node.publishers}
    assert {"/robot1/odom", "/robot1/controller/state", "/robot1/controller/command"} <= (
        subscribed), subscribed
    assert {"/robot1/cmd", "/robot1/safety/status"} <= published, published
    section = load_params_file(PIPELINE)["safety_monitor_node"]
    def as_param(value: object) -> object:
        return tuple(value) if isinstance(value, list) else value

    for name in ("radii", "lookahead_s", "max_state_age_s", "input_timeout_s", "k_sigma",
                 "property_paths", "base_frame"):
        assert getattr(node.params, name) == as_param(section[name]), name
    defaults = MonitorParams()
    for name in ("radii", "lookahead_s", "max_state_age_s", "k_sigma", "input_timeout_s"):
        assert getattr(defaults, name) == as_param(section[name]), name


@pytest.mark.parametrize("params, message", [
    ({"deadline_s": 8.0}, r"deadline_s 8\.0: expected deadline_s \+ deadline_grace_s .* at "
                          r"most input_timeout_s"),
    ({"input_timeout_s": 1e9}, r"input_timeout_s 1000000000\.0: expected at most 10 s"),
    ({"max_state_age_s": 1e9}, r"max_state_age_s 1000000000\.0: expected at most 10 s"),
    ({"clock_timeout_s": 1e-9}, r"clock_timeout_s 1e-09: expected at least 0\.25 s"),
    ({"tick_hz": 1e9}, r"tick_hz 1000000000\.0: expected a finite rate in"),
    ({"output_names": ["continue", "slow"]}, r"output_names .* has 2 names; 'g\.onnx' has 3"),
    ({"base_frame": ""}, r"base_frame '': expected a frame id"),
])
def test_monitor_refuses_timing_that_switches_its_checks_off(harness: Harness, tmp_path: Path,
                                                             params: dict, message: str) -> None:
    """A tester's 8 s deadline blocked the watchdog (the last verified command stayed on /cmd
    for 8.1 s of silent inputs); 1e9 s timeouts switch the checks off; 1e9 Hz flooded /cmd."""
    with pytest.raises(RosInputError, match=message):
        _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"), **params)


def test_frames_other_than_the_base_are_refused(harness: Harness, tmp_path: Path) -> None:
    """A command with frame_id 'map' (or none) was verified and forwarded as if in the base
    frame; an odometry of child frame 'cam0' sized the region. Both refused and said; the
    fallback is stamped in the base frame."""
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"))
    harness.publish("/odom", _odom_sigma(STAMP0_NS, 0.01, child="cam0"))
    harness.wait_for(lambda: node.health.counters["bad_odometry"] == 1, 5, "odometry refused")
    assert "child_frame_id 'cam0' is not base_frame 'base_link'" in node.health.last_problem
    assert not node.pairing.odometry
    for i, frame in enumerate(("map", "")):
        stamp_ns = STAMP0_NS + i * TICK_NS
        harness.publish("/odom", _odom(stamp_ns, 0.1))
        harness.wait_for(lambda s=stamp_ns: s in node.pairing.odometry, 5, "base-frame odometry")
        harness.publish("/controller/state", cv.named_vector_msg(stamp_ns, STATE_NAMES,
                                                                 np.array(BENIGN)))
        harness.publish("/controller/command",
                        cv.twist_stamped_msg(stamp_ns, (0.0, 0.0, 1.0), (0, 0, 0), frame))
        harness.wait_for(lambda n=i + 1: len(_cmds(harness)) == n, 10, f"/cmd for {frame!r}")
        assert _statuses(harness)[-1] == "rejected"
        assert f"frame_id {frame!r} is not base_frame 'base_link'" in node.health.last_problem
        cmd = _cmds(harness)[-1]
        assert cmd.twist.linear.z == 0.0 and cmd.header.frame_id == "base_link"


def test_the_controller_refuses_odometry_of_another_frame_and_a_far_unknown_depth(
    harness: Harness,
) -> None:
    """controller_node read a cam0-frame twist as the base's; a depth_unknown_m of 50 m made
    'no depth at all' a certified 'slow' (0.3 m/s)."""
    from meetup_ros.nodes.controller_node import ControllerNode

    with pytest.raises(RosInputError, match=r"depth_unknown_m 50\.0: expected a depth in "
                                            r"\[0, 0\.5\] m"):
        ControllerNode(context=harness.context,
                       parameter_overrides=_overrides(depth_unknown_m=50.0))
    node = harness.add(ControllerNode(context=harness.context,
                                      parameter_overrides=_overrides(diagnostics_period_s=0.0)))
    harness.collect("/controller/command", TwistStamped)
    harness.publish("/odom", _odom_sigma(STAMP0_NS, 0.01, child="cam0"))
    harness.wait_for(lambda: node.health.counters["bad_odometry"] == 1, 5, "odometry refused")
    assert "child_frame_id 'cam0' is not command_frame_id 'base_link'" in (
        node.health.last_problem)
    assert harness.count("/controller/command") == 0
    harness.publish("/odom", _odom(STAMP0_NS + TICK_NS, 0.1))
    harness.wait_for(lambda: harness.count("/controller/command") == 1, 10, "a command")


def test_a_state_naming_a_value_twice_is_refused(harness: Harness, tmp_path: Path) -> None:
    """nearest_depth_m given as 0.1 and 5.0 took the last value and was certified far from
    the obstacle. Which one is meant cannot be told: bad_state, no certificate."""
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"),
                    use_odometry_covariance=False)
    msg = JointState()
    msg.header.stamp = cv.make_header(STAMP0_NS, "base_link").stamp
    msg.name = [*STATE_NAMES, "nearest_depth_m"]
    msg.position = [0.1, 0.0, 0.0, 0.0, 0.1, 5.0]
    harness.publish("/controller/state", msg)
    harness.wait_for(lambda: node.health.counters["bad_state"] == 1, 5, "bad_state")
    assert "['nearest_depth_m'] appear more than once" in node.health.last_problem
    assert sum(node.certificates.values()) == 0


def test_a_rejected_command_in_fixed_mode_is_said_on_the_status_topic(harness: Harness,
                                                                      tmp_path: Path) -> None:
    """In fixed mode a NaN command was refused (the stop went out) while /safety/status kept
    the timer's 'verified' and the certificate counts did not show it."""
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"), state_source="fixed",
                    fixed_state=BENIGN, use_odometry_covariance=False, tick_hz=2.0)
    harness.wait_for(lambda: "verified" in _statuses(harness), 10, "a fixed-mode certificate")
    harness.publish("/controller/command",
                    cv.twist_stamped_msg(STAMP0_NS, (0.0, 0.0, math.nan), (0, 0, 0),
                                         "base_link"))
    harness.wait_for(lambda: "rejected" in _statuses(harness), 10, "the rejection said")
    assert node.certificates["rejected"] == 1
    assert _cmds(harness)[-1].twist.linear.z == 0.0


def test_an_override_file_of_another_type_is_refused_not_dropped(tmp_path: Path) -> None:
    """The README's way to override a value is a second params file; where its value has
    another type than the first file's (`deadline_s: fast`), rcl drops it silently and the
    node ran on the first file's value. Each file is now checked on its own: exit 1, named."""
    import subprocess
    import sys

    override = tmp_path / "override.yaml"
    override.write_text("/**/safety_monitor_node:\n  ros__parameters:\n    deadline_s: fast\n")
    result = subprocess.run(
        [sys.executable, "-m", "meetup_ros.nodes.safety_monitor_node", "--ros-args",
         "--params-file", str(PIPELINE), "--params-file", str(override)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert result.returncode == 1, result.stderr
    assert f"params file '{override}' (safety_monitor_node)" in result.stderr
    assert "deadline_s" in result.stderr and "Traceback" not in result.stderr


def test_a_property_that_can_never_be_violated_is_refused(harness: Harness,
                                                          tmp_path: Path) -> None:
    """`continue - continue >= 1` was accepted and every tick 'verified': a proof of a
    property nothing can violate says nothing of the network. Refused, named; a property
    with one such disjunct beside a real one runs (with a warning)."""
    onnx = always_continue_onnx(tmp_path / "g.onnx")
    names = ", ".join(STATE_NAMES)
    box = ("domain:\n  lower: [null, null, null, null, null]\n"
           "  upper: [null, null, null, null, 1.0]\n")
    never = tmp_path / "never.yaml"
    never.write_text(f"inputs: [{names}]\noutputs: [continue, slow, stop]\n{box}"
                     "unsafe:\n  - [\"continue - continue >= 1\"]\n")
    with pytest.raises(RosInputError, match=r"property file 'never\.yaml' can never be violated"):
        _monitor(harness, onnx, property_paths=[str(never)])
    mixed = tmp_path / "mixed.yaml"
    mixed.write_text(f"inputs: [{names}]\noutputs: [continue, slow, stop]\n{box}"
                     "unsafe:\n  - [\"continue - continue >= 1\"]\n  - [\"continue >= stop\"]\n")
    node = _monitor(harness, onnx, property_paths=[str(mixed)])
    assert node.monitors[0][1].prop.vacuous_disjuncts() == [0]


def test_a_pair_waits_for_the_odometry_of_its_stamp(harness: Harness, tmp_path: Path) -> None:
    """The state reaches the monitor through the controller, its odometry on its own path,
    and may come second. A tester's state at rest 3 m from an obstacle was certified with the
    previous odometry's covariance (0.01 m/s) while its own said 10 m/s: 'verified', 1 m/s
    on /cmd. The pair now waits for the odometry of its stamp (then: not verified); with no
    odometry at its stamp within odom_wait_s it is unknown, the stop."""
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"), radii=SMALL_RADII,
                    odom_wait_s=0.2)
    state = [0.0, 0.0, 0.0, 0.0, 3.0]
    harness.publish("/odom", _odom_sigma(STAMP0_NS - TICK_NS, 0.01))
    harness.wait_for(lambda: len(node.pairing.odometry) == 1, 5, "the older odometry")
    _propose(harness, STAMP0_NS, state, 1.0)
    harness.wait_for(lambda: STAMP0_NS in node.pairing.awaiting, 5, "the pair waiting")
    harness.publish("/odom", _odom_sigma(STAMP0_NS, 10.0))
    harness.wait_for(lambda: len(_cmds(harness)) == 1, 10, "the answer")
    assert _statuses(harness) != ["verified"], node.last
    assert _cmds(harness)[-1].twist.linear.z == 0.0
    # No odometry at the next stamp: after the wait, unknown and the stop.
    _propose(harness, STAMP0_NS + TICK_NS, BENIGN, 1.0)
    harness.wait_for(lambda: len(_cmds(harness)) == 2, 10, "the answer after the wait")
    assert _statuses(harness)[-1] == "unknown"
    assert f"no /odom at the state's stamp {STAMP0_NS + TICK_NS}" in node.last.reason
    assert _cmds(harness)[-1].twist.linear.z == 0.0


def test_a_bare_section_that_misses_a_namespaced_node_is_refused(tmp_path: Path) -> None:
    """An override file keyed `safety_monitor_node:` (not /**/) is ignored by rcl for
    /robot1/safety_monitor_node, silently: a tester's tighter region never applied. The node
    now refuses the file, naming the key to use."""
    import subprocess
    import sys

    override = tmp_path / "override.yaml"
    override.write_text("safety_monitor_node:\n  ros__parameters:\n    radii: [0.8, 0.8, 0.8, "
                        "0.5, 0.8]\n")
    result = subprocess.run(
        [sys.executable, "-m", "meetup_ros.nodes.safety_monitor_node", "--ros-args",
         "-r", "__ns:=/robot1", "--params-file", str(PIPELINE), "--params-file", str(override)],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    assert result.returncode == 1, result.stderr
    assert "section 'safety_monitor_node' applies only to /safety_monitor_node" in result.stderr
    assert "key it /**/safety_monitor_node" in result.stderr


def test_a_repeated_stamp_after_time_went_back_waits_for_the_new_odometry(
    harness: Harness, tmp_path: Path,
) -> None:
    """A loop replays the same stamps: the new pass's state came before its odometry and was
    certified with the old pass's covariance at that stamp (0.01 m/s; the new one said
    20 m/s): 'verified', 1 m/s. It now waits for the new pass's odometry."""
    # (input_timeout_s: the watchdog's fallback must not be taken for the loop's answer)
    # (reset_backwards_s: the loop here is 0.1 s long)
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"), radii=SMALL_RADII,
                    input_timeout_s=5.0, reset_backwards_s=0.05)
    state = [0.0, 0.0, 0.0, 0.0, 3.0]
    for k in range(3):  # the first pass, small sigma: verified
        harness.publish("/odom", _odom_sigma(STAMP0_NS + k * TICK_NS, 0.01))
        harness.wait_for(lambda k=k: STAMP0_NS + k * TICK_NS in node.pairing.odometry, 5, "odom")
        _propose(harness, STAMP0_NS + k * TICK_NS, state, 1.0)
        harness.wait_for(lambda k=k: len(_cmds(harness)) == k + 1, 10, "an answer")
    assert _statuses(harness) == ["verified"] * 3
    _propose(harness, STAMP0_NS, state, 1.0)  # the loop: state first
    harness.wait_for(lambda: node.health.counters["time_jumped_back"] == 1, 5, "the jump")
    harness.publish("/odom", _odom_sigma(STAMP0_NS, 20.0))
    harness.wait_for(lambda: len(_cmds(harness)) == 4, 10, "the answer after the loop")
    # The pair's own answer (not the watchdog's), sized by the new pass's 20 m/s.
    assert _statuses(harness)[-1] in ("unknown", "violated"), (_statuses(harness), node.last)
    assert cv.stamp_to_ns(_cmds(harness)[-1].header.stamp) == STAMP0_NS
    assert _cmds(harness)[-1].twist.linear.z == 0.0


def test_an_older_pair_answered_after_a_newer_one_gets_the_stop(harness: Harness,
                                                               tmp_path: Path) -> None:
    """Pairs A (t) and B (t + 50 ms) wait; B's odometry comes first. A's 'continue' went out
    after B's answer and stayed the last command. Now A gets the stop, said as stale."""
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"))
    a, b = STAMP0_NS, STAMP0_NS + TICK_NS
    _propose(harness, a, BENIGN, 1.0)
    _propose(harness, b, BENIGN, 1.0)
    harness.wait_for(lambda: {a, b} <= set(node.pairing.awaiting), 5, "both waiting")
    harness.publish("/odom", _odom(b, 0.1))
    harness.wait_for(lambda: len(_cmds(harness)) == 1, 10, "B answered")
    harness.publish("/odom", _odom(a, 0.1))
    harness.wait_for(lambda: len(_cmds(harness)) == 2, 10, "A answered")
    assert _statuses(harness) == ["verified", "stale"]
    assert [cv.stamp_to_ns(c.header.stamp) for c in _cmds(harness)] == [b, a]
    assert _cmds(harness)[-1].twist.linear.z == 0.0
    assert "answered after the newer one" in node.health.last_problem


def test_repeats_of_a_waiting_pair_do_not_restart_its_wait(harness: Harness,
                                                           tmp_path: Path) -> None:
    """The same pair every 50 ms kept restarting the wait, so no answer came out; and a
    second state for one stamp replaced the first without a word."""
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"), odom_wait_s=0.2)
    start = time.monotonic()
    while not _cmds(harness) and time.monotonic() - start < 2.0:
        _propose(harness, STAMP0_NS, BENIGN, 1.0)
        time.sleep(0.05)
    assert _cmds(harness), "no answer while the pair repeated"
    assert time.monotonic() - start < 0.6
    assert _statuses(harness)[0] == "unknown"
    assert node.health.counters["duplicate_stamps"] >= 1


@pytest.mark.parametrize("wait", [1e-12, 0.0, 1.0])
def test_odom_wait_is_bounded(harness: Harness, tmp_path: Path, wait: float) -> None:
    """1e-12 s made the waiting pairs' timer spin a whole core."""
    with pytest.raises(RosInputError, match=r"odom_wait_s .*: expected a wait in \[0\.01 s, "
                                            r"input_timeout_s\]"):
        _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"), odom_wait_s=wait)


def test_a_renamed_namespaced_node_stays_in_its_namespace(harness: Harness) -> None:
    """Renamed (-r __node:=monitor_b) under /robot1, the node matched no section and its
    absolute code defaults put its topics, /cmd included, in the root namespace. The code's
    topic names are relative now, and the node says that no section applied."""
    import signal
    import subprocess
    import sys

    from meetup_ros.nodes.safety_monitor_node import SafetyMonitorNode

    args = ["--ros-args", "-r", "__node:=monitor_b", "-r", "__ns:=/robot1",
            "--params-file", str(PIPELINE)]
    node = harness.add(SafetyMonitorNode(context=harness.context, cli_args=args,
                                         parameter_overrides=_overrides(diagnostics_period_s=0.0)))
    assert node.get_fully_qualified_name() == "/robot1/monitor_b"
    assert {"/robot1/odom", "/robot1/controller/state", "/robot1/controller/command"} <= {
        s.topic_name for s in node.subscriptions}
    assert {"/robot1/cmd", "/robot1/safety/status"} <= {p.topic_name for p in node.publishers}
    assert node.params.cmd_topic == "/robot1/cmd"  # logs name the topic really used
    # The console script says that no section applied (and runs, on the code's defaults).
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetup_ros.nodes.safety_monitor_node", *args],
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"})
    try:
        lines = []
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if "no section of" in line or len(lines) > 50:
                break
        assert any("no section of" in ln and "/robot1/monitor_b" in ln for ln in lines), lines
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_a_state_its_own_odometry_contradicts_is_not_certified(harness: Harness,
                                                                tmp_path: Path) -> None:
    """A tester's /odom said 3 m/s forward (sigma 0.01), the state at its stamp 0: the region
    around 0 was verified. The odometry's own state must lie in the region."""
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"))
    harness.publish("/odom", _odom(STAMP0_NS, 3.0, twist_var=1e-4))
    harness.wait_for(lambda: STAMP0_NS in node.pairing.odometry, 5, "the odometry")
    _propose(harness, STAMP0_NS, [0.0, 0.0, 0.0, 0.0, 5.0], 1.0)
    harness.wait_for(lambda: len(_cmds(harness)) == 1, 10, "/cmd")
    assert _statuses(harness) == ["unknown"], node.last
    assert "forward_speed_mps 3" in node.last.reason and "not this odometry's" in node.last.reason
    assert _cmds(harness)[-1].twist.linear.z == 0.0
    stamp_ns = STAMP0_NS + TICK_NS  # the state the odometry gives: verified
    harness.publish("/odom", _odom(stamp_ns, 0.0, twist_var=1e-4))
    harness.wait_for(lambda: stamp_ns in node.pairing.odometry, 5, "the odometry")
    _propose(harness, stamp_ns, [0.0, 0.0, 0.0, 0.0, 5.0], 1.0)
    harness.wait_for(lambda: len(_cmds(harness)) == 2, 10, "/cmd")
    assert _statuses(harness)[-1] == "verified", node.last


def test_two_odometries_for_one_stamp_get_the_stop(harness: Harness, tmp_path: Path) -> None:
    """A tester's odometry with sigma 0.5, then one with 0.01 at the same stamp: certified with
    0.01, no word. Two sources cannot both be the vehicle's: the stop, said."""
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"), radii=SMALL_RADII)
    harness.publish("/odom", _odom_sigma(STAMP0_NS, 0.5))
    harness.publish("/odom", _odom_sigma(STAMP0_NS, 0.01))
    harness.wait_for(lambda: node.health.counters["conflicting_inputs"] == 1, 5, "the conflict")
    _propose(harness, STAMP0_NS, [0.0, 0.0, 0.0, 0.0, 5.0], 1.0)
    harness.wait_for(lambda: len(_cmds(harness)) == 1, 10, "/cmd")
    assert _statuses(harness) == ["rejected"] and _cmds(harness)[-1].twist.linear.z == 0.0
    assert node.certificates["verified"] == 0


@pytest.mark.parametrize("back_ms", [1, 100])
def test_an_older_triple_after_a_passed_one_gets_the_stop(harness: Harness, tmp_path: Path,
                                                          back_ms: int) -> None:
    """A complete (odometry, state, command) stamped 1 ms or 100 ms before one that passed
    was taken for a clock reset, certified and passed: /cmd went back in time."""
    node = _monitor(harness, always_continue_onnx(tmp_path / "g.onnx"))
    for n, stamp_ns in enumerate((STAMP0_NS + 10 * TICK_NS,
                                  STAMP0_NS + 10 * TICK_NS - back_ms * 1_000_000), start=1):
        harness.publish("/odom", _odom(stamp_ns, 0.0))
        harness.wait_for(lambda s=stamp_ns: s in node.pairing.odometry, 5, "the odometry")
        _propose(harness, stamp_ns, BENIGN, 1.0)
        harness.wait_for(lambda n=n: len(_cmds(harness)) == n, 10, f"/cmd {n}")
    assert _statuses(harness) == ["verified", "stale"], node.last
    assert _cmds(harness)[-1].twist.linear.z == 0.0
    assert node.health.counters["out_of_order_states"] == 1
    assert node.health.counters["time_jumped_back"] == 0
