"""A node process before and after its start-up: nodes/entry.py, what every console script runs.

Ctrl-C while a node still imports torch ends it quietly (before: a KeyboardInterrupt traceback
and exit code -2), and nodes started by `meetup-ros run` (or the launch files) stop as on
Ctrl-C when their launcher dies without stopping them (before: they ran on, unsupervised).
"""

from __future__ import annotations

import ast
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from meetup_ros.nodes import entry

REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_sigint() -> None:
    # A background job of a non-interactive shell (CI) inherits SIGINT ignored; a user's
    # terminal does not. The tests are about the latter.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie nobody reaped: in a container pid 1 may not reap)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return not re.search(r"^State:\s+Z", status, re.MULTILINE)


def test_console_scripts_go_through_entry() -> None:
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    nodes: tuple[str, ...] = ()
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "NODES":
            nodes = ast.literal_eval(node.value)
    assert nodes
    assert '"{node} = {PACKAGE}.nodes.entry:{node}"' in (REPO_ROOT / "setup.py").read_text()
    for name in nodes:
        assert callable(getattr(entry, name)), name
    installed = Path(sys.executable).parent / "vio_node"  # the venv's own console script
    if installed.is_file():
        assert "meetup_ros.nodes.entry" in installed.read_text(), (
            f"{installed} is from an install before nodes/entry.py: reinstall the package")


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_while_a_node_imports_torch_is_quiet(stop: signal.Signals) -> None:
    """Ctrl-C, or SIGTERM (systemd's, docker's stop: it killed the node with -15 and no
    line of its own, a tester's), while the node still imports: quiet, exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetup_ros.nodes.entry", "vio_node", "--ros-args",
         "--params-file", str(REPO_ROOT / "config" / "pipeline.yaml")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 60.0
        # torch's library mapped: the node module is being imported, nothing started yet
        while time.monotonic() < deadline:
            try:
                if "libtorch_cpu" in Path(f"/proc/{proc.pid}/maps").read_text():
                    break
            except OSError:
                pass
            time.sleep(0.005)
        else:
            pytest.fail("vio_node never loaded torch")
        proc.send_signal(stop)
        output = proc.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in output, output
    assert "vio_node: interrupted while starting" in output, output
    assert proc.returncode == 0, output


def test_exit_with_parent_is_asked_only_when_the_launcher_says_so(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(entry.EXIT_WITH_PARENT_ENV, raising=False)
    assert entry.exit_with_parent() is None  # not asked: nothing done, nothing to say
    if sys.platform.startswith("linux"):
        monkeypatch.setenv(entry.EXIT_WITH_PARENT_ENV, "1")
        # run in a child: the request would otherwise stay on the test process
        code = ("import os,sys; os.environ['MEETUP_ROS_EXIT_WITH_PARENT']='1';"
                "from meetup_ros.nodes import entry; print(entry.exit_with_parent())")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout
        assert out.strip() == "None"


@pytest.mark.dds
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_nodes_stop_and_the_monitor_sends_its_stop_when_meetup_ros_run_is_killed() -> None:
    rclpy = pytest.importorskip("rclpy")
    from geometry_msgs.msg import TwistStamped
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from meetup_ros.ros.node_tools import reliable_qos

    run = subprocess.Popen(
        [sys.executable, "-m", "meetup_ros.cli", "run", "--nodes", "safety_monitor_node",
         "--use-sim-time", "false"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=_default_sigint)
    lines: list[str] = []
    reader = threading.Thread(  # the node inherits the pipe: EOF only once it is gone too
        target=lambda: lines.extend(raw.decode(errors="replace") for raw in run.stdout or []),
        daemon=True)
    reader.start()
    context = Context()
    rclpy.init(context=context, args=[])
    listener = Node("cmd_listener", context=context)
    commands: list[TwistStamped] = []
    listener.create_subscription(TwistStamped, "/cmd", commands.append, reliable_qos(50))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    node_pid = None
    try:
        deadline = time.monotonic() + 90.0
        while time.monotonic() < deadline and run.poll() is None:
            executor.spin_once(timeout_sec=0.1)
            started = [re.search(r"started safety_monitor_node \(pid (\d+)\)", line)
                       for line in list(lines)]
            if node_pid is None and any(started):
                node_pid = int(next(m for m in started if m).group(1))
            # the monitor is up (spinning) and its /cmd publisher is matched to us
            if (node_pid is not None and any("monitor: network" in line for line in lines)
                    and listener.count_publishers("/cmd") > 0):
                break
        else:
            pytest.fail("the monitor did not start:\n" + "".join(lines)[-3000:])
        assert node_pid is not None
        time.sleep(1.0)  # past start-up, spinning
        received_before = len(commands)
        assert received_before == 0  # no inputs, watchdog not armed: /cmd's next is the stop
        run.kill()  # SIGKILL: `meetup-ros run` cannot stop its node itself
        run.wait()
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline and (_alive(node_pid)
                                                or len(commands) == received_before):
            executor.spin_once(timeout_sec=0.1)
        outlived = _alive(node_pid)
    finally:
        if node_pid is not None and _alive(node_pid):
            os.kill(node_pid, signal.SIGKILL)
        executor.shutdown(timeout_sec=2.0)
        listener.destroy_node()
        rclpy.try_shutdown(context=context)
    reader.join(timeout=10)
    output = "".join(lines)
    assert not outlived, f"the monitor outlived `meetup-ros run`:\n{output[-3000:]}"
    assert "is gone; stopping as on Ctrl-C" in output, output[-3000:]
    assert "acknowledged by its reliable subscribers" in output, output[-3000:]
    assert len(commands) > received_before, f"no stop on /cmd:\n{output[-3000:]}"
    stop = commands[-1].twist
    assert (stop.linear.x, stop.linear.y, stop.linear.z) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_parameters_instead_of_starting_the_node(flag: str) -> None:
    """A tester's `safety_monitor_node --help` started the monitor on its code defaults,
    publishing on /cmd."""
    out = subprocess.run(
        [sys.executable, "-m", "meetup_ros.nodes.entry", "safety_monitor_node", flag],
        capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.startswith("usage: safety_monitor_node [--ros-args")
    assert "deadline_s (float, 0.05): " in out.stdout
    assert "monitor: network" not in out.stdout + out.stderr  # never started


def test_help_of_the_replay_lists_its_parameters() -> None:
    """bag_replay_node --help listed no parameters (it had no parameters class)."""
    out = subprocess.run(
        [sys.executable, "-m", "meetup_ros.nodes.entry", "bag_replay_node", "--help"],
        capture_output=True, text=True, timeout=120, check=True)
    assert "  rate (float, 1.0): playback speed factor (> 0)" in out.stdout
    assert "  wait_topics (list[str], ('',)): " in out.stdout
    assert "replaying" not in out.stdout + out.stderr


def test_an_argument_before_ros_args_is_refused_not_ignored() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "meetup_ros.nodes.entry", "safety_monitor_node", "--hlep"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert "unrecognized argument(s) ['--hlep']: ROS arguments go after --ros-args" in out.stderr


SECOND_SIGNAL_PROBE = """
import os, signal, sys, time
from meetup_ros.ros import stop_signals
stop_signals.take()
first = getattr(signal, sys.argv[1])
later = [getattr(signal, name) for name in sys.argv[2:]]
steps = []
try:
    try:
        os.kill(os.getpid(), first)
        time.sleep(5)
    except KeyboardInterrupt as exc:
        steps.append(type(exc).__name__)
        for signum in later:  # more signals, while the first is being handled
            os.kill(os.getpid(), signum)
        time.sleep(0.1)
        steps.append("logged")
    finally:
        steps.append("finally")
