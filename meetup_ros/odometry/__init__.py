"""Multi-rate LSTM visual-inertial odometry: IMU windowing, network, estimator, evaluation.

ROS-free: ``estimator.VioEstimator`` is what ``nodes.vio_node`` calls; ``training.train_vio``
is what ``meetup-ros train vio`` calls; ``evaluation`` and ``visual_baseline`` back the
``meetup-ros evaluate-vio`` and ``evaluate-visual`` commands.
"""

from meetup_ros.odometry.windowing import OdometryError

__all__ = ["OdometryError"]
