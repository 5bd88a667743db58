"""safety_monitor_node: lets the controller's command through only when it is proven safe.

For each state the controller used (``/controller/state``) and the command it proposed with
the same stamp (``/controller/command``), the node builds the input region (the state plus
or minus k_sigma times the odometry twist sigma plus configured radii) and asks the runtime
branch-and-bound monitor (``verification.runtime.RuntimeMonitor``, the same ONNX file the
controller runs) whether each property holds over it, within a deadline per tick.

- verified: the command goes to ``/cmd``; ``/diagnostics`` OK.
- unknown (deadline reached, late, or any exception): the fallback goes to ``/cmd``; WARN.
- violated: the fallback goes to ``/cmd``; ERROR with the counterexample in the values.

In ``state_source: fixed`` mode (e.g. ACAS Xu) the region is around a configured state and
is certified on a timer; commands are gated by the latest certificate.
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from geometry_msgs.msg import TwistStamped
from nav_msgs.msg import Odometry
from rclpy.node import Node
from sensor_msgs.msg import JointState
from std_msgs.msg import String

from meetup_ros import paths
from meetup_ros.control import ControlError
from meetup_ros.control.region import region
from meetup_ros.control.state import STATE_NAMES, StateAxes, state_sigma
from meetup_ros.ros import RosInputError
from meetup_ros.ros.convert import (
    named_vector_to_array,
    odometry_to_arrays,
    stamp_to_ns,
    twist_stamped_msg,
)
from meetup_ros.ros.node_tools import NodeHealth, diagnostic_status, reliable_qos, spin_node
from meetup_ros.ros.params import declare_parameters, param

NODE_NAME = "safety_monitor_node"
STATUSES = ("verified", "violated", "unknown")
_LEVEL = {"verified": "OK", "unknown": "WARN", "violated": "ERROR"}


@dataclass(frozen=True)
class MonitorParams:
    network_path: str = param("governor.onnx", "the controller's ONNX file (models/ if relative)")
    property_paths: tuple[str, ...] = param(
        ("governor_property.yaml",),
        "property files (.yaml or .vnnlib; config/ if relative); all must hold",
    )
    input_names: tuple[str, ...] = param(
        STATE_NAMES, "names of the network inputs, in order (the state vector's names)"
    )
    deadline_s: float = param(0.05, "verification deadline per tick (s), all properties")
    deadline_grace_s: float = param(0.02, "a certificate later than deadline+grace is unknown")
    state_source: str = param("controller", "'controller' (state topic) or 'fixed'")
    fixed_state: tuple[float, ...] = param((), "the state in 'fixed' mode (input units)")
    tick_hz: float = param(20.0, "certification rate in 'fixed' mode (Hz)")
    radii: tuple[float, ...] = param(
        (0.05, 0.05, 0.05, 0.05, 0.1), "half-widths added to the region, per input"
    )
    k_sigma: float = param(3.0, "region half-width in odometry sigmas")
    use_odometry_covariance: bool = param(True, "add k_sigma * sigma from /odom's twist")
    forward_axis_base: tuple[float, ...] = param((0.0, 0.0, 1.0), "forward in the base frame")
    up_axis_base: tuple[float, ...] = param((1.0, 0.0, 0.0), "up in the base frame")
    state_topic: str = param("/controller/state", "states the controller used")
    command_topic: str = param("/controller/command", "commands it proposed")
    odom_topic: str = param("/odom", "odometry (twist covariance for the region)")
    cmd_topic: str = param("/cmd", "gated output")
    status_topic: str = param("/safety/status", "verified | violated | unknown")
    fallback_linear_mps: tuple[float, ...] = param((0.0, 0.0, 0.0), "fallback linear velocity")
    fallback_angular_radps: tuple[float, ...] = param(
        (0.0, 0.0, 0.0), "fallback angular velocity"
    )
    max_pending: int = param(50, "states/commands held while waiting for their pair")
    diagnostics_period_s: float = param(2.0, "period of the node's own /diagnostics (s)")
    torch_threads: int = param(
        1, "torch CPU threads in this node's process (several nodes share few cores)"
    )


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


class SafetyMonitorNode(Node):
    """Certifies each (state, command) pair by branch and bound and gates the command."""

    def __init__(self, **node_kwargs: object) -> None:
        super().__init__(NODE_NAME, **node_kwargs)  # type: ignore[arg-type]
        self.params = declare_parameters(self, MonitorParams)
        p = self.params
        # Oversubscribed intra-op threads made one 50 ms certificate take 2.4 s on 2 cores.
        torch.set_num_threads(max(1, p.torch_threads))
        n_inputs = len(p.input_names)
        if len(p.radii) != n_inputs:
            raise RosInputError(f"radii {p.radii!r} needs {n_inputs} values for {p.input_names!r}")
        if p.state_source not in ("controller", "fixed"):
            raise RosInputError(f"state_source {p.state_source!r}, expected controller|fixed")
        if p.state_source == "fixed" and len(p.fixed_state) != n_inputs:
            raise RosInputError(f"fixed_state {p.fixed_state!r} needs {n_inputs} values")
        if not p.property_paths:
            raise RosInputError("property_paths is empty; at least one property is needed")
        from meetup_ros.verification.runtime import RuntimeMonitor

        network_path = paths.model_path(p.network_path)
        if not network_path.is_file():
            raise RosInputError(f"network_path {str(network_path)!r} does not exist")
        self.monitors = []
        for name in p.property_paths:
            path = paths.config_path(name)
            if not path.is_file():
                raise RosInputError(f"property file {str(path)!r} does not exist")
            monitor = RuntimeMonitor(network_path, path, deadline_s=p.deadline_s)
            self.monitors.append((path.name, monitor))
        self.axes = StateAxes(p.forward_axis_base, p.up_axis_base)
        self.health = NodeHealth(self, ["certificate"], p.diagnostics_period_s)
        self.certificates: Counter[str] = Counter({s: 0 for s in STATUSES})
        self.health.add_section("certificates", lambda: dict(self.certificates))
        self.last: TickResult | None = None
        self._states: OrderedDict[int, np.ndarray] = OrderedDict()
        self._commands: OrderedDict[int, TwistStamped] = OrderedDict()
        # Twist covariances by odometry stamp: the state's stamp is its odometry's stamp.
        self._twist_cov: OrderedDict[int, np.ndarray] = OrderedDict()
        self._last_state_ns: int | None = None
        self.cmd_pub = self.create_publisher(TwistStamped, p.cmd_topic, reliable_qos(50))
        self.status_pub = self.create_publisher(String, p.status_topic, reliable_qos(50))
        from diagnostic_msgs.msg import DiagnosticArray

        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable_qos(50))
        self.create_subscription(TwistStamped, p.command_topic, self._on_command, reliable_qos(50))
        if p.use_odometry_covariance:
            self.create_subscription(Odometry, p.odom_topic, self._on_odom, reliable_qos(50))
        if p.state_source == "controller":
            self.create_subscription(JointState, p.state_topic, self._on_state, reliable_qos(50))
        else:
            self.create_timer(1.0 / p.tick_hz, self._on_fixed_tick)
        self.get_logger().info(
            f"monitor: network {network_path}, properties {[n for n, _ in self.monitors]}, "
            f"deadline {p.deadline_s * 1e3:.0f} ms, state from {p.state_source}"
        )

    # ---- inputs ----------------------------------------------------------------------------

    def _on_odom(self, msg: Odometry) -> None:
        try:
            odom = odometry_to_arrays(msg, topic=self.params.odom_topic)
        except RosInputError as exc:
            self.health.problem("bad_odometry", str(exc))
            return
        self._twist_cov[odom.stamp_ns] = odom.twist_covariance
        while len(self._twist_cov) > self.params.max_pending:
            self._twist_cov.popitem(last=False)

    def _on_state(self, msg: JointState) -> None:
        p = self.params
        try:
            state = named_vector_to_array(msg, p.input_names, topic=p.state_topic)
        except RosInputError as exc:
            self.health.problem("bad_state", str(exc))
            return
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if self._last_state_ns is not None and stamp_ns < self._last_state_ns:
            self.health.problem(
                "time_jumped_back",
                f"{p.state_topic}: stamp {stamp_ns!r} ns before {self._last_state_ns!r} ns; "
                "dropping pending states and commands",
            )
            self._states.clear()
            self._commands.clear()
            self._twist_cov.clear()
        self._last_state_ns = stamp_ns
        self._hold(self._states, stamp_ns, state)
        self._try_pair(stamp_ns)

    def _on_command(self, msg: TwistStamped) -> None:
        stamp_ns = stamp_to_ns(msg.header.stamp)
        if self.params.state_source == "fixed":
            self._gate(msg, self.last)
            return
        self._hold(self._commands, stamp_ns, msg)
        self._try_pair(stamp_ns)

    def _hold(self, queue: OrderedDict[int, Any], stamp_ns: int, item: Any) -> None:
        queue[stamp_ns] = item
        while len(queue) > self.params.max_pending:
            dropped_ns, _ = queue.popitem(last=False)
            self.health.problem(
                "unpaired_dropped", f"no state/command pair for stamp {dropped_ns!r} ns"
            )

    def _try_pair(self, stamp_ns: int) -> None:
        if stamp_ns not in self._states or stamp_ns not in self._commands:
            return
        state = self._states.pop(stamp_ns)
        command = self._commands.pop(stamp_ns)
        result = self.certify(state, stamp_ns)
        self._gate(command, result)

    def _on_fixed_tick(self) -> None:
        self.certify(np.asarray(self.params.fixed_state, dtype=np.float64))

    # ---- certification ---------------------------------------------------------------------

    def _sigma(self, n_inputs: int, stamp_ns: int | None) -> np.ndarray:
        """State sigma from the twist covariance of the odometry the state was built from
        (same stamp), else the latest one; zeros without odometry or for other networks."""
        if (not self.params.use_odometry_covariance or not self._twist_cov
                or n_inputs != len(STATE_NAMES)):
            return np.zeros(n_inputs)
        cov = self._twist_cov.get(stamp_ns) if stamp_ns is not None else None
        if cov is None:
            self.health.counters["sigma_from_latest_odometry"] += 1
            cov = next(reversed(self._twist_cov.values()))
        return state_sigma(cov, self.axes)

    def certify(self, state: np.ndarray, stamp_ns: int | None = None) -> TickResult:
        """Certify every property over the region around ``state``; publish the outcome."""
        p = self.params
        start = time.perf_counter()
        lower = upper = state
        with self.health.latency["certificate"].measure():
            try:
                sigma = self._sigma(state.size, stamp_ns)
                lower, upper = region(state, sigma, np.asarray(p.radii), p.k_sigma)
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
        self.certificates[result.status] += 1
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

    def _gate(self, command: TwistStamped, result: TickResult | None) -> None:
        p = self.params
        if result is not None and result.status == "verified":
            self.cmd_pub.publish(command)
            self.health.counters["commands_passed"] += 1
            return
        self.cmd_pub.publish(
            twist_stamped_msg(
                stamp_to_ns(command.header.stamp), p.fallback_linear_mps,
                p.fallback_angular_radps, command.header.frame_id,
            )
        )
        self.health.counters["fallbacks_sent"] += 1

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
        self.health.publish(final=True)
        self.get_logger().info(f"safety_monitor_node done: {self.summary()}")


def main(args: Sequence[str] | None = None) -> int:
    return spin_node(SafetyMonitorNode, args)


if __name__ == "__main__":
    raise SystemExit(main())
