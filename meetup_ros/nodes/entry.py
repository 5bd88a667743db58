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

import argparse
import ctypes
import importlib
import logging
import os
import sys
from functools import partial

from meetup_ros.ros import EXIT_WITH_PARENT_ENV, PARENT_DEATH_SIGNAL, stop_signals

# Before spin_node configures logging, Python's last-resort handler writes WARNING and above
# to stderr, message only: "<node>: ..." then reads as the node's own line.
logger = logging.getLogger(__name__)
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
    if libc.prctl(_PR_SET_PDEATHSIG, int(PARENT_DEATH_SIGNAL), 0, 0, 0) != 0:
        return f"prctl(PR_SET_PDEATHSIG) failed: {os.strerror(ctypes.get_errno())}"
    if os.getppid() == 1:  # adopted by init: the parent died before the request
        raise KeyboardInterrupt
    return None


def parameters_help(name: str) -> str:
    """Each parameter of node ``name``: type, default and meaning (imports the node)."""
    import dataclasses

    from meetup_ros.ros.params import param_fields

    module = importlib.import_module(f"meetup_ros.nodes.{name}")
    params = [obj for attr, obj in vars(module).items()
              if attr.endswith("Params") and isinstance(obj, type)
              and dataclasses.is_dataclass(obj)]
    lines = [(module.__doc__ or "").strip().splitlines()[0]]
    for cls in params:
        lines += ["", "parameters (type, default):"]
        lines += [f"  {key} ({kind}, {default!r}): {description}"
                  for key, (kind, default, description) in param_fields(cls).items()]
    return "\n".join(lines)


def _own_arguments(name: str, argv: list[str]) -> int | None:
    """Handle the arguments before ``--ros-args`` (rclpy ignores them, and started the node
    on a mistyped ``--hlep``): ``--help``, or a refusal. None: none there, go on."""
    own = argv[:argv.index("--ros-args")] if "--ros-args" in argv else argv
    parser = argparse.ArgumentParser(
        prog=name, add_help=False, formatter_class=argparse.RawDescriptionHelpFormatter,
        usage="%(prog)s [--ros-args [--params-file FILE] [-p NAME:=VALUE] [-r FROM:=TO]]")
    parser.add_argument("-h", "--help", action="store_true")
    known, unknown = parser.parse_known_args(own)
    if known.help:
        parser.description = parameters_help(name)
        parser.print_help()
        return 0
    if unknown:  # exits 2
        parser.error(f"unrecognized argument(s) {unknown!r}: ROS arguments go after "
                     f"--ros-args (`{name} --help` lists the parameters)")
    return None


def run(name: str, args: list[str] | None = None) -> int:
    """Import node ``name`` (a module of meetup_ros.nodes) and run its ``main``."""
    # Stop signals from the first line (ros/stop_signals.py), before argparse's imports
    # too (they widened the window where a Ctrl-C killed the interpreter: a tester's): during
    # the imports the first is raised at once and every later one dropped. Inherited as
    # ignored (a background job of a non-interactive shell), SIGINT was ignored until
    # spin_node took it; SIGTERM (systemd's and docker's stop) killed the node during the
    # imports with no line of its own, and `meetup-ros run` reported it failed (-15).
    stop_signals.take()
    try:
        done = _own_arguments(name, sys.argv[1:] if args is None else args)
        if done is not None:
            return done
        problem = exit_with_parent()
        if problem is not None:
            logger.warning("%s: %s", name, problem)
        module = importlib.import_module(f"meetup_ros.nodes.{name}")
        # From here the node's own handling (spin_node) takes Ctrl-C and SIGTERM: it logs,
        # publishes its final diagnostics and returns.
        return int(module.main(args))
    except (KeyboardInterrupt, Exception) as exc:
        # Raised inside a C extension's import, the interrupt comes out as another error
        # (numpy's "PyCapsule_Import could not import module 'datetime'": a traceback and
        # exit 1 for a Ctrl-C, in a test): a stop that came is still the reason.
        if not isinstance(exc, KeyboardInterrupt) and stop_signals.pending() is None:
            raise
        logger.warning("%s: interrupted while starting; nothing was started", name)
        return 0
    finally:
        # a stop signal while the interpreter exits killed a node that had stopped (-2)
        stop_signals.ignore_for_good()


# The console scripts of setup.py (one per node).
vio_node = partial(run, "vio_node")
slam_node = partial(run, "slam_node")
controller_node = partial(run, "controller_node")
safety_monitor_node = partial(run, "safety_monitor_node")
bag_replay_node = partial(run, "bag_replay_node")


if __name__ == "__main__":  # python -m meetup_ros.nodes.entry NODE [--ros-args ...]
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: python -m meetup_ros.nodes.entry NODE [--ros-args ...]")
    node_name = sys.argv.pop(1)
    sys.exit(run(node_name))
