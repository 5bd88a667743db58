"""How a node process (and ``meetup-ros run``) takes its stop signals: SIGINT (Ctrl-C),
SIGTERM (launch, systemd) and ``PARENT_DEATH_SIGNAL`` (its launcher died; see
``nodes/entry.py``).

One handler for all three, from the first line of the process (``take``) to its exit:

- The first stop signal is the stop. While the process only imports (``nodes/entry.py``) it
  is raised at once, as Ctrl-C is: nothing has started. From ``defer()`` on (rclpy is up, a
  node is being built or spins) it is only recorded, and ``spin_node`` takes it between two
  steps of its own. A handler that raised wherever the main thread was left half-built rclpy
  objects behind: "Exception ignored in Future.__del__", a "cannot start: initialization
  failed" blamed on the parameters (rclpy's C++ turned the interrupt into its own error), a
  node that swallowed the interrupt inside a ``__del__`` and ran on deaf to every later
  signal, and once a SIGSEGV (a tester's start-up signals, 2026-12-06).
- Every later stop signal is dropped, quietly: a terminal's Ctrl-C reaches a node and its
  launcher both, and the launcher forwards it (two per node); launch 3.7.1 sent SIGUSR1
  twice. The second cut the "interrupted while starting" line, or the final diagnostics and
  the monitor's fallback. A no-op handler rather than SIG_IGN while Python runs: a signal
  already pending when the handler changes to SIG_IGN made Python print "Signal 10 ignored
  due to race condition".
- ``ignore_for_good()`` at the very end: Python resets its own handlers to the default at
  exit, and a Ctrl-C landing during that killed a node that had stopped cleanly (-2). SIG_IGN
  survives the reset.

ROS-free: ``nodes/entry.py`` takes the signals before rclpy or torch is imported.
"""

from __future__ import annotations

import signal
from typing import Any

from meetup_ros.ros import PARENT_DEATH_SIGNAL

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, PARENT_DEATH_SIGNAL)


class StopSignal(KeyboardInterrupt):
    """SIGINT or SIGTERM reached the node (Ctrl-C, launch, systemd): a stop, logged with the
    signal's name."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class LauncherGone(KeyboardInterrupt):
    """The launcher that started the node died without stopping it (nodes/entry.py asks for
    PARENT_DEATH_SIGNAL then). A stop as on Ctrl-C, logged as such."""


class _State:
    deferring = False
    # a stop is under way (by a signal or not): every stop signal from now on is dropped
    stopping = False
    # the stop the first signal asked for (raised, or waiting for spin_node); None if none
    signalled: KeyboardInterrupt | None = None


def _handler(signum: int, frame: Any) -> None:
    if _State.stopping:  # a later stop signal: dropped
        return
    _State.stopping = True
    stop = LauncherGone() if signum == PARENT_DEATH_SIGNAL else StopSignal(signum)
    _State.signalled = stop
    if not _State.deferring:
        raise stop


def take() -> None:
    """From now on, stop signals go to the handler above (raised at once until ``defer``).

    Also where the shell left SIGINT ignored (a background job of a non-interactive
    shell): a node or runner started so could not be stopped with Ctrl-C."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _handler)


def defer() -> None:
    """From now on the first stop signal is recorded, not raised (``pending``)."""
    _State.deferring = True


def pending() -> KeyboardInterrupt | None:
    """The stop a signal asked for, if one came (``StopSignal`` or ``LauncherGone``)."""
    return _State.signalled


def raise_pending() -> None:
    """Raise the stop a signal asked for, if one came while deferred."""
    stop = pending()
    if stop is not None:
        raise stop


def stopping() -> None:
    """A stop is under way (it may have come by no signal): drop the stop signals from now
    on."""
    _State.stopping = True


def ignore_for_good() -> None:
    """At the end of a stop, just before the process exits: stop signals are ignored by the
    kernel, so that none can kill the interpreter while it shuts down."""
    stopping()
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)

