"""Replay a bag with /clock through the pipeline.

    ros2 launch meetup_ros replay.launch.py [bag:=...] [rate:=1.0] [play_delay_s:=15.0]

Includes pipeline.launch.py with use_sim_time:=true and, ``play_delay_s`` later, runs
`ros2 bag play --clock` on the bag (the bundled EuRoC sample by default). The delay is there
because the nodes load torch and their weights before they subscribe (7-10 s on a loaded
2-core machine): played at once, the 5.7 s bag was over before vio_node listened, and the
pipeline put out no odometry (a tester's run against the real launch stack). A player that
fails stops the launch; one that finishes the bag leaves the pipeline running (Ctrl-C ends
it). Without a ROS install,
`meetup-ros demo` does the same with the pip-only replay and also records and scores the
outputs.
"""

from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    IncludeLaunchDescription,
    LogInfo,
    RegisterEventHandler,
    Shutdown,
    TimerAction,
)
from launch.event_handlers import OnProcessExit
from launch.events.process import ProcessExited
from launch.launch_context import LaunchContext
from launch.launch_description import LaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

PACKAGE = "meetup_ros"
DEFAULT_BAG = "euroc_v1_01_easy_sample"
DEFAULT_PLAY_DELAY_S = "15.0"


def _player_exited(event: ProcessExited, context: LaunchContext) -> list[object]:
    if event.returncode == 0:
        return [LogInfo(msg="bag played to its end; the pipeline keeps running (Ctrl-C ends it)")]
    # Without a player the pipeline waits on /clock forever, looking healthy.
    return [Shutdown(reason=f"the bag player exited with code {event.returncode}")]


def generate_launch_description() -> LaunchDescription:
    share = FindPackageShare(PACKAGE)
    bag = LaunchConfiguration("bag")
    rate = LaunchConfiguration("rate")
    player = ExecuteProcess(
        cmd=["ros2", "bag", "play", "--clock", "--rate", rate, bag],
        output="screen",
    )
    return LaunchDescription([
        DeclareLaunchArgument(
            "bag", default_value=PathJoinSubstitution([share, "data", DEFAULT_BAG]),
            description="rosbag2 folder to play",
        ),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate"),
        DeclareLaunchArgument(
            "play_delay_s", default_value=DEFAULT_PLAY_DELAY_S,
            description="seconds from starting the nodes to playing the bag: messages played "
                        "before a node has subscribed are lost to it"),
        IncludeLaunchDescription(
            PythonLaunchDescriptionSource(
                PathJoinSubstitution([share, "launch", "pipeline.launch.py"])
            ),
            launch_arguments={"use_sim_time": "true"}.items(),
        ),
        TimerAction(period=LaunchConfiguration("play_delay_s"), actions=[player]),
        RegisterEventHandler(OnProcessExit(target_action=player, on_exit=_player_exited)),
    ])
