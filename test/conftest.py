"""Suite-wide set-up: DDS stays on loopback in a domain of its own; shared data paths."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before anything imports rclpy: discovery never leaves this machine.
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
os.environ.setdefault("ROS_DOMAIN_ID", "58")
# Under pytest-xdist each worker runs in a domain of its own (the base domain plus 1, 2, ...),
# so two tests running at once never see each other's topics.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER.startswith("gw"):
    _BASE = os.environ["ROS_DOMAIN_ID"]
    if not _BASE.isdigit():
        raise pytest.UsageError(f"ROS_DOMAIN_ID {_BASE!r}: expected a domain number, 0-232")
    _DOMAIN = int(_BASE) + 1 + int(_WORKER[2:])
    if _DOMAIN > 232:  # Fast DDS's highest domain on loopback ports
        raise pytest.UsageError(
            f"ROS_DOMAIN_ID {os.environ['ROS_DOMAIN_ID']} leaves no domain for xdist worker "
            f"{_WORKER} (it takes the base + 1 + its index, at most 232): set a lower one")
    os.environ["ROS_DOMAIN_ID"] = str(_DOMAIN)
    # Two workers on two cores: one torch (OpenMP) thread each, and in the nodes they start,
    # rather than two each fighting over the cores.
    os.environ["OMP_NUM_THREADS"] = "1"
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Files whose tests hold deadlines, latencies or a replay's schedule, or start nodes at
# real-time priority (pipeline.yaml's vio_node): under pytest-xdist (`make test`) one worker
# runs them all, one after another, so that none of them shares the cores with another (a
# monitor's deadline overran by 260 ms beside a demo's SCHED_FIFO node). Every other file is
# run whole by one worker. (xdist's own `--dist loadgroup` did not group: with pytest 9.2 the
# group suffix it writes into each test's id is not read back, a tester found.)
TIMED_FILES = frozenset({
    "test_cli_run_live.py", "test_demo.py", "test_launch.py", "test_monitor_faults.py",
    "test_monitor_region_inputs.py", "test_node_entry.py", "test_nodes.py", "test_replay.py",
    "test_ros_conversions.py", "test_runtime_monitor.py", "test_verification_parsing.py",
    "test_verification_soundness.py", "test_vio_faults.py",
})


def work_scope(nodeid: str) -> str:
    """The unit of work an xdist worker takes whole: "timed" for the files above, else the
    test's file."""
    path = nodeid.split("::", 1)[0]
    return "timed" if Path(path).name in TIMED_FILES else path


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scheduling by scope, with the scopes of :func:`work_scope` (for every mode
    that hands out work by load; ``--dist each`` stays xdist's)."""
    if config.getvalue("dist") == "each":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TimedFilesTogether(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return work_scope(nodeid)

    return TimedFilesTogether(config, log)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` from the repo root; tests that need it skip, saying why, without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data set folder not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def euroc_dir(shared_data: Path) -> Path:
    return shared_data / "euroc_v1_01_easy_micro"


@pytest.fixture
def harness() -> Iterator[Any]:
    """test_nodes.Harness: a context, an executor thread and a driver node (DDS tests)."""
    pytest.importorskip("rclpy")
    from test_nodes import Harness

    h = Harness()
    try:
        yield h
    finally:
        h.close()
