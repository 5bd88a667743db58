"""Start the pipeline nodes with parameters from config/pipeline.yaml.

    ros2 launch meetup_ros pipeline.launch.py [use_sim_time:=true] [params_file:=...]

Without a ROS install, `meetup-ros run --params config/pipeline.yaml` starts the same nodes
with the same file.
"""

from launch.actions import DeclareLaunchArgument
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "meetup_ros"
NODES = ("vio_node", "slam_node", "controller_node", "safety_monitor_node")
PARAMS_FILE = "pipeline.yaml"


def generate_launch_description() -> LaunchDescription:
    use_sim_time = LaunchConfiguration("use_sim_time")
    params_file = LaunchConfiguration("params_file")
    arguments = [
        DeclareLaunchArgument(
            "use_sim_time", default_value="false",
            description="use /clock (true when replaying a bag; replay.launch.py sets it)",
        ),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution([FindPackageShare(PACKAGE), "config", PARAMS_FILE]),
            description="ROS params YAML for all pipeline nodes",
        ),
    ]
    nodes = [
        Node(
            package=PACKAGE,
            executable=name,
            name=name,
            output="screen",
            emulate_tty=True,
            # The command-line argument overrides the file's use_sim_time.
            parameters=[params_file, {"use_sim_time": use_sim_time}],
        )
        for name in NODES
    ]
    return LaunchDescription([*arguments, *nodes])
