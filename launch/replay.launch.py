"""Replay a bag with /clock through the pipeline.

    ros2 launch meetup_ros replay.launch.py [bag:=...] [rate:=1.0]

Runs `ros2 bag play --clock` on the bag (the bundled EuRoC sample by default) and includes
pipeline.launch.py with use_sim_time:=true. Without a ROS install, `meetup-ros demo` does the
same with the pip-only replay and also records and scores the outputs.
"""

from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "meetup_ros"
DEFAULT_BAG = "euroc_v1_01_easy_sample"


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    bag = LaunchConfiguration("bag")
    rate = LaunchConfiguration("rate")
    return LaunchDescription([
        DeclareLaunchArgument(
            "bag", default_value=PathJoinSubstitution([share, "data", DEFAULT_BAG]),
            description="rosbag2 folder to play",
        ),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([share, "launch", "pipeline.launch.py"])
            ),
            launch_arguments={"use_sim_time": "true"}.items(),
        ),
        ExecuteProcess(
            cmd=["ros2", "bag", "play", "--clock", "--rate", rate, bag],
            output="screen",
        ),
    ])