except BaseException as exc:
    steps.append("escaped " + type(exc).__name__)
print(" ".join(steps))
"""


@pytest.mark.parametrize(("first", "later", "kind"), [
    ("SIGUSR1", ["SIGUSR1"], "LauncherGone"),  # launch 3.7.1's dying launcher: seen twice
    ("SIGINT", ["SIGUSR1"], "StopSignal"),  # Ctrl-C, then the launcher gone
    ("SIGTERM", ["SIGINT"], "StopSignal"),
    ("SIGINT", ["SIGTERM", "SIGUSR1"], "StopSignal"),  # a tester's three in a row
])
def test_a_second_stop_signal_does_not_cut_the_first_stop_short(
        first: str, later: list[str], kind: str) -> None:
    """A node got SIGUSR1 twice when its launcher died under launch 3.7.1: the second, raised
    inside the handling of the first, cut its "launcher is gone" line (the launch test's count
    failed in 4 of 20 runs), and could cut the finally block that sends the monitor's
    fallback. From the first stop signal on, the others are dropped, quietly (with SIG_IGN
    Python printed "Signal 10 ignored due to race condition" for a pending one)."""
    out = subprocess.run([sys.executable, "-c", SECOND_SIGNAL_PROBE, first, *later],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == [kind, "logged", "finally"], out.stdout + out.stderr
    assert "race condition" not in out.stderr and "Traceback" not in out.stderr, out.stderr


CALLBACK_SIGNAL_PROBE = """
import os, signal, sys, time
from rclpy.node import Node
from meetup_ros.ros.node_tools import spin_node

class Probe(Node):
    def __init__(self):
        super().__init__("stop_probe")
        self.ticks = 0
        self.create_timer(0.02, self.tick)

    def tick(self):
        self.ticks += 1
        if self.ticks == 3:
            os.kill(os.getpid(), getattr(signal, sys.argv[1]))
            time.sleep(0.05)  # the handler runs in here
            print("callback finished", flush=True)

    def close(self):
        print(f"close after {self.ticks} ticks", flush=True)

