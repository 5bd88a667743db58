"""ROS-side helpers the nodes share: message <-> numpy, stamps, typed parameters, latency.

Only ``meetup_ros.nodes`` and ``meetup_ros.cli.run`` import this subpackage; cores never do.
Nothing here needs cv_bridge, sensor_msgs_py or tf2_ros (the PyPI wheels lack them); TF is
broadcast only where ``tf2_ros`` imports.
"""

from __future__ import annotations

import signal

# A node started with this set to "1" in its environment stops (as on Ctrl-C) when the
# process that started it dies: nodes/entry.py asks Linux for PARENT_DEATH_SIGNAL then, and
# ros.node_tools.spin_node takes it. Here, where both can import it without rclpy or torch.
EXIT_WITH_PARENT_ENV = "MEETUP_ROS_EXIT_WITH_PARENT"
PARENT_DEATH_SIGNAL = signal.SIGUSR1


class RosInputError(ValueError):
    """A message, parameter or params file is not what a node expects.

    The message names the input (topic, field or file), the bad value (``!r``) and what was
    expected, so that a node can log it and keep running.
    """
