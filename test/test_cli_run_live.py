"""Nodes started for live sensors publish their periodic diagnostics (on their ROS clock).

With use_sim_time and no /clock they would never come, and the safety monitor's watchdog
would not run: config/pipeline.yaml leaves use_sim_time false (a tester started the nodes
the console-script way, `<node> --ros-args --params-file config/pipeline.yaml`, when the file
still set it true), and `meetup-ros run --use-sim-time false` overrides it too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

rclpy = pytest.importorskip("rclpy")

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.context import Context  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

pytestmark = pytest.mark.dds


@pytest.mark.parametrize("how", ["run", "console_script"])
def test_live_nodes_publish_periodic_diagnostics(how: str) -> None:
    from meetup_ros import paths

    if how == "run":
        cmd = [sys.executable, "-m", "meetup_ros.cli", "run", "--nodes", "controller_node",
               "--use-sim-time", "false"]
    else:  # what the console script controller_node runs, with the pipeline's file only
        cmd = [sys.executable, "-m", "meetup_ros.nodes.entry", "controller_node", "--ros-args",
               "--params-file", str(paths.config_path("pipeline.yaml"))]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    context = Context()
    rclpy.init(context=context, args=[])
    node = Node("diagnostics_listener", context=context)
    periodic: list[float] = []

    def on_diagnostics(msg: DiagnosticArray) -> None:
        # The node's own status (not the start-up matched_subscriptions section, which
        # runs on the steady clock either way) comes only from the ROS-clock timer.
        if any(s.name == "controller_node" for s in msg.status):
            periodic.append(time.monotonic())

    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    try:
        deadline = time.monotonic() + 60.0
        while len(periodic) < 2 and time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=20)[0].decode(errors="replace")
        executor.shutdown(timeout_sec=2.0)
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert len(periodic) >= 2, f"no periodic /diagnostics without /clock:\n{output[-2000:]}"


RUN_CONTROLLER = [sys.executable, "-m", "meetup_ros.cli", "run", "--nodes", "controller_node",
                  "--use-sim-time", "false"]


def _start_run(until: str, **popen: object) -> tuple[subprocess.Popen[str], list[str]]:
    """`meetup-ros run` of the controller node, read until a line holding ``until``."""
    proc = subprocess.Popen(RUN_CONTROLLER, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **popen)  # type: ignore[call-overload]
    lines: list[str] = []
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if not line or until in line:
            break
    return proc, lines


def _kill_group(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_run_stops_on_a_signal_even_when_started_with_sigint_ignored(
        stop: signal.Signals) -> None:
    """`meetup-ros run &` from a script inherits SIGINT ignored: the nodes took it (entry.py
    resets it) but the runner did not, and a SIGINT to it did nothing (a tester's). It also
    says why it stops, and a node that stops cleanly is no failure."""

    def ignore_sigint() -> None:  # what a non-interactive shell does for a background job
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    proc, lines = _start_run("running ['controller_node']", preexec_fn=ignore_sigint,
                             start_new_session=True)
    try:
        time.sleep(3.0)  # the node started meanwhile
        proc.send_signal(stop)
        output = "".join(lines) + proc.communicate(timeout=30)[0]
    finally:
        _kill_group(proc)
    assert proc.returncode == 0, output[-3000:]
    assert f"stopping the nodes on {stop.name}" in output, output[-3000:]
    assert "failed" not in output and "Traceback" not in output, output[-3000:]


@pytest.mark.parametrize("after_s", [0.0, 0.05, 0.15])
def test_run_stops_cleanly_on_a_ctrl_c_while_its_nodes_start_python(after_s: float) -> None:
    """A Ctrl-C reaches the whole process group: one in a node's first 0.1-0.3 s, while
    its interpreter itself started, killed it (-2) or ended it in "Fatal Python error:
    init_import_site", and `meetup-ros run` exited 1 (a tester's sweep). The nodes now start
    deaf to it until they take their signals, and the runner's own Ctrl-C goes again."""
    proc, lines = _start_run("started controller_node (pid", start_new_session=True)
    try:
        time.sleep(after_s)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        output = "".join(lines) + proc.communicate(timeout=60)[0]
    finally:
        _kill_group(proc)
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "Fatal Python error" not in output, output[-3000:]
    assert "failed" not in output, output[-3000:]


def test_run_pressed_again_and_again_while_stopping_exits_0() -> None:
    """After every node had stopped cleanly, a Ctrl-C pressed again in the runner's last
    second (its handlers put back) killed it, -2 (a tester's). Here the group's Ctrl-C and
    then SIGINT to the runner every 20 ms until it exits."""
    proc, lines = _start_run("running ['controller_node']", start_new_session=True)
    try:
        time.sleep(3.0)
        os.killpg(proc.pid, signal.SIGINT)
        sent = 0
        while proc.poll() is None and sent < 1500:
            time.sleep(0.02)
            try:
                proc.send_signal(signal.SIGINT)
            except ProcessLookupError:
                break
            sent += 1
        output = "".join(lines) + proc.communicate(timeout=60)[0]
    finally:
        _kill_group(proc)
    assert proc.returncode == 0, output[-3000:]
    assert "Traceback" not in output and "failed" not in output, output[-3000:]
