"""The deployed controller: a speed governor network, its state, region and property.

``state`` builds the 5-value input from odometry and depth, ``region`` the uncertainty box
the safety monitor verifies over, ``network`` the MLP and its ONNX export, ``training`` the
DFW training run. ROS-free.
"""

from __future__ import annotations


class ControlError(ValueError):
    """A state, region, network file or training input is not what was expected."""
