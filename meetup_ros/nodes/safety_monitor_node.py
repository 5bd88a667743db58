"""safety_monitor_node: lets the controller's command through only when it is proven safe.

For each state the controller used (``/controller/state``) and the command it proposed with
the same stamp (``/controller/command``), the node builds the input region (the state plus
or minus k_sigma times the twist sigma of the odometry of the same stamp, for which the pair
waits up to ``odom_wait_s``, plus configured radii) and asks the runtime branch-and-bound
monitor (``verification.runtime.RuntimeMonitor``, the same ONNX file the controller runs)
whether each property holds over it, within a deadline per tick. Commands and the
odometry's twist must be in ``base_frame``; property files that name their variables must
name the monitor's ``input_names`` / ``output_names``, in order.

- verified: the command goes to ``/cmd``; ``/diagnostics`` OK.
- unknown (deadline reached, late, or any exception): the fallback goes to ``/cmd``; WARN.
- violated: the fallback goes to ``/cmd``; ERROR with the counterexample in the values.
- rejected: the certificate holds but the command is not finite, or is not what the certified
  network outputs at the state (``advisory_speeds_mps[argmax(scores)]`` along the forward
  axis, no rotation: how controller_node builds it); the fallback goes to ``/cmd``; ERROR.
  The certificate is about the network, so only the network's own command may ride on it.

Watchdog: once the gate has answered a first (state, command) pair, if nothing has gone to
``/cmd`` in answer to the inputs for ``input_timeout_s``, the fallback goes to ``/cmd`` with
the status ``input_timeout``, and again every tick (``tick_hz``) until the inputs resume: a
silent upstream (camera lost, a node crashed) must not leave the last verified command in
force. These fallbacks are counted (``watchdog_fallbacks``), not as certificates. With
``use_sim_time`` the watchdog runs on /clock, which stops with a replay or a hung simulator:
then the wall clock sees no answer for ``clock_timeout_s`` and sends the stop once, status
``clock_stopped`` (``clock_stop_fallbacks``).

The fallback is the stop: no certificate covers it, so the node refuses at start-up one that
is not finite, is faster than the slowest of ``advisory_speeds_mps`` (the network's 'stop',
0.0 m/s) or rotates, beyond ``command_tolerance``.

In ``state_source: fixed`` mode (e.g. ACAS Xu) the region is around a configured state and
is certified on a timer; commands are gated by the latest certificate.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from rclpy.clock import Clock, ClockType
from rclpy.duration import Duration
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from meetup_ros import paths
from meetup_ros.control import ControlError
from meetup_ros.control.network import GovernorRuntime
from meetup_ros.control.pairing import Pair, PairQueue
from meetup_ros.control.region import region
from meetup_ros.control.state import (
    ADVISORIES,
    STATE_NAMES,
    advisory_command,
    build_state,
    state_sigma,
)
from meetup_ros.ros import RosInputError
from meetup_ros.ros.convert import (
    named_vector_to_array,
    odometry_to_arrays,
    stamp_to_ns,
    twist_stamped_msg,
)
from meetup_ros.ros.node_tools import (
    MAX_TIMER_PERIOD_S,
    NodeHealth,
    check_realtime_priority,
    diagnostic_status,
    limit_cpu_threads,
    realtime_priority_param,
    reliable_qos,
    spin_node,
)
from meetup_ros.ros.params import (
    check_param,
    declare_parameters,
    param,
    state_axes_param,
)

NODE_NAME = "safety_monitor_node"
STATUSES = ("verified", "violated", "unknown")  # a certificate's (RuntimeMonitor's)
REJECTED = "rejected"  # verified, but the command is not the certified network's
INPUT_TIMEOUT = "input_timeout"  # the watchdog's fallback (on /safety/status, not a tick)
CLOCK_STOPPED = "clock_stopped"  # /clock stood still (use_sim_time): the stop, once
STALE = "stale"  # a (state, command) pair too old on arrival: fallback, not certified
SHUTDOWN = "shutdown"  # the node stops: a last fallback, so no command outlives the gate
_LEVEL = {"verified": "OK", "unknown": "WARN", "violated": "ERROR", REJECTED: "ERROR"}


@dataclass(frozen=True)
class MonitorParams:
    network_path: str = param("governor.onnx", "the controller's ONNX file (models/ if relative)")
    property_paths: tuple[str, ...] = param(
        ("governor_property.yaml", "governor_clearance_property.yaml"),
        "property files (.yaml or .vnnlib; config/ if relative); all must hold",
    )
    input_names: tuple[str, ...] = param(
        STATE_NAMES, "names of the network inputs, in order (the state vector's names); a "
                     "property file that names its inputs must name these, in this order"
    )
    output_names: tuple[str, ...] = param(
        ADVISORIES, "names of the network outputs, in order (advisory_speeds_mps follows it); "
                    "a property file that names its outputs must name these, in this order"
    )
    base_frame: str = param(
        "base_link", "the frame of the commands (controller_node's command_frame_id) and of "
                     "/odom's twist (its child_frame_id); others are refused"
    )
    deadline_s: float = param(0.05, "verification deadline per tick (s), all properties")
    deadline_grace_s: float = param(0.02, "a certificate later than deadline+grace is unknown")
    state_source: str = param("controller", "'controller' (state topic) or 'fixed'")
    fixed_state: tuple[float, ...] = param((), "the state in 'fixed' mode (input units)")
    tick_hz: float = param(
        20.0, "certification rate in 'fixed' mode; the watchdog's check and fallback rate (Hz)"
    )
    advisory_speeds_mps: tuple[float, ...] = param(
        (1.0, 0.3, 0.0),
        "forward speed per network output (controller_node's): the only commands that pass",
    )
    command_tolerance: float = param(
        1e-6, "largest difference (m/s, rad/s) between a command and the network's own"
    )
    # 5 ticks of the 20 Hz odometry: one or two late ticks on loaded cores (p99 of a tick is
    # well under 0.1 s) do not stop the robot, and a stale command is replaced well within
    # the 0.5 s lookahead the certified region covers (pipeline.yaml's radii).
    max_state_age_s: float = param(
        0.5, "a state older than this, or stamped further ahead, on the ROS clock at arrival "
             "gets the fallback (s); 0 = off (states stamped in another time base, e.g. a bag "
             "without /clock, never pass)"
    )
    input_timeout_s: float = param(
        0.25, "nothing to /cmd from the inputs for this long (ROS clock): fallback (s)"
    )
    clock_timeout_s: float = param(
        1.0, "use_sim_time only: nothing answered for this long on the wall clock sends the "
             "stop once (s), for a /clock that stands still or creeps, which the watchdog, on "
             "/clock, cannot see; >= 0.25, and never shorter than input_timeout_s"
    )
    # The defaults are config/pipeline.yaml's (the governor's): a monitor that misses its
    # section of the file (a namespace the file's node names do not match) must not certify
    # over a narrower region than the pipeline's, as a tester's did with radii of 0.05.
    radii: tuple[float, ...] = param(
        (0.75, 0.75, 0.75, 0.5, 0.75), "half-widths added to the region, per input"
    )
    k_sigma: float = param(3.0, "region half-width in odometry sigmas")
    region_margin: float = param(
        0.1, "a region that needs a proof is first proven widened by this fraction of its "
             "width on each side, so that the next ticks' regions fall inside a certified "
             "one (0 = the region alone; at most 1)"
    )
    start_proofs: bool = param(
        True, "prove the start_proof_scales regions at start-up (false: none; a ROS params "
              "file cannot hold an empty list, ros2/rclcpp#1955)"
    )
    start_proof_scales: tuple[float, ...] = param(
        (1.0, 2.0, 4.0, 8.0), "at start-up, with time of its own, the region at the start "
        "state with radii times each of these in turn (widened by region_margin) is proven "
        "and remembered, up to the first that is not; ticks inside one need no proof of their "
        "own (empty = none)"
    )
    lookahead_s: float = param(
        0.5, "governor inputs only: the nearest depth's lower bound also allows this long at "
             "the region's largest forward speed (s); 0 = the depth radius alone"
    )
    use_odometry_covariance: bool = param(True, "add k_sigma * sigma from /odom's twist")
    odom_wait_s: float = param(
        0.1, "a (state, command) pair waits up to this long (wall clock) for the /odom of its "
             "stamp, whose twist covariance sizes the region; then unknown (fallback)"
    )
    reset_backwards_s: float = param(
        1.0, "a state stamped this far or more before the newest starts a new timeline (a "
             "looped replay, a restart); less far it is out of order and gets the stop"
    )
    forward_axis_base: tuple[float, ...] = param((0.0, 0.0, 1.0), "forward in the base frame")
    up_axis_base: tuple[float, ...] = param((1.0, 0.0, 0.0), "up in the base frame")
    state_topic: str = param("controller/state", "states the controller used")
    command_topic: str = param("controller/command", "commands it proposed")
    odom_topic: str = param("odom", "odometry (twist covariance for the region)")
    cmd_topic: str = param("cmd", "gated output")
    status_topic: str = param("safety/status", "verified | violated | unknown")
    fallback_linear_mps: tuple[float, ...] = param(
        (0.0, 0.0, 0.0), "fallback linear velocity, sent whenever nothing is proven: the stop, "
                         "no faster than the slowest advisory speed (+ command_tolerance)"
    )
    fallback_angular_radps: tuple[float, ...] = param(
        (0.0, 0.0, 0.0), "fallback angular velocity: no rotation (up to command_tolerance)"
    )
    max_pending: int = param(50, "states/commands held while waiting for their pair")
    diagnostics_period_s: float = param(2.0, "period of the node's own /diagnostics (s)")
    torch_threads: int = param(
        1, "CPU threads of torch, BLAS and OpenMP in this node's process (several nodes "
        "share few cores)"
    )
    realtime_priority: int = realtime_priority_param()


# The longest a stopping monitor waits for its stop to be acknowledged. Fast DDS's readers
# acknowledge at the writer's heartbeat, every 3 s by default: acknowledged after 2.0-3.0 s in
# three runs here (a 1 s wait never saw it). Within launch's 5 s before it escalates to SIGTERM.
SHUTDOWN_ACK_WAIT_S = 3.5


@dataclass
class TickResult:
    status: str
    reason: str
    elapsed_s: float
    lower: np.ndarray
    upper: np.ndarray
    counterexample_x: np.ndarray | None = None
    counterexample_y: np.ndarray | None = None
    domains: int = 0


def _finite(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) for v in values)


# A watchdog or staleness limit longer than this checks nothing on a moving robot (this
# pipeline's are 0.25 s and 0.5 s); a tester's 1e9 s was taken and switched them off.
MAX_TIMEOUT_S = 10.0
MIN_CLOCK_TIMEOUT_S = 0.25
# /cmd at more than this is a flood, not a control rate (a tester's 1e9 Hz sent ~3000
# fallbacks a second).
MAX_TICK_HZ = 1000.0
# How often waiting pairs are checked for the end of odom_wait_s (a tester's 1e-12 s wait made
# the timer spin a core).
AWAIT_PERIOD_S = 0.01
# The start proofs have this many deadlines per property, at least START_PROOF_MIN_S, all
# scales together; a scale past this is no region a state could be in.
START_PROOF_DEADLINES = 20
START_PROOF_MIN_S = 1.0
MAX_START_PROOF_SCALE = 1e6


def _check_params(p: MonitorParams) -> None:
    """Refuse parameter values outside their meaning before anything is loaded.

    Raises:
        RosInputError: naming the parameter, its value and what is expected.
    """
    def need(ok: bool, name: str, expected: str) -> None:
        check_param(p, ok, name, expected)

    need(bool(p.property_paths), "property_paths",
         "at least one property file (all must hold)")
    need(bool(p.input_names) and all(p.input_names)
         and len(set(p.input_names)) == len(p.input_names), "input_names",
         "one distinct, non-empty name per network input, in order")
    need(p.state_source in ("controller", "fixed"), "state_source", "'controller' or 'fixed'")
    if p.state_source == "fixed":
        need(_finite(p.fixed_state), "fixed_state", "finite values (input units)")
    need(all(math.isfinite(r) and r >= 0 for r in p.radii), "radii", "finite values >= 0")
    for name in ("k_sigma", "lookahead_s", "max_state_age_s", "deadline_grace_s"):
        need(math.isfinite(getattr(p, name)) and getattr(p, name) >= 0, name,
             "a finite value >= 0")
    need(math.isfinite(p.region_margin) and 0 <= p.region_margin <= 1, "region_margin",
         "a fraction of the region's width from 0 to 1")
    need(all(math.isfinite(f) and 0 < f <= MAX_START_PROOF_SCALE
             for f in p.start_proof_scales), "start_proof_scales",
         f"factors of the radii, each > 0 and at most {MAX_START_PROOF_SCALE:g}")
    for name in ("deadline_s", "input_timeout_s", "command_tolerance", "clock_timeout_s"):
        need(math.isfinite(getattr(p, name)) and getattr(p, name) > 0, name,
             "a finite value > 0")
    need(math.isfinite(p.odom_wait_s) and AWAIT_PERIOD_S <= p.odom_wait_s <= p.input_timeout_s,
         "odom_wait_s", f"a wait in [{AWAIT_PERIOD_S:g} s, input_timeout_s]")
    # shorter than a few ticks, it sent the stop between pairs (a tester's 1e-9 s: 38 stops
    # in a normal replay with /clock at 10 Hz); the watch waits input_timeout_s at least
    need(p.clock_timeout_s >= MIN_CLOCK_TIMEOUT_S, "clock_timeout_s",
         f"at least {MIN_CLOCK_TIMEOUT_S:g} s (a few ticks of the pipeline's 20 Hz)")
    for name in ("input_timeout_s", "max_state_age_s", "clock_timeout_s"):
        need(getattr(p, name) <= MAX_TIMEOUT_S, name,
             f"at most {MAX_TIMEOUT_S:g} s (longer is no check on a moving robot)")
    # A proof runs in the executor's one thread: the watchdog cannot fire during it. A tester's
    # 8 s deadline left the last verified command on /cmd for 8.1 s of silent inputs.
    need(p.deadline_s + p.deadline_grace_s <= p.input_timeout_s, "deadline_s",
         f"deadline_s + deadline_grace_s ({p.deadline_grace_s:g}) at most input_timeout_s "
         f"({p.input_timeout_s:g} s): the watchdog cannot run during a proof")
    # the timers' period, 1 / tick_hz, must fit a ROS timer
    need(math.isfinite(p.tick_hz) and 1.0 / MAX_TIMER_PERIOD_S <= p.tick_hz <= MAX_TICK_HZ,
         "tick_hz", f"a finite rate in [{1.0 / MAX_TIMER_PERIOD_S:g}, {MAX_TICK_HZ:g}] Hz")
    need(bool(p.output_names) and all(p.output_names)
         and len(set(p.output_names)) == len(p.output_names), "output_names",
         "one distinct, non-empty name per network output, in order")
    need(bool(p.base_frame), "base_frame", "a frame id (controller_node's command_frame_id)")
    need(p.max_pending >= 1, "max_pending", "an integer >= 1")
    # A jump back shorter than the age limit would let a state older than one answered, but
    # young enough to pass the age check, start a "new timeline" and pass (a tester's 0.3 s).
    need(math.isfinite(p.reset_backwards_s) and p.reset_backwards_s > 0
         and (p.max_state_age_s <= 0 or p.reset_backwards_s >= p.max_state_age_s),
         "reset_backwards_s", f"a finite time > 0 (s), at least max_state_age_s "
         f"({p.max_state_age_s:g})")
    need(p.torch_threads >= 1, "torch_threads", "an integer >= 1")
    check_realtime_priority(p)
    need(_finite(p.advisory_speeds_mps), "advisory_speeds_mps", "finite speeds (m/s)")
    # The fallback goes to /cmd whenever nothing is proven (unknown, violated, rejected, stale,
    # the watchdog, shutdown): no certificate covers it, so it must be the stop. A tester's
    # NaN fallback was published on SIGTERM, and 5 m/s was taken. It may be no faster than
    # the certified network's slowest command (its 'stop', 0.0 m/s in pipeline.yaml) and may
    # not rotate (no network command does), each up to command_tolerance.
    for name in ("fallback_linear_mps", "fallback_angular_radps"):
        need(len(getattr(p, name)) == 3 and _finite(getattr(p, name)), name,
             "3 finite values (x, y, z)")
    slowest = min((abs(v) for v in p.advisory_speeds_mps), default=0.0)
    linear = math.hypot(*p.fallback_linear_mps)
    need(linear <= slowest + p.command_tolerance, "fallback_linear_mps",
         f"the stop (it goes to /cmd whenever safety is not proven): a speed of at most "
         f"{slowest:g} m/s, the slowest of advisory_speeds_mps (+ command_tolerance "
         f"{p.command_tolerance:g}); got {linear:g} m/s")
    need(math.hypot(*p.fallback_angular_radps) <= p.command_tolerance, "fallback_angular_radps",
         f"no rotation (it goes to /cmd whenever safety is not proven): at most "
         f"command_tolerance {p.command_tolerance:g} rad/s")


def _check_property_names(name: str, prop: Any, input_names: Sequence[str],
                          output_names: Sequence[str]) -> None:
    """A property that names its variables must name the monitor's, in the same order.

    Its constraints are read by position: a tester's clearance property with the inputs
    listed in another order was 'verified' over the wrong variables and let 0.3 m/s through
    0.2 m from an obstacle. Positional names (VNN-LIB's X_i, Y_j) say nothing to check.

    Raises:
        RosInputError: naming the file, its names and the monitor's.
    """
    for kind, names, expected, letter, param_name in (
            ("inputs", prop.input_names, input_names, "X", "input_names"),
            ("outputs", prop.output_names, output_names, "Y", "output_names")):
        names = tuple(names)
        positional = tuple(f"{letter}_{i}" for i in range(len(names)))
        if names and names != positional and names != tuple(expected):
            raise RosInputError(
                f"property file {name!r} names its {kind} {list(names)!r}, but the monitor's "
                f"{param_name} are {list(expected)!r}: the same names in the same order are "
                "needed (its constraints are read by position)")


def _check_not_vacuous(name: str, prop: Any, log: Any) -> None:
    """Refuse a property that can never be violated (its proof says nothing of the network);
    warn about a disjunct that cannot be, the rest still meaning something.

    Raises:
        RosInputError: every disjunct is vacuous.
    """
    vacuous = prop.vacuous_disjuncts()
    if len(vacuous) == len(prop.disjuncts):
        raise RosInputError(
            f"property file {name!r} can never be violated: no input and output meet any of "
            f"its unsafe conditions (disjuncts {vacuous}), so every tick would be 'verified' "
            "whatever the network does")
    if vacuous:
        log.warning(f"property file {name!r}: unsafe disjunct(s) {vacuous} can never hold "
                    "(an empty input box or contradictory output conditions); they check "
                    "nothing")


class SafetyMonitorNode(Node):
    """Certifies each (state, command) pair by branch and bound and gates the command."""

    def __init__(self, **node_kwargs: object) -> None:
        super().__init__(NODE_NAME, **node_kwargs)  # type: ignore[arg-type]
        self.params = declare_parameters(self, MonitorParams)
        p = self.params
        _check_params(p)
        # Oversubscribed intra-op threads made one 50 ms certificate take 2.4 s on 2 cores.
        limit_cpu_threads(p.torch_threads)
        from meetup_ros.verification.runtime import RuntimeMonitor

        network_path = paths.node_file(p.network_path, "models")
        if not network_path.is_file():
            raise RosInputError(f"network_path {str(network_path)!r} does not exist")
        self.monitors = []
        property_files = []
        for name in p.property_paths:
            path = paths.node_file(name, "config")
            if not path.is_file():
                raise RosInputError(f"property file {str(path)!r} does not exist")
            monitor = RuntimeMonitor(network_path, path, deadline_s=p.deadline_s,
                                     region_margin=p.region_margin)
            self.monitors.append((path.name, monitor))
            property_files.append(str(path))
        self.network = self.monitors[0][1].network  # the same file for every property
        # Sizes against the network, input_names first: a short input_names list was
        # reported as radii of the wrong length.
        n_inputs = self.network.n_inputs
        if len(p.input_names) != n_inputs:
            raise RosInputError(
                f"input_names {p.input_names!r} has {len(p.input_names)} names; "
                f"{network_path.name!r} takes {n_inputs} inputs (one name per input, in order)")
        if len(p.radii) != n_inputs:
            raise RosInputError(
                f"radii {p.radii!r} has {len(p.radii)} values; expected one per input "
                f"{p.input_names!r}")
        if len(p.output_names) != self.network.n_outputs:
            raise RosInputError(
                f"output_names {p.output_names!r} has {len(p.output_names)} names; "
                f"{network_path.name!r} has {self.network.n_outputs} outputs (one name per "
                "output, in order)")
        for name, monitor in self.monitors:
            _check_property_names(name, monitor.prop, p.input_names, p.output_names)
            _check_not_vacuous(name, monitor.prop, self.get_logger())
        if p.state_source == "fixed" and len(p.fixed_state) != n_inputs:
            raise RosInputError(
                f"fixed_state {p.fixed_state!r} has {len(p.fixed_state)} values; expected one "
                f"per input {p.input_names!r}")
        self._warm_up()
        self.axes = state_axes_param(p.forward_axis_base, p.up_axis_base)
        self._forward_base = self.axes.matrix()[0]
        # The controller's own runtime on the same file, to recompute the commands it sends.
        self._runtime = (GovernorRuntime(network_path)
                         if p.state_source == "controller" and self.network.source_kind == "onnx"
                         else None)
        if p.state_source == "controller" and len(p.advisory_speeds_mps) != self.network.n_outputs:
            raise RosInputError(
                f"advisory_speeds_mps {p.advisory_speeds_mps!r} needs one speed per output of "
                f"{network_path.name!r} ({self.network.n_outputs!r}): each command is checked "
                "against the speed of the network's top output at the state"
            )
        self.health = NodeHealth(self, ["certificate"], p.diagnostics_period_s)
        self.certificates: Counter[str] = Counter({s: 0 for s in (*STATUSES, REJECTED)})
        self.health.add_section("certificates", lambda: dict(self.certificates))
        self.last: TickResult | None = None
        # States, commands and the odometry's twist covariances, paired by stamp.
        self.pairing: PairQueue[TwistStamped] = PairQueue(
            max_pending=p.max_pending, odom_wait_s=p.odom_wait_s,
            needs_odometry=self._uses_odometry, report=self.health.problem,
            state_topic=p.state_topic, reset_back_s=p.reset_backwards_s)
        # Watchdog, on the node's ROS clock: the time the inputs live in. With use_sim_time
        # (a replay) that is /clock, so the end of a replay, when /clock stops, is no
        # silence for it (the clock watch below sends one stop then), while a node that dies
        # during the replay is; on a robot (no use_sim_time) it is the system clock, so any
        # wall-clock silence triggers it. Armed by the first answer to the inputs: nothing is
        # in force on /cmd before, and a pipeline still starting up is not a fault.
        self._last_output_ns: int | None = None
        self._last_input_ns: dict[str, int] = {}
        self._silent_since_ns: int | None = None
        self.cmd_pub = self.create_publisher(TwistStamped, p.cmd_topic, reliable_qos(50))
        self.status_pub = self.create_publisher(String, p.status_topic, reliable_qos(50))
        self.diag_pub = self.health.publisher  # certificates, beside the node's own status
        self.create_subscription(TwistStamped, p.command_topic, self._on_command, reliable_qos(50))
        if p.use_odometry_covariance:
            self.create_subscription(Odometry, p.odom_topic, self._on_odom, reliable_qos(50))
            # Wall clock: a pair's wait must end even while a replay's /clock stands still.
            self.create_timer(AWAIT_PERIOD_S, self._flush_awaiting,
                              clock=Clock(clock_type=ClockType.STEADY_TIME))
        if p.state_source == "controller":
            self.create_subscription(JointState, p.state_topic, self._on_state, reliable_qos(50))
        else:
            self.create_timer(1.0 / p.tick_hz, self._on_fixed_tick)
        self.create_timer(1.0 / p.tick_hz, self._on_watchdog)  # the node's (ROS) clock
        # With use_sim_time the watchdog's clock is /clock: when /clock stops or creeps (a
        # replay's end or pause, a simulator that hangs) the watchdog stops with it and the
        # last verified command stayed on /cmd. The wall clock watches the answers too.
        self._answer_wall_s: float | None = None  # time.monotonic() of the last answer
        self._clock_stop_sent = False
        self.create_timer(1.0 / p.tick_hz, self._on_clock_watch,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))
        # Every value that sizes what a "verified" covers, so that an operator can tell a
        # monitor on the pipeline's file from one on other values (a tester's namespaced node
        # ran on the code's defaults and logged the same line).
        self.get_logger().info(
            f"monitor: network {network_path}, properties {property_files}, "
            f"deadline {p.deadline_s * 1e3:.0f} ms, state from {p.state_source}, "
            f"input timeout {p.input_timeout_s:g} s, proof margin {p.region_margin:g}; "
            f"region: radii {list(p.radii)}"
            + (f" + {p.k_sigma:g} sigma of {p.odom_topic}'s twist" if p.use_odometry_covariance
               else " (no odometry sigma)")
            + ("" if p.state_source == "fixed" else
               f", lookahead {p.lookahead_s:g} s; max state age {p.max_state_age_s:g} s"
               + ("" if p.max_state_age_s > 0 else " (off: states of any age are certified)"))
        )

    def _warm_up(self) -> None:
        """One throwaway proof per property now, on monitors of its own (no cache, no counts):
        the first proof in a process pays torch's first calls (22 ms against 15 for the
        pipeline's first tick at rest by an obstacle, alone), and that tick has a 50 ms
        deadline; a test's first tick under load missed it by one open domain."""
        p = self.params
        from meetup_ros.verification.runtime import RuntimeMonitor

        centre = (np.asarray(p.fixed_state, dtype=np.float64) if p.state_source == "fixed"
                  else np.zeros(self.network.n_inputs))
        lower, upper = region(centre, np.zeros_like(centre), np.asarray(p.radii), 0.0)
        for name, monitor in self.monitors:
            RuntimeMonitor(self.network, monitor.prop, deadline_s=p.deadline_s,
                           region_margin=0.0).certify(lower, upper)
            # Timed once warm: a network whose bounds alone take longer than the deadline
            # (a tester's 3 x 1024 hidden units: 300-400 ms) makes every tick that needs a
            # proof late, and blocks the watchdog meanwhile; said once, here.
            cert = RuntimeMonitor(self.network, monitor.prop, deadline_s=p.deadline_s,
                                  region_margin=0.0).certify(lower, upper)
            if cert.elapsed_s > p.deadline_s:
                self.get_logger().warning(
                    f"{name}: a proof over the radii at the start state took "
                    f"{cert.elapsed_s * 1e3:.0f} ms ({cert.status}), more than the deadline "
                    f"{p.deadline_s * 1e3:.0f} ms: ticks that need a proof will be late "
                    "(unknown, the fallback), and the watchdog waits for each")
            self._prove_start(name, monitor, centre)

    def _prove_start(self, name: str, monitor: Any, centre: np.ndarray) -> None:
        """Regions around the start state, growing, proven now with time of their own: a
        robot at rest or slow starts inside them, so its first ticks need no proof against
        their deadline (on a 2-core machine half as fast as the one the deadline was set on,
        the pipeline's first proofs took 55-175 ms against 50). Up to the first scale that is
        not proven; each proof is a branch-and-bound proof like a tick's, and is remembered
        like one."""
        p = self.params
        if not (p.start_proofs and p.start_proof_scales):
            self.get_logger().info(f"{name}: no start proofs (start_proofs false or no "
                                   "start_proof_scales): every tick is proven by its deadline")
            return
        t0 = time.monotonic()
        end = t0 + max(START_PROOF_DEADLINES * p.deadline_s, START_PROOF_MIN_S)
        proven: list[float] = []
        status = "verified"
        for scale in p.start_proof_scales:
            lower, upper = region(centre, np.zeros_like(centre), scale * np.asarray(p.radii),
                                  0.0)
            status = monitor.prove_ahead(lower, upper, max(end - time.monotonic(), 1e-3))
            if status != "verified":
                break
            proven.append(scale)
        took = f"{(time.monotonic() - t0) * 1e3:.0f} ms"
        failed = "" if status == "verified" else (
            f"; {scale:g} x: {status}"
            + (" (out of time)" if status == "unknown" and time.monotonic() >= end else ""))
        if status == "violated":
            self.get_logger().warning(
                f"{name}: a counterexample lies within {scale:g} x radii of the start state "
                f"(start proofs, {took}): ticks whose region reaches it will be violated")
        elif proven:
            self.get_logger().info(
                f"{name}: start proofs: the regions around the start state "
                f"{centre.tolist()} of {', '.join(f'{f:g}' for f in proven)} x the radii "
                f"(+ region_margin) are proven ahead of the ticks ({took}{failed}); ticks "
                "inside them need no proof of their own, others are proven by their deadline")
        else:
            self.get_logger().info(
                f"{name}: start proofs: none proven around the start state {centre.tolist()} "
                f"({took}{failed}): every tick is proven by its deadline")

    # ---- inputs ----------------------------------------------------------------------------

    def _received(self, topic: str) -> None:
        self._last_input_ns[topic] = self.get_clock().now().nanoseconds

    def _on_odom(self, msg: Odometry) -> None:
        self._received(self.params.odom_topic)
        try:
            odom = odometry_to_arrays(msg, topic=self.params.odom_topic)
        except RosInputError as exc:
            self.health.problem("bad_odometry", str(exc))
            return
        if msg.child_frame_id != self.params.base_frame:
            # Its twist is another frame's velocity: not the state's uncertainty.
            self.health.problem(
                "bad_odometry", f"{self.params.odom_topic}: child_frame_id "
                f"{msg.child_frame_id!r} is not base_frame {self.params.base_frame!r}; ignored")
            return
        self._answer(self.pairing.add_odometry(odom.stamp_ns, odom.twist_covariance,
                                               odom.v_base_mps, odom.omega_base_radps,
                                               odom.T_odom_base))

    def _on_state(self, msg: JointState) -> None:
        p = self.params
        self._received(p.state_topic)
        try:
            state = named_vector_to_array(msg, p.input_names, topic=p.state_topic)
            stamp_ns = stamp_to_ns(msg.header.stamp, p.state_topic)
        except RosInputError as exc:
            self.health.problem("bad_state", str(exc))
            return
        self._answer(self.pairing.add_state(stamp_ns, state, time.monotonic()))

    def _on_command(self, msg: TwistStamped) -> None:
        self._received(self.params.command_topic)
        try:
            stamp_ns = stamp_to_ns(msg.header.stamp, self.params.command_topic)
        except RosInputError as exc:
            # Not a command this node can pair with a state or order: the stop goes out.
            self._reject(msg, str(exc))
            return
        if self.params.state_source == "fixed":
            # The fixed state is not the state this command was computed from: only its
            # finiteness can be checked against it.
            problem = self._command_problem(msg, None)
            if problem is not None:
                self._reject(msg, problem)
            else:
                self._gate(msg, self.last)
            return
        self._answer(self.pairing.add_command(stamp_ns, msg, time.monotonic()))

    def _reject(self, command: TwistStamped, problem: str) -> None:
        """A command refused before any certificate about it: said on the status topic and
        counted with the rejected certificates (a tester's rejected NaN command in fixed mode
        left 'verified', the timer's, as the last status), and the stop goes out."""
        self.health.problem("commands_rejected", problem)
        self.certificates[REJECTED] += 1
        self.status_pub.publish(String(data=REJECTED))
        self._gate(command, None)

    def _uses_odometry(self, n_inputs: int) -> bool:
        """Whether the odometry's twist sizes the region (the governor's state, with
        ``use_odometry_covariance``); else the radii alone do."""
        return self.params.use_odometry_covariance and n_inputs == len(STATE_NAMES)

    def _flush_awaiting(self) -> None:
        """Pairs whose odometry did not come within ``odom_wait_s``: answered now (the
        certificate is unknown, the fallback goes out)."""
        self._answer(self.pairing.expired(time.monotonic()))

    def _answer(self, pairs: list[Pair[TwistStamped]]) -> None:
        for pair in pairs:
            if pair.conflict is not None:
                # Inputs that disagree about one instant: nothing about it can be certified.
                self.pairing.answered(pair)
                self._reject(pair.command, f"{self.params.state_topic}: {pair.conflict}")
            else:
                self._answer_pair(pair)

    def _answer_pair(self, pair: Pair[TwistStamped]) -> None:
        stamp_ns, state, command = pair.stamp_ns, pair.state, pair.command
        why = self.pairing.out_of_order(stamp_ns) or self._stale_reason(stamp_ns)
        if why is not None:
            self._send_stale(command, why)
            return
        # Only a stamp within the age limit counts (one far ahead is another time base).
        self.pairing.answered(pair)
        result = self.certify(state, stamp_ns, command)
        why = self._stale_reason(stamp_ns)
        if result.status == "verified" and why is not None:
            # The proof took long enough for the state to age past max_state_age_s: true of
            # where the vehicle was, not of now (a tester's 4 s proof was forwarded).
            self._send_stale(command, f"{why} once certified ({result.elapsed_s * 1e3:.0f} ms)")
            return
        self._gate(command, result)

    def _send_stale(self, command: TwistStamped, why: str) -> None:
        """The stop for a pair that cannot be certified now: said (status ``stale``)."""
        self.health.problem("stale_states", f"{self.params.state_topic}: {why}: fallback")
        self.status_pub.publish(String(data=STALE))
        self._gate(command, None)

    def _stale_reason(self, stamp_ns: int) -> str | None:
        """Why a state stamped ``stamp_ns`` cannot be certified now, or None.

        A certificate about where the vehicle was a second ago says nothing about now (e.g.
        the odometry waiting for a dead IMU), nor does one stamped ahead of the clock (another
        time base). With the ROS clock at 0 (use_sim_time without /clock) no age can be told
        and the watchdog cannot run, and a stamp of 0 is unset: testers had such pairs
        verified.
        """
        now_ns = self.get_clock().now().nanoseconds
        if now_ns == 0:
            return ("the state arrived while the ROS clock reads 0: use_sim_time is true and "
                    "no /clock has arrived (on live sensors set use_sim_time:=false)")
        if stamp_ns == 0:
            return "header.stamp is 0 (unset by its publisher)"
        max_age_s = self.params.max_state_age_s
        age_s = (now_ns - stamp_ns) * 1e-9
        if max_age_s <= 0 or abs(age_s) <= max_age_s:
            return None
        if age_s > 0:
            return f"the state is stamped {age_s:.2f} s ago (> max_state_age_s {max_age_s:g})"
        self.pairing.forget_last_state()
        return (f"the state is stamped {-age_s:.2f} s ahead of the clock (> max_state_age_s "
                f"{max_age_s:g})")

    def _on_fixed_tick(self) -> None:
        self.certify(np.asarray(self.params.fixed_state, dtype=np.float64))

    # ---- certification ---------------------------------------------------------------------

    def _closing_depth(self, state: np.ndarray, lower: np.ndarray,
                       upper: np.ndarray) -> np.ndarray:
        """The depth's fixed radius assumes a closing speed (pipeline.yaml: 1.5 m/s over the
        0.5 s lookahead); a forward speed the region allows beyond it (a huge odometry sigma)
        may close more. A tester's speed sigma of 1e25 m/s at depth 3 m was certified, the
        region never reaching the properties' depths."""
        p = self.params
        if p.lookahead_s <= 0 or tuple(p.input_names) != STATE_NAMES:
            return lower
        depth = STATE_NAMES.index("nearest_depth_m")
        closing = max(0.0, float(upper[STATE_NAMES.index("forward_speed_mps")]))
        out = lower.copy()
        out[depth] = min(lower[depth], state[depth] - p.lookahead_s * closing)
        return out

    def _sigma(self, n_inputs: int, stamp_ns: int | None) -> np.ndarray:
        """State sigma from the twist covariance of the odometry the state was built from
        (same stamp; in fixed mode the latest); zeros where :meth:`_uses_odometry` is false.

        Raises:
            ControlError: no odometry yet, or a twist covariance of all zeros (ROS's
                'unknown'): the region's width is not known, so nothing can be certified (a
                tester's monitor without /odom verified every tick as if speeds were exact).
        """
        p = self.params
        if not self._uses_odometry(n_inputs):
            return np.zeros(n_inputs)
        if self.pairing.newest_covariance_ns is None:
            raise ControlError(
                f"no twist covariance from {p.odom_topic} yet (use_odometry_covariance is "
                "true): the state's uncertainty is unknown")
        cov: np.ndarray | None
        if stamp_ns is None:  # fixed mode: the state is configured, not measured
            cov = self.pairing.latest_covariance()
        else:
            cov = self.pairing.covariance_at(stamp_ns)
        if cov is None:
            # Not the latest one instead: an older covariance can be smaller than the state's.
            raise ControlError(
                f"no {p.odom_topic} at the state's stamp {stamp_ns} within odom_wait_s "
                f"{p.odom_wait_s:g} s (newest odometry stamp {self.pairing.newest_covariance_ns})"
                ": the state's uncertainty is unknown")
        if not np.any(cov):
            raise ControlError(
                f"{p.odom_topic} twist covariance is all zeros, which ROS reads as unknown, "
                "not as exact (set use_odometry_covariance false to size the region by the "
                "radii alone)")
        return state_sigma(cov, self.axes)

    def _check_odometry_in_region(self, state: np.ndarray, stamp_ns: int | None,
                                  lower: np.ndarray, upper: np.ndarray) -> None:
        """The velocities the odometry of the state's stamp gives must lie in the region.

        The controller builds its state from that odometry, so they agree up to round-off;
        a state the odometry contradicts is another time's or another source's (a tester's
        state at rest, its /odom at 3 m/s, was verified over +-0.78 m/s around rest).

        Raises:
            ControlError: they disagree by more than the region allows.
        """
        if stamp_ns is None or not self._uses_odometry(state.size):
            return
        odometry = self.pairing.odometry_at(stamp_ns)
        if odometry is None or odometry.v_base_mps is None or odometry.omega_base_radps is None:
            return
        own = build_state(odometry.v_base_mps, odometry.omega_base_radps, float(state[4]),
                          self.axes)
        slack = 1e-9 * max(1.0, float(np.abs(own).max()))
        outside = [i for i in range(4) if not lower[i] - slack <= own[i] <= upper[i] + slack]
        if outside:
            said = ", ".join(f"{STATE_NAMES[i]} {own[i]:.6g} (state {state[i]:.6g}, region "
                             f"[{lower[i]:.6g}, {upper[i]:.6g}])" for i in outside)
            raise ControlError(f"{self.params.odom_topic} at the state's stamp gives {said}: "
                               "the state is not this odometry's")

    def certify(
        self, state: np.ndarray, stamp_ns: int | None = None,
        command: TwistStamped | None = None,
    ) -> TickResult:
        """Certify every property over the region around ``state``; publish the outcome.

        With ``command``, a verified certificate becomes "rejected" unless the command is
        the network's own at ``state`` (:meth:`_command_problem`).
        """
        p = self.params
        start = time.perf_counter()
        lower = upper = state
        with self.health.latency["certificate"].measure():
            try:
                sigma = self._sigma(state.size, stamp_ns)
                lower, upper = region(state, sigma, np.asarray(p.radii), p.k_sigma)
                self._check_odometry_in_region(state, stamp_ns, lower, upper)
                lower = self._closing_depth(state, lower, upper)
                result = self._certify_all(lower, upper, start)
            except (ControlError, RosInputError) as exc:
                result = TickResult("unknown", f"bad region: {exc}", 0.0, lower, upper)
            except Exception as exc:  # the verifier failing must never open the gate
                result = TickResult(
                    "unknown", f"verifier raised {type(exc).__name__}: {exc}", 0.0, lower, upper
                )
                self.health.problem("verifier_exception", result.reason)
        result.elapsed_s = time.perf_counter() - start
        # A proof that came too late is treated as a timeout (gate closed); a confirmed
        # counterexample stays a violation however long it took to find.
        if result.status == "verified" and result.elapsed_s > p.deadline_s + p.deadline_grace_s:
            self.health.counters["late_certificates"] += 1
            result = TickResult(
                "unknown",
                f"late: {result.elapsed_s * 1e3:.1f} ms > deadline {p.deadline_s * 1e3:.0f} ms "
                f"(+{p.deadline_grace_s * 1e3:.0f} ms grace); was {result.status}",
                result.elapsed_s, lower, upper,
            )
        if result.status == "verified" and command is not None:
            problem = self._command_problem(command, state)
            if problem is not None:
                self.health.problem("commands_rejected", problem)
                result = TickResult(
                    REJECTED, f"{problem}; the network's certificate held ({result.reason})",
                    result.elapsed_s, lower, upper, domains=result.domains,
                )
        self.certificates[result.status] += 1
        if result.status in ("unknown", "violated"):
            # Counted and published on the status topic, and said in the log (throttled): an
            # operator reading it learnt nothing of a tester's unknown certificate under load.
            self.health.problem(f"certificates_{result.status}",
                                f"certificate {result.status} ({result.reason}): fallback on "
                                f"{p.cmd_topic}")
        self.last = result
        self.status_pub.publish(String(data=result.status))
        self._publish_certificate(result, state)
        return result

    def _certify_all(self, lower: np.ndarray, upper: np.ndarray, start: float) -> TickResult:
        p = self.params
        reasons, domains = [], 0
        worst = "verified"
        for name, monitor in self.monitors:
            # Whatever time is left of this tick's deadline goes to the next property.
            remaining_s = max(p.deadline_s - (time.perf_counter() - start), 1e-3)
            cert = monitor.certify(lower, upper, deadline_s=remaining_s)
            domains += int(getattr(cert, "domains", 0) or 0)
            reasons.append(f"{name}: {cert.status} ({cert.reason})")
            if cert.status not in STATUSES:
                return TickResult(
                    "unknown", f"{name}: status {cert.status!r}", 0.0, lower, upper
                )
            if cert.status == "violated":
                return TickResult(
                    "violated", "; ".join(reasons), 0.0, lower, upper,
                    np.asarray(cert.counterexample_x), np.asarray(cert.counterexample_y), domains,
                )
            if cert.status == "unknown":
                worst = "unknown"
        return TickResult(worst, "; ".join(reasons), 0.0, lower, upper, domains=domains)

    # ---- the command ------------------------------------------------------------------------

    def _command_problem(self, command: TwistStamped, state: np.ndarray | None) -> str | None:
        """None when ``command`` may pass on a verified certificate at ``state``, else why not.

        Finite in every component, and (with a state) within ``command_tolerance`` of what
        controller_node makes of the network at that state: ``advisory_speeds_mps[argmax]``
        along the forward axis, no rotation. The scores come from onnxruntime on the same
        file, as the controller computes them (float32); the float64 model the certificate
        reasons about must pick the same output (it can differ only on a near tie).
        """
        p = self.params
        twist = command.twist
        linear = np.array([twist.linear.x, twist.linear.y, twist.linear.z], dtype=np.float64)
        angular = np.array([twist.angular.x, twist.angular.y, twist.angular.z],
                           dtype=np.float64)
        speed = float(linear @ self._forward_base)
        if not (np.isfinite(linear).all() and np.isfinite(angular).all()):
            return (f"{p.command_topic} speed {speed!r} (linear {linear.tolist()!r} m/s, "
                    f"angular {angular.tolist()!r} rad/s) is not finite")
        if command.header.frame_id != p.base_frame:
            # The certified command is a velocity in the base frame; the same numbers in
            # another frame are another motion.
            return (f"{p.command_topic} frame_id {command.header.frame_id!r} is not base_frame "
                    f"{p.base_frame!r}")
        if state is None:
            return None
        try:
            deployed = self._deployed_scores(state)
            model = self.network.forward(state)
        except Exception as exc:  # onnxruntime's own error types: the gate stays closed
            return f"{p.command_topic}: the network could not be evaluated at the state: {exc}"
        if not (np.isfinite(deployed).all() and np.isfinite(model).all()):
            return f"{p.command_topic}: the network's scores {deployed.tolist()!r} are not finite"
        top, expected_linear, expected_angular = advisory_command(
            deployed, p.advisory_speeds_mps, self._forward_base)
        name = p.output_names[top]
        if int(np.argmax(model)) != top:
            return (f"{p.command_topic}: the deployed network's top output {name!r} at the state "
                    f"(scores {deployed.tolist()!r}) is not the certified model's "
                    f"({model.tolist()!r}): a near tie the certificate does not cover")
        expected_speed = float(p.advisory_speeds_mps[top])
        error = float(np.max(np.abs(np.concatenate(
            [linear - expected_linear, angular - expected_angular]))))
        if error > p.command_tolerance:
            return (f"{p.command_topic} speed {speed!r} (linear {linear.tolist()!r} m/s, angular "
                    f"{angular.tolist()!r} rad/s) does not match the certified network's output "
                    f"{name!r} ({expected_speed!r} m/s forward, no rotation) at the state "
                    f"{state.tolist()!r}: off by {error:.3g} > {p.command_tolerance:g}")
        return None

    def _deployed_scores(self, state: np.ndarray) -> np.ndarray:
        """The scores as the controller computes them (its GovernorRuntime on the ONNX)."""
        if self._runtime is not None:
            return self._runtime.scores(state)
        return self.network.forward(state)

    def _gate(self, command: TwistStamped, result: TickResult | None) -> None:
        p = self.params
        self._answered()
        if result is not None and result.status == "verified":
            self.cmd_pub.publish(command)
            self.health.counters["commands_passed"] += 1
            return
        try:
            stamp_ns = stamp_to_ns(command.header.stamp, p.command_topic)
        except RosInputError:  # counted by the caller; the stop still needs a stamp
            stamp_ns = self.get_clock().now().nanoseconds
        self._publish_fallback(stamp_ns)
        self.health.counters["fallbacks_sent"] += 1

    def _publish_fallback(self, stamp_ns: int) -> None:
        """The stop on /cmd, always in ``base_frame`` (the gate, the watchdog, shutdown)."""
        p = self.params
        self.cmd_pub.publish(twist_stamped_msg(
            stamp_ns, p.fallback_linear_mps, p.fallback_angular_radps, p.base_frame))

    # ---- watchdog --------------------------------------------------------------------------

    def _answered(self) -> None:
        """The gate answered the inputs (a command or the fallback): /cmd is fresh."""
        now_ns = self.get_clock().now().nanoseconds
        if self._silent_since_ns is not None:
            self.health.counters["inputs_resumed"] += 1
            self.get_logger().info(
                f"inputs resumed after {(now_ns - self._silent_since_ns) * 1e-9:.2f} s of "
                f"silence ({self.health.counters['watchdog_fallbacks']} watchdog fallbacks "
                "so far)"
            )
            self._silent_since_ns = None
        self._last_output_ns = now_ns
        self._answer_wall_s = time.monotonic()
        self._clock_stop_sent = False

    def _silence(self, now_ns: int) -> str:
        """What was last heard on each input, for the warning."""
        p = self.params
        topics = [p.command_topic]
        if p.state_source == "controller":
            topics.insert(0, p.state_topic)
        if p.use_odometry_covariance:
            topics.insert(0, p.odom_topic)
        parts = []
        for topic in topics:
            last = self._last_input_ns.get(topic)
            parts.append(f"{topic} never received" if last is None
                         else f"{topic} silent for {(now_ns - last) * 1e-9:.2f} s")
        return ", ".join(parts)

    def _on_watchdog(self) -> None:
        p = self.params
        if self._last_output_ns is None:
            return  # not armed: nothing has gone to /cmd yet
        now_ns = self.get_clock().now().nanoseconds
        if now_ns < self._last_output_ns:  # the clock went back (a looped replay)
            self._last_output_ns = now_ns
            return
        silent_s = (now_ns - self._last_output_ns) * 1e-9
        if silent_s < p.input_timeout_s:
            return
        if self._silent_since_ns is None:
            self._silent_since_ns = self._last_output_ns
            self.health.problem(
                "input_timeouts",
                f"no {'(state, command) pair' if p.state_source == 'controller' else 'command'}"
                f" answered for {silent_s:.2f} s >= input_timeout_s "
                f"{p.input_timeout_s:g} ({self._silence(now_ns)}): publishing the fallback on "
                f"{p.cmd_topic} every {1.0 / p.tick_hz:g} s until the inputs resume",
            )
        else:  # still silent: the status stays WARN for as long as it lasts
            self.health.ongoing(
                f"inputs silent for {silent_s:.2f} s ({self._silence(now_ns)}): fallback on "
                f"{p.cmd_topic}")
        self.status_pub.publish(String(data=INPUT_TIMEOUT))
        self._publish_fallback(now_ns)
        self.health.counters["watchdog_fallbacks"] += 1

    def _on_clock_watch(self) -> None:
        """The stop, once, when nothing has answered the inputs for ``clock_timeout_s`` of
        wall time while the watchdog (on /clock) sees no silence: /clock stands still or
        creeps (use_sim_time only; a tester's /clock moving 1 us every 10 ms kept a verified
        command on /cmd for 5.4 s when the clock watch looked for a /clock standing still)."""
        clock = self.get_clock()
        if self._answer_wall_s is None or not getattr(clock, "ros_time_is_active", False):
            return
        now_ns = clock.now().nanoseconds
        if now_ns == 0 or self._clock_stop_sent or self._silent_since_ns is not None:
            return  # no /clock yet (every pair got the stop), said, or the watchdog's turn
        silent_s = time.monotonic() - self._answer_wall_s
        if silent_s < max(self.params.clock_timeout_s, self.params.input_timeout_s):
            return
        self._clock_stop_sent = True
        moved_s = (now_ns - (self._last_output_ns or now_ns)) * 1e-9
        self.health.problem(
            "clock_stops",
            f"nothing answered the inputs for {silent_s:.2f} s of wall time while /clock moved "
            f"{moved_s:.3f} s (>= clock_timeout_s {self.params.clock_timeout_s:g}; "
            "use_sim_time is true and the watchdog runs on /clock, which stands still or "
            f"creeps: a replay's end or pause, a stalled simulator): the stop on "
            f"{self.params.cmd_topic}, once")
        self.status_pub.publish(String(data=CLOCK_STOPPED))
        self._publish_fallback(now_ns)
        self.health.counters["clock_stop_fallbacks"] += 1

    def _publish_certificate(self, result: TickResult, state: np.ndarray) -> None:
        from diagnostic_msgs.msg import DiagnosticArray

        values: dict[str, Any] = {
            "status": result.status,
            "reason": result.reason,
            "elapsed_ms": result.elapsed_s * 1e3,
            "domains": result.domains,
            "state": state,
            "lower": result.lower,
            "upper": result.upper,
            "input_names": ",".join(self.params.input_names),
        }
        if result.counterexample_x is not None:
            values["counterexample_x"] = result.counterexample_x
            values["counterexample_y"] = result.counterexample_y
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [
            diagnostic_status(
                f"{NODE_NAME}: certificate", _LEVEL[result.status], result.status, values
            )
        ]
        self.diag_pub.publish(array)
        if result.status == "violated":
            self.get_logger().error(
                f"violated over [{result.lower}, {result.upper}]: counterexample "
                f"x={result.counterexample_x}, y={result.counterexample_y}"
            )

    def summary(self) -> dict[str, object]:
        return self.health.summary()

    def close(self) -> None:
        # Whatever stops this node (Ctrl-C, launch, `meetup-ros run` after another node died),
        # the last command it leaves on /cmd is the fallback, not a verified one gone stale.
        p = self.params
        self.status_pub.publish(String(data=SHUTDOWN))
        self._publish_fallback(self.get_clock().now().nanoseconds)
        # Sent is not delivered: the process exits next, and a tester's subscriber missed the
        # stop in 4 of 8 runs after a SIGKILLed launcher (the verified command stayed last).
        # Reliable subscribers acknowledge it; wait for that, bounded.
        if self.cmd_pub.get_subscription_count() == 0:
            # wait_for_all_acked is true with nobody to ack: "acknowledged" was logged for a
            # stop nobody received (a tester's signal right after start-up)
            self.get_logger().warning(
                f"shutting down: fallback sent on {p.cmd_topic}, but no subscriber is "
                "matched there: nobody received it")
        elif self.cmd_pub.wait_for_all_acked(Duration(seconds=SHUTDOWN_ACK_WAIT_S)):
            self.get_logger().info(f"shutting down: fallback sent on {p.cmd_topic}, "
                                   "acknowledged by its reliable subscribers")
        else:
            self.get_logger().warning(
                f"shutting down: fallback sent on {p.cmd_topic}, not acknowledged within "
                f"{SHUTDOWN_ACK_WAIT_S:g} s (a subscriber gone or slow): it may not arrive")
        self.health.publish(final=True)
        self.get_logger().info(f"safety_monitor_node done: {self.summary()}")


def main(args: Sequence[str] | None = None) -> int:
    return spin_node(SafetyMonitorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
