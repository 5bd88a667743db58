"""Start the pipeline nodes with parameters from config/pipeline.yaml.

    ros2 launch meetup_ros pipeline.launch.py [use_sim_time:=true] [params_file:=...]

If any node exits, the launch shuts the others down: a pipeline without its VIO, its
controller or its monitor must not keep running (as `meetup-ros run` does, which starts the
same nodes with the same file without a ROS install).
"""

from pathlib import Path

from launch.actions import DeclareLaunchArgument, OpaqueFunction, Shutdown
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "meetup_ros"
NODES = ("vio_node", "slam_node", "controller_node", "safety_monitor_node")
PARAMS_FILE = "pipeline.yaml"
# Each node stops (as on Ctrl-C) when this launch process dies: `ros2 launch` stopped with
# SIGTERM exits without stopping its children (launch 3.x), which then ran on unsupervised.
NODE_ENV = {"MEETUP_ROS_EXIT_WITH_PARENT": "1"}


def _check_params_file(context: LaunchContext) -> list[object]:
    # launch_ros only warns about a missing file and the nodes then run on code defaults
    path = Path(LaunchConfiguration("params_file").perform(context))
    if not path.is_file():
        raise RuntimeError(f"params_file {str(path)!r} does not exist")
    return []


def generate_launch_description() -> LaunchDescription:
    use_sim_time = LaunchConfiguration("use_sim_time")
    params_file = LaunchConfiguration("params_file")
    arguments = [
        DeclareLaunchArgument(
            "use_sim_time", default_value="false",
            # '1' reached rcl as an integer, which it dropped silently: wall time
            choices=["true", "false", "True", "False"],
            description="use /clock (true when replaying a bag; replay.launch.py sets it); "
                        "overrides use_sim_time in params_file",
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
            on_exit=Shutdown(reason=f"{name} exited"),
            additional_env=NODE_ENV,
        )
        for name in NODES
    ]
    return LaunchDescription([*arguments, OpaqueFunction(function=_check_params_file), *nodes])
