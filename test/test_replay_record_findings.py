"""A tester's findings on `meetup-ros replay` and `meetup-ros record` (rclpy, loopback DDS):
a selection left with nothing to play, overlapping bags, and the recorder's log and outcome."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) not installed")

from meetup_ros.bags import BagError, topics  # noqa: E402
from meetup_ros.nodes.bag_replay_node import BagReplayNode  # noqa: E402

pytestmark = pytest.mark.dds

REPO = Path(__file__).resolve().parent.parent
SAMPLE_BAG = REPO / "data" / "euroc_v1_01_easy_sample"


@pytest.fixture
def context() -> Iterator[object]:
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.shutdown(context=context)


def cli(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meetup_ros.cli", *args], capture_output=True,
                          text=True, timeout=timeout_s, env=dict(os.environ))


def tf2_msgs_importable() -> bool:
    try:
        import tf2_msgs  # noqa: F401
    except ImportError:
        return False
    return True


def test_replay_of_only_unimportable_topics_is_refused_at_start() -> None:
    """`--topics /tf_static` without tf2_msgs read the whole bag as 1752 "undecodable"
    messages, one warning each, and exited 1 blaming a good bag."""
    if tf2_msgs_importable():
        pytest.skip("tf2_msgs is importable here: /tf_static can be played")
    result = cli("replay", str(SAMPLE_BAG), "--topics", topics.TF_STATIC, "--rate", "10")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"meetup-ros replay: error: nothing to play from bag [{str(SAMPLE_BAG)!r}]: /tf_static "
        "(tf2_msgs/msg/TFMessage) cannot be imported by rclpy here")
    assert "cannot be decoded" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_replay_node_refuses_a_selection_with_nothing_importable(context: object,
                                                                  monkeypatch) -> None:
    import meetup_ros.nodes.bag_replay_node as replay_module

    monkeypatch.setattr(replay_module, "import_message_type", lambda msgtype: None)
    with pytest.raises(BagError, match=r"nothing to play from bag .*: /imu0 "
                                       r"\(sensor_msgs/msg/Imu\) cannot be imported"):
        BagReplayNode(context=context, bag=str(SAMPLE_BAG), topics=[topics.IMU])


def test_replay_refuses_the_same_recording_twice(context: object) -> None:
    """It published every message twice (2282 IMU samples), exit 0, without a word."""
    with pytest.raises(BagError, match=r"bags '.*euroc_v1_01_easy_sample' and "
                                       r"'.*euroc_v1_01_easy_sample' overlap in time on '/imu0'"):
        BagReplayNode(context=context, bag=[str(SAMPLE_BAG)] * 2, topics=[topics.IMU])
    result = cli("replay", str(SAMPLE_BAG), str(SAMPLE_BAG), "--rate", "10")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "overlap in time on" in result.stderr.strip().splitlines()[-1]
    assert "replayed" not in result.stdout + result.stderr


def test_record_waits_no_longer_than_its_duration_and_logs_no_bag_it_did_not_write(
        tmp_path: Path) -> None:
    """`--duration 2` waited 5 s for a publisher, then logged "recorded 0 messages to X"
    though nothing was written."""
    out = tmp_path / "rec"
    result = cli("record", str(out), "--topics", "/nobody/publishes", "--duration", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "no publisher seen within 1 s" in result.stderr
    assert "recorded 0 messages" not in result.stdout + result.stderr
    assert not out.exists()


def test_record_of_an_unknown_type_logs_no_recording(tmp_path: Path) -> None:
    out = tmp_path / "rec"
    result = cli("record", str(out), "--topics", "/odom", "--type",
                 "/odom=nav_msgs/msg/Odometryy", "--duration", "1")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "meetup-ros record: error: cannot record '/odom': rclpy cannot import "
        "'nav_msgs/msg/Odometryy'")
    assert "recorded 0 messages" not in result.stdout + result.stderr


def test_a_recording_where_nothing_arrived_fails_naming_the_topics(tmp_path: Path) -> None:
    """A misspelt topic with its --type: "wrote .../rec2: " (an empty list) and exit 0."""
    out = tmp_path / "rec"
    result = cli("record", str(out), "--topics", "/odmo", "--type",
                 "/odmo=nav_msgs/msg/Odometry", "--duration", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"wrote {out}: /odmo 0" in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        f"meetup-ros record: error: no message arrived on ['/odmo']: the bag {str(out)!r} holds "
        "none (a misspelt topic, or no publisher?)")
