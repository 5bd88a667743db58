"""EuRoC ASL reading, rosbag2 import and bag reading (ROS-free; uses ``rosbags``)."""

from meetup_ros.bags.errors import BagError, EurocError

__all__ = ["BagError", "EurocError"]