print("exit", spin_node(Probe, []), flush=True)
"""


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_a_stop_signal_inside_a_callback_lets_it_finish(stop: str) -> None:
    """A stop signal's handler raised wherever the main thread was: inside a callback it cut
    the callback short, inside rclpy's Task construction it left a half-built Task whose
    __del__ printed "Exception ignored in Future.__del__" (a tester's Ctrl-C right after
    start-up). While the node spins, the stop now waits for the callback in hand."""
    out = subprocess.run([sys.executable, "-c", CALLBACK_SIGNAL_PROBE, stop],
                         capture_output=True, text=True, timeout=60)
    lines = out.stdout.splitlines()
    assert lines == ["callback finished", "close after 3 ticks", "exit 0"], \
        out.stdout + out.stderr
    assert f"stopping on {stop}" in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "Exception ignored" not in out.stderr, out.stderr


def test_a_node_that_cannot_start_says_which_and_from_which_file(tmp_path: Path) -> None:
    """Under `meetup-ros run` four nodes share a terminal, and a bad value was logged as
    "[meetup_ros]: node failed: deadline_s -1.0: ...", naming neither the node nor the file
    (a tester's)."""
    params = tmp_path / "bad.yaml"
    params.write_text("safety_monitor_node:\n  ros__parameters:\n    deadline_s: -1.0\n")
    out = subprocess.run(
        [sys.executable, "-m", "meetup_ros.nodes.entry", "safety_monitor_node", "--ros-args",
         "--params-file", str(params)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    line = next(ln for ln in out.stderr.splitlines() if "cannot start" in ln)
    assert "[safety_monitor_node]: cannot start: deadline_s -1.0" in line, out.stderr
    assert line.endswith(f"(parameters from {params})"), line
    assert "Traceback" not in out.stderr


BUILD_SIGNAL_PROBE = """
import os, signal, sys, time
from rclpy.node import Node
from meetup_ros.ros.node_tools import spin_node

class Probe(Node):
    def __init__(self):
        super().__init__("build_probe")
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        time.sleep(0.05)  # the handler runs in here
        self.create_timer(0.5, lambda: None)
        print("built", flush=True)

    def close(self):
        print("closed", flush=True)

print("exit", spin_node(Probe, []), flush=True)
"""


@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM", "SIGUSR1"])
def test_a_stop_signal_while_a_node_is_built_waits_for_it(stop: str) -> None:
    """Raised inside a node's construction, a stop signal left half-built rclpy objects: rclpy
    reported it as "initialization failed" (blamed on the parameters), a node once swallowed
    it and ran on deaf to later signals, one crashed (SIGSEGV; a tester's start-up signals).
    It is now taken once the node is built, and the node stops as from spinning."""
    out = subprocess.run([sys.executable, "-c", BUILD_SIGNAL_PROBE, stop],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.splitlines() == ["built", "closed", "exit 0"], out.stdout + out.stderr
    expected = "is gone; stopping as on Ctrl-C" if stop == "SIGUSR1" else f"stopping on {stop}"
    assert "[build_probe]: " in out.stderr and expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and "cannot start" not in out.stderr, out.stderr


@pytest.mark.parametrize("delay_s", [0.2, 0.9, 1.3, 1.8, 3.0])
def test_a_flood_of_stop_signals_at_any_moment_stops_a_node_cleanly(
        tmp_path: Path, delay_s: float) -> None:
    """A terminal's Ctrl-C reaches every node twice (the terminal's and the one `meetup-ros
    run` forwards), and a user presses it again: signals during the imports cut the
    "interrupted while starting" line (a traceback, exit -2), during the construction they
    were blamed on the parameters (exit 1), and one during the interpreter's exit killed a
    node that had stopped (-2; a tester's). Here SIGINT and SIGTERM every 20 ms from
    ``delay_s`` after the start (imports, construction, spinning) until the node exits."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "meetup_ros.nodes.entry", "controller_node", "--ros-args",
         "--params-file", str(REPO_ROOT / "config" / "pipeline.yaml")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay_s)
    sent = 0
    while proc.poll() is None and sent < 500:
        proc.send_signal(signal.SIGINT if sent % 2 == 0 else signal.SIGTERM)
        sent += 1
        time.sleep(0.02)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, (proc.returncode, err)
    assert "Traceback" not in err and "cannot start" not in err, err
    assert ("interrupted while starting" in err or "stopping on SIG" in err), err


def test_a_bad_value_given_with_p_is_not_blamed_on_the_file() -> None:
    """`--params-file config/pipeline.yaml -p slam_node:tolerance:=-1` said "(parameters from
    config/pipeline.yaml)", whose value was fine (a tester's)."""
    params = REPO_ROOT / "config" / "pipeline.yaml"
    out = subprocess.run(
        [sys.executable, "-m", "meetup_ros.nodes.entry", "safety_monitor_node", "--ros-args",
         "--params-file", str(params), "-p", "safety_monitor_node:deadline_s:=-1.0"],
        capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    line = next(ln for ln in out.stderr.splitlines() if "cannot start" in ln)
    override = "-p safety_monitor_node:deadline_s:=-1.0"
    assert line.endswith(f"(parameters from {params}, {override})"), line
