"""ROS-side helpers the nodes share: message <-> numpy, stamps, typed parameters, latency.

Only ``meetup_ros.nodes`` and ``meetup_ros.cli.run`` import this subpackage; cores never do.
Nothing here needs cv_bridge, sensor_msgs_py or tf2_ros (the PyPI wheels lack them); TF is
broadcast only where ``tf2_ros`` imports.
"""

from __future__ import annotations


class RosInputError(ValueError):
    """A message, parameter or params file is not what a node expects.

    The message names the input (topic, field or file), the bad value (``!r``) and what was
    expected, so that a node can log it and keep running.
    """
