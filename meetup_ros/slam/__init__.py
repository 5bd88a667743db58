"""Depth-code SLAM core: stereo targets, image-conditioned depth codes, photometric two-view
optimisation (Gauss-Newton, Levenberg-Marquardt, a learned LSTM step) and the keyframe
frontend that slam_node calls. ROS-free; numpy in, numpy out at the API."""


class SlamError(ValueError):
    """Bad input to the SLAM core: the message names the input, its value and what was expected."""
