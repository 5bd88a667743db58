"""What every node process runs first, before its module (torch, rclpy, onnxruntime) is imported.

Importing a node takes seconds on 2 cores, and two things must already hold meanwhile:

- Ctrl-C in that time ends the process quietly. Nothing has started, so there is nothing to
  clean up, but Python's default handler printed a KeyboardInterrupt traceback from inside
  an import, and ``ros2 launch`` reported every node as died (exit code -2).
- With ``MEETUP_ROS_EXIT_WITH_PARENT=1`` in its environment (the launch files and
  ``meetup-ros run`` set it), the process gets SIGUSR1 when the process that started it dies
  (Linux's PR_SET_PDEATHSIG) and stops as on Ctrl-C, the monitor sending its stop on /cmd.
  A signal of its own so that the node can say why it stops (the signal comes when the
  launcher's thread that started the node ends, while the node's parent process id may
  still be the launcher's), and not SIGHUP, which ``nohup ros2 launch`` ignores for all.
  ``ros2 launch`` stopped with SIGTERM exits without stopping its children (launch 3.x), and
  a ``meetup-ros run`` killed with SIGKILL cannot; their nodes ran on, unsupervised. Not set
  by default: a node started by hand from a shell that then exits must not follow it.

Known limit: the parent is the process that forked the node. Under a launch ``prefix`` that
forks (``xterm -e``, ``gdb --args``), that is the prefix's process, not the launcher.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys

EXIT_WITH_PARENT_ENV = "MEETUP_ROS_EXIT_WITH_PARENT"
PARENT_DEATH_SIGNAL = signal.SIGUSR1
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def exit_with_parent() -> str | None:
    """Ask for ``PARENT_DEATH_SIGNAL`` at the parent's death where the environment says so.

    Returns None (asked, or not wanted) or why it could not be done; raises KeyboardInterrupt
    if the parent is gone already (died before the request, so no signal would ever come).
    """
    if os.environ.get(EXIT_WITH_PARENT_ENV, "") != "1":
        return None
    if not sys.platform.startswith("linux"):
        return f"{EXIT_WITH_PARENT_ENV}=1 needs Linux (prctl); this node outlives its parent"
    libc = ctypes.CDLL(None, use_errno=True)
    signal.signal(PARENT_DEATH_SIGNAL, signal.default_int_handler)  # spin_node's, later
    if libc.prctl(_PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0) != 0:
        return f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}"
    if os.getppid() == 1:  # adopted by init: the parent died before the request
        raise KeyboardInterrupt
    return None


def usage(name: str) -> str:
    """``<node> --help``: how to pass parameters, and each one's type, default and meaning."""
    import dataclasses

    from meetup_ros.ros.params import param_fields

    module = importlib.import_module(f"meetup_ros.nodes.{name}")
    lines = [f"usage: {name} [--ros-args [--params-file FILE] [-p NAME:=VALUE] [-r FROM:=TO]]",
             "", (module.__doc__ or "").strip().splitlines()[0], ""]
    # Known shortcoming: bag_replay_node reads its options without a parameters class, so
    # its --help lists none.
    params = [obj for attr, obj in vars(module).items()
              if attr.endswith("Params") and isinstance(obj, type)
              and dataclasses.is_dataclass(obj)]
    for cls in params:
        lines.append("parameters (type, default):")
        for key, (kind, default, description) in param_fields(cls).items():
            lines.append(f"  {key} ({kind}, {default!r}): {description}")
    return "\n".join(lines)


def run(name: str, args: list[str] | None = None) -> int:
    """Import node ``name`` (a module of meetup_ros.nodes) and run its ``main``."""
    argv = sys.argv[1:] if args is None else args
    own = argv[:argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in own or "--help" in own:  # rclpy would ignore it and start the node
        print(usage(name))
        return 0
    if own:  # a mistyped --help started the monitor on its code defaults, publishing /cmd
        print(f"{name}: unrecognized argument(s) {own!r}: ROS arguments go after --ros-args "
              f"(`{name} --help` lists the parameters)", file=sys.stderr)
        return 2
    # Inherited as ignored (a background job of a non-interactive shell), SIGINT would be
    # ignored until spin_node takes it.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        problem = exit_with_parent()
        if problem is not None:
            print(f"{name}: {problem}", file=sys.stderr, flush=True)
        module = importlib.import_module(f"meetup_ros.nodes.{name}")
        # From here the node's own handling (spin_node) takes Ctrl-C and SIGTERM: it logs,
        # publishes its final diagnostics and returns.
        return int(module.main(args))
    except KeyboardInterrupt:
        print(f"{name}: interrupted while starting; nothing was started", file=sys.stderr,
              flush=True)
        return 0


# The console scripts of setup.py (one per node).
def vio_node() -> int:
    return run("vio_node")


def slam_node() -> int:
    return run("slam_node")


def controller_node() -> int:
    return run("controller_node")


def safety_monitor_node() -> int:
    return run("safety_monitor_node")


def bag_replay_node() -> int:
    return run("bag_replay_node")


if __name__ == "__main__":  # python -m meetup_ros.nodes.entry NODE [--ros-args ...]
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m meetup_ros.nodes.entry NODE [--ros-args ...]")
    node_name = sys.argv.pop(1)
    sys.exit(run(node_name))
