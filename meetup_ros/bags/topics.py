"""Default topic names, message types and frame ids of the bags the importer writes."""

from __future__ import annotations

CAM0_IMAGE = "/cam0/image_raw"
CAM1_IMAGE = "/cam1/image_raw"
CAM0_INFO = "/cam0/camera_info"
CAM1_INFO = "/cam1/camera_info"
IMU = "/imu0"
GROUNDTRUTH_ODOMETRY = "/groundtruth/odometry"
# Ground-truth IMU biases do not fit in Odometry; a sensor_msgs/Imu carries them with
# angular_velocity = gyro bias (rad/s) and linear_acceleration = accel bias (m/s^2).
GROUNDTRUTH_IMU_BIAS = "/groundtruth/imu_bias"
TF_STATIC = "/tf_static"
CLOCK = "/clock"

FRAME_WORLD = "world"
FRAME_BODY = "body"
FRAME_IMU = "imu0"
CAMERA_NAMES = ("cam0", "cam1")

IMAGE_TOPICS = {"cam0": CAM0_IMAGE, "cam1": CAM1_IMAGE}
INFO_TOPICS = {"cam0": CAM0_INFO, "cam1": CAM1_INFO}

MSGTYPES = {
    CAM0_IMAGE: "sensor_msgs/msg/Image",
    CAM1_IMAGE: "sensor_msgs/msg/Image",
    CAM0_INFO: "sensor_msgs/msg/CameraInfo",
    CAM1_INFO: "sensor_msgs/msg/CameraInfo",
    IMU: "sensor_msgs/msg/Imu",
    GROUNDTRUTH_ODOMETRY: "nav_msgs/msg/Odometry",
    GROUNDTRUTH_IMU_BIAS: "sensor_msgs/msg/Imu",
    TF_STATIC: "tf2_msgs/msg/TFMessage",
    CLOCK: "rosgraph_msgs/msg/Clock",
}
