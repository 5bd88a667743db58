"""meetup_ros: learned VIO, depth-code SLAM, runtime NN verification and DFW retraining.

Cores (``bags``, ``odometry``, ``slam``, ``verification``, ``control``, ``optim``,
``training``, ``evaluation``) never import rclpy; ``nodes`` wraps them for ROS 2 and
``cli`` for the ``meetup-ros`` command.
"""

__version__ = "0.1.0"
