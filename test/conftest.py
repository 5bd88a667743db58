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
os.environ.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


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
